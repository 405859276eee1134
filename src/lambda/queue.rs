//! The function's own queue: lists too long for one invocation go there in
//! messages of a few dozen images, and so do the images that are to be tried
//! again later.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Value};

use crate::fanout::{self, Delivery, Enqueued};
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

/// Puts the planned images on the queue instead of warming them here. A
/// selector whose tags could not be listed for a reason that may pass goes
/// too, to be listed again after the re-check delay.
pub async fn fan_out(
    warmer: &Warmer,
    queue_url: &str,
    planned: &[PlannedImage],
    deadline: Option<Instant>,
    lost: &mut Lost,
) -> Value {
    let may_pass = |image: &&PlannedImage| image.failure.as_ref().is_some_and(|f| f.retryable);
    let (ready, unplanned): (Vec<&PlannedImage>, Vec<&PlannedImage>) =
        planned.iter().partition(|image| image.is_ready());
    let (later, unplanned): (Vec<&PlannedImage>, Vec<&PlannedImage>) =
        unplanned.into_iter().partition(may_pass);
    for image in &unplanned {
        tracing::warn!(input = %image.input, error = image.error.as_deref().unwrap_or_default(), "image not enqueued");
    }
    let selectors: BTreeMap<String, String> = ready
        .iter()
        .filter_map(|image| Some((image.input.clone(), image.selector.clone()?)))
        .collect();
    let inputs = |images: &[&PlannedImage]| -> Vec<String> {
        images.iter().map(|image| image.input.clone()).collect()
    };
    let delivery = Delivery {
        selectors: Some(&selectors),
        ..Delivery::default()
    };
    let enqueued = enqueue(warmer, queue_url, &inputs(&ready), delivery, deadline).await;
    let retry = Delivery {
        delay: warmer.settings.warm.recheck_delay,
        recheck: 1,
        selectors: None,
    };
    let retrying = match later.is_empty() {
        true => Enqueued::default(),
        false => enqueue(warmer, queue_url, &inputs(&later), retry, deadline).await,
    };
    lost.not_planned += unplanned.len();
    lost.not_enqueued += enqueued.failed_images.len() + retrying.failed_images.len();
    let not_enqueued: Vec<Value> = unplanned
        .iter()
        .map(|image| json!({ "input": image.input, "error": image.error }))
        .collect();
    let mut response = json!({ "enqueued": enqueued, "not_enqueued": not_enqueued });
    if !later.is_empty() {
        let errors: Vec<Value> = later
            .iter()
            .map(|image| json!({ "input": image.input, "error": image.error }))
            .collect();
        response["retrying"] = json!({ "enqueued": retrying, "images": errors });
    }
    response
}

/// The selector of each image of a report that a selector selected.
pub fn selectors_of(report: &Report) -> BTreeMap<String, String> {
    report
        .images
        .iter()
        .filter_map(|image| Some((image.input.clone(), image.selector.clone()?)))
        .collect()
}
