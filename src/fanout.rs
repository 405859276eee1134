//! Fan-out: a list too long for one invocation goes to the queue in messages
//! of a few dozen images, which SQS-triggered invocations warm in parallel.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::Serialize;

use crate::backoff::Backoff;

/// SQS takes at most 10 entries per SendMessageBatch.
const ENTRIES_PER_CALL: usize = 10;
const ATTEMPTS: u32 = 4;

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
}

/// Sends `images` to the queue as `{"images": [...]}` messages of at most
/// `per_message` images. Entries SQS reports as failed are sent again, up to
/// a bounded number of attempts; none is dropped without being reported.
pub async fn enqueue(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    images: &[String],
    per_message: usize,
    backoff: Duration,
    deadline: Option<Instant>,
) -> Enqueued {
    let bodies: Vec<(String, &[String])> = images
        .chunks(per_message.max(1))
        .map(|chunk| (serde_json::json!({ "images": chunk }).to_string(), chunk))
        .collect();
    let mut enqueued = Enqueued {
        queue_url: queue_url.to_string(),
        ..Enqueued::default()
    };
    for batch in bodies.chunks(ENTRIES_PER_CALL) {
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        let mut last_errors: Vec<String>;
        let mut retries = Backoff::new(backoff, ATTEMPTS, deadline);
        loop {
            let entries: Vec<SendMessageBatchRequestEntry> = pending
                .iter()
                .filter_map(|&i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&batch[i].0)
                        .build()
                        .ok()
                })
                .collect();
            let sent = sqs
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            match sent {
                Ok(output) => {
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
                    if output.failed().iter().all(|f| f.sender_fault()) {
                        break;
                    }
                }
                Err(error) => {
                    last_errors = vec![crate::aws::describe_error(&error)];
                }
            }
            if pending.is_empty() || !retries.wait().await {
                break;
            }
        }
        for (i, (_, chunk)) in batch.iter().enumerate() {
            if pending.contains(&i) {
                enqueued.failed_images.extend(chunk.iter().cloned());
            } else {
                enqueued.messages += 1;
                enqueued.images += chunk.len();
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
    use aws_sdk_sqs::types::{BatchResultErrorEntry, SendMessageBatchResultEntry};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    use super::*;

    /// Fails the listed entry ids on the first call, then takes everything.
    fn flaky_queue(
        fail_first: &'static [&'static str],
        sender_fault: bool,
    ) -> (aws_sdk_sqs::Client, Arc<Mutex<Vec<Vec<String>>>>) {
        let calls: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let seen = calls.clone();
        let rule = mock!(aws_sdk_sqs::Client::send_message_batch).then_compute_output(move |req| {
            let mut calls = seen.lock().unwrap();
            let first = calls.is_empty();
            calls.push(
                req.entries()
                    .iter()
                    .map(|e| e.message_body().to_string())
                    .collect(),
            );
            let mut output = SendMessageBatchOutput::builder()
                .set_failed(Some(Vec::new()))
                .set_successful(Some(Vec::new()));
            for entry in req.entries() {
                if first && fail_first.contains(&entry.id()) {
                    output = output.failed(
                        BatchResultErrorEntry::builder()
                            .id(entry.id())
                            .sender_fault(sender_fault)
                            .code("InternalError")
                            .message("try again")
                            .build()
                            .unwrap(),
                    );
                } else {
                    output = output.successful(
                        SendMessageBatchResultEntry::builder()
                            .id(entry.id())
                            .message_id(format!("m-{}", entry.id()))
                            .md5_of_message_body("x")
                            .build()
                            .unwrap(),
                    );
                }
            }
            output.build().unwrap()
        });
        let client = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&rule]);
        (client, calls)
    }

    fn images(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("nginx:{i}")).collect()
    }

    #[tokio::test]
    async fn sends_messages_of_the_given_size_ten_per_call() {
        let (sqs, calls) = flaky_queue(&[], false);
        let enqueued = enqueue(
            &sqs,
            "https://queue",
            &images(1205),
            50,
            Duration::from_millis(1),
            None,
        )
        .await;
        assert_eq!((enqueued.messages, enqueued.images), (25, 1205));
        assert!(enqueued.failed_images.is_empty());
        let calls = calls.lock().unwrap();
        let sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 5]);
        let first: Value = serde_json::from_str(&calls[0][0]).unwrap();
        assert_eq!(first["images"].as_array().unwrap().len(), 50);
        let last: Value = serde_json::from_str(calls[2].last().unwrap()).unwrap();
        assert_eq!(
            last["images"],
            serde_json::json!([
                "nginx:1200",
                "nginx:1201",
                "nginx:1202",
                "nginx:1203",
                "nginx:1204"
            ])
        );
    }

    use serde_json::Value;

    #[tokio::test]
    async fn entries_sqs_refuses_are_sent_again() {
        let (sqs, calls) = flaky_queue(&["1", "3"], false);
        let enqueued = enqueue(
            &sqs,
            "https://queue",
            &images(8),
            2,
            Duration::from_millis(1),
            None,
        )
        .await;
        assert_eq!((enqueued.messages, enqueued.images), (4, 8));
        assert!(enqueued.failed_images.is_empty() && enqueued.errors.is_empty());
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            calls[1],
            [
                r#"{"images":["nginx:2","nginx:3"]}"#,
                r#"{"images":["nginx:6","nginx:7"]}"#
            ]
        );
    }

    #[tokio::test]
    async fn entries_that_keep_failing_are_reported_not_dropped() {
        let (sqs, calls) = flaky_queue(&["0"], true);
        let enqueued = enqueue(
            &sqs,
            "https://queue",
            &images(4),
            2,
            Duration::from_millis(1),
            None,
        )
        .await;
        assert_eq!((enqueued.messages, enqueued.images), (1, 2));
        assert_eq!(enqueued.failed_images, ["nginx:0", "nginx:1"]);
        assert_eq!(enqueued.errors, ["InternalError: try again"]);
        assert_eq!(
            calls.lock().unwrap().len(),
            1,
            "a sender fault is not retried"
        );
    }
}
