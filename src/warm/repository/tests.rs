//! `tag@digest` pins against aws-smithy-mocks: pulled by tag when the cache
//! does not hold the pin under its tag, then compared with the pin.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_ecr::config::retry::RetryConfig;
use aws_sdk_ecr::operation::batch_get_image::BatchGetImageOutput;
use aws_sdk_ecr::operation::describe_images::{DescribeImagesError, DescribeImagesOutput};
use aws_sdk_ecr::types::error::{ImageNotFoundException, RepositoryNotFoundException};
use aws_sdk_ecr::types::{Image, ImageDetail, ImageFailure, ImageFailureCode, ImageIdentifier};
use aws_smithy_mocks::{mock, mock_client, MockResponse, RuleMode};

use crate::outcome::Status;
use crate::rules::Rules;
use crate::warm::manifest::tests::{digest, image_manifest, index};
use crate::warm::settings::WarmSettings;
use crate::warm::{warm, LayerMode, Report};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// nginx:1.27 upstream: an index (digest 10) of linux/amd64 (1) and linux/arm64/v8 (2).
#[derive(Default)]
struct Cache {
    /// Tag → digest in the cache.
    cached: HashMap<String, String>,
    /// The ids of each BatchGetImage call, as (tag, digest).
    asked: Vec<Vec<(Option<String>, Option<String>)>>,
}

fn manifests() -> HashMap<String, (String, &'static str)> {
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let mut manifests = HashMap::new();
    let platforms = [("linux/amd64", digest(1)), ("linux/arm64/v8", digest(2))];
    let entries: Vec<(&str, &str)> = platforms.iter().map(|(p, d)| (*p, d.as_str())).collect();
    manifests.insert(digest(10), (index(OCI_INDEX, &entries), OCI_INDEX));
    for (_, platform) in &platforms {
        let body = image_manifest(&digest(100), &[digest(101)]);
        manifests.insert(platform.clone(), (body, oci));
    }
    manifests
}

/// An ECR that imports nginx:1.27 on a pull by tag and answers digests it holds.
async fn warm_pins(cache: &Arc<Mutex<Cache>>, inputs: &[&str]) -> Report {
    let state = cache.clone();
    let describe = mock!(aws_sdk_ecr::Client::describe_images).then_compute_response(move |req| {
        let cache = state.lock().unwrap();
        if cache.cached.is_empty() {
            return MockResponse::Error(DescribeImagesError::RepositoryNotFoundException(
                RepositoryNotFoundException::builder()
                    .message("none")
                    .build(),
            ));
        }
        let mut details = Vec::new();
        for id in req.image_ids() {
            let found = id.image_tag().and_then(|tag| cache.cached.get(tag));
            let Some(digest) = found else {
                return MockResponse::Error(DescribeImagesError::ImageNotFoundException(
                    ImageNotFoundException::builder().message("none").build(),
                ));
            };
            details.push(
                ImageDetail::builder()
                    .image_digest(digest)
                    .set_image_tags(id.image_tag().map(|t| vec![t.to_string()]))
                    .build(),
            );
        }
        MockResponse::Output(
            DescribeImagesOutput::builder()
                .set_image_details(Some(details))
                .build(),
        )
    });
    let state = cache.clone();
    let batch = mock!(aws_sdk_ecr::Client::batch_get_image).then_compute_response(move |req| {
        let mut cache = state.lock().unwrap();
        let manifests = manifests();
        cache.asked.push(
            req.image_ids()
                .iter()
                .map(|id| {
                    let tag = id.image_tag().map(str::to_string);
                    (tag, id.image_digest().map(str::to_string))
                })
                .collect(),
        );
        let mut output = BatchGetImageOutput::builder();
        for id in req.image_ids() {
            let found = match (id.image_tag(), id.image_digest()) {
                (Some("1.27"), _) => Some(digest(10)),
                (None, Some(asked)) if manifests.contains_key(asked) => Some(asked.to_string()),
                _ => None,
            };
            // ECR's answer to a tag and digest that do not match, or of an uncached pin.
            let refused = match (id.image_digest(), &found) {
                (Some(asked), Some(found)) if asked != found => Some("ImageTagDoesNotMatchDigest"),
                (_, None) => Some("ImageNotFound"),
                _ => None,
            };
            if let Some(code) = refused {
                output = output.failures(
                    ImageFailure::builder()
                        .image_id(id.clone())
                        .failure_code(ImageFailureCode::from(code))
                        .failure_reason(code)
                        .build(),
                );
                continue;
            }
            let found = found.unwrap();
            if let Some(tag) = id.image_tag() {
                cache.cached.insert(tag.to_string(), found.clone());
            }
            let (body, media_type) = &manifests[&found];
            output = output.images(
                Image::builder()
                    .image_id(
                        ImageIdentifier::builder()
                            .set_image_tag(id.image_tag().map(str::to_string))
                            .image_digest(&found)
                            .build(),
                    )
                    .image_manifest(body)
                    .image_manifest_media_type(*media_type)
                    .build(),
            );
        }
        MockResponse::Output(output.build())
    });
    let ecr = mock_client!(aws_sdk_ecr, RuleMode::MatchAny, [&describe, &batch], |c| c
        .retry_config(RetryConfig::disabled()));
    let rules = Rules::parse_each(&["docker-hub=registry-1.docker.io"]).unwrap();
    let inputs: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
    let options = WarmSettings {
        layers: LayerMode::None,
        ..WarmSettings::default()
    };
    warm(&ecr, &crate::plan::plan(&inputs, &rules), &options, &|_| {}).await
}

fn tag_only() -> (Option<String>, Option<String>) {
    (Some("1.27".to_string()), None)
}

#[tokio::test]
async fn a_pin_not_cached_is_pulled_by_tag_and_warm_when_the_tag_points_at_it() {
    let cache = Arc::new(Mutex::new(Cache::default()));
    let pinned = format!("nginx:1.27@{}", digest(10));
    let report = warm_pins(&cache, &[&pinned]).await;
    let image = &report.images[0];
    assert_eq!(image.status, Status::Imported, "{image:?}");
    assert_eq!(image.digest.as_deref(), Some(digest(10).as_str()));
    assert_eq!(image.platforms.len(), 2);
    assert_eq!(cache.lock().unwrap().asked[0], [tag_only()]);
}

#[tokio::test]
async fn a_pin_of_one_platforms_manifest_warms_that_platform_alone() {
    let cache = Arc::new(Mutex::new(Cache::default()));
    let pinned = format!("nginx:1.27@{}", digest(2));
    let report = warm_pins(&cache, &[&pinned]).await;
    let image = &report.images[0];
    assert_eq!(image.status, Status::Imported, "{image:?}");
    let platforms: Vec<(Option<&str>, Option<&str>)> = image
        .platforms
        .iter()
        .map(|p| (p.platform.as_deref(), p.digest.as_deref()))
        .collect();
    assert_eq!(
        platforms,
        [(Some("linux/arm64/v8"), Some(digest(2).as_str()))]
    );
    let asked = cache.lock().unwrap().asked.clone();
    assert_eq!(asked[1], [(None, Some(digest(2)))], "only arm64's manifest");

    // Warmed again, the tag is cached at the index, not at the pin: by tag again, unchanged.
    let report = warm_pins(&cache, &[&pinned]).await;
    assert_eq!(report.images[0].status, Status::Unchanged);
}

#[tokio::test]
async fn a_pin_the_tag_no_longer_points_at_fails_and_says_the_cache_cannot_import_it() {
    let cache = Arc::new(Mutex::new(Cache::default()));
    let moved = format!("nginx:1.27@{}", digest(9));
    let report = warm_pins(&cache, &[&moved]).await;
    let image = &report.images[0];
    assert_eq!(image.status, Status::Failed);
    assert_eq!(
        image.failure_code.as_deref(),
        Some("ImageTagDoesNotMatchDigest")
    );
    assert_eq!(
        image.message.as_deref().unwrap(),
        format!(
            "tag 1.27 points at {} now, not at the pinned {}",
            digest(10),
            digest(9)
        )
    );
    let hint = image.hint.as_deref().unwrap();
    assert!(
        hint.starts_with(&format!("docker.io/library/nginx:1.27@{}", digest(9))),
        "{hint}"
    );
    assert!(
        hint.contains("can only import what a tag points at now"),
        "{hint}"
    );
    assert!(!image.retryable);
}

#[tokio::test]
async fn pins_of_one_tag_are_one_pull_of_the_tag() {
    let cache = Arc::new(Mutex::new(Cache::default()));
    let right = format!("nginx:1.27@{}", digest(10));
    let wrong = format!("nginx:1.27@{}", digest(9));
    let report = warm_pins(&cache, &[&right, &wrong]).await;
    let statuses: Vec<Status> = report.images.iter().map(|i| i.status).collect();
    assert_eq!(statuses, [Status::Imported, Status::Failed]);
    assert_eq!(cache.lock().unwrap().asked[0], [tag_only()]);
}

#[tokio::test]
async fn a_pin_the_cache_holds_under_its_tag_is_asked_with_tag_and_digest() {
    let cache = Arc::new(Mutex::new(Cache::default()));
    cache
        .lock()
        .unwrap()
        .cached
        .insert("1.27".to_string(), digest(10));
    let pinned = format!("nginx:1.27@{}", digest(10));
    let report = warm_pins(&cache, &[&pinned]).await;
    assert_eq!(report.images[0].status, Status::Unchanged);
    assert_eq!(
        cache.lock().unwrap().asked[0],
        [(Some("1.27".to_string()), Some(digest(10)))]
    );
}
