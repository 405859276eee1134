//! The engine against aws-smithy-mocks: a registry that answers like ECR,
//! and the tests by theme: what each image's outcome says, retries and
//! deadlines, the platforms of an index, and blobs.

mod layers;
mod outcomes;
mod platforms;
mod retries;

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
