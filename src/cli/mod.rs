//! The command line: `plan`, `warm`, `check` and `doctor`, their inputs,
//! output and exit codes; [`table`] writes their tables.

mod table;

use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use thiserror::Error;

use crate::check;
use crate::doctor;
use crate::duration;
use crate::ecs;
use crate::list::{self, ListEntry};
use crate::metrics;
use crate::pipeline::{Parcel, Pipeline};
use crate::plan::PlannedImage;
use crate::rules::{Rule, RuleError, Rules};
use crate::upstream::credential::Credentials;
use crate::upstream::endpoints::{Endpoint, Endpoints};
use crate::upstream::resolver::Resolver;
use crate::upstream::tags::TagLister;
use crate::warm::settings::WarmSettings;
use crate::warm::Report;

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
    /// Say whether each image is cached as its upstream has it now (fresh, stale or missing),
    /// without pulling anything: DescribeImages in ECR, and a HEAD of each cached tag upstream,
    /// which spends no pull
    Check(CheckArgs),
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
struct CheckArgs {
    #[command(flatten)]
    input: InputArgs,

    #[command(flatten)]
    ecs: EcsArgs,
}

#[derive(Debug, Args)]
struct WarmArgs {
    #[command(flatten)]
    input: InputArgs,

    #[command(flatten)]
    ecs: EcsArgs,

    #[command(flatten)]
    settings: WarmSettings,

    /// Stop starting new calls after this long (e.g. 90s, 5m, 1h; plain numbers are seconds);
    /// images not attempted by then are reported as skipped
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    timeout: Option<Duration>,

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
        Command::Check(args) => check_command(args).await,
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
    let entries = args.read_images_or_ecs(scope.is_some())?;
    // With --rule and without --from-ecs, plan is offline: no AWS configuration is even loaded.
    let config = match args.rules.is_empty() || scope.is_some() {
        true => Some(args.aws_config().await?),
        false => None,
    };
    let rules = args.rules(config.as_ref()).await?;
    let discovery = match (&scope, &config) {
        (Some(scope), Some(config)) => ecs_images(config, scope, None).await?,
        _ => ecs::Discovery::default(),
    };
    let resolver = resolver(endpoints, config.as_ref());
    let settings = WarmSettings::default();
    let pipeline = Pipeline {
        rules: &rules,
        resolver: &resolver,
        settings: &settings,
    };
    let mut planned = pipeline.plan(Parcel {
        entries,
        discovered: discovery.images,
        ..Parcel::default()
    });
    if resolve {
        planned = pipeline.resolve(vec![planned]).await.concat();
    }
    let mut out = io::stdout().lock();
    written(match args.output {
        Output::Json => planned.iter().try_for_each(|image| {
            let line = serde_json::to_string(&image.record()).map_err(io::Error::from)?;
            writeln!(out, "{line}")
        }),
        Output::Text => table::write_plan_table(&mut out, &planned),
    })?;
    let failed = planned.iter().any(PlannedImage::is_failure) || !discovery.failures.is_empty();
    Ok(match failed {
        false => 0,
        true => EXIT_IMAGE_FAILED,
    })
}

/// The images that ECS runs, for `--from-ecs`. A task definition that
/// cannot be read is said on standard error; the others are still found.
async fn ecs_images(
    config: &SdkConfig,
    scope: &ecs::Scope,
    deadline: Option<Instant>,
) -> Result<ecs::Discovery, UsageError> {
    let client = aws_sdk_ecs::Client::new(config);
    let discovery = ecs::discover(&client, scope, deadline).await?;
    for failure in &discovery.failures {
        eprintln!("warning: {failure}");
    }
    Ok(discovery)
}

async fn warm_command(args: WarmArgs) -> Result<u8, UsageError> {
    let started = Instant::now();
    let endpoints = args.input.endpoints()?;
    let scope = args.ecs.scope();
    let entries = args.input.read_images_or_ecs(scope.is_some())?;
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
    // A timeout too long to represent is no timeout.
    let deadline = args
        .timeout
        .and_then(|timeout| started.checked_add(timeout));
    let discovery = match &scope {
        Some(scope) => ecs_images(&config, scope, deadline).await?,
        None => ecs::Discovery::default(),
    };
    let resolver = resolver(endpoints, Some(&config));
    let settings = args.settings.until(deadline);
    let pipeline = Pipeline {
        rules: &rules,
        resolver: &resolver,
        settings: &settings,
    };
    let work = pipeline
        .prepare(vec![Parcel {
            entries,
            discovered: discovery.images,
            ..Parcel::default()
        }])
        .await;
    let progress = progress_bar(work.images.len());
    let ecr = crate::aws::engine_ecr(&config);
    let report = pipeline
        .warm(&ecr, &work.images, &|done| {
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
        Output::Json => warm_document(&report, &work.not_warmed, &discovery.failures)
            .map_err(io::Error::from)
            .and_then(|json| writeln!(out, "{json}")),
        Output::Text => table::write_warm_report(&mut out, &report, &work.not_warmed),
    })?;
    Ok(if report.all_warm() && discovery.failures.is_empty() {
        0
    } else {
        EXIT_IMAGE_FAILED
    })
}

async fn check_command(args: CheckArgs) -> Result<u8, UsageError> {
    let endpoints = args.input.endpoints()?;
    let scope = args.ecs.scope();
    let entries = args.input.read_images_or_ecs(scope.is_some())?;
    let config = args.input.aws_config().await?;
    let rules = args.input.rules(Some(&config)).await?;
    let discovery = match &scope {
        Some(scope) => ecs_images(&config, scope, None).await?,
        None => ecs::Discovery::default(),
    };
    let resolver = resolver(endpoints, Some(&config));
    let settings = WarmSettings::default();
    let pipeline = Pipeline {
        rules: &rules,
        resolver: &resolver,
        settings: &settings,
    };
    let parcel = Parcel {
        entries,
        discovered: discovery.images,
        ..Parcel::default()
    };
    // Not the warm's client: a check has no per-image budget of attempts, so the SDK retries.
    let ecr = aws_sdk_ecr::Client::new(&config);
    let checked = check::check(&ecr, &pipeline, parcel).await;
    let mut out = io::stdout().lock();
    written(match args.input.output {
        Output::Json => check_document(&checked, &discovery.failures)
            .map_err(io::Error::from)
            .and_then(|json| writeln!(out, "{json}")),
        Output::Text => table::write_check_report(&mut out, &checked.report, &checked.not_warmed),
    })?;
    Ok(
        match checked.report.all_fresh() && discovery.failures.is_empty() {
            true => 0,
            false => EXIT_IMAGE_FAILED,
        },
    )
}

/// The check document, with what ECS pulls without a cache as the warm's has it.
fn check_document(
    checked: &check::Checked,
    ecs_failures: &[ecs::EcsError],
) -> serde_json::Result<serde_json::Value> {
    let mut document = serde_json::to_value(&checked.report)?;
    if !checked.not_warmed.is_empty() {
        let records: Vec<_> = checked
            .not_warmed
            .iter()
            .map(PlannedImage::record)
            .collect();
        document["not_warmed"] = serde_json::to_value(records)?;
    }
    if !ecs_failures.is_empty() {
        let errors: Vec<String> = ecs_failures.iter().map(ToString::to_string).collect();
        document["ecs_errors"] = serde_json::to_value(errors)?;
    }
    Ok(document)
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
    let planned: Vec<PlannedImage> = inputs
        .into_iter()
        .map(|entry| PlannedImage::from_entry(entry, &rules))
        .collect();
    let mut report = doctor::run(&ecr, caller, &region, &rules, &planned).await;
    let resolver = resolver(args.endpoints()?, Some(&config));
    let reserve = WarmSettings::default().pull_reserve;
    let pulls = doctor::pulls::left(&resolver, &rules, &planned, reserve).await;
    if !pulls.is_empty() {
        let mut findings = std::mem::take(&mut report.findings);
        findings.extend(pulls);
        report = doctor::Report::new(report.caller, report.region, findings);
    }
    let mut out = io::stdout().lock();
    written(match args.output {
        Output::Json => serde_json::to_string(&report)
            .map_err(io::Error::from)
            .and_then(|json| writeln!(out, "{json}")),
        Output::Text => table::write_doctor_report(&mut out, &report),
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
    ecs_failures: &[ecs::EcsError],
) -> serde_json::Result<serde_json::Value> {
    let mut document = serde_json::to_value(report)?;
    if !not_warmed.is_empty() {
        let records: Vec<_> = not_warmed.iter().map(PlannedImage::record).collect();
        document["not_warmed"] = serde_json::to_value(records)?;
    }
    if !ecs_failures.is_empty() {
        let errors: Vec<String> = ecs_failures.iter().map(ToString::to_string).collect();
        document["ecs_errors"] = serde_json::to_value(errors)?;
    }
    Ok(document)
}

/// The plan with its selectors' tags listed upstream, with the rules'
/// credentials when the AWS configuration is at hand.
/// Lists selectors' tags upstream, with the rules' credentials from Secrets
/// Manager when there is an AWS configuration.
fn resolver(endpoints: Endpoints, config: Option<&SdkConfig>) -> Resolver {
    let credentials = Credentials::new(config.map(aws_sdk_secretsmanager::Client::new));
    Resolver::new(TagLister::new(endpoints), credentials)
}

fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    text.parse()
        .map_err(|error: crate::upstream::endpoints::EndpointError| error.to_string())
}

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

/// Diagnostics on stderr, quiet unless `RUST_LOG` asks for more.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,aws_config=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .init();
}
