//! Statuses, failures and their hints, and the JSON document.

use super::*;

#[tokio::test]
async fn says_imported_refreshed_unchanged_failed_and_keeps_input_order() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    {
        let mut r = registry.lock().unwrap();
        r.cache(NGINX, "1.26", digest(1));
        r.cache(NGINX, "1.27", digest(2));
        r.upstream(NGINX, "1.26", Ok(digest(1)));
        r.upstream(NGINX, "1.27", Ok(digest(3)));
        r.upstream(NGINX, "1.28", Ok(digest(4)));
        r.upstream("docker-hub/library/redis", "7", Ok(digest(5)));
    }
    let report = run(
        &registry,
        &[
            "nginx:1.26",
            "nginx:1.27",
            "nginx:1.28",
            "nginx:0.0-none",
            "redis:7",
            "Bad/Name",
            "gcr.io/x/y:1",
        ],
        &fast(),
    )
    .await;
    let statuses: Vec<Status> = report.images.iter().map(|i| i.status).collect();
    use Status::*;
    assert_eq!(
        statuses,
        [Unchanged, Refreshed, Imported, Failed, Imported, Failed, Failed]
    );
    let refreshed = &report.images[1];
    assert_eq!(
        refreshed.previous_digest.as_deref(),
        Some(digest(2).as_str())
    );
    assert_eq!(refreshed.digest.as_deref(), Some(digest(3).as_str()));
    assert_eq!(refreshed.cache_repository.as_deref(), Some(NGINX));
    assert_eq!(report.images[0].previous_digest, None);
    let missing = &report.images[3];
    assert_eq!(missing.failure_code.as_deref(), Some("ImageNotFound"));
    assert!(missing
        .hint
        .as_deref()
        .unwrap()
        .contains("docker.io/library/nginx:0.0-none was not found upstream"));
    assert_eq!(
        report.images[5].failure_code.as_deref(),
        Some("InvalidReference")
    );
    assert_eq!(
        report.images[6].failure_code.as_deref(),
        Some("NoMatchingRule")
    );
    assert!(report.images[6]
        .message
        .as_deref()
        .unwrap()
        .contains("gcr.io"));
    assert_eq!(
        report.summary,
        Summary {
            total: 7,
            imported: 2,
            refreshed: 1,
            unchanged: 1,
            failed: 3,
            skipped: 0,
            pending: 0,
            retrying: 0,
            duration_ms: report.summary.duration_ms,
            // Four images pulled, with a config and two layers each.
            layers: LayerCounts {
                total: 12,
                cached: 12,
                pending: 0,
                failed: 0
            },
        }
    );
    assert!(!report.all_warm());
}

#[tokio::test]
async fn an_invalid_reference_fails_with_its_reason() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    let report = run(&registry, &["nginx:-bad"], &fast()).await;
    let image = &report.images[0];
    assert_eq!(
        (image.status, image.failure_code.as_deref()),
        (Status::Failed, Some("InvalidReference"))
    );
    assert!(image.message.as_deref().unwrap().contains("invalid tag"));
    assert!(registry.lock().unwrap().batch_calls.is_empty());
}

#[tokio::test]
async fn every_failure_code_gets_its_hint() {
    let codes = [
        ("UpstreamAccessDenied", "ecr-pullthroughcache/"),
        ("UpstreamTooManyRequests", "100 manifest pulls per 6 hours"),
        ("UpstreamUnavailable", "next run tries again"),
        ("KmsError", "KMS key"),
        ("ImageInaccessible", "update-image-storage-class"),
        ("ImageTagDoesNotMatchDigest", "pinned digest"),
        ("InvalidImageTag", ""),
        ("SomethingNew", ""),
    ];
    let registry = Arc::new(Mutex::new(Registry::default()));
    let inputs: Vec<String> = codes
        .iter()
        .enumerate()
        .map(|(i, _)| format!("nginx:t{i}"))
        .collect();
    for (i, (code, _)) in codes.iter().enumerate() {
        registry
            .lock()
            .unwrap()
            .upstream(NGINX, &format!("t{i}"), Err(code));
    }
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let report = run(&registry, &inputs, &fast()).await;
    for (image, (code, hint)) in report.images.iter().zip(codes) {
        assert_eq!(image.status, Status::Failed);
        assert_eq!(image.failure_code.as_deref(), Some(code));
        assert!(
            image.message.as_deref().unwrap().starts_with(code),
            "ECR's message is kept: {image:?}"
        );
        match hint {
            "" => assert_eq!(image.hint, None, "{code}"),
            hint => assert!(
                image.hint.as_deref().unwrap().contains(hint),
                "{code}: {:?}",
                image.hint
            ),
        }
    }
    // Retryable codes were asked again, the others once: 1 call + 3 retries of 2 ids.
    assert_eq!(registry.lock().unwrap().batch_calls, [8, 2, 2, 2]);
}

#[tokio::test]
async fn missing_repository_points_at_the_registry_policy() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    registry.lock().unwrap().denied.insert(NGINX.to_string());
    let report = run(&registry, &["nginx:1.27"], &fast()).await;
    let image = &report.images[0];
    assert_eq!(
        image.failure_code.as_deref(),
        Some("RepositoryNotFoundException")
    );
    assert!(image.message.as_deref().unwrap().contains("does not exist"));
    let hint = image.hint.as_deref().unwrap();
    assert!(
        hint.contains("registry permissions policy") && hint.contains("ecr:CreateRepository"),
        "{hint}"
    );
    assert!(hint.contains("repository/docker-hub/*"), "{hint}");
}

#[tokio::test]
async fn whole_call_exceptions_fail_every_image_with_a_hint() {
    // The error, its code, a part of its hint, and how many calls it takes.
    type Case = (
        fn() -> BatchGetImageError,
        &'static str,
        &'static str,
        usize,
    );
    let cases: Vec<Case> = vec![
        (
            || {
                BatchGetImageError::UnableToGetUpstreamImageException(
                    UnableToGetUpstreamImageException::builder()
                        .message("bad credentials")
                        .build(),
                )
            },
            "UnableToGetUpstreamImageException",
            "library/",
            1,
        ),
        (
            || {
                BatchGetImageError::ServerException(
                    ServerException::builder().message("boom").build(),
                )
            },
            "ServerException",
            "next run tries again",
            4,
        ),
        (
            || {
                BatchGetImageError::LimitExceededException(
                    LimitExceededException::builder().message("slow").build(),
                )
            },
            "LimitExceededException",
            "Service Quotas",
            1,
        ),
        (
            || BatchGetImageError::generic(service_error("AccessDeniedException")),
            "AccessDeniedException",
            "ecr:BatchGetImage",
            1,
        ),
    ];
    for (error, code, hint, calls) in cases {
        let describe = mock!(aws_sdk_ecr::Client::describe_images).then_error(|| {
            DescribeImagesError::RepositoryNotFoundException(
                RepositoryNotFoundException::builder().build(),
            )
        });
        let batch = mock!(aws_sdk_ecr::Client::batch_get_image).then_error(error);
        let ecr = mock_client!(aws_sdk_ecr, RuleMode::MatchAny, [&describe, &batch], |c| c
            .retry_config(RetryConfig::disabled()));
        let report = warm(&ecr, &planned(&["nginx:1", "nginx:2"]), &fast(), &|_| {}).await;
        for image in &report.images {
            assert_eq!(image.failure_code.as_deref(), Some(code));
            assert!(
                image
                    .message
                    .as_deref()
                    .unwrap()
                    .starts_with("BatchGetImage: "),
                "{image:?}"
            );
            assert!(
                image.hint.as_deref().unwrap().contains(hint),
                "{code}: {:?}",
                image.hint
            );
        }
        assert_eq!(batch.num_calls(), calls, "{code}");
    }
}

#[tokio::test]
async fn a_tag_and_digest_match_only_their_own_answer() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    registry.lock().unwrap().upstream(NGINX, "1", Ok(digest(1)));
    let right = format!("nginx:1@{}", digest(1));
    let wrong = format!("nginx:1@{}", digest(2));
    let report = run(&registry, &[&right, &wrong], &fast()).await;
    assert_eq!(report.images[0].status, Status::Imported);
    assert_eq!(report.images[0].digest.as_deref(), Some(digest(1).as_str()));
    assert_eq!(report.images[1].status, Status::Failed);
    assert_eq!(
        report.images[1].failure_code.as_deref(),
        Some("ImageTagDoesNotMatchDigest")
    );
}

#[tokio::test]
async fn the_json_document_has_platforms_and_layer_counts() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    multi_arch(&mut registry.lock().unwrap(), OCI_INDEX, "1.27", 100);
    let report = run(&registry, &["nginx:1.27"], &fast()).await;
    let json = serde_json::to_value(&report).unwrap();
    let image = &json["images"][0];
    for field in [
        "input",
        "selector",
        "source",
        "cache_repository",
        "tag",
        "digest",
        "status",
        "previous_digest",
        "failure_code",
        "message",
        "hint",
        "platforms",
    ] {
        assert!(image.get(field).is_some(), "{field} in {image}");
    }
    assert_eq!(
        image["platforms"][1],
        serde_json::json!({"platform": "linux/arm64/v8", "digest": digest(102), "status": "imported",
                           "layers": {"total": 3, "cached": 3, "pending": 0, "failed": 0}})
    );
    for field in [
        "total",
        "imported",
        "refreshed",
        "unchanged",
        "failed",
        "skipped",
        "pending",
        "duration_ms",
        "layers",
    ] {
        assert!(json["summary"].get(field).is_some(), "{field}");
    }
}
