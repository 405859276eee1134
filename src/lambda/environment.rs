//! The function's settings, from its environment: what to warm, where the
//! rules and the queue are, and the settings of each warm. Read and checked
//! once at init; a bad value stops the start with a message naming it.

use thiserror::Error;

use crate::ecs;
use crate::list;
use crate::metrics;
use crate::rules::{RuleError, Rules};
use crate::s3::ObjectUri;
use crate::upstream::endpoints::Endpoints;
use crate::warm::settings::{self, env_number, InvalidSetting, WarmSettings};

const DEFAULT_FANOUT_THRESHOLD: usize = 500;
const DEFAULT_MESSAGE_IMAGES: usize = 50;
/// SQS messages hold at most 256 KiB: a thousand references fit with room to spare.
const MAX_MESSAGE_IMAGES: usize = 1000;

/// The function's settings, from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `WARM_IMAGES` then `WARM_IMAGES_FILE`.
    pub images: Vec<String>,
    /// `WARM_IMAGES_S3_URI`: more of the configured list, read at each invocation.
    pub images_s3: Option<ObjectUri>,
    /// `WARM_RULES`; when absent the rules are read from ECR at init.
    pub rules: Option<Rules>,
    /// `WARM_CONCURRENCY`, `WARM_MAX_TPS`, `WARM_PLATFORMS`, `WARM_LAYERS`,
    /// `WARM_LAYER_WAIT`, `WARM_RECHECK_DELAY`, `WARM_RECHECK_ATTEMPTS`.
    pub warm: WarmSettings,
    pub metrics_namespace: String,
    pub queue_url: Option<String>,
    pub fanout_threshold: usize,
    pub message_images: usize,
    /// `WARM_DOCTOR`: check the registry's setup once at init and log what
    /// would make a first pull fail.
    pub doctor: bool,
    /// `WARM_FROM_ECS` and `WARM_ECS_CLUSTERS`: the configured list also holds
    /// the images that ECS runs.
    pub ecs: Option<ecs::Scope>,
    /// `WARM_UPSTREAM_ENDPOINTS`: registries whose tags are listed elsewhere
    /// (mirrors, tests), as `--upstream-endpoint`.
    pub upstream_endpoints: Endpoints,
}

#[derive(Debug, Error)]
pub enum SettingsError {
    #[error(transparent)]
    Invalid(#[from] InvalidSetting),
    /// The value is left out: an endpoint's URL may hold a password.
    #[error("WARM_UPSTREAM_ENDPOINTS is not valid: {0}")]
    Endpoints(String),
    #[error("cannot read WARM_IMAGES_FILE {path}: {source}. Put the file in the deployment package and give its path relative to the function's directory, or absolute")]
    ImagesFile {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid WARM_RULES: {0}")]
    Rules(RuleError),
}

impl Settings {
    /// Reads the settings with `var` (the process environment in Lambda).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let var = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        let mut images = var("WARM_IMAGES").map_or_else(Vec::new, |text| list::read_list(&text));
        if let Some(path) = var("WARM_IMAGES_FILE") {
            let text = std::fs::read_to_string(path.trim())
                .map_err(|source| SettingsError::ImagesFile { path, source })?;
            images.extend(list::read_list(&text));
        }
        let rules = var("WARM_RULES")
            .map(|text| Rules::parse_list(&text))
            .transpose()
            .map_err(SettingsError::Rules)?;
        Ok(Settings {
            images,
            images_s3: var("WARM_IMAGES_S3_URI")
                .map(|uri| uri.parse::<ObjectUri>())
                .transpose()
                .map_err(|error| {
                    settings::invalid(&var, "WARM_IMAGES_S3_URI", error.to_string())
                })?,
            rules,
            warm: WarmSettings::from_env(&var)?,
            metrics_namespace: var("METRICS_NAMESPACE")
                .unwrap_or_else(|| metrics::DEFAULT_NAMESPACE.to_string()),
            queue_url: var("WARM_QUEUE_URL"),
            fanout_threshold: env_number(
                &var,
                "WARM_FANOUT_THRESHOLD",
                DEFAULT_FANOUT_THRESHOLD,
                1..=usize::MAX,
            )?,
            message_images: env_number(
                &var,
                "WARM_MESSAGE_IMAGES",
                DEFAULT_MESSAGE_IMAGES,
                1..=MAX_MESSAGE_IMAGES,
            )?,
            doctor: match var("WARM_DOCTOR").map(|v| v.trim().to_ascii_lowercase()) {
                None => false,
                Some(v) if v == "true" => true,
                Some(v) if v == "false" => false,
                Some(_) => {
                    return Err(
                        settings::invalid(&var, "WARM_DOCTOR", "true or false".to_string()).into(),
                    )
                }
            },
            ecs: ecs_scope(&var)?,
            upstream_endpoints: Endpoints::parse(
                var("WARM_UPSTREAM_ENDPOINTS").map_or_else(Vec::new, |text| list::read_list(&text)),
            )
            .map_err(|error| SettingsError::Endpoints(error.to_string()))?,
        })
    }
}

/// `WARM_FROM_ECS`: `true` (or `services`) for the task definitions of the
/// services' deployments, `families` for those and every family's latest
/// revision; `WARM_ECS_CLUSTERS` limits the clusters.
fn ecs_scope(var: &impl Fn(&str) -> Option<String>) -> Result<Option<ecs::Scope>, InvalidSetting> {
    let families = match var("WARM_FROM_ECS").map(|v| v.trim().to_ascii_lowercase()) {
        None => None,
        Some(v) if v == "false" => None,
        Some(v) if v == "true" || v == "services" => Some(false),
        Some(v) if v == "families" => Some(true),
        Some(_) => {
            return Err(settings::invalid(
                var,
                "WARM_FROM_ECS",
                "true (the task definitions of the services), families (those and the latest \
                 revision of every family) or false"
                    .to_string(),
            ))
        }
    };
    let clusters = var("WARM_ECS_CLUSTERS").map_or_else(Vec::new, |text| list::read_list(&text));
    match families {
        Some(families) => Ok(Some(ecs::Scope { families, clusters })),
        None if clusters.is_empty() => Ok(None),
        None => Err(settings::invalid(
            var,
            "WARM_ECS_CLUSTERS",
            "no clusters while WARM_FROM_ECS is off: set WARM_FROM_ECS=true, or leave \
             WARM_ECS_CLUSTERS empty"
                .to_string(),
        )),
    }
}
