use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_smithy_mocks::{mock, mock_client, MockResponse, RuleMode};

use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};

use super::budget::deadline;
use super::*;
use super::{publish, retrying};
use crate::ecs;
use crate::outcome::Status;
use crate::plan;
use crate::testing::ecr::fake_ecr;
use crate::testing::env;
use crate::upstream::credential::Credentials;
use crate::upstream::resolver::Resolver;
use crate::upstream::tags::TagLister;
use crate::warm::layers::LayerMode;

#[test]
fn settings_have_defaults_and_read_every_variable() {
    let settings = Settings::from_env(env(&[])).unwrap();
    assert_eq!(
        (
            settings.warm.concurrency,
            settings.fanout_threshold,
            settings.message_images
        ),
        (16, 500, 50)
    );
    assert_eq!(settings.metrics_namespace, "EcrCacheWarmer");
    assert!(settings.images.is_empty() && settings.rules.is_none() && settings.queue_url.is_none());

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
            settings.warm.concurrency,
            settings.fanout_threshold,
            settings.message_images
        ),
        (4, 100, 20)
    );
    assert_eq!(settings.metrics_namespace, "Team/Warmer");

    let defaults = Settings::from_env(env(&[])).unwrap();
    assert_eq!(
        (
            defaults.warm.platforms.len(),
            defaults.warm.layers,
            defaults.warm.layer_wait,
            defaults.warm.recheck_delay,
            defaults.warm.recheck_attempts
        ),
        (
            0,
            LayerMode::Verify,
            Duration::from_secs(120),
            Duration::from_secs(60),
            8
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
    let platforms: Vec<String> = settings
        .warm
        .platforms
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
    assert_eq!(
        (
            settings.warm.layers,
            settings.warm.layer_wait,
            settings.warm.recheck_delay,
            settings.warm.recheck_attempts
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
            "from 1s to 15m, the longest delay of an SQS message",
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

/// A queue that refuses entry "0" of the first call, and records every body
/// (with its delay in seconds, when it has one, as `DELAY|body`).
fn fake_queue(bodies: Arc<Mutex<Vec<String>>>) -> aws_sdk_sqs::Client {
    crate::testing::queue::test_queue(move |call, entry| {
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
    let mut settings = Settings::from_env(env(&pairs)).unwrap();
    settings.warm.backoff = Duration::from_millis(1);
    Warmer {
        rules: settings.rules.clone().unwrap(),
        // No registry answers here: one try each, at once.
        resolver: Resolver::new(
            TagLister::new(settings.upstream_endpoints.clone()).with_retries(1, Duration::ZERO),
            Credentials::new(None),
        ),
        settings,
        ecr: fake_ecr(),
        sqs: fake_queue(bodies),
        s3: fake_bucket(),
        ecs: fake_ecs(),
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
    let describe_services = mock!(aws_sdk_ecs::Client::describe_services).then_output(move || {
        DescribeServicesOutput::builder()
            .services(
                Service::builder()
                    .service_name("web")
                    .task_definition(format!("{arn}:task-definition/web:8"))
                    .build(),
            )
            .build()
    });
    let task_definition = mock!(aws_sdk_ecs::Client::describe_task_definition).then_output(|| {
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
async fn a_schedule_sends_back_what_the_deadline_skipped() {
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
    assert_eq!(response["summary"]["retrying"], 1);
    let image = &response["images"][0];
    assert_eq!(image["status"], "retrying");
    assert_eq!(image["retry"]["attempt"], 2);
    assert_eq!(image["retry"]["last_attempt"], 9);
    assert_eq!(
        image["retry"]["delay_s"], 0,
        "a skipped image was not tried"
    );
    assert_eq!(image["retry"]["message_id"], "m-0");
    assert_eq!(
        *bodies.lock().unwrap(),
        [r#"{"images":["nginx:1.27"],"recheck":1}"#]
    );
    assert!(started.elapsed() < Duration::from_millis(200));
}

#[tokio::test]
async fn sends_that_would_pass_the_deadline_are_not_made_and_the_image_stays_skipped() {
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
    assert_eq!(response["images"][0]["retry"], Value::Null);
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
async fn pending_images_are_sent_back_with_a_delay_that_grows() {
    let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
    let warmer = warmer(
        &[("WARM_QUEUE_URL", QUEUE), ("WARM_RECHECK_DELAY", "5m")],
        bodies.clone(),
    );
    // A direct warm: the pending image goes to the queue for its second try.
    let response = invoke(&warmer, json!({"images": ["nginx:slow-1", "nginx:1.27"]})).await;
    assert_eq!(response["images"][0]["status"], "retrying");
    assert_eq!(response["images"][0]["retry"]["delay_s"], 300);
    assert_eq!(response["images"][1]["status"], "imported");
    assert_eq!(
        bodies.lock().unwrap().last().unwrap(),
        r#"300|{"images":["nginx:slow-1"],"recheck":1}"#
    );

    // Its second try is still pending: the message is done, the image sent on
    // with one more try and twice the delay; the warm images are not sent.
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
        r#"600|{"images":["nginx:slow-1"],"recheck":2}"#
    );
    // Never more than SQS's 15 minutes.
    let event = json!({"Records": [
        {"messageId": "m3", "body": "{\"images\": [\"nginx:slow-1\"], \"recheck\": 5}"}
    ]});
    invoke(&warmer, event).await;
    assert_eq!(
        bodies.lock().unwrap().last().unwrap(),
        r#"900|{"images":["nginx:slow-1"],"recheck":6}"#
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
        r#"120|{"images":["nginx:slow-1"],"recheck":2,"selectors":{"nginx:slow-1":"nginx:slow-*"}}"#,
        "the next try names the selector again"
    );
}

#[tokio::test]
async fn an_image_past_its_last_try_fails_with_its_last_reason() {
    let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
    let warmer = warmer(
        &[("WARM_QUEUE_URL", QUEUE), ("WARM_RECHECK_ATTEMPTS", "6")],
        bodies.clone(),
    );
    let sent_before = bodies.lock().unwrap().len();
    let event = json!({"Records": [
        {"messageId": "last", "body": "{\"images\": [\"nginx:slow-1\", \"nginx:busy-1\"], \"recheck\": 6}"}
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
    let images = plan::plan(
        &["nginx:slow-1".to_string(), "nginx:busy-1".to_string()],
        &warmer.rules,
    );
    let mut report = warmer
        .pipeline(&warmer.settings.warm)
        .warm(&warmer.ecr, &images, &|_| {})
        .await;
    assert_eq!(report.images[0].status, Status::Pending);
    assert_eq!(report.images[1].status, Status::Failed);
    let mut lost = publish::Lost::default();
    retrying::send_back(&warmer, &mut report, &[6, 6], None, &mut lost).await;
    let pending = &report.images[0];
    assert_eq!(pending.failure_code.as_deref(), Some("LayersNotCached"));
    assert!(pending
        .message
        .as_deref()
        .unwrap()
        .starts_with("still pending after 7 tries: 1 of 2 blobs"));
    assert!(pending.hint.as_deref().unwrap().contains("every check"));
    let throttled = &report.images[1];
    assert_eq!(
        throttled.failure_code.as_deref(),
        Some("UpstreamTooManyRequests")
    );
    assert!(throttled
        .message
        .as_deref()
        .unwrap()
        .ends_with("(after 7 tries)"));
    assert!(throttled.hint.is_some());
    assert_eq!((report.summary.failed, report.summary.retrying), (2, 0));
}

#[tokio::test]
async fn an_upstream_outage_is_retrying_through_the_queue_not_failed() {
    let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
    let warmer = warmer(&[("WARM_QUEUE_URL", QUEUE)], bodies.clone());
    for payload in [
        json!({"images": ["nginx:busy-1"]}),
        schedule(json!({"images": ["nginx:busy-1"]})),
        json!({"images": ["nginx:busy-1", "nginx:missing-1"]}),
    ] {
        let response = invoke(&warmer, payload).await;
        let image = &response["images"][0];
        assert_eq!(image["status"], "retrying", "{response}");
        assert_eq!(image["failure_code"], "UpstreamTooManyRequests");
        assert_eq!(image["retry"]["delay_s"], 60);
        assert_eq!(
            bodies.lock().unwrap().last().unwrap(),
            r#"60|{"images":["nginx:busy-1"],"recheck":1}"#
        );
        if let Some(missing) = response["images"].get(1) {
            assert_eq!(missing["status"], "failed", "a missing tag will not pass");
        }
    }
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
    let endpoints = |value: &str| Settings::from_env(env(&[("WARM_UPSTREAM_ENDPOINTS", value)]));
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
        error.starts_with("WARM_UPSTREAM_ENDPOINTS is not valid: "),
        "{error}"
    );
    // An endpoint's URL may hold a login: the start's error never shows it.
    let error = endpoints("quay.io=https://bob:s3cret@mirror.example, ghcr.io=ftp://x")
        .unwrap_err()
        .to_string();
    assert!(!error.contains("s3cret"), "{error}");
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

#[tokio::test]
async fn ecr_that_does_not_answer_at_init_stops_the_start_in_time() {
    let (endpoint, server) = crate::testing::silent_endpoint().await;
    let config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_ecr::config::SharedCredentialsProvider::new(
            aws_sdk_ecr::config::Credentials::new("a", "b", None, None, "test"),
        ))
        .build();
    let started = Instant::now();
    let settings = Settings::from_env(env(&[])).unwrap();
    let error = Warmer::new(settings, &config)
        .await
        .err()
        .expect("no rules, no start")
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert!(
        error.starts_with(
            "could not read the pull-through cache rules from ECR: no answer within 3s"
        ),
        "{error}"
    );

    // With the rules given, a registry that does not say whose it is only
    // narrows the check of private references to the Region.
    let settings =
        Settings::from_env(env(&[("WARM_RULES", "docker-hub=registry-1.docker.io")])).unwrap();
    let started = Instant::now();
    assert!(Warmer::new(settings, &config).await.is_ok());
    assert!(started.elapsed() < Duration::from_secs(6));
    server.abort();
}
