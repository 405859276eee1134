//! Every image converges, against the ECR emulator and the SQS queue that moto
//! serves beside it: an upstream outage longer than one invocation's tries
//! keeps the image `retrying` through the queue until it is warm, and a
//! message with more than one invocation can warm goes back without the
//! images it warmed.

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ecr_cache_warmer::lambda::{self, Settings, Warmer};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use support::{EmulatorDir, MotoServer};

fn emulator(faults: Value) -> (EmulatorDir, MotoServer) {
    let dir = EmulatorDir::new(json!({
        "rules": [
            {"ecrRepositoryPrefix": "docker-hub", "upstreamRegistryUrl": "registry-1.docker.io"},
            {"ecrRepositoryPrefix": "quay", "upstreamRegistryUrl": "quay.io"}
        ],
        "faults": faults,
    }));
    let server = MotoServer::start_emulator(&dir.config);
    (dir, server)
}

struct Function {
    warmer: Warmer,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

async fn function(server: &MotoServer, settings: &[(&str, &str)]) -> Function {
    let sqs = aws_sdk_sqs::Client::new(&server.sdk_config());
    let queue_url = sqs
        .create_queue()
        .queue_name("warm")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let mut pairs: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pairs.push(("WARM_QUEUE_URL".into(), queue_url.clone()));
    let settings = Settings::from_env(|name| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    })
    .unwrap();
    let warmer = Warmer::new(settings, &server.sdk_config()).await.unwrap();
    Function {
        warmer,
        sqs,
        queue_url,
    }
}

/// A context whose deadline is `left` from now, as Lambda gives it.
fn context(left: Duration) -> Context {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let mut context = Context::default();
    context.deadline = (now + left).as_millis() as u64;
    context
}

impl Function {
    async fn invoke(&self, payload: Value, left: Duration) -> Value {
        lambda::handle(&self.warmer, LambdaEvent::new(payload, context(left)))
            .await
            .unwrap()
    }

    /// The next messages on the queue (waiting up to `wait`), as the event
    /// source mapping hands them over, and deleted as it deletes them once
    /// the answer does not name them. `None` when the queue stays empty.
    async fn receive(&self, wait: Duration) -> Option<(Value, Vec<String>)> {
        let started = Instant::now();
        loop {
            let answer = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            let messages = answer.messages.unwrap_or_default();
            if !messages.is_empty() {
                let bodies: Vec<String> = messages.iter().filter_map(|m| m.body.clone()).collect();
                let records: Vec<Value> = messages
                    .iter()
                    .map(|m| {
                        json!({"messageId": m.message_id, "receiptHandle": m.receipt_handle,
                                    "body": m.body, "eventSource": "aws:sqs"})
                    })
                    .collect();
                for message in &messages {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(message.receipt_handle.clone().unwrap())
                        .send()
                        .await
                        .unwrap();
                }
                return Some((json!({ "Records": records }), bodies));
            }
            if started.elapsed() > wait {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Function {
    /// Every message on the queue, delayed ones included once they are due,
    /// as one event; `None` when the queue holds none.
    async fn drain(&self) -> Option<(Value, Vec<String>)> {
        let mut records = Vec::new();
        let mut bodies = Vec::new();
        loop {
            if let Some((event, more)) = self.receive(Duration::from_millis(500)).await {
                records.extend(event["Records"].as_array().unwrap().iter().cloned());
                bodies.extend(more);
                continue;
            }
            let attributes = self
                .sqs
                .get_queue_attributes()
                .queue_url(&self.queue_url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
                .send()
                .await
                .unwrap()
                .attributes
                .unwrap_or_default();
            let waiting: u64 = [
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages,
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed,
            ]
            .iter()
            .filter_map(|name| attributes.get(name)?.parse::<u64>().ok())
            .sum();
            if waiting == 0 {
                break;
            }
        }
        (!records.is_empty()).then(|| (json!({ "Records": records }), bodies))
    }
}

fn images_of(body: &str) -> Vec<String> {
    let body: Value = serde_json::from_str(body).unwrap();
    body["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| image.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_longer_than_one_invocation_ends_warm_through_the_queue() {
    // Every import fails UpstreamUnavailable for the emulator's first 6 seconds:
    // longer than the 4 tries of one invocation, shorter than the queue's.
    let (_dir, server) = emulator(json!({"upstream_outages": [{"from_s": 0, "to_s": 6}]}));
    let function = function(
        &server,
        &[("WARM_RECHECK_DELAY", "1s"), ("WARM_LAYER_WAIT", "5s")],
    )
    .await;
    let first = function
        .invoke(json!({"images": ["nginx:1.27"]}), Duration::from_secs(30))
        .await;
    let image = &first["images"][0];
    assert_eq!(image["status"], "retrying", "{first}");
    assert_eq!(image["failure_code"], "UpstreamUnavailable");
    assert_eq!(image["retry"]["attempt"], 2);

    let mut tries = 1;
    while let Some((event, bodies)) = function.receive(Duration::from_secs(20)).await {
        tries += 1;
        assert!(tries <= 9, "more tries than WARM_RECHECK_ATTEMPTS allows");
        assert_eq!(bodies.len(), 1);
        assert_eq!(images_of(&bodies[0]), ["nginx:1.27"]);
        let answer = function.invoke(event, Duration::from_secs(30)).await;
        assert_eq!(
            answer,
            json!({"batchItemFailures": []}),
            "the message is done"
        );
    }
    assert!(tries >= 2, "tried again through the queue");
    let after = function
        .invoke(json!({"images": ["nginx:1.27"]}), Duration::from_secs(30))
        .await;
    assert_eq!(after["images"][0]["status"], "unchanged", "{after}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_larger_than_one_invocation_goes_back_without_what_it_warmed() {
    // Each ECR call takes 100 ms, two at a time: one invocation of 4 s warms
    // a few of the 30 images.
    let (_dir, server) = emulator(json!({"latency_ms": 100}));
    let function = function(
        &server,
        &[
            ("WARM_LAYER_WAIT", "5s"),
            ("WARM_RECHECK_DELAY", "1s"),
            ("WARM_CONCURRENCY", "2"),
        ],
    )
    .await;
    let list: Vec<String> = [
        "1.27",
        "1.26",
        "1.27.0",
        "1.27.1",
        "1.27.2",
        "1.27.3",
        "mainline",
        "latest",
        "1.26.3",
        "1.26.0",
        "1.26.1",
        "1.26.2",
        "1.25.5",
        "stable",
        "1.27.3-alpine",
        "1.27.0-alpine",
        "1.27.1-alpine",
        "1.27.2-alpine",
        "alpine",
        "1.27.3-alpine-slim",
        "1.28.0",
    ]
    .iter()
    .map(|tag| format!("nginx:{tag}"))
    .chain(["redis:7", "redis:7.4", "alpine:3.20"].map(String::from))
    .chain(
        ["v1.8.2", "v1.7.0", "v1.8.0", "v1.8.1", "v1.9.0", "master"]
            .map(|tag| format!("quay.io/prometheus/node-exporter:{tag}")),
    )
    .collect();
    assert_eq!(list.len(), 30);
    let body = json!({ "images": list }).to_string();
    let mut event =
        json!({"Records": [{"messageId": "big", "body": body, "eventSource": "aws:sqs"}]});

    let mut left: Vec<String> = list.clone();
    left.sort();
    let mut receives = 0;
    loop {
        receives += 1;
        assert!(receives <= 20, "the list converges: {left:?} left");
        let answer = function.invoke(event, Duration::from_secs(4)).await;
        assert_eq!(
            answer,
            json!({"batchItemFailures": []}),
            "the message is done"
        );
        let Some((next, bodies)) = function.drain().await else {
            break;
        };
        let mut sent: Vec<String> = bodies.iter().flat_map(|body| images_of(body)).collect();
        sent.sort();
        assert!(
            sent.iter().all(|image| left.contains(image)),
            "only what was left goes back: {sent:?}"
        );
        assert!(sent.len() < left.len(), "each receive warms some: {sent:?}");
        left = sent;
        event = next;
    }
    assert!(receives >= 2, "more than one invocation was needed");
    let check = function
        .invoke(json!({ "images": list }), Duration::from_secs(60))
        .await;
    let statuses: Vec<&str> = check["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| image["status"].as_str().unwrap())
        .collect();
    assert!(statuses.iter().all(|s| *s == "unchanged"), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn images_over_the_pull_budget_wait_on_the_queue_for_the_window() {
    let dir = EmulatorDir::new(json!({
        "rules": [{"ecrRepositoryPrefix": "docker-hub", "upstreamRegistryUrl": "registry-1.docker.io"}],
        "upstream_pull_limits": {"registry-1.docker.io": {"limit": 100, "remaining": 11}}
    }));
    let server = MotoServer::start_emulator(&dir.config);
    let upstream = server.upstream_endpoint("registry-1.docker.io");
    let function = function(&server, &[("WARM_UPSTREAM_ENDPOINTS", upstream.as_str())]).await;
    // 11 left, 10 kept for others: one import fits.
    let answer = function
        .invoke(
            json!({"images": ["nginx:1.26", "nginx:1.25.5", "nginx:1.26.3-x"]}),
            Duration::from_secs(30),
        )
        .await;
    let images = answer["images"].as_array().unwrap();
    assert_eq!(images[0]["status"], "imported", "{answer}");
    assert_eq!(images[1]["status"], "retrying");
    assert_eq!(images[1]["failure_code"], "UpstreamPullBudget");
    assert_eq!(images[1]["retry"]["delay_s"], 900, "the longest SQS delay");
    assert_eq!(
        answer["summary"]["failed"], 1,
        "only the tag that is not upstream"
    );
    assert_eq!(images[2]["failure_code"], "ImageNotFound");
}
