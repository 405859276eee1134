//! Fan-out: a list too long for one invocation goes to the queue in messages
//! of a few dozen images, which SQS-triggered invocations warm in parallel.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::Serialize;

use crate::backoff::Backoff;
use crate::message::QueueMessage;

/// SQS takes at most 10 entries per SendMessageBatch.
const ENTRIES_PER_CALL: usize = 10;
/// SQS takes at most 256 KiB per message, and per SendMessageBatch in total.
const MAX_BYTES: usize = 262_144;
const ATTEMPTS: u32 = 4;

/// SQS delays a message by at most 15 minutes.
const MAX_DELAY_SECONDS: u64 = 900;

/// When the messages are to be received: now, or later to check again on
/// images whose layers were still pending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery<'a> {
    /// Sent as the messages' DelaySeconds (at most 15 minutes).
    pub delay: Duration,
    /// How many times these images have been checked again already; 0 for
    /// a first warm. Carried in the body as `"recheck"`.
    pub recheck: u32,
    /// The selector that selected an image, by image: carried in the body
    /// as `"selectors"`, so that the image's report still names it.
    pub selectors: Option<&'a BTreeMap<String, String>>,
}

impl Delivery<'_> {
    fn body(&self, images: &[String]) -> String {
        let selectors = images
            .iter()
            .filter_map(|image| {
                let selector = self.selectors?.get(image)?;
                Some((image.clone(), selector.clone()))
            })
            .collect();
        QueueMessage::new(images, self.recheck, selectors).body()
    }

    fn delay_seconds(&self) -> Option<i32> {
        let seconds = self.delay.as_secs().min(MAX_DELAY_SECONDS);
        (seconds > 0).then_some(seconds as i32)
    }
}

/// What was put on the queue, and what could not be.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    pub queue_url: String,
    pub messages: usize,
    pub images: usize,
    /// Images whose message SQS did not take after every attempt.
    pub failed_images: Vec<String>,
    /// Why, one line per distinct reason.
    pub errors: Vec<String>,
    /// The SQS message that carries each image sent.
    #[serde(skip)]
    pub message_ids: BTreeMap<String, String>,
}

/// Sends `images` to the queue as `{"images": [...]}` messages of at most
/// `per_message` images, in batches SQS takes (10 entries, 256 KiB). Entries
/// SQS refuses for a retryable reason are sent again, up to a bounded number
/// of attempts; no batch starts after `deadline` and none runs past it. Every
/// image not sent is reported, with why.
pub async fn enqueue(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    images: &[String],
    per_message: usize,
    delivery: Delivery<'_>,
    backoff: Duration,
    deadline: Option<Instant>,
) -> Enqueued {
    let messages = messages(images, per_message, &delivery);
    let mut enqueued = Enqueued {
        queue_url: queue_url.to_string(),
        ..Enqueued::default()
    };
    for batch in batches(&messages) {
        let mut pending: Vec<usize> = batch.clone();
        let mut message_ids: HashMap<usize, String> = HashMap::new();
        let mut last_errors: Vec<String>;
        let mut retries = Backoff::new(backoff, ATTEMPTS, deadline);
        loop {
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                last_errors = vec!["not sent: the deadline came first".to_string()];
                break;
            }
            let entries: Vec<SendMessageBatchRequestEntry> = pending
                .iter()
                .filter_map(|&i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&messages[i].0)
                        .set_delay_seconds(delivery.delay_seconds())
                        .build()
                        .ok()
                })
                .collect();
            let send = sqs
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send();
            let sent = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline.into(), send).await.ok(),
                None => Some(send.await),
            };
            let retryable = match sent {
                None => {
                    last_errors = vec![
                        "the send was cut at the deadline; SQS may or may not have taken it"
                            .to_string(),
                    ];
                    false
                }
                Some(Ok(output)) => {
                    for sent in output.successful() {
                        if let Ok(i) = sent.id().parse() {
                            message_ids.insert(i, sent.message_id().to_string());
                        }
                    }
                    last_errors = output
                        .failed()
                        .iter()
                        .map(|f| format!("{}: {}", f.code(), f.message().unwrap_or_default()))
                        .collect();
                    pending = output
                        .failed()
                        .iter()
                        .filter_map(|f| f.id().parse().ok())
                        .collect();
                    // A sender fault will not go away by sending again.
                    !output.failed().iter().all(|f| f.sender_fault())
                }
                Some(Err(error)) => {
                    last_errors = vec![crate::aws::describe_error(&error)];
                    crate::retry::is_retryable(&error, error.code())
                }
            };
            if pending.is_empty() || !retryable || !retries.wait().await {
                break;
            }
        }
        for &i in &batch {
            let images = messages[i].1;
            if pending.contains(&i) {
                enqueued.failed_images.extend(images.iter().cloned());
            } else {
                enqueued.messages += 1;
                enqueued.images += images.len();
                if let Some(id) = message_ids.get(&i) {
                    for image in images {
                        enqueued.message_ids.insert(image.clone(), id.clone());
                    }
                }
            }
        }
        if !pending.is_empty() {
            for error in last_errors {
                if !enqueued.errors.contains(&error) {
                    enqueued.errors.push(error);
                }
            }
        }
    }
    enqueued
}

/// The message bodies: at most `per_message` images each, and never more
/// bytes than SQS takes.
fn messages<'a>(
    images: &'a [String],
    per_message: usize,
    delivery: &Delivery<'_>,
) -> Vec<(String, &'a [String])> {
    let mut messages = Vec::new();
    let mut start = 0;
    while start < images.len() {
        let mut end = (start + per_message.max(1)).min(images.len());
        let mut body = delivery.body(&images[start..end]);
        while body.len() > MAX_BYTES && end > start + 1 {
            end = start + (end - start) / 2;
            body = delivery.body(&images[start..end]);
        }
        messages.push((body, &images[start..end]));
        start = end;
    }
    messages
}

/// Message positions grouped into SendMessageBatch calls of at most 10
/// entries and 256 KiB of bodies.
fn batches(messages: &[(String, &[String])]) -> Vec<Vec<usize>> {
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for (i, (body, _)) in messages.iter().enumerate() {
        match batches.last_mut() {
            Some(batch) if batch.len() < ENTRIES_PER_CALL && bytes + body.len() <= MAX_BYTES => {
                batch.push(i);
                bytes += body.len();
            }
            _ => {
                batches.push(vec![i]);
                bytes = body.len();
            }
        }
    }
    batches
}

#[cfg(test)]
mod tests;
