//! The engine against aws-smithy-mocks: a registry that answers like ECR.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecr::config::retry::RetryConfig;
use aws_sdk_ecr::error::ErrorMetadata;
use aws_sdk_ecr::operation::batch_get_image::{BatchGetImageError, BatchGetImageOutput};
use aws_sdk_ecr::operation::describe_images::{DescribeImagesError, DescribeImagesOutput};
use aws_sdk_ecr::operation::get_download_url_for_layer::{
    GetDownloadUrlForLayerError, GetDownloadUrlForLayerOutput,
};
use aws_sdk_ecr::types::error::{
    ImageNotFoundException, LayerInaccessibleException, LayersNotFoundException,
    LimitExceededException, RepositoryNotFoundException, ServerException,
    UnableToGetUpstreamImageException, UnableToGetUpstreamLayerException,
};
use aws_sdk_ecr::types::{Image, ImageDetail, ImageFailure, ImageFailureCode, ImageIdentifier};
use aws_smithy_mocks::{mock, mock_client, MockResponse, Rule, RuleMode};
use sha2::{Digest as _, Sha256};

use super::manifest::tests::{image_manifest, index};
use super::repository::IDS_PER_CALL;
use super::*;
use crate::rules::Rules;

fn digest(n: u32) -> String {
    format!("sha256:{n:064x}")
}

/// A blob digest derived from a name, for manifests built in tests.
fn blob(name: &str) -> String {
    format!("sha256:{:x}", Sha256::digest(name.as_bytes()))
}

const STARPORT: &str = "https://prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com/x";
const UPSTREAM_URL: &str = "https://production.cloudflare.docker.com/registry-v2/blobs/x";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// What GetDownloadUrlForLayer answers for a blob, one call after the other.
#[derive(Debug, Clone, Copy)]
enum LayerReply {
    Url(&'static str),
    Error(&'static str),
}

/// A registry as ECR shows it: what is cached, what upstream holds, and
/// the answers it gives.
#[derive(Default)]
struct Registry {
    /// (repository, tag) → digest in the cache.
    cached: HashMap<(String, String), String>,
    /// (repository, tag) → digest upstream, or a failure code.
    upstream: HashMap<(String, String), Result<String, &'static str>>,
    /// digest → manifest; digests not here have a manifest made from them
    /// (a config and two layers of their own).
    manifests: HashMap<String, String>,
    /// Repositories whose first pull ECR refuses as "does not exist".
    denied: HashSet<String>,
    /// Whole BatchGetImage calls to answer with ThrottlingException first.
    throttle_calls: usize,
    /// Per-id UpstreamUnavailable answers to give first.
    unavailable_answers: usize,
    /// Replies per blob digest, used up in order; then the blob is on ECR's storage.
    layer_replies: HashMap<String, VecDeque<LayerReply>>,
    batch_calls: Vec<usize>,
    batch_ids: Vec<Vec<String>>,
    describe_calls: usize,
    layer_calls: Vec<(String, String)>,
}

impl Registry {
    fn cache(&mut self, repository: &str, tag: &str, digest: String) {
        self.cached.insert((repository.into(), tag.into()), digest);
    }
    fn upstream(&mut self, repository: &str, tag: &str, answer: Result<String, &'static str>) {
        self.upstream
            .insert((repository.into(), tag.into()), answer);
    }
    fn manifest(&self, digest: &str) -> String {
        self.manifests.get(digest).cloned().unwrap_or_else(|| {
            image_manifest(
                &blob(&format!("{digest}/config")),
                &[blob(&format!("{digest}/1")), blob(&format!("{digest}/2"))],
            )
        })
    }
    fn replies(&mut self, blob: &str, replies: &[LayerReply]) {
        self.layer_replies
            .insert(blob.to_string(), replies.iter().copied().collect());
    }
    fn cached_digest(&self, repository: &str, id: &ImageIdentifier) -> Option<String> {
        match id.image_tag() {
            Some(tag) => self
                .cached
                .get(&(repository.to_string(), tag.to_string()))
                .cloned(),
            None => self
                .cached
                .iter()
                .find(|((repo, _), d)| repo == repository && Some(d.as_str()) == id.image_digest())
                .map(|(_, d)| d.clone())
                .or_else(|| {
                    // The manifests an index names are cached with it.
                    let digest = id.image_digest()?;
                    self.manifests
                        .contains_key(digest)
                        .then(|| digest.to_string())
                }),
        }
    }
}

fn service_error(code: &str) -> ErrorMetadata {
    ErrorMetadata::builder()
        .code(code)
        .message(format!("{code} from ECR"))
        .build()
}

fn layer_error(code: &str) -> GetDownloadUrlForLayerError {
    let message = format!("{code} from ECR");
    match code {
        "LayersNotFoundException" => GetDownloadUrlForLayerError::LayersNotFoundException(
            LayersNotFoundException::builder().message(message).build(),
        ),
        "LayerInaccessibleException" => GetDownloadUrlForLayerError::LayerInaccessibleException(
            LayerInaccessibleException::builder()
                .message(message)
                .build(),
        ),
        "UnableToGetUpstreamLayerException" => {
            GetDownloadUrlForLayerError::UnableToGetUpstreamLayerException(
                UnableToGetUpstreamLayerException::builder()
                    .message(message)
                    .build(),
            )
        }
        other => GetDownloadUrlForLayerError::generic(service_error(other)),
    }
}

fn mock_ecr(registry: &Arc<Mutex<Registry>>) -> (aws_sdk_ecr::Client, Rule, Rule) {
    let state = registry.clone();
    let describe = mock!(aws_sdk_ecr::Client::describe_images).then_compute_response(move |req| {
        let mut registry = state.lock().unwrap();
        registry.describe_calls += 1;
        let repository = req.repository_name().unwrap();
        if !registry.cached.keys().any(|(repo, _)| repo == repository) {
            return MockResponse::Error(DescribeImagesError::RepositoryNotFoundException(
                RepositoryNotFoundException::builder()
                    .message("no repository")
                    .build(),
            ));
        }
        let mut details = Vec::new();
        if req.image_ids().is_empty() {
            for ((repo, tag), digest) in &registry.cached {
                if repo == repository {
                    details.push(
                        ImageDetail::builder()
                            .image_digest(digest)
                            .image_tags(tag)
                            .build(),
                    );
                }
            }
        }
        for id in req.image_ids() {
            match registry.cached_digest(repository, id) {
                Some(digest) => details.push(
                    ImageDetail::builder()
                        .image_digest(&digest)
                        .set_image_tags(id.image_tag().map(|t| vec![t.to_string()]))
                        .build(),
                ),
                None => {
                    return MockResponse::Error(DescribeImagesError::ImageNotFoundException(
                        ImageNotFoundException::builder()
                            .message("no image")
                            .build(),
                    ))
                }
            }
        }
        MockResponse::Output(
            DescribeImagesOutput::builder()
                .set_image_details(Some(details))
                .build(),
        )
    });
    let state = registry.clone();
    let batch = mock!(aws_sdk_ecr::Client::batch_get_image).then_compute_response(move |req| {
        let mut registry = state.lock().unwrap();
        registry.batch_calls.push(req.image_ids().len());
        let asked = req
            .image_ids()
            .iter()
            .map(|id| {
                id.image_tag()
                    .or(id.image_digest())
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        registry.batch_ids.push(asked);
        assert_eq!(req.accepted_media_types(), ACCEPTED_MEDIA_TYPES);
        assert!(req.image_ids().len() <= IDS_PER_CALL);
        if registry.throttle_calls > 0 {
            registry.throttle_calls -= 1;
            return MockResponse::Error(BatchGetImageError::generic(service_error(
                "ThrottlingException",
            )));
        }
        let repository = req.repository_name().unwrap().to_string();
        if registry.denied.contains(&repository) {
            return MockResponse::Error(BatchGetImageError::RepositoryNotFoundException(
                RepositoryNotFoundException::builder()
                    .message(format!(
                        "The repository with name '{repository}' does not exist"
                    ))
                    .build(),
            ));
        }
        let mut output = BatchGetImageOutput::builder();
        for id in req.image_ids() {
            let failure = |code: &str| {
                ImageFailure::builder()
                    .image_id(id.clone())
                    .failure_code(ImageFailureCode::from(code))
                    .failure_reason(format!("{code} for {}", id.image_tag().unwrap_or("digest")))
                    .build()
            };
            if registry.unavailable_answers > 0 {
                registry.unavailable_answers -= 1;
                output = output.failures(failure("UpstreamUnavailable"));
                continue;
            }
            let answer = match id.image_tag() {
                Some(tag) => registry
                    .upstream
                    .get(&(repository.clone(), tag.to_string()))
                    .cloned(),
                None => registry.cached_digest(&repository, id).map(Ok),
            };
            match answer {
                Some(Ok(digest))
                    if id.image_tag().is_some()
                        && id.image_digest().is_some_and(|asked| asked != digest) =>
                {
                    output = output.failures(failure("ImageTagDoesNotMatchDigest"))
                }
                Some(Ok(digest)) => {
                    if let Some(tag) = id.image_tag() {
                        registry.cache(&repository, tag, digest.clone());
                    }
                    let image_id = ImageIdentifier::builder()
                        .set_image_tag(id.image_tag().map(str::to_string))
                        .image_digest(&digest)
                        .build();
                    let manifest = registry.manifest(&digest);
                    let media_type: serde_json::Value = serde_json::from_str(&manifest).unwrap();
                    output = output.images(
                        Image::builder()
                            .image_id(image_id)
                            .image_manifest(&manifest)
                            .image_manifest_media_type(media_type["mediaType"].as_str().unwrap())
                            .build(),
                    );
                }
                Some(Err(code)) => output = output.failures(failure(code)),
                None => output = output.failures(failure("ImageNotFound")),
            }
        }
        MockResponse::Output(output.build())
    });
    let state = registry.clone();
    let layer =
        mock!(aws_sdk_ecr::Client::get_download_url_for_layer).then_compute_response(move |req| {
            let mut registry = state.lock().unwrap();
            let repository = req.repository_name().unwrap().to_string();
            let digest = req.layer_digest().unwrap().to_string();
            registry.layer_calls.push((repository, digest.clone()));
            let reply = registry
                .layer_replies
                .get_mut(&digest)
                .and_then(VecDeque::pop_front)
                .unwrap_or(LayerReply::Url(STARPORT));
            match reply {
                LayerReply::Url(url) => MockResponse::Output(
                    GetDownloadUrlForLayerOutput::builder()
                        .download_url(url)
                        .layer_digest(digest)
                        .build(),
                ),
                LayerReply::Error(code) => MockResponse::Error(layer_error(code)),
            }
        });
    let client = mock_client!(
        aws_sdk_ecr,
        RuleMode::MatchAny,
        [&describe, &batch, &layer],
        |c| c.retry_config(RetryConfig::disabled())
    );
    (client, describe, batch)
}

fn fast() -> WarmSettings {
    WarmSettings {
        backoff: Duration::from_millis(1),
        ..WarmSettings::default()
    }
}

fn planned(inputs: &[&str]) -> Vec<PlannedImage> {
    let rules = Rules::parse_each(&["docker-hub=registry-1.docker.io", "quay=quay.io"]).unwrap();
    let inputs: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
    crate::plan::plan(&inputs, &rules)
}

async fn run(registry: &Arc<Mutex<Registry>>, inputs: &[&str], options: &WarmSettings) -> Report {
    let (ecr, _, _) = mock_ecr(registry);
    warm(&ecr, &planned(inputs), options, &|_| {}).await
}

const NGINX: &str = "docker-hub/library/nginx";

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
        ("ImageInaccessible", ""),
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
async fn throttling_that_never_ends_fails_after_the_attempt_limit() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    registry.lock().unwrap().throttle_calls = 100;
    let report = run(&registry, &["nginx:1.27"], &fast()).await;
    let image = &report.images[0];
    assert_eq!(image.failure_code.as_deref(), Some("ThrottlingException"));
    assert!(image.retryable);
    assert_eq!(registry.lock().unwrap().batch_calls.len(), 4);
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
    assert_eq!(registry.lock().unwrap().batch_calls.len(), 1);
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

/// nginx:1.27 as a multi-arch index (amd64, arm64/v8 and an attestation) whose
/// two platforms share their base layer.
fn multi_arch(registry: &mut Registry, media_type: &str, tag: &str, n: u32) -> [String; 2] {
    let (amd64, arm64) = (digest(n + 1), digest(n + 2));
    registry.manifests.insert(
        digest(n),
        index(
            media_type,
            &[("linux/amd64", &amd64), ("linux/arm64/v8", &arm64)],
        ),
    );
    registry.manifests.insert(
        amd64.clone(),
        image_manifest(
            &blob(&format!("{n}/amd64/config")),
            &[blob("base"), blob(&format!("{n}/amd64/app"))],
        ),
    );
    registry.manifests.insert(
        arm64.clone(),
        image_manifest(
            &blob(&format!("{n}/arm64/config")),
            &[blob("base"), blob(&format!("{n}/arm64/app"))],
        ),
    );
    registry.upstream(NGINX, tag, Ok(digest(n)));
    [amd64, arm64]
}

fn layer_calls_for(registry: &Arc<Mutex<Registry>>, digest: &str) -> usize {
    let registry = registry.lock().unwrap();
    registry
        .layer_calls
        .iter()
        .filter(|(_, d)| d == digest)
        .count()
}

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
