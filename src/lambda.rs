//! The AWS Lambda function: one handler for schedules, direct invocations,
//! SQS batches and ECS events. Settings are read and checked once at init, and the SDK
//! clients are built once; every invocation warms before its own deadline.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse};
use lambda_runtime::{service_fn, Context, LambdaEvent};
use serde_json::{json, Value};
use thiserror::Error;

use crate::duration;
use crate::ecs::{self, events::EcsEvent, Discovered};
use crate::event::{self, Message, Trigger};
use crate::fanout::{self, Delivery};
use crate::list::{self, ListEntry};
use crate::metrics;
use crate::outcome::{Failure, FailureContext, ImageOutcome, Status};
use crate::plan::{self, PlannedImage, Source};
use crate::rules::{RuleError, Rules};
use crate::s3::ObjectUri;
use crate::upstream::credential::Credentials;
use crate::upstream::endpoints::Endpoints;
use crate::upstream::resolver::Resolver;
use crate::upstream::tags::TagLister;
use crate::warm::{self, platform, LayerMode, Platform, Report, WarmOptions};

const DEFAULT_FANOUT_THRESHOLD: usize = 500;
const DEFAULT_MESSAGE_IMAGES: usize = 50;
/// The time kept back from the invocation's deadline to answer in.
const MIN_MARGIN: Duration = Duration::from_millis(500);
const MAX_MARGIN: Duration = Duration::from_secs(5);
const SEND_RESERVE_MIN: Duration = Duration::from_millis(250);
const SEND_RESERVE_MAX: Duration = Duration::from_secs(3);
/// SQS messages hold at most 256 KiB: a thousand references fit with room to spare.
const MAX_MESSAGE_IMAGES: usize = 1000;
const DEFAULT_RECHECK_DELAY: Duration = Duration::from_secs(300);
/// SQS delays a message by at most 15 minutes.
const MAX_RECHECK_DELAY: Duration = Duration::from_secs(900);
const DEFAULT_RECHECK_ATTEMPTS: usize = 6;
/// How long the registry checks (`WARM_DOCTOR`) may take at init: Lambda
/// gives the whole init 10 seconds.
const DOCTOR_AT_INIT: Duration = Duration::from_secs(5);

/// The function's settings, from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `WARM_IMAGES` then `WARM_IMAGES_FILE`.
    pub images: Vec<String>,
    /// `WARM_IMAGES_S3_URI`: more of the configured list, read at each invocation.
    pub images_s3: Option<ObjectUri>,
    /// `WARM_RULES`; when absent the rules are read from ECR at init.
    pub rules: Option<Rules>,
    pub concurrency: usize,
    pub metrics_namespace: String,
    pub queue_url: Option<String>,
    pub fanout_threshold: usize,
    pub message_images: usize,
    /// `WARM_PLATFORMS`; empty: every runnable platform.
    pub platforms: Vec<Platform>,
    /// `WARM_LAYERS`.
    pub layers: LayerMode,
    /// `WARM_LAYER_WAIT`.
    pub layer_wait: Duration,
    /// `WARM_RECHECK_DELAY`: how long pending images wait on the queue before
    /// they are checked again.
    pub recheck_delay: Duration,
    /// `WARM_RECHECK_ATTEMPTS`: checks of pending images before they fail
    /// with `LayersNotCached`.
    pub recheck_attempts: u32,
    /// `WARM_MAX_TPS`: at most this many ECR calls per second per invocation.
    pub max_tps: Option<NonZeroU32>,
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
    #[error("{name}={value:?} is not valid: {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: String,
    },
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
        let mut images = var("WARM_IMAGES").map_or_else(Vec::new, |list| list::read_list(&list));
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
                .map_err(|error| invalid("WARM_IMAGES_S3_URI", &var, error.to_string()))?,
            rules,
            concurrency: number(&var, "WARM_CONCURRENCY", 16, 1..=256)?,
            metrics_namespace: var("METRICS_NAMESPACE")
                .unwrap_or_else(|| metrics::DEFAULT_NAMESPACE.to_string()),
            queue_url: var("WARM_QUEUE_URL"),
            fanout_threshold: number(
                &var,
                "WARM_FANOUT_THRESHOLD",
                DEFAULT_FANOUT_THRESHOLD,
                1..=usize::MAX,
            )?,
            message_images: number(
                &var,
                "WARM_MESSAGE_IMAGES",
                DEFAULT_MESSAGE_IMAGES,
                1..=MAX_MESSAGE_IMAGES,
            )?,
            platforms: var("WARM_PLATFORMS")
                .map(|list| platform::parse_list(&list))
                .transpose()
                .map_err(|error| invalid("WARM_PLATFORMS", &var, error.to_string()))?
                .unwrap_or_default(),
            layers: var("WARM_LAYERS")
                .map(|mode| mode.parse())
                .transpose()
                .map_err(|expected| invalid("WARM_LAYERS", &var, expected))?
                .unwrap_or_default(),
            layer_wait: setting_duration(&var, "WARM_LAYER_WAIT", warm::DEFAULT_LAYER_WAIT)?,
            recheck_delay: match setting_duration(
                &var,
                "WARM_RECHECK_DELAY",
                DEFAULT_RECHECK_DELAY,
            )? {
                delay if delay > MAX_RECHECK_DELAY => {
                    return Err(invalid(
                        "WARM_RECHECK_DELAY",
                        &var,
                        "at most 15m, the longest delay of an SQS message".to_string(),
                    ))
                }
                delay => delay,
            },
            recheck_attempts: number(
                &var,
                "WARM_RECHECK_ATTEMPTS",
                DEFAULT_RECHECK_ATTEMPTS,
                0..=100,
            )? as u32,
            max_tps: match var("WARM_MAX_TPS") {
                None => None,
                Some(_) => NonZeroU32::new(number(&var, "WARM_MAX_TPS", 1, 1..=100_000)? as u32),
            },
            doctor: match var("WARM_DOCTOR").map(|v| v.trim().to_ascii_lowercase()) {
                None => false,
                Some(v) if v == "true" => true,
                Some(v) if v == "false" => false,
                Some(_) => return Err(invalid("WARM_DOCTOR", &var, "true or false".to_string())),
            },
            ecs: ecs_scope(&var)?,
            upstream_endpoints: Endpoints::parse(
                var("WARM_UPSTREAM_ENDPOINTS").map_or_else(Vec::new, |list| list::read_list(&list)),
            )
            .map_err(|error| invalid("WARM_UPSTREAM_ENDPOINTS", &var, error.to_string()))?,
        })
    }
}

/// `WARM_FROM_ECS`: `true` (or `services`) for the task definitions of the
/// services' deployments, `families` for those and every family's latest
/// revision; `WARM_ECS_CLUSTERS` limits the clusters.
fn ecs_scope(var: &impl Fn(&str) -> Option<String>) -> Result<Option<ecs::Scope>, SettingsError> {
    let families = match var("WARM_FROM_ECS").map(|v| v.trim().to_ascii_lowercase()) {
        None => None,
        Some(v) if v == "false" => None,
        Some(v) if v == "true" || v == "services" => Some(false),
        Some(v) if v == "families" => Some(true),
        Some(_) => {
            return Err(invalid(
                "WARM_FROM_ECS",
                var,
                "true (the task definitions of the services), families (those and the latest \
                 revision of every family) or false"
                    .to_string(),
            ))
        }
    };
    let clusters = var("WARM_ECS_CLUSTERS").map_or_else(Vec::new, |list| list::read_list(&list));
    match families {
        Some(families) => Ok(Some(ecs::Scope { families, clusters })),
        None if clusters.is_empty() => Ok(None),
        None => Err(invalid(
            "WARM_ECS_CLUSTERS",
            var,
            "no clusters while WARM_FROM_ECS is off: set WARM_FROM_ECS=true, or leave \
             WARM_ECS_CLUSTERS empty"
                .to_string(),
        )),
    }
}

fn invalid(
    name: &'static str,
    var: &impl Fn(&str) -> Option<String>,
    expected: String,
) -> SettingsError {
    SettingsError::Invalid {
        name,
        value: var(name).unwrap_or_default(),
        expected,
    }
}

fn setting_duration(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: Duration,
) -> Result<Duration, SettingsError> {
    match var(name) {
        None => Ok(default),
        Some(text) => duration::parse(&text)
            .map_err(|_| invalid(name, var, "a duration such as 90s, 5m or 1h".to_string())),
    }
}

fn number(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, SettingsError> {
    let Some(value) = var(name) else {
        return Ok(default);
    };
    match value.trim().parse::<usize>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(SettingsError::Invalid {
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

/// What every invocation uses: settings, rules and clients, made at init.
pub struct Warmer {
    pub settings: Settings,
    pub rules: Rules,
    pub ecr: aws_sdk_ecr::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub ecs: aws_sdk_ecs::Client,
    /// Lists selectors' tags upstream.
    pub resolver: Resolver,
    /// The first backoff of retried calls.
    pub backoff: Duration,
}

/// Runs the function under the Lambda runtime API until the sandbox stops.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let warmer = init().await.inspect_err(|error| {
        tracing::error!(%error, "the function cannot start");
    })?;
    let warmer = &warmer;
    lambda_runtime::run(service_fn(move |event| handle(warmer, event))).await
}

async fn init() -> Result<Warmer, lambda_runtime::Error> {
    let settings = Settings::from_env(|name| std::env::var(name).ok())?;
    let config = crate::aws::load_config(None).await;
    let ecr = aws_sdk_ecr::Client::new(&config);
    let rules = match &settings.rules {
        Some(rules) => rules.clone(),
        None => crate::discovery::rules(&ecr).await?,
    };
    let region = config.region().map(ToString::to_string).unwrap_or_default();
    let rules = crate::discovery::for_caller(rules, &ecr, &region).await;
    if settings.doctor {
        let checks = crate::doctor::log_at_init(&config, &ecr, &rules, &settings.images);
        if tokio::time::timeout(DOCTOR_AT_INIT, checks).await.is_err() {
            tracing::warn!(
                limit_s = DOCTOR_AT_INIT.as_secs(),
                "the registry checks (WARM_DOCTOR) did not finish in time; the function starts without them"
            );
        }
    }
    tracing::info!(
        images = settings.images.len(),
        rules = rules.iter().count(),
        "configured"
    );
    Ok(Warmer {
        sqs: crate::aws::engine_sqs(&config),
        ecr: crate::aws::engine_ecr(&config),
        s3: aws_sdk_s3::Client::new(&config),
        ecs: aws_sdk_ecs::Client::new(&config),
        resolver: Resolver::new(
            TagLister::new(settings.upstream_endpoints.clone()),
            Credentials::new(Some(aws_sdk_secretsmanager::Client::new(&config))),
        ),
        settings,
        rules,
        backoff: WarmOptions::default().backoff,
    })
}

/// Handles one invocation of any trigger.
pub async fn handle(
    warmer: &Warmer,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let budget = Budget::new(
        deadline(&event.context),
        warmer.settings.queue_url.is_some(),
    );
    let trigger = event::decode(event.payload)?;
    match trigger {
        Trigger::Schedule { images } => warm_list(warmer, images, budget, true).await,
        Trigger::Direct { images } => warm_list(warmer, images, budget, false).await,
        Trigger::Sqs(messages) => {
            let response = warm_messages(warmer, &messages, budget).await;
            Ok(serde_json::to_value(response)?)
        }
        Trigger::Ecs(event) => warm_ecs_event(warmer, event, budget).await,
    }
}

/// When the warm must stop, and when the sends to the queue that follow it
/// must: both before the invocation's deadline, less the margin to answer in.
#[derive(Debug, Clone, Copy)]
struct Budget {
    warm_by: Option<Instant>,
    send_by: Option<Instant>,
}

impl Budget {
    /// A function with a queue keeps a part of its time for sending: a
    /// twentieth of it, from a quarter of a second to three seconds.
    fn new(deadline: Option<Instant>, sends: bool) -> Budget {
        let reserve = |deadline: Instant| {
            let left = deadline.saturating_duration_since(Instant::now());
            (left / 20).clamp(SEND_RESERVE_MIN, SEND_RESERVE_MAX)
        };
        Budget {
            warm_by: match (deadline, sends) {
                (Some(deadline), true) => Some(deadline - reserve(deadline)),
                _ => deadline,
            },
            send_by: deadline,
        }
    }
}

/// When the warm must stop: the invocation's deadline less a margin to
/// answer in (a tenth of the time left, from half a second to five seconds).
fn deadline(context: &Context) -> Option<Instant> {
    // A deadline of 0 is no deadline (a context made outside Lambda).
    if context.deadline == 0 {
        return None;
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    tracing::debug!(
        deadline_ms = context.deadline,
        now_ms,
        "invocation deadline"
    );
    // Some runtime emulators send the timeout itself rather than an epoch
    // time; a deadline decades in the past can only mean that.
    let deadline_ms = if context.deadline < now_ms / 2 {
        now_ms.saturating_add(context.deadline)
    } else {
        context.deadline
    };
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    let margin = (left / 10).clamp(MIN_MARGIN, MAX_MARGIN);
    // A deadline too far to represent is no deadline.
    Instant::now().checked_add(left.saturating_sub(margin))
}

async fn warm_list(
    warmer: &Warmer,
    given: Option<Vec<String>>,
    budget: Budget,
    scheduled: bool,
) -> Result<Value, lambda_runtime::Error> {
    let settings = &warmer.settings;
    let configured = given.is_none();
    let mut lost = Lost::default();
    let mut list_error = None;
    let mut inputs: Vec<ListEntry> = given
        .unwrap_or_else(|| settings.images.clone())
        .into_iter()
        .map(ListEntry::Text)
        .collect();
    if let (true, Some(uri)) = (configured, &settings.images_s3) {
        match crate::s3::read_list(&warmer.s3, uri, budget.warm_by).await {
            Ok(entries) => inputs.extend(entries),
            Err(error) => {
                // The rest of the list is still warmed; the alarm sees the lost list.
                tracing::error!(%error, "the images object cannot be read");
                lost.list_unreadable += 1;
                list_error = Some(error);
            }
        }
    }
    let mut discovered = Vec::new();
    let mut ecs_error = None;
    if let (true, Some(scope)) = (configured, &settings.ecs) {
        match ecs::discover(&warmer.ecs, scope, budget.warm_by).await {
            Ok(found) => discovered = found,
            Err(error) => {
                // The rest of the list is still warmed; the alarm sees the lost listing.
                tracing::error!(%error, "the images that ECS runs cannot be listed");
                lost.ecs_unreadable += 1;
                ecs_error = Some(error.to_string());
            }
        }
    }
    // With WARM_FROM_ECS, an account that runs nothing is nothing to warm, not an error.
    let listed_ecs = configured && settings.ecs.is_some() && ecs_error.is_none();
    if inputs.is_empty() && !listed_ecs {
        lost.publish(warmer);
        return Err(list_error
            .or(ecs_error)
            .unwrap_or_else(|| {
                "no images to warm: set WARM_IMAGES, WARM_IMAGES_FILE, WARM_IMAGES_S3_URI or \
                 WARM_FROM_ECS, or send {\"images\": [...]}"
                    .to_string()
            })
            .into());
    }
    let mut planned: Vec<PlannedImage> = inputs
        .into_iter()
        .map(|input| PlannedImage::from_entry(input, &warmer.rules))
        .collect();
    planned.extend(ecs::plan(discovered, &warmer.rules, &planned));
    // Selectors are listed before fan-out: the queue carries the images they select.
    let planned = warmer
        .resolver
        .resolve(planned, &warmer.rules, budget.warm_by)
        .await;
    let (planned, not_warmed) = not_warmed_apart(planned);
    if let Some(queue_url) = &settings.queue_url {
        if planned.len() > settings.fanout_threshold {
            let mut response = fan_out(warmer, queue_url, &planned, budget.send_by, lost).await;
            response["list_error"] = json!(list_error);
            add_ecs_findings(&mut response, &not_warmed, ecs_error);
            return Ok(response);
        }
    }
    let report = warm_planned(warmer, &planned, budget.warm_by).await;
    let mut response = serde_json::to_value(&report)?;
    if list_error.is_some() {
        response["list_error"] = json!(list_error);
    }
    add_ecs_findings(&mut response, &not_warmed, ecs_error);
    let send_by = budget.send_by;
    let inputs_with = |status: Status| -> Vec<String> {
        report
            .images
            .iter()
            .filter(|image| image.status == status)
            .map(|image| image.input.clone())
            .collect()
    };
    let skipped = inputs_with(Status::Skipped);
    if let (true, Some(queue_url), false) = (scheduled, &settings.queue_url, skipped.is_empty()) {
        let selectors = selectors_of(&report);
        let delivery = Delivery {
            selectors: Some(&selectors),
            ..Delivery::default()
        };
        let enqueued = enqueue(warmer, queue_url, &skipped, delivery, send_by).await;
        lost.not_enqueued += enqueued.failed_images.len();
        response["enqueued"] = serde_json::to_value(enqueued)?;
    }
    recheck_pending(warmer, &report, send_by, &mut lost, &mut response).await?;
    publish(warmer, &report);
    lost.publish(warmer);
    Ok(response)
}

/// Sends the pending images of a warm to the queue, to be checked again after
/// the re-check delay.
async fn recheck_pending(
    warmer: &Warmer,
    report: &Report,
    send_by: Option<Instant>,
    lost: &mut Lost,
    response: &mut Value,
) -> Result<(), lambda_runtime::Error> {
    let settings = &warmer.settings;
    let pending: Vec<String> = report
        .images
        .iter()
        .filter(|image| image.status == Status::Pending)
        .map(|image| image.input.clone())
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    match &settings.queue_url {
        Some(queue_url) => {
            let selectors = selectors_of(report);
            let delivery = Delivery {
                delay: settings.recheck_delay,
                recheck: 1,
                selectors: Some(&selectors),
            };
            let enqueued = enqueue(warmer, queue_url, &pending, delivery, send_by).await;
            lost.not_enqueued += enqueued.failed_images.len();
            response["rechecks"] = serde_json::to_value(enqueued)?;
        }
        None => tracing::warn!(
            images = pending.len(),
            "pending images are not checked again by themselves: WARM_QUEUE_URL is not set"
        ),
    }
    Ok(())
}

/// The images to warm, and those that ECS pulls without a cache.
fn not_warmed_apart(planned: Vec<PlannedImage>) -> (Vec<PlannedImage>, Vec<PlannedImage>) {
    planned
        .into_iter()
        .partition(|image| image.not_warmed.is_none())
}

/// What the answer says of ECS: the images it runs that are not warmed (as
/// `plan` records them, with the reason), and a listing that failed.
fn add_ecs_findings(response: &mut Value, not_warmed: &[PlannedImage], error: Option<String>) {
    if !not_warmed.is_empty() {
        let records: Vec<_> = not_warmed.iter().map(PlannedImage::record).collect();
        response["not_warmed"] = json!(records);
    }
    if error.is_some() {
        response["ecs_error"] = json!(error);
    }
}

/// Warms the images of an ECS event: those of a registered task definition,
/// or those a stopped task could not pull, so that ECS's next attempt finds
/// them in the cache. Answers with the warm document, as a direct invocation.
async fn warm_ecs_event(
    warmer: &Warmer,
    event: EcsEvent,
    budget: Budget,
) -> Result<Value, lambda_runtime::Error> {
    let (images, task_definition) = match event {
        EcsEvent::Ignored(reason) => {
            tracing::info!(%reason, "ECS event ignored");
            return Ok(json!({ "ignored": reason }));
        }
        EcsEvent::Registered {
            task_definition,
            images,
        } => {
            tracing::info!(%task_definition, "a task definition was registered: warming its images");
            (images, Some(task_definition))
        }
        EcsEvent::PullFailed {
            task,
            task_definition,
            images,
        } => {
            tracing::info!(%task, "a task could not pull its image: warming it");
            (images, task_definition)
        }
    };
    // The event names no image: the task definition does.
    let images = match (images.is_empty(), task_definition) {
        (true, Some(task_definition)) => {
            ecs::task_definition_images(&warmer.ecs, &task_definition, budget.warm_by).await?
        }
        _ => images,
    };
    let discovered = images
        .into_iter()
        .map(|image| Discovered {
            image,
            source: Source::Event,
        })
        .collect();
    let (planned, not_warmed) = not_warmed_apart(ecs::plan(discovered, &warmer.rules, &[]));
    let report = warm_planned(warmer, &planned, budget.warm_by).await;
    let mut response = serde_json::to_value(&report)?;
    add_ecs_findings(&mut response, &not_warmed, None);
    let mut lost = Lost::default();
    recheck_pending(warmer, &report, budget.send_by, &mut lost, &mut response).await?;
    publish(warmer, &report);
    lost.publish(warmer);
    Ok(response)
}

/// Puts the planned images on the queue instead of warming them here.
async fn fan_out(
    warmer: &Warmer,
    queue_url: &str,
    planned: &[PlannedImage],
    deadline: Option<Instant>,
    mut lost: Lost,
) -> Value {
    let (ready, unplanned): (Vec<&PlannedImage>, Vec<&PlannedImage>) =
        planned.iter().partition(|image| image.is_ready());
    for image in &unplanned {
        tracing::warn!(input = %image.input, error = image.error.as_deref().unwrap_or_default(), "image not enqueued");
    }
    let inputs: Vec<String> = ready.iter().map(|image| image.input.clone()).collect();
    let selectors: HashMap<String, String> = ready
        .iter()
        .filter_map(|image| Some((image.input.clone(), image.selector.clone()?)))
        .collect();
    let delivery = Delivery {
        selectors: Some(&selectors),
        ..Delivery::default()
    };
    let enqueued = enqueue(warmer, queue_url, &inputs, delivery, deadline).await;
    lost.not_planned += unplanned.len();
    lost.not_enqueued += enqueued.failed_images.len();
    lost.publish(warmer);
    let not_enqueued: Vec<Value> = unplanned
        .iter()
        .map(|image| json!({ "input": image.input, "error": image.error }))
        .collect();
    json!({ "enqueued": enqueued, "not_enqueued": not_enqueued })
}

/// The selector of each image of a report that a selector selected.
fn selectors_of(report: &Report) -> HashMap<String, String> {
    report
        .images
        .iter()
        .filter_map(|image| Some((image.input.clone(), image.selector.clone()?)))
        .collect()
}

async fn enqueue(
    warmer: &Warmer,
    queue_url: &str,
    images: &[String],
    delivery: Delivery<'_>,
    deadline: Option<Instant>,
) -> fanout::Enqueued {
    let per_message = warmer.settings.message_images;
    let enqueued = fanout::enqueue(
        &warmer.sqs,
        queue_url,
        images,
        per_message,
        delivery,
        warmer.backoff,
        deadline,
    )
    .await;
    tracing::info!(
        messages = enqueued.messages,
        images = enqueued.images,
        delay_s = delivery.delay.as_secs(),
        recheck = delivery.recheck,
        "enqueued for warming"
    );
    if !enqueued.failed_images.is_empty() {
        tracing::error!(
            images = enqueued.failed_images.len(),
            errors = ?enqueued.errors,
            "images could not be enqueued"
        );
    }
    enqueued
}

/// Warms the images of a batch of messages together, and names the messages
/// that must come back: unreadable ones (to end in the dead-letter queue) and
/// those with an image that may succeed later. Images whose layers are still
/// pending are sent again with a delay instead, so that a message that is
/// making progress never ends in the dead-letter queue; after the last
/// re-check they fail with `LayersNotCached`.
async fn warm_messages(warmer: &Warmer, messages: &[Message], budget: Budget) -> SqsBatchResponse {
    let settings = &warmer.settings;
    let mut lost = Lost::default();
    let mut plans: Vec<(usize, Vec<PlannedImage>)> = Vec::new();
    let mut again: Vec<&str> = Vec::new();
    for (position, message) in messages.iter().enumerate() {
        if message.message_id.is_empty() {
            // It cannot be named in the answer: count it, so that an alarm sees it.
            tracing::error!(
                body = ?message.images,
                "an SQS record without messageId cannot be reported back"
            );
            lost.unreadable_records += 1;
            continue;
        }
        let images = match &message.images {
            Ok(images) => images,
            Err(reason) => {
                tracing::error!(message_id = %message.message_id, %reason, "unreadable message");
                again.push(&message.message_id);
                continue;
            }
        };
        let mut message_plan = plan::plan(images, &warmer.rules);
        // Images the function sent after resolving selectors name their selector.
        for image in &mut message_plan {
            if let Some(selector) = message.selectors.get(&image.input) {
                image.selector.get_or_insert_with(|| selector.clone());
            }
        }
        if message_plan
            .iter()
            .all(|image| image.reference.is_none() && image.unresolved.is_none())
        {
            tracing::error!(message_id = %message.message_id, "the message holds no valid image reference");
            again.push(&message.message_id);
            continue;
        }
        plans.push((position, message_plan));
    }
    let (positions, plans): (Vec<usize>, Vec<Vec<PlannedImage>>) = plans.into_iter().unzip();
    let plans = warmer
        .resolver
        .resolve_each(plans, &warmer.rules, budget.warm_by)
        .await;
    let mut planned: Vec<PlannedImage> = Vec::new();
    let mut owners: Vec<usize> = Vec::new();
    for (position, message_plan) in positions.into_iter().zip(plans) {
        owners.extend(std::iter::repeat_n(position, message_plan.len()));
        planned.extend(message_plan);
    }
    let mut report = warm_planned(warmer, &planned, budget.warm_by).await;

    let mut rechecks: Vec<(usize, Vec<String>)> = Vec::new();
    for (position, message) in messages.iter().enumerate() {
        let images: Vec<&mut ImageOutcome> = report
            .images
            .iter_mut()
            .zip(&owners)
            .filter(|(_, owner)| **owner == position)
            .map(|(image, _)| image)
            .collect();
        if images.is_empty() {
            continue;
        }
        let checks_left = message.recheck < settings.recheck_attempts;
        let mut pending = Vec::new();
        let mut comes_back = false;
        for image in images {
            match image.status {
                Status::Pending if checks_left => pending.push(image.input.clone()),
                Status::Pending => layers_not_cached(image, message.recheck),
                _ => comes_back |= image.retryable,
            }
        }
        if comes_back {
            // The whole message comes back, its pending images with it.
            again.push(&message.message_id);
        } else if !pending.is_empty() {
            rechecks.push((position, pending));
        }
    }
    report.recount();

    let send_by = budget.send_by;
    let selectors = selectors_of(&report);
    for (position, pending) in rechecks {
        let message = &messages[position];
        let sent = match &settings.queue_url {
            Some(queue_url) => {
                let delivery = Delivery {
                    delay: settings.recheck_delay,
                    recheck: message.recheck + 1,
                    selectors: Some(&selectors),
                };
                enqueue(warmer, queue_url, &pending, delivery, send_by)
                    .await
                    .failed_images
                    .is_empty()
            }
            None => false,
        };
        if !sent {
            // Received again after the visibility timeout: checked again all the same.
            again.push(&message.message_id);
        }
    }
    publish(warmer, &report);
    lost.publish(warmer);

    let mut response = SqsBatchResponse::default();
    for message_id in again {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = message_id.to_string();
        response.batch_item_failures.push(failure);
    }
    response
}

/// Images that no warm report counts: they could not be planned, put on the
/// queue, or told apart in a record. Logged and counted as `Failed` in the
/// metrics, so that the failed-images alarm sees them.
#[derive(Debug, Default)]
struct Lost {
    not_planned: usize,
    not_enqueued: usize,
    unreadable_records: usize,
    /// The images object of WARM_IMAGES_S3_URI, which could not be read.
    list_unreadable: usize,
    /// The images that ECS runs (WARM_FROM_ECS), which could not be listed.
    ecs_unreadable: usize,
}

impl Lost {
    fn publish(&self, warmer: &Warmer) {
        let reasons = [
            ("NotPlanned", self.not_planned),
            ("NotEnqueued", self.not_enqueued),
            ("UnreadableRecords", self.unreadable_records),
            ("ListUnreadable", self.list_unreadable),
            ("EcsUnreadable", self.ecs_unreadable),
        ];
        if reasons.iter().all(|(_, count)| *count == 0) {
            return;
        }
        tracing::error!(
            not_planned = self.not_planned,
            not_enqueued = self.not_enqueued,
            unreadable_records = self.unreadable_records,
            list_unreadable = self.list_unreadable,
            ecs_unreadable = self.ecs_unreadable,
            "images lost before a warm could report them"
        );
        println!(
            "{}",
            metrics::lost_line(&warmer.settings.metrics_namespace, &reasons)
        );
    }
}

/// A pending image that was checked again as often as allowed.
fn layers_not_cached(image: &mut ImageOutcome, rechecks: u32) {
    let pending = image.message.take().unwrap_or_default();
    let context = FailureContext {
        cache_repository: image.cache_repository.as_deref().unwrap_or_default(),
        rule_prefix: image.rule_prefix.as_deref().unwrap_or_default(),
        upstream_reference: &image.input,
        docker_hub: false,
        uncached_digest_only: false,
    };
    let failure = Failure::from_ecr(
        "LayersNotCached",
        &format!("still pending after {rechecks} re-checks: {pending}"),
        &context,
    );
    image.status = Status::Failed;
    image.retryable = false;
    image.failure_code = Some(failure.code);
    image.message = Some(failure.message);
    image.hint = failure.hint;
}

/// Warms with the function's settings.
async fn warm_planned(
    warmer: &Warmer,
    planned: &[PlannedImage],
    deadline: Option<Instant>,
) -> Report {
    let settings = &warmer.settings;
    let options = WarmOptions {
        concurrency: settings.concurrency,
        deadline,
        backoff: warmer.backoff,
        platforms: settings.platforms.clone(),
        layers: settings.layers,
        layer_wait: settings.layer_wait,
        max_tps: settings.max_tps,
        ..WarmOptions::default()
    };
    warm::warm(&warmer.ecr, planned, &options, &|_| {}).await
}

/// Logs what is not warm and the summary, and emits the metrics.
fn publish(warmer: &Warmer, report: &Report) {
    for line in metrics::emf_lines(report, &warmer.settings.metrics_namespace) {
        println!("{line}");
    }
    for image in &report.images {
        if !image.status.is_warm() {
            tracing::warn!(
                input = %image.input,
                status = image.status.name(),
                code = image.failure_code.as_deref().unwrap_or_default(),
                message = image.message.as_deref().unwrap_or_default(),
                hint = image.hint.as_deref().unwrap_or_default(),
                "image not warm"
            );
        }
    }
    let s = &report.summary;
    tracing::info!(
        total = s.total,
        imported = s.imported,
        refreshed = s.refreshed,
        unchanged = s.unchanged,
        pending = s.pending,
        failed = s.failed,
        skipped = s.skipped,
        layers = s.layers.total,
        layers_cached = s.layers.cached,
        layers_pending = s.layers.pending,
        layers_failed = s.layers.failed,
        duration_ms = s.duration_ms,
        "warm finished"
    );
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use aws_sdk_ecr::config::retry::RetryConfig;
    use aws_sdk_ecr::operation::batch_get_image::BatchGetImageOutput;
    use aws_sdk_ecr::operation::describe_images::DescribeImagesError;
    use aws_sdk_ecr::operation::get_download_url_for_layer::GetDownloadUrlForLayerOutput;
    use aws_sdk_ecr::types::error::RepositoryNotFoundException;
    use aws_sdk_ecr::types::{Image, ImageFailure, ImageFailureCode, ImageIdentifier};
    use aws_smithy_mocks::{mock, mock_client, MockResponse, RuleMode};

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn settings_have_defaults_and_read_every_variable() {
        let settings = Settings::from_env(env(&[])).unwrap();
        assert_eq!(
            (
                settings.concurrency,
                settings.fanout_threshold,
                settings.message_images
            ),
            (16, 500, 50)
        );
        assert_eq!(settings.metrics_namespace, "EcrCacheWarmer");
        assert!(
            settings.images.is_empty() && settings.rules.is_none() && settings.queue_url.is_none()
        );

        // A fresh folder of this test's own (create_dir fails on one that exists).
        let dir = std::env::temp_dir().join(format!(
            "ecr-cache-warmer-settings-{:016x}",
            std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), SystemTime::now())
        ));
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join("images.txt");
        std::fs::write(&file, "# extra\nquay.io/prometheus/node-exporter:v1.8.2\n").unwrap();
        let settings = Settings::from_env(env(&[
            ("WARM_IMAGES", "nginx:1.27, redis:7\nalpine"),
            ("WARM_IMAGES_FILE", file.to_str().unwrap()),
            ("WARM_RULES", "docker-hub=registry-1.docker.io,quay=quay.io"),
            ("WARM_CONCURRENCY", "4"),
            ("METRICS_NAMESPACE", "Team/Warmer"),
            (
                "WARM_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/123456789012/warm",
            ),
            ("WARM_FANOUT_THRESHOLD", "100"),
            ("WARM_MESSAGE_IMAGES", "20"),
        ]))
        .unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(
            settings.images,
            [
                "nginx:1.27",
                "redis:7",
                "alpine",
                "quay.io/prometheus/node-exporter:v1.8.2"
            ]
        );
        assert_eq!(settings.rules.unwrap().iter().count(), 2);
        assert_eq!(
            (
                settings.concurrency,
                settings.fanout_threshold,
                settings.message_images
            ),
            (4, 100, 20)
        );
        assert_eq!(settings.metrics_namespace, "Team/Warmer");

        let defaults = Settings::from_env(env(&[])).unwrap();
        assert_eq!(
            (
                defaults.platforms.len(),
                defaults.layers,
                defaults.layer_wait,
                defaults.recheck_delay,
                defaults.recheck_attempts
            ),
            (
                0,
                LayerMode::Verify,
                Duration::from_secs(120),
                Duration::from_secs(300),
                6
            )
        );
        let settings = Settings::from_env(env(&[
            ("WARM_PLATFORMS", "linux/amd64, linux/arm64/v8"),
            ("WARM_LAYERS", "request"),
            ("WARM_LAYER_WAIT", "30s"),
            ("WARM_RECHECK_DELAY", "15m"),
            ("WARM_RECHECK_ATTEMPTS", "2"),
        ]))
        .unwrap();
        let platforms: Vec<String> = settings.platforms.iter().map(|p| p.to_string()).collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
        assert_eq!(
            (
                settings.layers,
                settings.layer_wait,
                settings.recheck_delay,
                settings.recheck_attempts
            ),
            (
                LayerMode::Request,
                Duration::from_secs(30),
                Duration::from_secs(900),
                2
            )
        );
    }

    #[test]
    fn a_bad_setting_is_a_clear_error() {
        let cases = [
            (
                ("WARM_CONCURRENCY", "0"),
                "WARM_CONCURRENCY=\"0\" is not valid: a whole number from 1 to 256",
            ),
            (
                ("WARM_CONCURRENCY", "many"),
                "WARM_CONCURRENCY=\"many\" is not valid",
            ),
            (
                ("WARM_FANOUT_THRESHOLD", "-1"),
                "WARM_FANOUT_THRESHOLD=\"-1\" is not valid: a whole number of at least 1",
            ),
            (("WARM_MESSAGE_IMAGES", "5000"), "from 1 to 1000"),
            (
                ("WARM_PLATFORMS", "linux/amd64,arm64"),
                "WARM_PLATFORMS=\"linux/amd64,arm64\" is not valid: invalid platform \"arm64\"",
            ),
            (
                ("WARM_LAYERS", "all"),
                "WARM_LAYERS=\"all\" is not valid: none, request or verify",
            ),
            (
                ("WARM_LAYER_WAIT", "soon"),
                "WARM_LAYER_WAIT=\"soon\" is not valid: a duration such as 90s",
            ),
            (
                ("WARM_RECHECK_DELAY", "1h"),
                "at most 15m, the longest delay of an SQS message",
            ),
            (("WARM_RECHECK_ATTEMPTS", "x"), "from 0 to 100"),
            (
                ("WARM_MAX_TPS", "0"),
                "WARM_MAX_TPS=\"0\" is not valid: a whole number from 1 to 100000",
            ),
            (
                ("WARM_RULES", "docker-hub"),
                "invalid WARM_RULES: invalid rule \"docker-hub\"",
            ),
            (
                ("WARM_IMAGES_FILE", "/nonexistent/images.txt"),
                "cannot read WARM_IMAGES_FILE /nonexistent/images.txt",
            ),
        ];
        for ((name, value), expected) in cases {
            let error = Settings::from_env(env(&[(name, value)]))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{name}={value}: {error}");
        }
    }

    /// Upstream: tags named `missing*` do not exist, `busy*` hit the upstream's
    /// rate limit; every other tag is imported.
    fn fake_ecr() -> aws_sdk_ecr::Client {
        let describe = mock!(aws_sdk_ecr::Client::describe_images).then_error(|| {
            DescribeImagesError::RepositoryNotFoundException(
                RepositoryNotFoundException::builder().build(),
            )
        });
        let batch = mock!(aws_sdk_ecr::Client::batch_get_image).then_compute_output(|req| {
            let mut output = BatchGetImageOutput::builder();
            for id in req.image_ids() {
                let tag = id.image_tag().unwrap_or_default();
                let code = match tag {
                    t if t.starts_with("missing") => Some("ImageNotFound"),
                    t if t.starts_with("busy") => Some("UpstreamTooManyRequests"),
                    _ => None,
                };
                output = match code {
                    Some(code) => output.failures(
                        ImageFailure::builder()
                            .image_id(id.clone())
                            .failure_code(ImageFailureCode::from(code))
                            .failure_reason(code)
                            .build(),
                    ),
                    None => output.images(
                        Image::builder()
                            .image_id(
                                ImageIdentifier::builder()
                                    .image_tag(tag)
                                    .image_digest(format!("sha256:{:064x}", tag.len()))
                                    .build(),
                            )
                            .image_manifest(manifest_of(tag))
                            .image_manifest_media_type("application/vnd.oci.image.manifest.v1+json")
                            .build(),
                    ),
                };
            }
            output.build()
        });
        // Blobs of `slow*` tags stay on the upstream's storage.
        let layer =
            mock!(aws_sdk_ecr::Client::get_download_url_for_layer).then_compute_output(|req| {
                let digest = req.layer_digest().unwrap_or_default();
                let url = match digest.ends_with(&format!("{:058x}", 0x5_1008)) {
                    true => "https://production.cloudflare.docker.com/registry-v2/blob",
                    false => {
                        "https://prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com/b"
                    }
                };
                GetDownloadUrlForLayerOutput::builder()
                    .download_url(url)
                    .layer_digest(digest)
                    .build()
            });
        mock_client!(
            aws_sdk_ecr,
            RuleMode::MatchAny,
            [&describe, &batch, &layer],
            |c| c.retry_config(RetryConfig::disabled())
        )
    }

    /// An image manifest with one layer; the layer of a `slow*` tag is marked
    /// so that the layer mock keeps it pending.
    fn manifest_of(tag: &str) -> String {
        let mark = if tag.starts_with("slow") { 0x5_1008 } else { 0 };
        json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": format!("sha256:{:064x}", tag.len()), "size": 1},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": format!("sha256:{:06x}{mark:058x}", tag.len()), "size": 1}]
        })
        .to_string()
    }

    /// A queue that refuses entry "0" of the first call, and records every body
    /// (with its delay in seconds, when it has one, as `DELAY|body`).
    fn fake_queue(bodies: Arc<Mutex<Vec<String>>>) -> aws_sdk_sqs::Client {
        crate::fanout::test_queue(move |call, entry| {
            if call == 0 && entry.id() == "0" {
                return Some(false);
            }
            let body = match entry.delay_seconds() {
                Some(delay) => format!("{delay}|{}", entry.message_body()),
                None => entry.message_body().to_string(),
            };
            bodies.lock().unwrap().push(body);
            None
        })
    }

    fn warmer(settings: &[(&str, &str)], bodies: Arc<Mutex<Vec<String>>>) -> Warmer {
        let mut pairs = vec![
            ("WARM_RULES", "docker-hub=registry-1.docker.io"),
            ("WARM_LAYER_WAIT", "50ms"),
        ];
        pairs.extend_from_slice(settings);
        let settings = Settings::from_env(env(&pairs)).unwrap();
        Warmer {
            rules: settings.rules.clone().unwrap(),
            resolver: Resolver::new(
                TagLister::new(settings.upstream_endpoints.clone()),
                Credentials::new(None),
            ),
            settings,
            ecr: fake_ecr(),
            sqs: fake_queue(bodies),
            s3: fake_bucket(),
            ecs: fake_ecs(),
            backoff: Duration::from_millis(1),
        }
    }

    const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

    /// One cluster, `prod`, with one service, `web`, running `web:8`: an image
    /// through the cache and one that ECS pulls from Docker Hub itself.
    fn fake_ecs() -> aws_sdk_ecs::Client {
        use aws_sdk_ecs::operation::describe_services::DescribeServicesOutput;
        use aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionOutput;
        use aws_sdk_ecs::operation::list_clusters::ListClustersOutput;
        use aws_sdk_ecs::operation::list_services::ListServicesOutput;
        use aws_sdk_ecs::types::{ContainerDefinition, Service, TaskDefinition};
        let arn = "arn:aws:ecs:us-east-1:123456789012";
        let clusters = mock!(aws_sdk_ecs::Client::list_clusters).then_output(move || {
            ListClustersOutput::builder()
                .cluster_arns(format!("{arn}:cluster/prod"))
                .build()
        });
        let services = mock!(aws_sdk_ecs::Client::list_services).then_output(move || {
            ListServicesOutput::builder()
                .service_arns(format!("{arn}:service/prod/web"))
                .build()
        });
        let describe_services =
            mock!(aws_sdk_ecs::Client::describe_services).then_output(move || {
                DescribeServicesOutput::builder()
                    .services(
                        Service::builder()
                            .service_name("web")
                            .task_definition(format!("{arn}:task-definition/web:8"))
                            .build(),
                    )
                    .build()
            });
        let task_definition =
            mock!(aws_sdk_ecs::Client::describe_task_definition).then_output(|| {
                let container = |image: String| ContainerDefinition::builder().image(image).build();
                DescribeTaskDefinitionOutput::builder()
                    .task_definition(
                        TaskDefinition::builder()
                            .family("web")
                            .revision(8)
                            .container_definitions(container(format!(
                                "{HOST}/docker-hub/library/nginx:1.26"
                            )))
                            .container_definitions(container("nginx:1.26".into()))
                            .build(),
                    )
                    .build()
            });
        mock_client!(
            aws_sdk_ecs,
            RuleMode::MatchAny,
            [&clusters, &services, &describe_services, &task_definition]
        )
    }

    fn sample(name: &str) -> Value {
        let path = format!("{}/events/{name}.json", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn inputs_and_sources(response: &Value) -> Vec<(String, String)> {
        response["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let input = i["input"].as_str().unwrap().replace(HOST, "HOST");
                (input, i["source"].as_str().unwrap().to_string())
            })
            .collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// A bucket with one object, `s3://config-bucket/images.txt`.
    fn fake_bucket() -> aws_sdk_s3::Client {
        use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
        let rule = mock!(aws_sdk_s3::Client::get_object).then_compute_response(|req| {
            if req.key() == Some("images.txt") {
                let body = b"# from S3\nredis:7\nalpine:3.20\n";
                MockResponse::Output(
                    GetObjectOutput::builder()
                        .body(aws_sdk_s3::primitives::ByteStream::from_static(body))
                        .build(),
                )
            } else {
                MockResponse::Error(GetObjectError::NoSuchKey(
                    aws_sdk_s3::types::error::NoSuchKey::builder()
                        .message("The specified key does not exist.")
                        .build(),
                ))
            }
        });
        mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&rule])
    }

    fn context_with(left: Duration) -> Context {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let mut context = Context::default();
        context.deadline = now_ms + left.as_millis() as u64;
        context
    }

    async fn invoke(warmer: &Warmer, payload: Value) -> Value {
        let event = LambdaEvent::new(payload, context_with(Duration::from_secs(60)));
        handle(warmer, event).await.expect("the handler answers")
    }

    fn schedule(detail: Value) -> Value {
        json!({
            "version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-11-28T12:00:00Z", "region": "us-east-1",
            "resources": [], "detail": detail
        })
    }

    #[tokio::test]
    async fn a_schedule_warms_the_configured_list() {
        let warmer = warmer(
            &[("WARM_IMAGES", "nginx:1.27,redis:missing")],
            Arc::default(),
        );
        let response = invoke(&warmer, schedule(json!({}))).await;
        assert_eq!(response["summary"]["total"], 2);
        assert_eq!(response["images"][0]["status"], "imported");
        assert_eq!(response["images"][1]["failure_code"], "ImageNotFound");

        let response = invoke(&warmer, schedule(json!({"images": ["alpine:3.20"]}))).await;
        assert_eq!(response["summary"]["total"], 1);
        assert_eq!(response["images"][0]["input"], "alpine:3.20");
    }

    #[tokio::test]
    async fn a_direct_invocation_returns_the_warm_document() {
        let warmer = warmer(&[("WARM_IMAGES", "nginx:1.27")], Arc::default());
        let response = invoke(&warmer, json!({"images": ["busybox:1.36", "Bad"]})).await;
        assert_eq!(response["summary"]["imported"], 1);
        assert_eq!(response["summary"]["failed"], 1);
        assert_eq!(response["images"][1]["failure_code"], "InvalidReference");
        let response = invoke(&warmer, json!({})).await;
        assert_eq!(response["images"][0]["input"], "nginx:1.27");
    }

    #[tokio::test]
    async fn nothing_to_warm_and_unknown_events_are_errors() {
        let warmer = warmer(&[], Arc::default());
        let error = handle(&warmer, LambdaEvent::new(json!({}), Context::default()))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("set WARM_IMAGES"), "{error}");
        let error = handle(
            &warmer,
            LambdaEvent::new(json!({"imgs": []}), Context::default()),
        )
        .await
        .unwrap_err();
        assert!(
            error.to_string().contains("unknown field `imgs`"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn sqs_names_the_messages_that_must_come_back() {
        let warmer = warmer(&[], Arc::default());
        let event = json!({"Records": [
            {"messageId": "good", "body": "{\"images\": [\"nginx:1.27\"]}"},
            {"messageId": "wrong-shape", "body": "{\"image\": \"nginx\"}"},
            {"messageId": "invalid-beside-valid", "body": "nginx:1.26\nNot/Valid:!"},
            {"messageId": "all-invalid", "body": "Not/Valid:!"},
            {"messageId": "empty", "body": ""},
            {"messageId": "missing-upstream", "body": "nginx:missing"},
            {"messageId": "rate-limited", "body": "nginx:1.25\nnginx:busy"}
        ]});
        let response = invoke(&warmer, event).await;
        let listed: Vec<&str> = response["batchItemFailures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap())
            .collect();
        assert_eq!(
            listed,
            ["wrong-shape", "all-invalid", "empty", "rate-limited"]
        );
    }

    #[tokio::test]
    async fn a_close_deadline_skips_the_work_and_returns_in_time() {
        let warmer = warmer(&[("WARM_IMAGES", "nginx:1.27")], Arc::default());
        let context = context_with(Duration::from_millis(400));
        let started = Instant::now();
        let response = handle(&warmer, LambdaEvent::new(json!({}), context))
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_millis(400));
        assert_eq!(response["images"][0]["status"], "skipped");

        let event = json!({"Records": [{"messageId": "m1", "body": "nginx:1.27"}]});
        let response = handle(
            &warmer,
            LambdaEvent::new(event, context_with(Duration::from_millis(400))),
        )
        .await
        .unwrap();
        assert_eq!(
            response["batchItemFailures"][0]["itemIdentifier"], "m1",
            "skipped work comes back"
        );
    }

    #[test]
    fn the_deadline_leaves_a_margin_to_answer_in() {
        let left = |context: &Context| {
            deadline(context)
                .unwrap()
                .saturating_duration_since(Instant::now())
        };
        let in_a_minute = left(&context_with(Duration::from_secs(60)));
        assert!(
            in_a_minute > Duration::from_secs(53) && in_a_minute <= Duration::from_secs(55),
            "{in_a_minute:?}"
        );
        let in_two_seconds = left(&context_with(Duration::from_secs(2)));
        assert!(
            in_two_seconds <= Duration::from_millis(1500),
            "{in_two_seconds:?}"
        );
        let mut relative = Context::default();
        relative.deadline = 600_000;
        let emulated = left(&relative);
        assert!(
            emulated > Duration::from_secs(590) && emulated <= Duration::from_secs(595),
            "{emulated:?}"
        );
        assert_eq!(deadline(&Context::default()), None);
        let mut far = Context::default();
        far.deadline = u64::MAX;
        let _ = deadline(&far);
    }

    #[tokio::test]
    async fn a_long_list_is_fanned_out_to_the_queue() {
        let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let images: Vec<String> = (0..25)
            .map(|i| format!("nginx:{i}"))
            .chain(["Bad".to_string()])
            .collect();
        let warmer = warmer(
            &[
                (
                    "WARM_QUEUE_URL",
                    "https://sqs.us-east-1.amazonaws.com/123456789012/warm",
                ),
                ("WARM_FANOUT_THRESHOLD", "10"),
                ("WARM_MESSAGE_IMAGES", "10"),
            ],
            bodies.clone(),
        );
        let response = invoke(&warmer, json!({ "images": images })).await;
        let enqueued = &response["enqueued"];
        assert_eq!(
            (enqueued["messages"].as_u64(), enqueued["images"].as_u64()),
            (Some(3), Some(25))
        );
        assert_eq!(enqueued["failed_images"], json!([]));
        assert_eq!(response["not_enqueued"][0]["input"], "Bad");
        let bodies = bodies.lock().unwrap();
        assert_eq!(
            bodies.len(),
            3,
            "the refused entry was sent again: {bodies:?}"
        );
        let sent: usize = bodies
            .iter()
            .map(|b| {
                serde_json::from_str::<Value>(b).unwrap()["images"]
                    .as_array()
                    .unwrap()
                    .len()
            })
            .sum();
        assert_eq!(sent, 25);
    }

    #[tokio::test]
    async fn a_schedule_enqueues_what_the_deadline_skipped() {
        let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let warmer = warmer(
            &[
                ("WARM_IMAGES", "nginx:1.27"),
                (
                    "WARM_QUEUE_URL",
                    "https://sqs.us-east-1.amazonaws.com/123456789012/warm",
                ),
            ],
            bodies.clone(),
        );
        // 700 ms left: half a second to answer in, the warm's time already
        // spent on the reserve for sending, which still has 200 ms.
        let event = LambdaEvent::new(
            schedule(json!({})),
            context_with(Duration::from_millis(700)),
        );
        let started = Instant::now();
        let response = handle(&warmer, event).await.unwrap();
        assert_eq!(response["summary"]["skipped"], 1);
        assert_eq!(response["enqueued"]["images"], 1);
        assert_eq!(*bodies.lock().unwrap(), [r#"{"images":["nginx:1.27"]}"#]);
        assert!(started.elapsed() < Duration::from_millis(200));
    }

    #[tokio::test]
    async fn sends_that_would_pass_the_deadline_are_reported_not_made() {
        let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let warmer = warmer(
            &[("WARM_IMAGES", "nginx:1.27"), ("WARM_QUEUE_URL", QUEUE)],
            bodies.clone(),
        );
        // 400 ms left: all of it is the margin to answer in.
        let event = LambdaEvent::new(
            schedule(json!({})),
            context_with(Duration::from_millis(400)),
        );
        let response = handle(&warmer, event).await.unwrap();
        assert_eq!(response["summary"]["skipped"], 1);
        let enqueued = &response["enqueued"];
        assert_eq!(enqueued["images"], 0);
        assert_eq!(enqueued["failed_images"], json!(["nginx:1.27"]));
        assert_eq!(
            enqueued["errors"],
            json!(["not sent: the deadline came first"])
        );
        assert!(bodies.lock().unwrap().is_empty());
    }

    const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/warm";

    fn batch_failures(response: &Value) -> Vec<&str> {
        response["batchItemFailures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn pending_images_are_sent_back_to_the_queue_with_a_delay() {
        let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let warmer = warmer(
            &[("WARM_QUEUE_URL", QUEUE), ("WARM_RECHECK_DELAY", "5m")],
            bodies.clone(),
        );
        // A direct warm: the pending image goes to the queue for its first re-check.
        let response = invoke(&warmer, json!({"images": ["nginx:slow-1", "nginx:1.27"]})).await;
        assert_eq!(response["images"][0]["status"], "pending");
        assert_eq!(response["images"][1]["status"], "imported");
        assert_eq!(response["rechecks"]["images"], 1);
        assert_eq!(
            bodies.lock().unwrap().last().unwrap(),
            r#"300|{"images":["nginx:slow-1"],"recheck":1}"#
        );

        // Its re-check is still pending: the message is done, the image sent on with one more.
        let event = json!({"Records": [
            {"messageId": "m1", "body": "{\"images\": [\"nginx:slow-1\", \"nginx:1.26\"], \"recheck\": 1}"},
            {"messageId": "m2", "body": "{\"images\": [\"nginx:1.25\"], \"recheck\": 1}"}
        ]});
        let response = invoke(&warmer, event).await;
        assert_eq!(
            batch_failures(&response),
            Vec::<&str>::new(),
            "no message comes back"
        );
        assert_eq!(
            bodies.lock().unwrap().last().unwrap(),
            r#"300|{"images":["nginx:slow-1"],"recheck":2}"#
        );
    }

    #[tokio::test]
    async fn an_image_a_selector_selected_keeps_its_selector_through_the_queue() {
        let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let warmer = warmer(&[("WARM_QUEUE_URL", QUEUE)], bodies.clone());
        let body = json!({"images": ["nginx:slow-1", "nginx:1.26"], "recheck": 1,
            "selectors": {"nginx:slow-1": "nginx:slow-*"}});
        let event = json!({"Records": [{"messageId": "m1", "body": body.to_string()}]});
        let response = invoke(&warmer, event).await;
        assert_eq!(batch_failures(&response), Vec::<&str>::new());
        assert_eq!(
            bodies.lock().unwrap().last().unwrap(),
            r#"300|{"images":["nginx:slow-1"],"recheck":2,"selectors":{"nginx:slow-1":"nginx:slow-*"}}"#,
            "the re-check names the selector again"
        );
    }

    #[tokio::test]
    async fn a_pending_image_past_the_last_recheck_fails_as_layers_not_cached() {
        let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let warmer = warmer(
            &[("WARM_QUEUE_URL", QUEUE), ("WARM_RECHECK_ATTEMPTS", "6")],
            bodies.clone(),
        );
        let sent_before = bodies.lock().unwrap().len();
        let event = json!({"Records": [
            {"messageId": "last", "body": "{\"images\": [\"nginx:slow-1\"], \"recheck\": 6}"}
        ]});
        let response = invoke(&warmer, event).await;
        assert_eq!(
            batch_failures(&response),
            Vec::<&str>::new(),
            "a final outcome deletes the message"
        );
        assert_eq!(
            bodies.lock().unwrap().len(),
            sent_before,
            "nothing sent again"
        );

        // The same, seen from the report the message's images make.
        let mut report = warm_planned(
            &warmer,
            &plan::plan(&["nginx:slow-1".to_string()], &warmer.rules),
            None,
        )
        .await;
        assert_eq!(report.images[0].status, Status::Pending);
        layers_not_cached(&mut report.images[0], 6);
        report.recount();
        let image = &report.images[0];
        assert_eq!(image.failure_code.as_deref(), Some("LayersNotCached"));
        assert!(image
            .message
            .as_deref()
            .unwrap()
            .starts_with("still pending after 6 re-checks: 1 of 2 blobs"));
        assert!(image.hint.as_deref().unwrap().contains("every check"));
        assert_eq!((report.summary.failed, report.summary.pending), (1, 0));
    }

    #[tokio::test]
    async fn pending_images_without_a_queue_make_their_message_come_back() {
        let warmer = warmer(&[], Arc::default());
        let event = json!({"Records": [{"messageId": "m1", "body": "nginx:slow-1"}]});
        let response = invoke(&warmer, event).await;
        assert_eq!(batch_failures(&response), ["m1"]);
    }

    #[tokio::test]
    async fn the_configured_list_includes_the_images_object() {
        let warmer = warmer(
            &[
                ("WARM_IMAGES", "nginx:1.27"),
                ("WARM_IMAGES_S3_URI", "s3://config-bucket/images.txt"),
            ],
            Arc::default(),
        );
        let response = invoke(&warmer, schedule(json!({}))).await;
        let inputs: Vec<&str> = response["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["input"].as_str().unwrap())
            .collect();
        assert_eq!(inputs, ["nginx:1.27", "redis:7", "alpine:3.20"]);
        // Images sent with the event replace the configured list, object included.
        let response = invoke(&warmer, json!({"images": ["busybox:1.36"]})).await;
        assert_eq!(response["summary"]["total"], 1);
    }

    #[tokio::test]
    async fn an_unreadable_images_object_is_reported_and_the_rest_is_warmed() {
        let warmer = warmer(
            &[
                ("WARM_IMAGES", "nginx:1.27"),
                ("WARM_IMAGES_S3_URI", "s3://config-bucket/missing.txt"),
            ],
            Arc::default(),
        );
        let response = invoke(&warmer, schedule(json!({}))).await;
        assert_eq!(response["summary"]["total"], 1);
        let error = response["list_error"].as_str().unwrap();
        assert!(
            error.contains("s3://config-bucket/missing.txt") && error.contains("s3:GetObject"),
            "{error}"
        );

        let alone = warmer_with_only_the_object();
        let error = handle(&alone, LambdaEvent::new(json!({}), Context::default()))
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("cannot read the list"),
            "{error}"
        );
    }

    fn warmer_with_only_the_object() -> Warmer {
        warmer(
            &[("WARM_IMAGES_S3_URI", "s3://config-bucket/missing.txt")],
            Arc::default(),
        )
    }

    #[test]
    fn upstream_endpoints_are_read_at_init_and_a_bad_one_stops_the_start() {
        let endpoints =
            |value: &str| Settings::from_env(env(&[("WARM_UPSTREAM_ENDPOINTS", value)]));
        let settings = endpoints(
            "registry-1.docker.io=http://127.0.0.1:5001, quay.io=http://mirror.internal/quay",
        )
        .unwrap();
        let base = |registry: &str| settings.upstream_endpoints.base_url(registry).unwrap();
        assert_eq!(base("docker.io").as_str(), "http://127.0.0.1:5001/");
        assert_eq!(base("quay.io").as_str(), "http://mirror.internal/quay");
        assert_eq!(base("ghcr.io").as_str(), "https://ghcr.io/");
        let error = endpoints("quay.io=ftp://mirror").unwrap_err().to_string();
        assert!(
            error.starts_with("WARM_UPSTREAM_ENDPOINTS=\"quay.io=ftp://mirror\" is not valid"),
            "{error}"
        );
    }

    #[test]
    fn the_registry_checks_at_init_are_a_true_or_false_setting() {
        let doctor = |value: &str| Settings::from_env(env(&[("WARM_DOCTOR", value)]));
        assert!(!Settings::from_env(env(&[])).unwrap().doctor);
        assert!(doctor("true").unwrap().doctor);
        assert!(doctor(" TRUE ").unwrap().doctor);
        assert!(!doctor("false").unwrap().doctor);
        let error = doctor("yes").unwrap_err().to_string();
        assert_eq!(error, "WARM_DOCTOR=\"yes\" is not valid: true or false");
    }

    #[tokio::test]
    async fn a_registered_task_definition_warms_its_images() {
        let rules = (
            "WARM_RULES",
            "docker-hub=registry-1.docker.io,ecr-public=public.ecr.aws",
        );
        let warmer = warmer(&[rules], Arc::default());
        let response = invoke(&warmer, sample("ecs-register-task-definition")).await;
        assert_eq!(
            inputs_and_sources(&response),
            pairs(&[
                ("HOST/docker-hub/library/nginx:1.26", "event"),
                ("HOST/ecr-public/docker/library/redis:7", "event")
            ])
        );
        assert_eq!(response["summary"]["imported"], 2);
        let not_warmed = &response["not_warmed"][0];
        assert_eq!(
            not_warmed["input"],
            "public.ecr.aws/aws-observability/aws-otel-collector:v0.41.1"
        );
        assert!(not_warmed["not_warmed"]
            .as_str()
            .unwrap()
            .starts_with("ECS pulls it from public.ecr.aws itself"));

        // A record without the images: the task definition names them.
        let mut event = sample("ecs-register-task-definition");
        event["detail"]["requestParameters"] = Value::Null;
        event["detail"]["responseElements"]["taskDefinition"]["containerDefinitions"] = json!([]);
        let response = invoke(&warmer, event).await;
        assert_eq!(
            inputs_and_sources(&response),
            pairs(&[("HOST/docker-hub/library/nginx:1.26", "event")])
        );
        assert_eq!(response["not_warmed"][0]["input"], "nginx:1.26");
    }

    #[tokio::test]
    async fn a_task_that_could_not_pull_gets_its_image_warmed() {
        let warmer = warmer(&[], Arc::default());
        let response = invoke(&warmer, sample("ecs-task-stopped-cannot-pull")).await;
        assert_eq!(
            inputs_and_sources(&response),
            pairs(&[("HOST/docker-hub/library/redis:7.4", "event")])
        );
        assert_eq!(response["images"][0]["status"], "imported");
        assert_eq!(
            response["images"][0]["cache_repository"],
            "docker-hub/library/redis"
        );
    }

    #[tokio::test]
    async fn other_ecs_events_are_ignored_not_errors() {
        let warmer = warmer(&[], Arc::default());
        let mut running = sample("ecs-task-stopped-cannot-pull");
        running["detail"]["lastStatus"] = json!("RUNNING");
        let response = invoke(&warmer, running).await;
        assert!(response["ignored"]
            .as_str()
            .unwrap()
            .ends_with("is RUNNING, not STOPPED"));
        let instance = json!({"detail-type": "ECS Container Instance State Change",
            "source": "aws.ecs", "detail": {"status": "ACTIVE"}});
        assert!(invoke(&warmer, instance).await["ignored"].is_string());
    }

    #[tokio::test]
    async fn the_configured_list_includes_what_ecs_runs() {
        let warmer = warmer(
            &[("WARM_IMAGES", "nginx:1.27"), ("WARM_FROM_ECS", "true")],
            Arc::default(),
        );
        let response = invoke(&warmer, schedule(json!({}))).await;
        assert_eq!(
            inputs_and_sources(&response),
            pairs(&[
                ("nginx:1.27", "list"),
                ("HOST/docker-hub/library/nginx:1.26", "ecs-service:prod/web")
            ])
        );
        assert_eq!(response["not_warmed"][0]["source"], "ecs-service:prod/web");
        // Images sent with the event are warmed alone.
        let response = invoke(&warmer, json!({"images": ["busybox:1.36"]})).await;
        assert_eq!(response["summary"]["total"], 1);
    }

    #[test]
    fn the_ecs_settings_name_what_they_expect() {
        let scope = |pairs: &[(&str, &str)]| Settings::from_env(env(pairs)).map(|s| s.ecs);
        assert_eq!(scope(&[]).unwrap(), None);
        assert_eq!(scope(&[("WARM_FROM_ECS", "false")]).unwrap(), None);
        assert_eq!(
            scope(&[
                ("WARM_FROM_ECS", "true"),
                ("WARM_ECS_CLUSTERS", "prod, staging")
            ])
            .unwrap(),
            Some(ecs::Scope {
                families: false,
                clusters: vec!["prod".into(), "staging".into()]
            })
        );
        assert!(
            scope(&[("WARM_FROM_ECS", "families")])
                .unwrap()
                .unwrap()
                .families
        );
        let error = scope(&[("WARM_FROM_ECS", "yes")]).unwrap_err().to_string();
        assert!(
            error.starts_with("WARM_FROM_ECS=\"yes\" is not valid: true"),
            "{error}"
        );
        let error = scope(&[("WARM_ECS_CLUSTERS", "prod")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("set WARM_FROM_ECS=true"), "{error}");
    }

    #[test]
    fn an_images_object_uri_is_checked_at_init() {
        let error = Settings::from_env(env(&[("WARM_IMAGES_S3_URI", "bucket/key")]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("WARM_IMAGES_S3_URI=\"bucket/key\" is not valid")
                && error.contains("s3://BUCKET/KEY"),
            "{error}"
        );
    }
}
