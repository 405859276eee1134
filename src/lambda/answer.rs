//! An SQS batch: its messages warmed together, and the answer that names the
//! messages that must come back.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse};

use crate::event::Message;
use crate::list::{self, ListEntry};
use crate::pipeline::{Parcel, Pipeline};

use super::budget::Budget;
use super::publish::{self, Lost};
use super::retrying;
use super::warmer::Warmer;

/// Warms the images of a batch of messages together. What may pass goes
/// back on the queue image by image, as new messages ([`retrying`]), and the
/// received message is done: the answer names a message only when its body
/// cannot be read (so that it ends in the dead-letter queue) or when what it
/// left could not be sent (so that SQS gives it again).
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
        let entries = images.iter().cloned().map(ListEntry::Text).collect();
        let plan = pipeline.plan(Parcel {
            entries: list::limit(
                entries,
                list::MAX_MESSAGE_ENTRIES,
                "per message",
                "send the list in more messages",
            ),
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
    let sent: Vec<u32> = owners
        .iter()
        .map(|&owner| messages[owner].recheck)
        .collect();
    let sent_back =
        retrying::send_back(warmer, &mut report, &sent, budget.send_by, &mut lost).await;
    for (&owner, unsent) in owners.iter().zip(&sent_back.unsent) {
        let message_id = messages[owner].message_id.as_str();
        // Received again after the visibility timeout: tried again all the same.
        if *unsent && !again.contains(&message_id) {
            again.push(message_id);
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
