//! Where each trigger's entries come from: the configured list (with the
//! images object and what ECS runs) for a schedule or `{}`, the list given
//! in the event, or the images of an ECS event. They all go through the one
//! pipeline; SQS batches are [`super::answer`]'s.

use serde_json::{json, Value};

use crate::ecs::{self, events::EcsEvent, Discovered};
use crate::list::{self, ListEntry};
use crate::pipeline::{Parcel, Pipeline};
use crate::plan::{PlannedImage, Source};

use super::budget::Budget;
use super::publish::{self, Lost};
use super::queue;
use super::retrying;
use super::warmer::Warmer;

/// The configured list, as read at this invocation, and what could not be read.
pub(super) struct Configured {
    pub(super) parcel: Parcel,
    pub(super) list_error: Option<String>,
    pub(super) ecs_error: Option<String>,
    /// ECS was listed: an account that runs nothing is nothing to warm, not an error.
    pub(super) listed_ecs: bool,
    /// Task definitions that could not be read, each on its own.
    pub(super) ecs_failures: Vec<String>,
}

/// What a run without entries says, and how a run past the limit splits.
pub(super) struct Wording {
    pub(super) nothing: &'static str,
    pub(super) split: &'static str,
}

const NOTHING_TO_WARM: Wording = Wording {
    nothing: "no images to warm: set WARM_IMAGES, WARM_IMAGES_FILE, WARM_IMAGES_S3_URI or \
              WARM_FROM_ECS, or send {\"images\": [...]}",
    split: "split the list over several images objects or schedules",
};

/// The list given, or the configured one, within the limit of a run; an
/// error when there is nothing at all (and ECS was not listed).
pub(super) async fn listed(
    warmer: &Warmer,
    given: Option<Vec<String>>,
    budget: Budget,
    lost: &mut Lost,
    wording: Wording,
) -> Result<Configured, lambda_runtime::Error> {
    let mut configured = match given {
        Some(images) => Configured {
            parcel: Parcel::of(images.into_iter().map(ListEntry::Text).collect()),
            list_error: None,
            ecs_error: None,
            listed_ecs: false,
            ecs_failures: Vec::new(),
        },
        None => configured_list(warmer, budget, lost).await,
    };
    if configured.parcel.entries.is_empty() && !configured.listed_ecs {
        lost.publish(&warmer.settings.metrics_namespace);
        return Err(configured
            .list_error
            .or(configured.ecs_error)
            .unwrap_or_else(|| wording.nothing.to_string())
            .into());
    }
    configured.parcel.entries = list::limit(
        std::mem::take(&mut configured.parcel.entries),
        list::MAX_RUN_ENTRIES,
        "per invocation",
        wording.split,
    );
    Ok(configured)
}

impl Configured {
    /// What the answer says of the list beside the report: the part that
    /// could not be read, and what ECS runs that is not warmed or listed.
    pub(super) fn annotate(&self, response: &mut Value, not_warmed: &[PlannedImage]) {
        if self.list_error.is_some() {
            response["list_error"] = json!(self.list_error);
        }
        add_ecs_findings(response, not_warmed, self.ecs_error.clone());
        add_ecs_failures(response, &self.ecs_failures);
    }
}

/// A schedule, EventBridge Scheduler's input or a direct invocation: the
/// list given, or the configured one.
pub async fn warm_list(
    warmer: &Warmer,
    given: Option<Vec<String>>,
    budget: Budget,
) -> Result<Value, lambda_runtime::Error> {
    let settings = &warmer.settings;
    let mut lost = Lost::default();
    let mut configured = listed(warmer, given, budget, &mut lost, NOTHING_TO_WARM).await?;
    let warm_settings = settings.warm.until(budget.warm_by);
    let pipeline = warmer.pipeline(&warm_settings);
    // Selectors are listed before fan-out: the queue carries the images they select.
    let work = pipeline
        .prepare(vec![std::mem::take(&mut configured.parcel)])
        .await;
    if let Some(queue_url) = &settings.queue_url {
        if work.images.len() > settings.fanout_threshold {
            let mut response =
                queue::fan_out(warmer, queue_url, &work.images, budget.send_by, &mut lost).await;
            lost.publish(&settings.metrics_namespace);
            response["list_error"] = json!(configured.list_error);
            configured.annotate(&mut response, &work.not_warmed);
            return Ok(response);
        }
    }
    let mut report = pipeline.warm(&warmer.ecr, &work.images, &|_| {}).await;
    let first_tries = vec![0; report.images.len()];
    retrying::send_back(warmer, &mut report, &first_tries, budget.send_by, &mut lost).await;
    let mut response = serde_json::to_value(&report)?;
    configured.annotate(&mut response, &work.not_warmed);
    publish::report(&settings.metrics_namespace, &report);
    lost.publish(&settings.metrics_namespace);
    Ok(response)
}

/// `WARM_IMAGES` and `WARM_IMAGES_FILE`, the images object and what ECS runs.
/// A part that cannot be read is reported, and the rest is still warmed.
async fn configured_list(warmer: &Warmer, budget: Budget, lost: &mut Lost) -> Configured {
    let settings = &warmer.settings;
    let mut entries: Vec<ListEntry> = settings
        .images
        .iter()
        .cloned()
        .map(ListEntry::Text)
        .collect();
    let mut list_error = None;
    if let Some(uri) = &settings.images_s3 {
        match crate::s3::read_list(&warmer.s3, uri, budget.warm_by).await {
            Ok(more) => entries.extend(more),
            Err(error) => {
                tracing::error!(%error, "the images object cannot be read");
                lost.list_unreadable += 1;
                list_error = Some(error);
            }
        }
    }
    let mut discovered = Vec::new();
    let mut ecs_error = None;
    let mut ecs_failures = Vec::new();
    if let Some(scope) = &settings.ecs {
        match ecs::discover(&warmer.ecs, scope, budget.warm_by).await {
            Ok(found) => {
                for failure in &found.failures {
                    tracing::error!(error = %failure, "a task definition that ECS runs cannot be read");
                }
                lost.ecs_unreadable += found.failures.len();
                ecs_failures = found.failures.iter().map(ToString::to_string).collect();
                discovered = found.images;
            }
            Err(error) => {
                tracing::error!(%error, "the images that ECS runs cannot be listed");
                lost.ecs_unreadable += 1;
                ecs_error = Some(error.to_string());
            }
        }
    }
    Configured {
        listed_ecs: settings.ecs.is_some() && ecs_error.is_none(),
        ecs_failures,
        parcel: Parcel {
            entries,
            discovered,
            ..Parcel::default()
        },
        list_error,
        ecs_error,
    }
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

/// The task definitions that could not be read, when there are any.
fn add_ecs_failures(response: &mut Value, failures: &[String]) {
    if !failures.is_empty() {
        response["ecs_errors"] = json!(failures);
    }
}

/// Warms the images of an ECS event: those of a registered task definition,
/// or those a stopped task could not pull, so that ECS's next attempt finds
/// them in the cache. Answers with the warm document, as a direct invocation.
pub async fn warm_ecs_event(
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
    let parcel = Parcel {
        discovered: images
            .into_iter()
            .map(|image| Discovered {
                image,
                source: Source::Event,
            })
            .collect(),
        ..Parcel::default()
    };
    let warm_settings = warmer.settings.warm.until(budget.warm_by);
    let pipeline: Pipeline = warmer.pipeline(&warm_settings);
    let work = pipeline.prepare(vec![parcel]).await;
    let mut report = pipeline.warm(&warmer.ecr, &work.images, &|_| {}).await;
    let mut lost = Lost::default();
    let first_tries = vec![0; report.images.len()];
    retrying::send_back(warmer, &mut report, &first_tries, budget.send_by, &mut lost).await;
    let mut response = serde_json::to_value(&report)?;
    add_ecs_findings(&mut response, &work.not_warmed, None);
    publish::report(&warmer.settings.metrics_namespace, &report);
    lost.publish(&warmer.settings.metrics_namespace);
    Ok(response)
}
