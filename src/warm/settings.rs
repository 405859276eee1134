//! The settings of a warm: how many calls at once and how fast, which platforms
//! and blobs, how long to wait for them, when to stop, and how often an image
//! comes back through the queue. Their defaults live here only; the command
//! line's options (`warm --concurrency …`) and the function's environment
//! (`WARM_CONCURRENCY=…`) both fill this one block.

use std::num::NonZeroU32;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use clap::Args;
use thiserror::Error;

use super::layers::LayerMode;
use super::platform::{self, Platform};
use crate::duration;

pub const DEFAULT_CONCURRENCY: usize = 16;
pub const DEFAULT_DIGEST_SEARCH: usize = 50;
pub const DEFAULT_PULL_RESERVE: u8 = 10;
const CONCURRENCY: RangeInclusive<usize> = 1..=256;
const MAX_TPS: RangeInclusive<usize> = 1..=100_000;
/// How long blobs not yet on ECR's storage are asked again.
pub const DEFAULT_LAYER_WAIT: Duration = Duration::from_secs(120);
/// How long an image that is not warm yet waits on the queue before it is tried again.
pub const DEFAULT_RECHECK_DELAY: Duration = Duration::from_secs(60);
/// SQS delays a message by at most 15 minutes.
pub const MAX_RECHECK_DELAY: Duration = Duration::from_secs(900);
/// A shorter delay is no delay at all to SQS, which counts whole seconds.
const MIN_RECHECK_DELAY: Duration = Duration::from_secs(1);
pub const DEFAULT_RECHECK_ATTEMPTS: u32 = 8;
const RECHECK_ATTEMPTS: RangeInclusive<usize> = 0..=100;
/// Attempts per ECR call for throttling and transient upstream trouble.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(250);

/// One warm's settings. `warm`'s options fill those a person sets; the rest
/// keep their defaults on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct WarmSettings {
    /// Cache repositories warmed at once
    #[arg(long, env = "WARM_CONCURRENCY", default_value_t = DEFAULT_CONCURRENCY,
          value_parser = parse_concurrency)]
    pub concurrency: usize,

    /// At most N ECR calls per second, over the whole warm (default: no cap), to stay under
    /// the account's API quotas
    #[arg(long, value_name = "N", env = "WARM_MAX_TPS")]
    pub max_tps: Option<NonZeroU32>,

    /// Warm only this platform of multi-arch images (OS/ARCH[/VARIANT], e.g. linux/arm64).
    /// Repeatable. Default: every runnable platform of the index
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]", value_parser = parse_platform)]
    pub platforms: Vec<Platform>,

    /// What to ask of each image's blobs: none (manifests only), request (ask ECR for every
    /// blob), verify (also check that each blob is served from ECR's own layer storage)
    #[arg(long, value_enum, default_value_t = LayerMode::Verify)]
    pub layers: LayerMode,

    /// How long blobs that are not on ECR's storage yet are asked again (verify mode)
    #[arg(long, value_name = "DURATION", value_parser = duration::parse,
          default_value = duration::text(DEFAULT_LAYER_WAIT))]
    pub layer_wait: Duration,

    /// The newest tags upstream asked (a HEAD each, no pull) for the one that
    /// holds a pinned digest the cache does not have yet
    #[arg(long, value_name = "N", env = "WARM_DIGEST_SEARCH", default_value_t = DEFAULT_DIGEST_SEARCH,
          value_parser = parse_digest_search)]
    pub digest_search: usize,

    /// The share of an upstream's pull limit kept for other users of the
    /// rule's credential, in percent: imports that would eat into it wait
    #[arg(long, value_name = "PERCENT", env = "WARM_PULL_RESERVE", default_value_t = DEFAULT_PULL_RESERVE,
          value_parser = parse_percent)]
    pub pull_reserve: u8,

    /// No call starts after this instant; what is left is `skipped`.
    #[arg(skip)]
    pub deadline: Option<Instant>,

    /// How long an image that may warm later waits on the queue (the function only).
    #[arg(skip = DEFAULT_RECHECK_DELAY)]
    pub recheck_delay: Duration,

    /// How many times an image comes back through the queue (the function only).
    #[arg(skip = DEFAULT_RECHECK_ATTEMPTS)]
    pub recheck_attempts: u32,

    /// Attempts per call for throttling and transient upstream trouble.
    #[arg(skip = DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: u32,

    /// The first backoff; it doubles with each attempt, with jitter.
    #[arg(skip = DEFAULT_BACKOFF)]
    pub backoff: Duration,
}

impl Default for WarmSettings {
    fn default() -> Self {
        WarmSettings {
            concurrency: DEFAULT_CONCURRENCY,
            max_tps: None,
            platforms: Vec::new(),
            layers: LayerMode::Verify,
            layer_wait: DEFAULT_LAYER_WAIT,
            digest_search: DEFAULT_DIGEST_SEARCH,
            pull_reserve: DEFAULT_PULL_RESERVE,
            deadline: None,
            recheck_delay: DEFAULT_RECHECK_DELAY,
            recheck_attempts: DEFAULT_RECHECK_ATTEMPTS,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: DEFAULT_BACKOFF,
        }
    }
}

/// A setting of the environment that is not valid, with what it expects.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{name}={value:?} is not valid: {expected}")]
pub struct InvalidSetting {
    pub name: &'static str,
    pub value: String,
    pub expected: String,
}

impl WarmSettings {
    /// Reads the settings from the function's environment (`var` reads one
    /// variable; empty ones count as unset).
    pub fn from_env(var: &impl Fn(&str) -> Option<String>) -> Result<WarmSettings, InvalidSetting> {
        let recheck_delay = env_duration(var, "WARM_RECHECK_DELAY", DEFAULT_RECHECK_DELAY)?;
        if !(MIN_RECHECK_DELAY..=MAX_RECHECK_DELAY).contains(&recheck_delay) {
            return Err(invalid(
                var,
                "WARM_RECHECK_DELAY",
                "from 1s to 15m, the longest delay of an SQS message".to_string(),
            ));
        }
        Ok(WarmSettings {
            concurrency: env_number(var, "WARM_CONCURRENCY", DEFAULT_CONCURRENCY, CONCURRENCY)?,
            max_tps: match var("WARM_MAX_TPS") {
                None => None,
                Some(_) => NonZeroU32::new(env_number(var, "WARM_MAX_TPS", 1, MAX_TPS)? as u32),
            },
            platforms: var("WARM_PLATFORMS")
                .map(|list| platform::parse_list(&list))
                .transpose()
                .map_err(|error| invalid(var, "WARM_PLATFORMS", error.to_string()))?
                .unwrap_or_default(),
            layers: var("WARM_LAYERS")
                .map(|mode| mode.parse())
                .transpose()
                .map_err(|expected| invalid(var, "WARM_LAYERS", expected))?
                .unwrap_or_default(),
            layer_wait: env_duration(var, "WARM_LAYER_WAIT", DEFAULT_LAYER_WAIT)?,
            digest_search: env_number(var, "WARM_DIGEST_SEARCH", DEFAULT_DIGEST_SEARCH, 0..=1000)?,
            pull_reserve: env_number(
                var,
                "WARM_PULL_RESERVE",
                usize::from(DEFAULT_PULL_RESERVE),
                0..=100,
            )? as u8,
            recheck_delay,
            recheck_attempts: env_number(
                var,
                "WARM_RECHECK_ATTEMPTS",
                DEFAULT_RECHECK_ATTEMPTS as usize,
                RECHECK_ATTEMPTS,
            )? as u32,
            ..WarmSettings::default()
        })
    }

    /// These settings, with no call to start after `deadline`.
    pub fn until(&self, deadline: Option<Instant>) -> WarmSettings {
        WarmSettings {
            deadline,
            ..self.clone()
        }
    }
}

/// The error of a setting whose value is shown as it was given.
pub fn invalid(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    expected: String,
) -> InvalidSetting {
    InvalidSetting {
        name,
        value: var(name).unwrap_or_default(),
        expected,
    }
}

pub fn env_duration(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: Duration,
) -> Result<Duration, InvalidSetting> {
    match var(name) {
        None => Ok(default),
        Some(text) => duration::parse(&text)
            .map_err(|_| invalid(var, name, "a duration such as 90s, 5m or 1h".to_string())),
    }
}

pub fn env_number(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: usize,
    range: RangeInclusive<usize>,
) -> Result<usize, InvalidSetting> {
    let Some(value) = var(name) else {
        return Ok(default);
    };
    match value.trim().parse::<usize>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(InvalidSetting {
            name,
            value,
            expected: if *range.end() == usize::MAX {
                format!("a whole number of at least {}", range.start())
            } else {
                format!("a whole number from {} to {}", range.start(), range.end())
            },
        }),
    }
}

fn parse_concurrency(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if CONCURRENCY.contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a whole number from {} to {}",
            CONCURRENCY.start(),
            CONCURRENCY.end()
        )),
    }
}

fn parse_percent(text: &str) -> Result<u8, String> {
    match text.trim().trim_end_matches('%').parse::<u8>() {
        Ok(n) if n <= 100 => Ok(n),
        _ => Err(format!("{text:?} is not a percentage from 0 to 100")),
    }
}

fn parse_digest_search(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n <= 1000 => Ok(n),
        _ => Err(format!("{text:?} is not a whole number from 0 to 1000")),
    }
}

fn parse_platform(text: &str) -> Result<Platform, String> {
    text.parse()
        .map_err(|error: platform::PlatformError| error.to_string())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::testing::env;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        settings: WarmSettings,
    }

    #[test]
    fn the_command_line_and_the_environment_have_the_same_defaults() {
        let parsed = Command::try_parse_from(["warm"]).unwrap().settings;
        assert_eq!(parsed, WarmSettings::default());
        assert_eq!(
            WarmSettings::from_env(&env(&[])).unwrap(),
            WarmSettings::default()
        );
        assert_eq!(WarmSettings::default().layer_wait, Duration::from_secs(120));
    }

    #[test]
    fn options_and_variables_fill_the_same_fields() {
        let parsed = Command::try_parse_from([
            "warm",
            "--concurrency",
            "4",
            "--max-tps",
            "50",
            "--platform",
            "linux/arm64",
            "--layers",
            "request",
            "--layer-wait",
            "30s",
        ])
        .unwrap()
        .settings;
        let read = WarmSettings::from_env(&env(&[
            ("WARM_CONCURRENCY", "4"),
            ("WARM_MAX_TPS", "50"),
            ("WARM_PLATFORMS", "linux/arm64"),
            ("WARM_LAYERS", "request"),
            ("WARM_LAYER_WAIT", "30s"),
        ]))
        .unwrap();
        assert_eq!(parsed, read);
        assert_eq!(read.concurrency, 4);
    }

    #[test]
    fn a_recheck_delay_sqs_cannot_keep_is_refused() {
        for delay in ["500ms", "16m", "1h"] {
            let error = WarmSettings::from_env(&env(&[("WARM_RECHECK_DELAY", delay)]))
                .unwrap_err()
                .to_string();
            assert!(error.contains("from 1s to 15m"), "{delay}: {error}");
        }
        let read = WarmSettings::from_env(&env(&[("WARM_RECHECK_DELAY", "1s")])).unwrap();
        assert_eq!(read.recheck_delay, Duration::from_secs(1));
    }

    #[test]
    fn a_bad_concurrency_option_names_the_range() {
        let error = Command::try_parse_from(["warm", "--concurrency", "0"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("from 1 to 256"), "{error}");
    }
}
