//! The command line: `plan`, `warm` and `doctor`, their inputs, output and exit codes.

use std::io::{self, IsTerminal, Read, Write};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use thiserror::Error;

use crate::doctor;
use crate::duration;
use crate::ecs;
use crate::list::{self, ListEntry};
use crate::metrics;
use crate::outcome::ImageOutcome;
use crate::plan::{PlannedImage, Source};
use crate::rules::{Rule, RuleError, Rules};
use crate::upstream::credential::Credentials;
use crate::upstream::endpoints::{Endpoint, Endpoints};
use crate::upstream::resolver::Resolver;
use crate::upstream::tags::TagLister;
use crate::warm::{self, LayerMode, Platform, Report, WarmOptions};

/// Exit code when some image could not be planned or warmed.
const EXIT_IMAGE_FAILED: u8 = 1;
/// Exit code for bad usage or configuration.
const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "ecr-cache-warmer",
    version,
    about = "Keeps Amazon ECR pull-through caches warm",
    long_about = "Keeps Amazon ECR pull-through caches warm: maps image references onto the \
                  account's pull-through cache rules and pulls them through the cache, so that \
                  workloads without a route to the internet can pull them from ECR."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the cache repository each image maps to, without pulling anything
    Plan(PlanArgs),
    /// Pull each image through its pull-through cache and report what happened
    Warm(WarmArgs),
    /// Check the registry's pull-through cache setup for what would make a first pull fail,
    /// without pulling anything: credentials, registry policy, creation templates, cache
    /// repositories; and, for the images given, whether their first pull is allowed
    Doctor(InputArgs),
}

#[derive(Debug, Args)]
struct PlanArgs {
    #[command(flatten)]
    input: InputArgs,

    /// List each selector's tags upstream and show the images it selects (otherwise
    /// selectors are shown as written, and plan makes no call upstream)
    #[arg(long)]
    resolve: bool,

    #[command(flatten)]
    ecs: EcsArgs,
}

#[derive(Debug, Args)]
struct WarmArgs {
    #[command(flatten)]
    input: InputArgs,

    #[command(flatten)]
    ecs: EcsArgs,

    /// Cache repositories warmed at once
    #[arg(long, env = "WARM_CONCURRENCY", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,

    /// At most N ECR calls per second, over the whole warm (default: no cap), to stay under
    /// the account's API quotas
    #[arg(long, value_name = "N", env = "WARM_MAX_TPS")]
    max_tps: Option<NonZeroU32>,

    /// Stop starting new calls after this long (e.g. 90s, 5m, 1h; plain numbers are seconds);
    /// images not attempted by then are reported as skipped
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    timeout: Option<Duration>,

    /// Warm only this platform of multi-arch images (OS/ARCH[/VARIANT], e.g. linux/arm64).
    /// Repeatable. Default: every runnable platform of the index
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]", value_parser = parse_platform)]
    platforms: Vec<Platform>,

    /// What to ask of each image's blobs: none (manifests only), request (ask ECR for every
    /// blob), verify (also check that each blob is served from ECR's own layer storage)
    #[arg(long, value_enum, default_value_t = LayerMode::Verify)]
    layers: LayerMode,

    /// How long blobs that are not on ECR's storage yet are asked again (verify mode)
    #[arg(long, value_name = "DURATION", value_parser = duration::parse, default_value = "2m")]
    layer_wait: Duration,

    /// Also write CloudWatch Embedded Metric Format lines to FILE
    #[arg(long, value_name = "FILE")]
    emf: Option<PathBuf>,

    /// CloudWatch namespace of the metrics
    #[arg(long, env = "METRICS_NAMESPACE", default_value = metrics::DEFAULT_NAMESPACE)]
    metrics_namespace: String,
}

#[derive(Debug, Args)]
struct InputArgs {
    /// Image references, as written for `docker pull` (nginx:1.27, quay.io/org/app@sha256:...),
    /// or selectors of upstream tags: REPOSITORY:[RANGE] [newest=N] [match=REGEX] [exclude=REGEX]
    /// (nginx:~1.27, 'nginx:~1.27 match=-alpine$ newest=3')
    #[arg(value_name = "IMAGE")]
    images: Vec<String>,

    /// Read references and selectors from FILE, one per line; blank lines and '#' comments are
    /// ignored; '-' reads stdin
    #[arg(short = 'f', long, value_name = "FILE")]
    images_file: Option<PathBuf>,

    /// A pull-through cache rule, e.g. docker-hub=registry-1.docker.io or
    /// my-app=registry-1.docker.io/upstream-app. Repeatable. When given, rules are not read from ECR
    #[arg(long = "rule", value_name = "PREFIX=UPSTREAM", value_parser = Rule::parse)]
    rules: Vec<Rule>,

    /// Output format: a table for people, or JSON for machines
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,

    /// AWS Region (default: from the environment and AWS config, as the AWS CLI does)
    #[arg(long)]
    region: Option<String>,

    /// Send a registry's API calls, which list selectors' tags, to another base URL (a mirror,
    /// a test registry), e.g. registry-1.docker.io=http://127.0.0.1:5001. Repeatable
    #[arg(long = "upstream-endpoint", value_name = "REGISTRY=URL", value_parser = parse_endpoint)]
    upstream_endpoints: Vec<Endpoint>,
}

/// The images that ECS runs, added to the list.
#[derive(Debug, Args)]
struct EcsArgs {
    /// Also the images of the task definitions that the account's ECS services deploy, in every
    /// cluster; with =families, also the latest ACTIVE revision of every task definition family.
    /// Only images that ECS pulls through a pull-through cache are warmed; plan lists the others
    /// with the reason
    #[arg(long, value_enum, value_name = "WHAT", num_args = 0..=1, require_equals = true,
          default_missing_value = "services")]
    from_ecs: Option<EcsScope>,

    /// Only the services of this ECS cluster (name or ARN). Repeatable
    #[arg(long = "ecs-cluster", value_name = "NAME", requires = "from_ecs")]
    ecs_clusters: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EcsScope {
    /// The task definitions of the services' deployments
    Services,
    /// Those, and the latest ACTIVE revision of every family
    Families,
}

impl EcsArgs {
    fn scope(&self) -> Option<ecs::Scope> {
        self.from_ecs.map(|what| ecs::Scope {
            families: what == EcsScope::Families,
            clusters: self.ecs_clusters.clone(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// What stops a command before any image is looked at.
#[derive(Debug, Error)]
pub enum UsageError {
    #[error("cannot write metrics file {path}: {source}. Give a path in a folder that exists and that you may write to")]
    EmfFile { path: String, source: io::Error },
    #[error("cannot write the report to standard output: {0}")]
    Output(io::Error),
    #[error("cannot read images file {path}: {source}")]
    ImagesFile { path: String, source: io::Error },
    #[error(
        "no images given: pass references as arguments or with --images-file FILE ('-' for stdin)"
    )]
    NoImages,
    #[error("no AWS Region is set: pass --region or set AWS_REGION")]
    NoRegion,
    #[error(transparent)]
    Rules(#[from] RuleError),
    #[error(transparent)]
    Doctor(#[from] doctor::DoctorError),
    #[error(transparent)]
    Ecs(#[from] ecs::EcsError),
    #[error("invalid --upstream-endpoint: {0}")]
    Endpoints(crate::upstream::endpoints::EndpointError),
}

/// Parses the command line, runs the command and returns the exit code.
pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plan(args) => plan_command(args).await,
        Command::Warm(args) => warm_command(args).await,
        Command::Doctor(args) => doctor_command(args).await,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

async fn plan_command(args: PlanArgs) -> Result<u8, UsageError> {
    let scope = args.ecs.scope();
    let resolve = args.resolve;
    let args = args.input;
    let endpoints = args.endpoints()?;
    let inputs = args.read_images_or_ecs(scope.is_some())?;
    // With --rule and without --from-ecs, plan is offline: no AWS configuration is even loaded.
    let config = match args.rules.is_empty() || scope.is_some() {
        true => Some(args.aws_config().await?),
        false => None,
    };
    let rules = args.rules(config.as_ref()).await?;
    let mut planned = plan_inputs(inputs, &rules);
    if let (Some(scope), Some(config)) = (&scope, &config) {
        planned.extend(ecs_images(config, scope, &rules, &planned, None).await?);
    }
    if resolve {
        planned = resolve_selectors(endpoints, config.as_ref(), planned, &rules, None).await;
    }
    let mut out = io::stdout().lock();
    written(match args.output {
        Output::Json => planned.iter().try_for_each(|image| {
            let line = serde_json::to_string(&image.record()).map_err(io::Error::from)?;
            writeln!(out, "{line}")
        }),
        Output::Text => write_plan_table(&mut out, &planned),
    })?;
    Ok(match planned.iter().any(PlannedImage::is_failure) {
        false => 0,
        true => EXIT_IMAGE_FAILED,
    })
}

/// The images that ECS runs, planned after the list's, within the deadline.
async fn ecs_images(
    config: &SdkConfig,
    scope: &ecs::Scope,
    rules: &Rules,
    listed: &[PlannedImage],
    deadline: Option<Instant>,
) -> Result<Vec<PlannedImage>, UsageError> {
    let client = aws_sdk_ecs::Client::new(config);
    let discovered = ecs::discover(&client, scope, deadline).await?;
    Ok(ecs::plan(discovered, rules, listed))
}

async fn warm_command(args: WarmArgs) -> Result<u8, UsageError> {
    let started = Instant::now();
    let endpoints = args.input.endpoints()?;
    let scope = args.ecs.scope();
    let inputs = args.input.read_images_or_ecs(scope.is_some())?;
    // A metrics file that cannot be written is found before anything is pulled.
    let emf = args
        .emf
        .as_ref()
        .map(|path| {
            std::fs::File::create(path)
                .map(|file| (path, file))
                .map_err(|source| UsageError::EmfFile {
                    path: path.display().to_string(),
                    source,
                })
        })
        .transpose()?;
    let config = args.input.aws_config().await?;
    let rules = args.input.rules(Some(&config)).await?;
    let mut planned = plan_inputs(inputs, &rules);
    // A timeout too long to represent is no timeout.
    let deadline = args
        .timeout
        .and_then(|timeout| started.checked_add(timeout));
    if let Some(scope) = &scope {
        planned.extend(ecs_images(&config, scope, &rules, &planned, deadline).await?);
    }
    let planned = resolve_selectors(endpoints, Some(&config), planned, &rules, deadline).await;
    // What ECS pulls without a cache is reported, not warmed.
    let (planned, not_warmed): (Vec<PlannedImage>, Vec<PlannedImage>) = planned
        .into_iter()
        .partition(|image| image.not_warmed.is_none());
    let options = WarmOptions {
        concurrency: usize::from(args.concurrency),
        deadline,
        platforms: args.platforms,
        layers: args.layers,
        layer_wait: args.layer_wait,
        max_tps: args.max_tps,
        ..WarmOptions::default()
    };
    let progress = progress_bar(planned.len());
    let ecr = crate::aws::engine_ecr(&config);
    let report = warm::warm(&ecr, &planned, &options, &|done| {
        progress.set_position(done as u64)
    })
    .await;
    progress.finish_and_clear();

    if let Some((path, mut file)) = emf {
        let lines = metrics::emf_lines(&report, &args.metrics_namespace);
        file.write_all((lines.join("\n") + "\n").as_bytes())
            .map_err(|source| UsageError::EmfFile {
                path: path.display().to_string(),
                source,
            })?;
    }
    let mut out = io::stdout().lock();
    written(match args.input.output {
        Output::Json => warm_document(&report, &not_warmed)
            .map_err(io::Error::from)
            .and_then(|json| writeln!(out, "{json}")),
        Output::Text => write_warm_report(&mut out, &report, &not_warmed),
    })?;
    Ok(if report.all_warm() {
        0
    } else {
        EXIT_IMAGE_FAILED
    })
}

async fn doctor_command(args: InputArgs) -> Result<u8, UsageError> {
    // Images are optional here: the checks of the rules run without them.
    let inputs = match args.images.is_empty() && args.images_file.is_none() {
        true => Vec::new(),
        false => args.read_images()?,
    };
    let config = args.aws_config().await?;
    let region = config.region().map(ToString::to_string).unwrap_or_default();
    let ecr = aws_sdk_ecr::Client::new(&config);
    let caller = doctor::caller(&aws_sdk_sts::Client::new(&config)).await?;
    let rules = match args.rules.is_empty() {
        true => crate::discovery::rules(&ecr).await?,
        false => Rules::new(args.rules.clone())?,
    }
    .with_own_registry(&caller.account, &region);
    let planned = plan_inputs(inputs, &rules);
    let report = doctor::run(&ecr, caller, &region, &rules, &planned).await;
    let mut out = io::stdout().lock();
    written(match args.output {
        Output::Json => serde_json::to_string(&report)
            .map_err(io::Error::from)
            .and_then(|json| writeln!(out, "{json}")),
        Output::Text => write_doctor_report(&mut out, &report),
    })?;
    Ok(match report.summary.error {
        0 => 0,
        _ => EXIT_IMAGE_FAILED,
    })
}

/// The warm document, with the images that ECS pulls without a cache
/// (`not_warmed`, as `plan` records them) when there are any.
fn warm_document(
    report: &Report,
    not_warmed: &[PlannedImage],
) -> serde_json::Result<serde_json::Value> {
    let mut document = serde_json::to_value(report)?;
    if !not_warmed.is_empty() {
        let records: Vec<_> = not_warmed.iter().map(PlannedImage::record).collect();
        document["not_warmed"] = serde_json::to_value(records)?;
    }
    Ok(document)
}

/// The plan with its selectors' tags listed upstream, with the rules'
/// credentials when the AWS configuration is at hand.
async fn resolve_selectors(
    endpoints: Endpoints,
    config: Option<&SdkConfig>,
    planned: Vec<PlannedImage>,
    rules: &Rules,
    deadline: Option<Instant>,
) -> Vec<PlannedImage> {
    let credentials = Credentials::new(config.map(aws_sdk_secretsmanager::Client::new));
    Resolver::new(TagLister::new(endpoints), credentials)
        .resolve(planned, rules, deadline)
        .await
}

fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    text.parse()
        .map_err(|error: crate::upstream::endpoints::EndpointError| error.to_string())
}

fn parse_platform(text: &str) -> Result<Platform, String> {
    text.parse()
        .map_err(|error: warm::platform::PlatformError| error.to_string())
}

fn plan_inputs(inputs: Vec<ListEntry>, rules: &Rules) -> Vec<PlannedImage> {
    inputs
        .into_iter()
        .map(|input| PlannedImage::from_entry(input, rules))
        .collect()
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
fn progress_bar(total: usize) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64);
    if let Ok(style) =
        ProgressStyle::with_template("warming {bar:30} {pos}/{len} images ({elapsed})")
    {
        bar.set_style(style);
    }
    bar
}

/// A report that could not be written is lost: the command fails with it.
fn written(result: io::Result<()>) -> Result<(), UsageError> {
    result
        .and_then(|()| io::stdout().flush())
        .map_err(UsageError::Output)
}

impl InputArgs {
    /// The references given, which may be none when ECS adds its images.
    fn read_images_or_ecs(&self, from_ecs: bool) -> Result<Vec<ListEntry>, UsageError> {
        match from_ecs {
            true => self.read_entries(),
            false => self.read_images(),
        }
    }

    /// The references from the arguments and the images file, in that order;
    /// a line of the file that cannot be read is its own error.
    fn read_images(&self) -> Result<Vec<ListEntry>, UsageError> {
        let inputs = self.read_entries()?;
        if inputs.is_empty() {
            return Err(UsageError::NoImages);
        }
        Ok(inputs)
    }

    fn read_entries(&self) -> Result<Vec<ListEntry>, UsageError> {
        let mut inputs: Vec<ListEntry> = self
            .images
            .iter()
            .map(|s| ListEntry::Text(s.trim().to_string()))
            .collect();
        if let Some(path) = &self.images_file {
            let read_error = |source| UsageError::ImagesFile {
                path: path.display().to_string(),
                source,
            };
            let bytes = if path.as_os_str() == "-" {
                let mut bytes = Vec::new();
                io::stdin().read_to_end(&mut bytes).map_err(read_error)?;
                bytes
            } else {
                std::fs::read(path).map_err(read_error)?
            };
            inputs.extend(list::read_list_bytes(&bytes));
        }
        Ok(inputs)
    }

    /// The `--upstream-endpoint`s, which must name each registry once.
    fn endpoints(&self) -> Result<Endpoints, UsageError> {
        Endpoints::new(self.upstream_endpoints.clone()).map_err(UsageError::Endpoints)
    }

    /// The AWS configuration from the usual chain, which must name a Region.
    async fn aws_config(&self) -> Result<SdkConfig, UsageError> {
        let config = crate::aws::load_config(self.region.clone()).await;
        if config.region().is_none() {
            return Err(UsageError::NoRegion);
        }
        Ok(config)
    }

    /// The rules given with `--rule`, or else the registry's rules from ECR;
    /// with the caller's own registry, so that references to other private
    /// registries are refused.
    async fn rules(&self, config: Option<&SdkConfig>) -> Result<Rules, UsageError> {
        let Some(config) = config else {
            // Offline (`plan --rule`): only a Region given by the user is known.
            let rules = Rules::new(self.rules.clone())?;
            let region = self
                .region
                .clone()
                .or_else(|| std::env::var("AWS_REGION").ok());
            return Ok(match region {
                Some(region) => rules.with_own_region(&region),
                None => rules,
            });
        };
        let ecr = aws_sdk_ecr::Client::new(config);
        let rules = match self.rules.is_empty() {
            true => crate::discovery::rules(&ecr).await?,
            false => Rules::new(self.rules.clone())?,
        };
        let region = config.region().map(ToString::to_string).unwrap_or_default();
        Ok(crate::discovery::for_caller(rules, &ecr, &region).await)
    }
}

fn write_plan_table(out: &mut impl Write, planned: &[PlannedImage]) -> io::Result<()> {
    let rows: Vec<[String; 4]> =
        planned
            .iter()
            .map(|image| {
                let version = image.reference.as_ref().map_or(String::new(), |r| {
                    match (r.tag(), r.digest()) {
                        (Some(tag), Some(digest)) => format!("{tag}@{digest}"),
                        (Some(tag), None) => tag.to_string(),
                        (None, Some(digest)) => digest.to_string(),
                        (None, None) => "latest (implied)".to_string(),
                    }
                });
                let version = match (&image.unresolved, &image.error) {
                    (Some(_), None) => "selector: tags listed with --resolve".to_string(),
                    _ => version,
                };
                let input = image_cell(&image.input, image.selector.as_deref());
                match (&image.target, &image.error) {
                    (Some(target), None) => [
                        input,
                        target.cache_repository.clone(),
                        version,
                        target.rule.clone(),
                    ],
                    (None, _) if image.not_warmed.is_some() => [
                        input,
                        "-".to_string(),
                        version,
                        format!("not warmed: {}", image.not_warmed.as_deref().unwrap_or("")),
                    ],
                    (target, error) => [
                        input,
                        target
                            .as_ref()
                            .map_or("-".to_string(), |t| t.cache_repository.clone()),
                        version,
                        format!("error: {}", error.as_deref().unwrap_or("not planned")),
                    ],
                }
            })
            .collect();
    let header = ["IMAGE", "CACHE REPOSITORY", "TAG/DIGEST", "RULE"];
    let sources = planned.iter().map(|image| &image.source);
    write_table_with_sources(out, header, rows, sources)
}

/// The table, with a SOURCE column when some image did not come from the list.
fn write_table_with_sources<'a, const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: Vec<[String; N]>,
    sources: impl Iterator<Item = &'a Source> + Clone,
) -> io::Result<()> {
    if sources.clone().all(|source| *source == Source::List) {
        return write_table(out, header, &rows);
    }
    let with_source = |cells: [String; N], source: String| -> Vec<String> {
        let mut row = Vec::from(cells);
        row.insert(1, source);
        row
    };
    let header = with_source(header.map(str::to_string), "SOURCE".to_string());
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .zip(sources)
        .map(|(row, source)| with_source(row, source.to_string()))
        .collect();
    write_rows(out, &header, &rows)
}

/// An image as a table shows it: with the selector that selected it.
fn image_cell(input: &str, selector: Option<&str>) -> String {
    match selector {
        Some(selector) if selector != input => format!("{input} (selected by {selector})"),
        _ => input.to_string(),
    }
}

fn write_warm_report(
    out: &mut impl Write,
    report: &Report,
    not_warmed: &[PlannedImage],
) -> io::Result<()> {
    let rows: Vec<[String; 6]> = report
        .images
        .iter()
        .map(|image| {
            let version = match (&image.tag, &image.digest) {
                (Some(tag), Some(digest)) => format!("{tag} {}", short_digest(digest)),
                (Some(tag), None) => tag.clone(),
                (None, Some(digest)) => short_digest(digest),
                (None, None) => String::new(),
            };
            [
                image_cell(&image.input, image.selector.as_deref()),
                image.status.name().to_string(),
                image.cache_repository.clone().unwrap_or_else(|| "-".into()),
                version,
                platforms_cell(image),
                layers_cell(image),
            ]
        })
        .collect();
    let header = [
        "IMAGE",
        "STATUS",
        "CACHE REPOSITORY",
        "TAG DIGEST",
        "PLATFORMS",
        "LAYERS CACHED",
    ];
    let sources = report.images.iter().map(|image| &image.source);
    write_table_with_sources(out, header, rows, sources)?;

    let troubled = report.images.iter().filter(|image| !image.status.is_warm());
    for image in troubled {
        writeln!(out)?;
        let code = image
            .failure_code
            .as_deref()
            .map(|c| format!("{c}: "))
            .unwrap_or_default();
        writeln!(
            out,
            "{} {}: {code}{}",
            image.input,
            image.status.name(),
            image.message.as_deref().unwrap_or("")
        )?;
        if let Some(hint) = &image.hint {
            writeln!(out, "  hint: {hint}")?;
        }
    }
    let s = &report.summary;
    writeln!(out)?;
    writeln!(
        out,
        "{} image{}: {} imported, {} refreshed, {} unchanged, {} pending, {} failed, {} skipped in {:.1}s",
        s.total,
        if s.total == 1 { "" } else { "s" },
        s.imported,
        s.refreshed,
        s.unchanged,
        s.pending,
        s.failed,
        s.skipped,
        s.duration_ms as f64 / 1000.0
    )?;
    let layers = &s.layers;
    if layers.total > 0 {
        writeln!(
            out,
            "{} distinct blobs: {} cached on ECR's storage, {} pending, {} failed",
            layers.total, layers.cached, layers.pending, layers.failed
        )?;
    }
    if !not_warmed.is_empty() {
        writeln!(
            out,
            "{} image{} that ECS runs not warmed: ECS pulls {} without a pull-through cache \
             (plan --from-ecs says why for each)",
            not_warmed.len(),
            if not_warmed.len() == 1 { "" } else { "s" },
            if not_warmed.len() == 1 { "it" } else { "them" },
        )?;
    }
    Ok(())
}

/// The caller first, then one line per finding, with its fix beneath.
fn write_doctor_report(out: &mut impl Write, report: &doctor::Report) -> io::Result<()> {
    writeln!(
        out,
        "caller: {} (account {}), Region {}",
        report.caller.arn, report.caller.account, report.region
    )?;
    writeln!(out)?;
    let width = report
        .findings
        .iter()
        .map(|finding| finding.check.name().len())
        .max()
        .unwrap_or(0);
    for finding in &report.findings {
        writeln!(
            out,
            "{:<7}  {:<width$}  {}: {}",
            finding.status.name(),
            finding.check.name(),
            finding.subject,
            finding.message
        )?;
        if let Some(fix) = &finding.fix {
            writeln!(out, "{:<7}  {:<width$}  fix: {fix}", "", "")?;
        }
    }
    let s = &report.summary;
    writeln!(out)?;
    writeln!(
        out,
        "{} finding{}: {} ok, {} warning{}, {} error{}",
        s.ok + s.warning + s.error,
        if s.ok + s.warning + s.error == 1 {
            ""
        } else {
            "s"
        },
        s.ok,
        s.warning,
        if s.warning == 1 { "" } else { "s" },
        s.error,
        if s.error == 1 { "" } else { "s" }
    )
}

/// `linux/amd64 linux/arm64/v8`, a platform marked when it is not warm.
fn platforms_cell(image: &ImageOutcome) -> String {
    let names: Vec<String> = image
        .platforms
        .iter()
        .filter_map(|platform| {
            let name = platform.platform.clone()?;
            Some(match platform.status.is_warm() {
                true => name,
                false => format!("{name}({})", platform.status.name()),
            })
        })
        .collect();
    match names.is_empty() {
        true => "-".to_string(),
        false => names.join(" "),
    }
}

/// `7/7`: blobs on ECR's storage of all blobs, over every platform.
fn layers_cell(image: &ImageOutcome) -> String {
    let (cached, total) = image
        .platforms
        .iter()
        .filter_map(|platform| platform.layers)
        .fold((0, 0), |(cached, total), layers| {
            (cached + layers.cached, total + layers.total)
        });
    match total {
        0 => "-".to_string(),
        _ => format!("{cached}/{total}"),
    }
}

/// `sha256:` and the first 12 hex digits, as `docker images` shortens IDs.
fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) => {
            format!("{algorithm}:{}", hex.chars().take(12).collect::<String>())
        }
        None => digest.to_string(),
    }
}

/// Writes left-aligned columns; the last column is not padded.
fn write_table<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> io::Result<()> {
    let rows: Vec<&[String]> = rows.iter().map(|row| row.as_slice()).collect();
    write_rows(out, &header.map(str::to_string), &rows)
}

fn write_rows<R: AsRef<[String]>>(
    out: &mut impl Write,
    header: &[String],
    rows: &[R],
) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(String::len).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row.as_ref()) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let rows = rows.iter().map(|row| row.as_ref());
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Diagnostics on stderr, quiet unless `RUST_LOG` asks for more.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,aws_config=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_shortened_like_image_ids() {
        assert_eq!(
            short_digest(&format!("sha256:{}", "ab".repeat(32))),
            "sha256:abababababab"
        );
    }
}
