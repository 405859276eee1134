//! The function's own queue: lists too long for one invocation go there in
//! messages of a few dozen images, and so do the images that are to be tried
//! again later.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Value};

use crate::fanout::{self, Delivery, Enqueued};
use crate::outcome::Status;
use crate::plan::PlannedImage;
use crate::warm::Report;

use super::publish::Lost;
use super::warmer::Warmer;

pub async fn enqueue(
    warmer: &Warmer,
    queue_url: &str,
    images: &[String],
    delivery: Delivery<'_>,
    deadline: Option<Instant>,
) -> Enqueued {
    let enqueued = fanout::enqueue(
        &warmer.sqs,
        queue_url,
        images,
        warmer.settings.message_images,
        delivery,
        warmer.settings.warm.backoff,
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

/// Puts the planned images on the queue instead of warming them here.
pub async fn fan_out(
    warmer: &Warmer,
    queue_url: &str,
    planned: &[PlannedImage],
    deadline: Option<Instant>,
    lost: &mut Lost,
) -> Value {
    let (ready, unplanned): (Vec<&PlannedImage>, Vec<&PlannedImage>) =
        planned.iter().partition(|image| image.is_ready());
    for image in &unplanned {
        tracing::warn!(input = %image.input, error = image.error.as_deref().unwrap_or_default(), "image not enqueued");
    }
    let inputs: Vec<String> = ready.iter().map(|image| image.input.clone()).collect();
    let selectors: BTreeMap<String, String> = ready
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
    let not_enqueued: Vec<Value> = unplanned
        .iter()
        .map(|image| json!({ "input": image.input, "error": image.error }))
        .collect();
    json!({ "enqueued": enqueued, "not_enqueued": not_enqueued })
}

/// The selector of each image of a report that a selector selected.
pub fn selectors_of(report: &Report) -> BTreeMap<String, String> {
    report
        .images
        .iter()
        .filter_map(|image| Some((image.input.clone(), image.selector.clone()?)))
        .collect()
}

/// The inputs of the images of a report with `status`.
pub fn inputs_with(report: &Report, status: Status) -> Vec<String> {
    report
        .images
        .iter()
        .filter(|image| image.status == status)
        .map(|image| image.input.clone())
        .collect()
}

/// Sends the skipped images of a scheduled warm to the queue, to be warmed
/// by the invocations it starts.
pub async fn enqueue_skipped(
    warmer: &Warmer,
    report: &Report,
    send_by: Option<Instant>,
    lost: &mut Lost,
    response: &mut Value,
) {
    let skipped = inputs_with(report, Status::Skipped);
    let (Some(queue_url), false) = (&warmer.settings.queue_url, skipped.is_empty()) else {
        return;
    };
    let selectors = selectors_of(report);
    let delivery = Delivery {
        selectors: Some(&selectors),
        ..Delivery::default()
    };
    let enqueued = enqueue(warmer, queue_url, &skipped, delivery, send_by).await;
    lost.not_enqueued += enqueued.failed_images.len();
    response["enqueued"] = json!(enqueued);
}

/// Sends the pending images of a warm to the queue, to be checked again after
/// the re-check delay.
pub async fn recheck_pending(
    warmer: &Warmer,
    report: &Report,
    send_by: Option<Instant>,
    lost: &mut Lost,
    response: &mut Value,
) {
    let pending = inputs_with(report, Status::Pending);
    if pending.is_empty() {
        return;
    }
    match &warmer.settings.queue_url {
        Some(queue_url) => {
            let selectors = selectors_of(report);
            let delivery = Delivery {
                delay: warmer.settings.warm.recheck_delay,
                recheck: 1,
                selectors: Some(&selectors),
            };
            let enqueued = enqueue(warmer, queue_url, &pending, delivery, send_by).await;
            lost.not_enqueued += enqueued.failed_images.len();
            response["rechecks"] = json!(enqueued);
        }
        None => tracing::warn!(
            images = pending.len(),
            "pending images are not checked again by themselves: WARM_QUEUE_URL is not set"
        ),
    }
}
