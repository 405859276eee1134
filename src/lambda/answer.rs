//! An SQS batch: its messages warmed together, and the answer that names the
//! messages that must come back.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse};

use crate::event::Message;
use crate::fanout::Delivery;
use crate::list::ListEntry;
use crate::outcome::{Failure, FailureContext, ImageOutcome, Status};
use crate::pipeline::{Parcel, Pipeline};

use super::budget::Budget;
use super::publish::{self, Lost};
use super::queue;
use super::warmer::Warmer;

/// Warms the images of a batch of messages together, and names the messages
/// that must come back: unreadable ones (to end in the dead-letter queue) and
/// those with an image that may succeed later. Images whose layers are still
/// pending are sent again with a delay instead, so that a message that is
/// making progress never ends in the dead-letter queue; after the last
/// re-check they fail with `LayersNotCached`.
pub async fn warm_messages(
    warmer: &Warmer,
    messages: &[Message],
    budget: Budget,
) -> SqsBatchResponse {
    let settings = &warmer.settings;
    let warm_settings = settings.warm.until(budget.warm_by);
    let pipeline: Pipeline = warmer.pipeline(&warm_settings);
    let mut lost = Lost::default();
    let mut positions: Vec<usize> = Vec::new();
    let mut plans = Vec::new();
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
        let plan = pipeline.plan(Parcel {
            entries: images.iter().cloned().map(ListEntry::Text).collect(),
            selectors: message.selectors.clone(),
            ..Parcel::default()
        });
        if plan
            .iter()
            .all(|image| image.reference.is_none() && image.unresolved.is_none())
        {
            tracing::error!(message_id = %message.message_id, "the message holds no valid image reference");
            again.push(&message.message_id);
            continue;
        }
        positions.push(position);
        plans.push(plan);
    }
    let work = Pipeline::work(pipeline.resolve(plans).await);
    let mut report = pipeline.warm(&warmer.ecr, &work.images, &|_| {}).await;
    // The message of each image, by its position in the batch.
    let owners: Vec<usize> = work
        .parcels
        .iter()
        .map(|&parcel| positions[parcel])
        .collect();

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
        let checks_left = message.recheck < settings.warm.recheck_attempts;
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

    let selectors = queue::selectors_of(&report);
    for (position, pending) in rechecks {
        let message = &messages[position];
        let sent = match &settings.queue_url {
            Some(queue_url) => {
                let delivery = Delivery {
                    delay: settings.warm.recheck_delay,
                    recheck: message.recheck + 1,
                    selectors: Some(&selectors),
                };
                queue::enqueue(warmer, queue_url, &pending, delivery, budget.send_by)
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
    publish::report(&settings.metrics_namespace, &report);
    lost.publish(&settings.metrics_namespace);

    let mut response = SqsBatchResponse::default();
    for message_id in again {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = message_id.to_string();
        response.batch_item_failures.push(failure);
    }
    response
}

/// A pending image that was checked again as often as allowed.
pub(super) fn layers_not_cached(image: &mut ImageOutcome, rechecks: u32) {
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
