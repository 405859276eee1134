//! The platforms of a multi-arch index.

use super::*;

#[tokio::test]
async fn every_runnable_platform_of_an_index_is_warmed_with_its_layers() {
    for media_type in [OCI_INDEX, DOCKER_LIST] {
        let registry = Arc::new(Mutex::new(Registry::default()));
        let [amd64, arm64] = multi_arch(&mut registry.lock().unwrap(), media_type, "1.27", 100);
        let report = run(&registry, &["nginx:1.27"], &fast()).await;
        let image = &report.images[0];
        assert_eq!(image.status, Status::Imported, "{media_type}: {image:?}");
        type Row<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Status,
            Option<LayerCounts>,
        );
        let platforms: Vec<Row> = image
            .platforms
            .iter()
            .map(|p| {
                (
                    p.platform.as_deref(),
                    p.digest.as_deref(),
                    p.status,
                    p.layers,
                )
            })
            .collect();
        let three_cached = Some(LayerCounts {
            total: 3,
            cached: 3,
            pending: 0,
            failed: 0,
        });
        assert_eq!(
            platforms,
            [
                (
                    Some("linux/amd64"),
                    Some(amd64.as_str()),
                    Status::Imported,
                    three_cached
                ),
                (
                    Some("linux/arm64/v8"),
                    Some(arm64.as_str()),
                    Status::Imported,
                    three_cached
                ),
            ]
        );
        let registry = registry.lock().unwrap();
        // The tag, then both platform manifests in one call; never the attestation.
        assert_eq!(
            registry.batch_ids,
            [vec!["1.27".to_string()], vec![amd64, arm64]]
        );
        // Two configs, two app layers and the shared base layer, each asked once.
        assert_eq!(registry.layer_calls.len(), 5);
        assert_eq!(
            report.summary.layers,
            LayerCounts {
                total: 5,
                cached: 5,
                pending: 0,
                failed: 0
            }
        );
    }
}

#[tokio::test]
async fn a_wanted_platform_the_index_lacks_fails_the_image_and_names_what_it_has() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    multi_arch(&mut registry.lock().unwrap(), OCI_INDEX, "1.27", 100);
    let options = WarmSettings {
        platforms: vec![
            "linux/arm64".parse().unwrap(),
            "linux/s390x".parse().unwrap(),
        ],
        ..fast()
    };
    let report = run(&registry, &["nginx:1.27"], &options).await;
    let image = &report.images[0];
    assert_eq!(image.status, Status::Failed);
    assert_eq!(image.failure_code.as_deref(), Some("PlatformNotFound"));
    assert_eq!(
        image.message.as_deref(),
        Some("linux/s390x: the image index has no linux/s390x manifest; it has linux/amd64, linux/arm64/v8")
    );
    assert!(image.hint.as_deref().unwrap().contains("--platform"));
    let statuses: Vec<(Option<&str>, Status)> = image
        .platforms
        .iter()
        .map(|p| (p.platform.as_deref(), p.status))
        .collect();
    assert_eq!(
        statuses,
        [
            (Some("linux/arm64/v8"), Status::Imported),
            (Some("linux/s390x"), Status::Failed)
        ]
    );
    // Only the wanted platform's blobs were asked for.
    assert_eq!(registry.lock().unwrap().layer_calls.len(), 3);
}

#[tokio::test]
async fn a_blob_shared_by_platforms_and_tags_is_asked_once() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    {
        let mut r = registry.lock().unwrap();
        multi_arch(&mut r, OCI_INDEX, "1.27", 100);
        multi_arch(&mut r, DOCKER_LIST, "1.27-alpine", 200);
    }
    let report = run(
        &registry,
        &["nginx:1.27", "nginx:1.27-alpine", "nginx:1.27"],
        &fast(),
    )
    .await;
    assert!(
        report.images.iter().all(|i| i.status == Status::Imported),
        "{:?}",
        report.images
    );
    assert_eq!(layer_calls_for(&registry, &blob("base")), 1);
    // 4 configs, 4 app layers, 1 base layer.
    assert_eq!(registry.lock().unwrap().layer_calls.len(), 9);
    assert_eq!(report.summary.layers.total, 9);
}
