use std::sync::{Arc, Mutex};

use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use serde_json::Value;

use super::*;
use crate::testing::queue::test_queue;

/// Fails the listed entry ids on the first call, then takes everything;
/// records the bodies of each call.
fn flaky_queue(
    fail_first: &'static [&'static str],
    sender_fault: bool,
) -> (aws_sdk_sqs::Client, Arc<Mutex<Vec<Vec<String>>>>) {
    let calls: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let seen = calls.clone();
    let client = test_queue(move |call, entry| {
        let mut calls = seen.lock().unwrap();
        if calls.len() == call {
            calls.push(Vec::new());
        }
        calls[call].push(entry.message_body().to_string());
        (call == 0 && fail_first.contains(&entry.id())).then_some(sender_fault)
    });
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
        Delivery::default(),
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

#[tokio::test]
async fn a_recheck_is_delayed_and_counted_in_the_body() {
    let delays: Arc<Mutex<Vec<Option<i32>>>> = Arc::default();
    let seen = delays.clone();
    let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
    let sent = bodies.clone();
    let sqs = test_queue(move |_, entry| {
        seen.lock().unwrap().push(entry.delay_seconds());
        sent.lock().unwrap().push(entry.message_body().to_string());
        None
    });
    let selectors = BTreeMap::from([("nginx:2".to_string(), "nginx:~2".to_string())]);
    let delivery = Delivery {
        delay: Duration::from_secs(3600),
        recheck: 2,
        selectors: Some(&selectors),
    };
    let enqueued = enqueue(
        &sqs,
        "https://queue",
        &images(3),
        2,
        delivery,
        Duration::ZERO,
        None,
    )
    .await;
    assert_eq!((enqueued.messages, enqueued.images), (2, 3));
    assert_eq!(
        *delays.lock().unwrap(),
        [Some(900), Some(900)],
        "SQS delays 15 minutes at most"
    );
    assert_eq!(
        *bodies.lock().unwrap(),
        [
            r#"{"images":["nginx:0","nginx:1"],"recheck":2}"#,
            r#"{"images":["nginx:2"],"recheck":2,"selectors":{"nginx:2":"nginx:~2"}}"#
        ]
    );
}

#[tokio::test]
async fn entries_sqs_refuses_are_sent_again() {
    let (sqs, calls) = flaky_queue(&["1", "3"], false);
    let enqueued = enqueue(
        &sqs,
        "https://queue",
        &images(8),
        2,
        Delivery::default(),
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
        Delivery::default(),
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

#[tokio::test]
async fn no_batch_starts_after_the_deadline() {
    let (sqs, calls) = flaky_queue(&[], false);
    let past = Instant::now();
    let enqueued = enqueue(
        &sqs,
        "https://queue",
        &images(3),
        1,
        Delivery::default(),
        Duration::ZERO,
        Some(past),
    )
    .await;
    assert_eq!(enqueued.messages, 0);
    assert_eq!(enqueued.failed_images.len(), 3);
    assert_eq!(enqueued.errors, ["not sent: the deadline came first"]);
    assert!(calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_deadline_that_falls_between_batches_stops_the_sending() {
    let rule = mock!(aws_sdk_sqs::Client::send_message_batch).then_compute_output(|_| {
        // A queue that answers after the deadline.
        std::thread::sleep(Duration::from_millis(10));
        SendMessageBatchOutput::builder()
            .set_failed(Some(Vec::new()))
            .set_successful(Some(Vec::new()))
            .build()
            .unwrap()
    });
    let sqs = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&rule]);
    // 25 batches of one message: the deadline falls while they are being sent.
    let deadline = Instant::now() + Duration::from_millis(50);
    let enqueued = enqueue(
        &sqs,
        "https://queue",
        &images(250),
        1,
        Delivery::default(),
        Duration::ZERO,
        Some(deadline),
    )
    .await;
    assert!(
        Instant::now() < deadline + Duration::from_millis(40),
        "stopped at the deadline"
    );
    assert!(
        enqueued.messages > 0 && enqueued.messages < 250,
        "{}",
        enqueued.messages
    );
    assert_eq!(
        enqueued.messages + enqueued.failed_images.len(),
        250,
        "every image accounted for"
    );
    assert!(
        enqueued.errors.iter().any(|e| e.contains("deadline")),
        "{:?}",
        enqueued.errors
    );
}

#[tokio::test]
async fn batches_stay_under_sqs_byte_limits() {
    let (sqs, calls) = flaky_queue(&[], false);
    // Long references: 40 per message is about 100 KiB.
    let long: Vec<String> = (0..400)
        .map(|i| format!("registry.example.com/{}/app:{i}", "team/".repeat(500)))
        .collect();
    let enqueued = enqueue(
        &sqs,
        "https://queue",
        &long,
        1000,
        Delivery::default(),
        Duration::ZERO,
        None,
    )
    .await;
    assert_eq!(enqueued.images, 400);
    for call in calls.lock().unwrap().iter() {
        let bytes: usize = call.iter().map(String::len).sum();
        assert!(
            call.len() <= 10 && bytes <= MAX_BYTES,
            "{} entries, {bytes} bytes",
            call.len()
        );
    }
}

#[tokio::test]
async fn a_missing_queue_is_not_asked_again() {
    let rule = mock!(aws_sdk_sqs::Client::send_message_batch).then_error(|| {
        aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError::QueueDoesNotExist(
            aws_sdk_sqs::types::error::QueueDoesNotExist::builder()
                .message("The specified queue does not exist.")
                .build(),
        )
    });
    let sqs = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&rule]);
    let enqueued = enqueue(
        &sqs,
        "https://queue",
        &images(2),
        1,
        Delivery::default(),
        Duration::ZERO,
        None,
    )
    .await;
    assert_eq!(enqueued.failed_images.len(), 2);
    assert_eq!(rule.num_calls(), 1, "QueueDoesNotExist is not retried");
}

#[tokio::test]
async fn a_send_that_outlasts_the_deadline_is_cut_at_it() {
    // A queue endpoint that takes connections and never answers.
    let (endpoint, server) = crate::testing::silent_endpoint().await;
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "a", "b", None, None, "test",
        ))
        .build();
    let sqs = aws_sdk_sqs::Client::from_conf(config);
    let started = Instant::now();
    let deadline = started + Duration::from_millis(300);
    let enqueued = enqueue(
        &sqs,
        "https://queue",
        &images(3),
        1,
        Delivery::default(),
        Duration::ZERO,
        Some(deadline),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(enqueued.failed_images.len(), 3);
    assert!(
        enqueued
            .errors
            .iter()
            .any(|e| e.contains("cut at the deadline")),
        "{:?}",
        enqueued.errors
    );
    server.abort();
}
