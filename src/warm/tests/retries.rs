//! Throttling, transient failures, batches, deadlines, progress and the rate cap.

use super::*;

#[tokio::test]
async fn throttling_is_retried_until_it_succeeds() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    {
        let mut r = registry.lock().unwrap();
        r.upstream(NGINX, "1.27", Ok(digest(1)));
        r.throttle_calls = 2;
    }
    let report = run(&registry, &["nginx:1.27"], &fast()).await;
    assert_eq!(report.images[0].status, Status::Imported);
    assert_eq!(registry.lock().unwrap().batch_calls.len(), 3);
}

#[tokio::test]
async fn throttling_does_not_spend_the_attempts_of_an_image() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    {
        let mut r = registry.lock().unwrap();
        r.upstream(NGINX, "1.27", Ok(digest(1)));
        r.throttle_calls = 30;
    }
    let report = run(&registry, &["nginx:1.27"], &fast()).await;
    assert_eq!(report.images[0].status, Status::Imported);
    assert_eq!(registry.lock().unwrap().batch_calls.len(), 31);
}

#[tokio::test]
async fn throttling_that_never_ends_fails_after_the_attempt_limit() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    registry.lock().unwrap().throttle_calls = 1_000;
    let report = run(&registry, &["nginx:1.27"], &fast()).await;
    let image = &report.images[0];
    assert_eq!(image.failure_code.as_deref(), Some("ThrottlingException"));
    assert!(image.retryable);
    // Each of the 4 attempts is made again while throttled, up to a bound.
    let per_attempt = 1 + call::THROTTLED_RETRIES as usize;
    assert_eq!(registry.lock().unwrap().batch_calls.len(), 4 * per_attempt);
}

#[tokio::test]
async fn transient_upstream_failures_are_asked_again_alone() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    {
        let mut r = registry.lock().unwrap();
        r.upstream(NGINX, "1", Ok(digest(1)));
        r.upstream(NGINX, "2", Ok(digest(2)));
        r.upstream(NGINX, "3", Ok(digest(3)));
        r.unavailable_answers = 1;
    }
    let report = run(&registry, &["nginx:1", "nginx:2", "nginx:3"], &fast()).await;
    assert!(
        report.images.iter().all(|i| i.status == Status::Imported),
        "{:?}",
        report.images
    );
    assert_eq!(registry.lock().unwrap().batch_calls, [3, 1]);
}

#[tokio::test]
async fn a_batch_where_some_ids_fail() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    {
        let mut r = registry.lock().unwrap();
        r.cache(NGINX, "1", digest(1));
        r.upstream(NGINX, "1", Ok(digest(1)));
        r.upstream(NGINX, "3", Ok(digest(3)));
    }
    let report = run(
        &registry,
        &["nginx:1", "nginx:2", "nginx:3", "nginx:4"],
        &fast(),
    )
    .await;
    let statuses: Vec<Status> = report.images.iter().map(|i| i.status).collect();
    assert_eq!(
        statuses,
        [
            Status::Unchanged,
            Status::Failed,
            Status::Imported,
            Status::Failed
        ]
    );
    assert_eq!(registry.lock().unwrap().batch_calls, [4]);
}

#[tokio::test]
async fn two_hundred_fifty_tags_of_one_repository_take_three_calls() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    let inputs: Vec<String> = (0..250).map(|i| format!("nginx:v{i}")).collect();
    for i in 0..250 {
        registry
            .lock()
            .unwrap()
            .upstream(NGINX, &format!("v{i}"), Ok(digest(i)));
    }
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let report = run(&registry, &inputs, &fast()).await;
    assert_eq!(report.summary.imported, 250);
    assert_eq!(registry.lock().unwrap().batch_calls, [100, 100, 50]);
    // The repository does not exist yet: one DescribeImages call says so for all.
    assert_eq!(registry.lock().unwrap().describe_calls, 1);
}

#[tokio::test]
async fn the_same_image_twice_is_pulled_once_and_reported_twice() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    registry
        .lock()
        .unwrap()
        .upstream(NGINX, "latest", Ok(digest(7)));
    let report = run(
        &registry,
        &["nginx", "docker.io/library/nginx:latest"],
        &fast(),
    )
    .await;
    assert_eq!(report.images.len(), 2);
    assert!(report
        .images
        .iter()
        .all(|i| i.status == Status::Imported && i.tag.as_deref() == Some("latest")));
    assert_eq!(registry.lock().unwrap().batch_calls, [1]);
}

#[tokio::test]
async fn an_uncached_digest_says_to_warm_a_tag_first() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    registry.lock().unwrap().cache(NGINX, "1", digest(1));
    let pinned = format!("nginx@{}", digest(1));
    let unknown = format!("nginx@{}", digest(9));
    let report = run(&registry, &[&pinned, &unknown], &fast()).await;
    assert_eq!(report.images[0].status, Status::Unchanged);
    let image = &report.images[1];
    assert_eq!(image.status, Status::Failed);
    assert!(
        image
            .hint
            .as_deref()
            .unwrap()
            .contains("cannot fill the cache from a pull by digest"),
        "{image:?}"
    );
    // The batch failed for the missing digest; one listing told which it was.
    assert_eq!(registry.lock().unwrap().describe_calls, 2);
}

#[tokio::test]
async fn the_deadline_skips_what_was_not_attempted() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    registry.lock().unwrap().upstream(NGINX, "1", Ok(digest(1)));
    let options = WarmSettings {
        deadline: Some(Instant::now()),
        ..fast()
    };
    let report = run(&registry, &["nginx:1", "quay.io/a/b:1", "Bad"], &options).await;
    let statuses: Vec<Status> = report.images.iter().map(|i| i.status).collect();
    assert_eq!(statuses, [Status::Skipped, Status::Skipped, Status::Failed]);
    assert!(report.images[0]
        .message
        .as_deref()
        .unwrap()
        .contains("deadline"));
    assert!(report.images[0].retryable);
    assert_eq!(report.summary.skipped, 2);
    assert!(registry.lock().unwrap().batch_calls.is_empty());
}

#[tokio::test]
async fn a_deadline_during_backoff_stops_retrying() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    registry.lock().unwrap().throttle_calls = 100;
    let options = WarmSettings {
        deadline: Some(Instant::now() + Duration::from_millis(300)),
        backoff: Duration::from_secs(1),
        ..WarmSettings::default()
    };
    let started = Instant::now();
    let report = run(&registry, &["nginx:1"], &options).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        report.images[0].failure_code.as_deref(),
        Some("ThrottlingException")
    );
    // One attempt, made again while throttled; no second attempt.
    assert_eq!(
        registry.lock().unwrap().batch_calls.len(),
        1 + call::THROTTLED_RETRIES as usize
    );
}

#[tokio::test]
async fn progress_counts_up_to_every_input() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    registry.lock().unwrap().upstream(NGINX, "1", Ok(digest(1)));
    let seen = Mutex::new(Vec::new());
    let (ecr, _, _) = mock_ecr(&registry);
    warm(
        &ecr,
        &planned(&["nginx:1", "Bad", "quay.io/a/b:1"]),
        &fast(),
        &|n| seen.lock().unwrap().push(n),
    )
    .await;
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.first(), Some(&1));
    assert_eq!(seen.last(), Some(&3));
}

/// An ECR endpoint that says every repository is new, and never answers BatchGetImage.
async fn ecr_that_hangs_on_pulls() -> (aws_sdk_ecr::Client, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = vec![0u8; 64 * 1024];
            let n = stream.read(&mut request).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&request[..n]).to_lowercase();
            if request.contains("describeimages") {
                let body = r#"{"__type":"RepositoryNotFoundException","message":"no repository"}"#;
                let answer = format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
            held.push(stream);
        }
    });
    let config = aws_sdk_ecr::Config::builder()
        .behavior_version(aws_sdk_ecr::config::BehaviorVersion::latest())
        .region(aws_sdk_ecr::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_ecr::config::Credentials::new(
            "a", "b", None, None, "test",
        ))
        .retry_config(RetryConfig::disabled())
        .build();
    (aws_sdk_ecr::Client::from_conf(config), server)
}

#[tokio::test]
async fn a_pull_cut_at_the_deadline_says_it_was_attempted() {
    let (ecr, server) = ecr_that_hangs_on_pulls().await;
    let options = WarmSettings {
        deadline: Some(Instant::now() + Duration::from_millis(500)),
        ..fast()
    };
    let started = Instant::now();
    let report = warm(&ecr, &planned(&["nginx:1.27"]), &options, &|_| {}).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let image = &report.images[0];
    assert_eq!(image.status, Status::Skipped);
    assert!(image.retryable);
    let message = image.message.as_deref().unwrap();
    assert!(
        message.starts_with("attempted, but the deadline cut the call"),
        "{message}"
    );
    server.abort();
}

#[tokio::test]
async fn the_rate_cap_bounds_the_calls_made() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    let inputs: Vec<String> = (0..50).map(|i| format!("team/app{i}:1")).collect();
    for i in 0..50 {
        registry
            .lock()
            .unwrap()
            .upstream(&format!("docker-hub/team/app{i}"), "1", Ok(digest(i)));
    }
    let options = WarmSettings {
        max_tps: std::num::NonZeroU32::new(10),
        deadline: Some(Instant::now() + Duration::from_millis(500)),
        layers: LayerMode::None,
        ..fast()
    };
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let report = run(&registry, &inputs, &options).await;
    let registry = registry.lock().unwrap();
    let calls = registry.describe_calls + registry.batch_calls.len();
    // 10 calls per second for half a second, and the first one at once.
    assert!(
        (1..=7).contains(&calls),
        "{calls} calls in 0.5 s at 10 per second"
    );
    assert_eq!(report.images.len(), 50);
    assert!(report.summary.skipped > 40);
}
