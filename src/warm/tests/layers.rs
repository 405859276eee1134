//! Blobs: asked for, judged by where their URL points, waited for.

use super::*;

#[tokio::test]
async fn pending_blobs_are_asked_again_until_they_are_on_ecr_storage() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    let [amd64, _] = {
        let mut r = registry.lock().unwrap();
        let platforms = multi_arch(&mut r, OCI_INDEX, "1.27", 100);
        r.replies(
            &blob("base"),
            &[
                LayerReply::Url(UPSTREAM_URL),
                LayerReply::Error("LayersNotFoundException"),
            ],
        );
        platforms
    };
    let report = run(&registry, &["nginx:1.27"], &fast()).await;
    assert_eq!(
        report.images[0].status,
        Status::Imported,
        "{:?}",
        report.images[0]
    );
    assert_eq!(layer_calls_for(&registry, &blob("base")), 3);
    assert_eq!(layer_calls_for(&registry, &blob("100/amd64/app")), 1);
    assert_eq!(
        report.images[0].platforms[0].digest.as_deref(),
        Some(amd64.as_str())
    );
}

#[tokio::test]
async fn blobs_still_pending_after_the_layer_wait_leave_the_image_pending() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    {
        let mut r = registry.lock().unwrap();
        multi_arch(&mut r, OCI_INDEX, "1.27", 100);
        r.replies(
            &blob("100/arm64/app"),
            &[LayerReply::Url(UPSTREAM_URL); 1000],
        );
    }
    let options = WarmSettings {
        layer_wait: Duration::from_millis(100),
        ..fast()
    };
    let report = run(&registry, &["nginx:1.27"], &options).await;
    let image = &report.images[0];
    assert_eq!(image.status, Status::Pending);
    assert!(image.retryable);
    let message = image.message.as_deref().unwrap();
    assert!(
        message.starts_with("1 of 6 blobs are not on ECR's layer storage")
            && message.contains(&blob("100/arm64/app"))
            && message.contains("production.cloudflare.docker.com"),
        "{message}"
    );
    assert!(image.hint.as_deref().unwrap().contains("--layer-wait"));
    let statuses: Vec<Status> = image.platforms.iter().map(|p| p.status).collect();
    assert_eq!(statuses, [Status::Imported, Status::Pending]);
    assert_eq!(
        image.platforms[1].layers,
        Some(LayerCounts {
            total: 3,
            cached: 2,
            pending: 1,
            failed: 0
        })
    );
    assert_eq!(report.summary.pending, 1);
    assert_eq!(report.summary.layers.pending, 1);
    assert!(!report.all_warm());
    assert!(
        layer_calls_for(&registry, &blob("100/arm64/app")) > 2,
        "asked again while waiting"
    );
}

#[tokio::test]
async fn the_deadline_cuts_a_layer_wait_short() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    {
        let mut r = registry.lock().unwrap();
        r.upstream(NGINX, "1.27", Ok(digest(1)));
        r.replies(
            &blob(&format!("{}/1", digest(1))),
            &[LayerReply::Url(UPSTREAM_URL); 1000],
        );
    }
    let options = WarmSettings {
        deadline: Some(Instant::now() + Duration::from_millis(300)),
        layer_wait: Duration::from_secs(600),
        backoff: Duration::from_millis(20),
        ..WarmSettings::default()
    };
    let started = Instant::now();
    let report = run(&registry, &["nginx:1.27"], &options).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.images[0].status, Status::Pending);
}

#[tokio::test]
async fn a_refreshed_tag_whose_new_layer_is_pending_is_not_called_refreshed() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    {
        let mut r = registry.lock().unwrap();
        r.cache(NGINX, "1.27", digest(1));
        r.upstream(NGINX, "1.27", Ok(digest(2)));
        r.replies(
            &blob(&format!("{}/2", digest(2))),
            &[LayerReply::Url(UPSTREAM_URL); 1000],
        );
    }
    let options = WarmSettings {
        layer_wait: Duration::from_millis(50),
        ..fast()
    };
    let report = run(&registry, &["nginx:1.27"], &options).await;
    let image = &report.images[0];
    assert_eq!(image.status, Status::Pending);
    assert_eq!(image.previous_digest.as_deref(), Some(digest(1).as_str()));
    assert_eq!(image.digest.as_deref(), Some(digest(2).as_str()));
    assert_eq!(
        image.platforms[0].platform, None,
        "a single manifest has no platform of its own"
    );
    assert_eq!(image.platforms[0].status, Status::Pending);
}

#[tokio::test]
async fn each_layer_error_fails_the_image_with_a_hint() {
    let cases = [
        (
            "LayerInaccessibleException",
            1,
            "foreign or non-distributable",
        ),
        (
            "UnableToGetUpstreamLayerException",
            4,
            "Secrets Manager credential",
        ),
        ("RepositoryNotFoundException", 1, ""),
    ];
    for (code, calls, hint) in cases {
        let registry = Arc::new(Mutex::new(Registry::default()));
        let layer = blob(&format!("{}/1", digest(1)));
        {
            let mut r = registry.lock().unwrap();
            r.upstream(NGINX, "1.27", Ok(digest(1)));
            r.replies(&layer, &[LayerReply::Error(code); 10]);
        }
        let report = run(&registry, &["nginx:1.27"], &fast()).await;
        let image = &report.images[0];
        assert_eq!(image.status, Status::Failed, "{code}");
        assert_eq!(image.failure_code.as_deref(), Some(code));
        let message = image.message.as_deref().unwrap();
        assert!(
            message.contains(&layer) && message.contains("GetDownloadUrlForLayer"),
            "{message}"
        );
        match hint {
            "" => {}
            hint => assert!(
                image.hint.as_deref().unwrap().contains(hint),
                "{code}: {:?}",
                image.hint
            ),
        }
        assert_eq!(layer_calls_for(&registry, &layer), calls, "{code}");
        assert_eq!(image.platforms[0].layers.unwrap().failed, 1);
        assert_eq!(report.summary.layers.failed, 1);
    }
}

#[tokio::test]
async fn an_upstream_layer_error_that_passes_is_retried_away() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    let layer = blob(&format!("{}/1", digest(1)));
    {
        let mut r = registry.lock().unwrap();
        r.upstream(NGINX, "1.27", Ok(digest(1)));
        r.replies(
            &layer,
            &[LayerReply::Error("UnableToGetUpstreamLayerException")],
        );
    }
    let report = run(&registry, &["nginx:1.27"], &fast()).await;
    assert_eq!(report.images[0].status, Status::Imported);
    assert_eq!(layer_calls_for(&registry, &layer), 2);
}

#[tokio::test]
async fn layers_none_asks_for_no_blob() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    let [amd64, arm64] = multi_arch(&mut registry.lock().unwrap(), OCI_INDEX, "1.27", 100);
    let options = WarmSettings {
        layers: LayerMode::None,
        ..fast()
    };
    let report = run(&registry, &["nginx:1.27"], &options).await;
    let image = &report.images[0];
    assert_eq!(image.status, Status::Imported);
    assert!(image.platforms.iter().all(|p| p.layers.is_none()));
    assert_eq!(
        image.platforms.len(),
        2,
        "platform manifests are still pulled"
    );
    let registry = registry.lock().unwrap();
    assert!(registry.layer_calls.is_empty());
    assert_eq!(registry.batch_ids[1], [amd64, arm64]);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["images"][0]["platforms"][0]["layers"],
        serde_json::Value::Null
    );
    assert_eq!(
        json["summary"]["layers"],
        serde_json::json!({"total": 0, "cached": 0, "pending": 0, "failed": 0})
    );
}

#[tokio::test]
async fn layers_request_asks_for_every_blob_without_judging_urls() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    {
        let mut r = registry.lock().unwrap();
        multi_arch(&mut r, OCI_INDEX, "1.27", 100);
        r.replies(&blob("base"), &[LayerReply::Url(UPSTREAM_URL)]);
        r.upstream(NGINX, "1.26", Ok(digest(1)));
        r.replies(
            &blob(&format!("{}/1", digest(1))),
            &[LayerReply::Error("LayersNotFoundException")],
        );
    }
    let options = WarmSettings {
        layers: LayerMode::Request,
        ..fast()
    };
    let report = run(&registry, &["nginx:1.27", "nginx:1.26"], &options).await;
    assert_eq!(
        report.images[0].status,
        Status::Imported,
        "{:?}",
        report.images[0]
    );
    assert_eq!(
        layer_calls_for(&registry, &blob("base")),
        1,
        "not asked again"
    );
    assert_eq!(report.images[1].status, Status::Failed);
    assert_eq!(
        report.images[1].failure_code.as_deref(),
        Some("LayersNotFoundException")
    );
}
