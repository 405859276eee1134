//! The command line: `plan` and `warm`, their inputs, output and exit codes.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use thiserror::Error;

use crate::plan::{self, PlannedImage};
use crate::rules::{Rule, RuleError, Rules};

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
    Plan(InputArgs),
}

#[derive(Debug, Args)]
struct InputArgs {
    /// Image references, as written for `docker pull` (nginx:1.27, quay.io/org/app@sha256:...)
    #[arg(value_name = "IMAGE")]
    images: Vec<String>,

    /// Read references from FILE, one per line; blank lines and '#' comments are ignored; '-' reads stdin
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// What stops a command before any image is looked at.
#[derive(Debug, Error)]
pub enum UsageError {
    #[error("cannot read images file {path}: {source}")]
    ImagesFile { path: String, source: io::Error },
    #[error(
        "no images given: pass references as arguments or with --images-file FILE ('-' for stdin)"
    )]
    NoImages,
    #[error("no AWS Region is set: pass --region, set AWS_REGION, or give the rules with --rule")]
    NoRegion,
    #[error(transparent)]
    Rules(#[from] RuleError),
}

/// Parses the command line, runs the command and returns the exit code.
pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plan(args) => plan_command(args).await,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

async fn plan_command(args: InputArgs) -> Result<u8, UsageError> {
    let inputs = args.read_images()?;
    let rules = args.rules().await?;
    let planned = plan::plan(&inputs, &rules);
    let mut out = io::stdout().lock();
    let written = match args.output {
        Output::Json => planned.iter().try_for_each(|image| {
            let line = serde_json::to_string(&image.record()).map_err(io::Error::from)?;
            writeln!(out, "{line}")
        }),
        Output::Text => write_plan_table(&mut out, &planned),
    };
    // A closed pipe (`| head`) is not a failure of the plan.
    if let Err(error) = written {
        if error.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("error: cannot write output: {error}");
        }
    }
    Ok(if planned.iter().all(PlannedImage::is_ready) {
        0
    } else {
        EXIT_IMAGE_FAILED
    })
}

impl InputArgs {
    /// The references from the arguments and the images file, in that order.
    fn read_images(&self) -> Result<Vec<String>, UsageError> {
        let mut inputs: Vec<String> = self.images.iter().map(|s| s.trim().to_string()).collect();
        if let Some(path) = &self.images_file {
            let read_error = |source| UsageError::ImagesFile {
                path: path.display().to_string(),
                source,
            };
            let text = if path.as_os_str() == "-" {
                let mut text = String::new();
                io::stdin().read_to_string(&mut text).map_err(read_error)?;
                text
            } else {
                std::fs::read_to_string(path).map_err(read_error)?
            };
            inputs.extend(plan::read_list(&text));
        }
        if inputs.is_empty() {
            return Err(UsageError::NoImages);
        }
        Ok(inputs)
    }

    /// The rules given with `--rule`, or else the registry's rules from ECR.
    async fn rules(&self) -> Result<Rules, UsageError> {
        if !self.rules.is_empty() {
            return Ok(Rules::new(self.rules.clone())?);
        }
        let config = crate::aws::load_config(self.region.clone()).await;
        if config.region().is_none() {
            return Err(UsageError::NoRegion);
        }
        Ok(Rules::discover(&aws_sdk_ecr::Client::new(&config)).await?)
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
                match (&image.target, &image.error) {
                    (Some(target), _) => [
                        image.input.clone(),
                        target.cache_repository.clone(),
                        version,
                        target.rule.clone(),
                    ],
                    (None, error) => [
                        image.input.clone(),
                        "-".to_string(),
                        version,
                        format!("error: {}", error.as_deref().unwrap_or("not planned")),
                    ],
                }
            })
            .collect();
    write_table(
        out,
        ["IMAGE", "CACHE REPOSITORY", "TAG/DIGEST", "RULE"],
        &rows,
    )
}

/// Writes left-aligned columns; the last column is not padded.
fn write_table<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> io::Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = header.map(str::to_string);
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
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
