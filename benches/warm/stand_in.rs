//! ECR in process, for the SDK: an HTTP client that answers DescribeImages,
//! BatchGetImage and GetDownloadUrlForLayer after a fixed latency, and counts
//! the calls per operation. It may throttle: a share of calls at random, or
//! the calls above a quota per operation, as ECR's quotas are.
//!
//! It answers from the names asked alone, holding nothing per image, so that
//! the figures (time and memory) are the engine's rather than an emulator's.
//! Nothing is cached yet: DescribeImages says the repository does not exist,
//! as on a first warm, and every blob's URL is on ECR's layer storage.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ecr::config::http::{HttpRequest, HttpResponse};
use aws_sdk_ecr::config::retry::RetryConfig;
use aws_sdk_ecr::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use serde_json::{json, Value};

/// The plan's shape: repositories of `TAGS` tags; every even-numbered one is
/// multi-arch (an OCI index of `PLATFORMS` platforms). Every image manifest
/// has a config and `LAYERS` layers, `SHARED_LAYERS` of them shared by all
/// tags of the repository (per platform, as base layers are).
pub const TAGS: usize = 5;
pub const PLATFORMS: usize = 2;
pub const LAYERS: usize = 3;
pub const SHARED_LAYERS: usize = 2;
const ARCHITECTURES: [&str; PLATFORMS] = ["amd64", "arm64"];

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921.";
const REGISTRY_ID: &str = "123456789012";
const LAYER_STORAGE: &str =
    "https://prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com";

pub fn is_multi_arch(repository: usize) -> bool {
    repository.is_multiple_of(2)
}

/// The references of a plan of `repositories` repositories, as a user lists them.
pub fn references(repositories: usize) -> Vec<String> {
    (0..repositories)
        .flat_map(|r| {
            let kind = if is_multi_arch(r) { "multi" } else { "single" };
            (0..TAGS).map(move |t| format!("bench/{kind}-{r:04}:t{t}"))
        })
        .collect()
}

/// What an engine must call at the least for repository `r`: DescribeImages,
/// BatchGetImage for the tags (100 ids per call), one more for the platform
/// manifests of a multi-arch repository, and, unless only manifests are
/// warmed, GetDownloadUrlForLayer once per distinct blob.
pub fn minimum_calls(repository: usize, layers: bool) -> usize {
    let multi = is_multi_arch(repository);
    let (platforms, manifests) = match multi {
        true => (PLATFORMS, TAGS * PLATFORMS),
        false => (1, TAGS),
    };
    let blobs = platforms * SHARED_LAYERS + manifests * (1 + LAYERS - SHARED_LAYERS);
    1 + TAGS.div_ceil(100) + usize::from(multi) + if layers { blobs } else { 0 }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Index = 1,
    Image = 2,
    Config = 3,
    Layer = 4,
    Shared = 5,
}

/// A digest that says what it names, so that a manifest asked for by digest
/// can be made again from it: repository hash, kind, tag, platform.
fn digest(repository: &str, kind: Kind, tag: usize, platform: usize) -> String {
    let mut hasher = DefaultHasher::new();
    repository.hash(&mut hasher);
    format!(
        "sha256:{:040x}{:08x}{tag:08x}{platform:08x}",
        hasher.finish(),
        kind as u32
    )
}

fn decode(digest: &str) -> Option<(u32, usize, usize)> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64)?;
    let field = |range: std::ops::Range<usize>| u32::from_str_radix(&hex[range], 16).ok();
    Some((
        field(40..48)?,
        field(48..56)? as usize,
        field(56..64)? as usize,
    ))
}

fn descriptor(media_type: &str, digest: String) -> Value {
    json!({"mediaType": media_type, "digest": digest, "size": 1234})
}

fn image_manifest(repository: &str, tag: usize, platform: usize) -> String {
    let mut layers: Vec<Value> = (0..SHARED_LAYERS)
        .map(|n| descriptor(OCI_LAYER, digest(repository, Kind::Shared, n, platform)))
        .collect();
    for n in SHARED_LAYERS..LAYERS {
        let own = digest(repository, Kind::Layer, tag * LAYERS + n, platform);
        layers.push(descriptor(OCI_LAYER, own));
    }
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, digest(repository, Kind::Config, tag, platform)),
        "layers": layers,
    })
    .to_string()
}

fn index(repository: &str, tag: usize) -> String {
    let manifests: Vec<Value> = ARCHITECTURES
        .iter()
        .enumerate()
        .map(|(platform, architecture)| {
            json!({
                "mediaType": OCI_MANIFEST,
                "digest": digest(repository, Kind::Image, tag, platform),
                "size": 1234,
                "platform": {"os": "linux", "architecture": architecture},
            })
        })
        .collect();
    json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    DescribeImages,
    BatchGetImage,
    GetDownloadUrlForLayer,
    Other,
}

impl Operation {
    fn of(target: Option<&str>) -> Operation {
        match target.and_then(|target| target.strip_prefix(TARGET_PREFIX)) {
            Some("DescribeImages") => Operation::DescribeImages,
            Some("BatchGetImage") => Operation::BatchGetImage,
            Some("GetDownloadUrlForLayer") => Operation::GetDownloadUrlForLayer,
            _ => Operation::Other,
        }
    }
}

/// When the stand-in answers ThrottlingException.
#[derive(Debug, Clone, Copy)]
pub enum Throttling {
    Never,
    /// A share of calls (0 to 1, drawn from a fixed seed), whatever the rate.
    AtRandom(f64),
    /// Calls above this many per second, per operation: a token bucket
    /// that holds a tenth of a second's worth.
    Quota(f64),
}

/// A token bucket: one operation's quota.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Whether a call arriving now is within the quota.
    fn take(&mut self, per_second: f64, now: Instant) -> bool {
        let burst = per_second / 10.0;
        let refill = (now - self.at).as_secs_f64() * per_second;
        self.tokens = (self.tokens + refill).min(burst);
        self.at = now;
        let within = self.tokens >= 1.0;
        if within {
            self.tokens -= 1.0;
        }
        within
    }
}

/// The calls a run made, and when the first and the last arrived.
#[derive(Debug, Clone, Copy, Default)]
pub struct Calls {
    pub describe_images: usize,
    pub batch_get_image: usize,
    pub download_url: usize,
    pub other: usize,
    pub throttled: usize,
    /// GetDownloadUrlForLayer calls answered with ThrottlingException.
    pub download_url_throttled: usize,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
}

impl Calls {
    pub fn total(&self) -> usize {
        self.describe_images + self.batch_get_image + self.download_url + self.other
    }

    /// Calls started per second, from the first arrival to the last.
    pub fn rate(&self) -> f64 {
        match (self.first, self.last) {
            (Some(first), Some(last)) if last > first => {
                (self.total() - 1) as f64 / (last - first).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

#[derive(Debug)]
struct Inner {
    latency: Duration,
    throttling: Throttling,
    random: Mutex<fastrand::Rng>,
    /// One per operation, for `Throttling::Quota`.
    buckets: Mutex<[Bucket; 4]>,
    counts: [AtomicUsize; 4],
    throttled: [AtomicUsize; 4],
    /// The first call's arrival and the last's.
    arrivals: Mutex<Option<(Instant, Instant)>>,
}

/// The stand-in; clones share their counters.
#[derive(Debug, Clone)]
pub struct StandIn(Arc<Inner>);

impl StandIn {
    /// Answers after `latency`, or refuses with ThrottlingException as
    /// `throttling` says.
    pub fn new(latency: Duration, throttling: Throttling) -> StandIn {
        let full = match throttling {
            Throttling::Quota(per_second) => per_second / 10.0,
            _ => 0.0,
        };
        let bucket = || Bucket {
            tokens: full,
            at: Instant::now(),
        };
        StandIn(Arc::new(Inner {
            latency,
            throttling,
            random: Mutex::new(fastrand::Rng::with_seed(7)),
            buckets: Mutex::new([bucket(), bucket(), bucket(), bucket()]),
            counts: Default::default(),
            throttled: Default::default(),
            arrivals: Mutex::new(None),
        }))
    }

    /// An ECR client as the engine's: dummy credentials and Region, and no
    /// SDK retries (the engine retries by itself).
    pub fn client(&self) -> aws_sdk_ecr::Client {
        let config = aws_sdk_ecr::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKIDBENCH", "bench", None, None, "bench"))
            .retry_config(RetryConfig::disabled())
            .http_client(self.clone())
            .build();
        aws_sdk_ecr::Client::from_conf(config)
    }

    pub fn calls(&self) -> Calls {
        let count =
            |operation: Operation| self.0.counts[operation as usize].load(Ordering::Relaxed);
        let arrivals = *self.0.arrivals.lock().unwrap();
        Calls {
            describe_images: count(Operation::DescribeImages),
            batch_get_image: count(Operation::BatchGetImage),
            download_url: count(Operation::GetDownloadUrlForLayer),
            other: count(Operation::Other),
            throttled: self
                .0
                .throttled
                .iter()
                .map(|count| count.load(Ordering::Relaxed))
                .sum(),
            download_url_throttled: self.0.throttled[Operation::GetDownloadUrlForLayer as usize]
                .load(Ordering::Relaxed),
            first: arrivals.map(|(first, _)| first),
            last: arrivals.map(|(_, last)| last),
        }
    }

    fn answer(&self, request: &HttpRequest) -> (u16, String) {
        let now = Instant::now();
        let mut arrivals = self.0.arrivals.lock().unwrap();
        let first = arrivals.map_or(now, |(first, _)| first);
        *arrivals = Some((first, now));
        drop(arrivals);
        let operation = Operation::of(request.headers().get("x-amz-target"));
        self.0.counts[operation as usize].fetch_add(1, Ordering::Relaxed);
        let throttled = match self.0.throttling {
            Throttling::Never => false,
            Throttling::AtRandom(share) => self.0.random.lock().unwrap().f64() < share,
            Throttling::Quota(per_second) => {
                !self.0.buckets.lock().unwrap()[operation as usize].take(per_second, now)
            }
        };
        if throttled {
            self.0.throttled[operation as usize].fetch_add(1, Ordering::Relaxed);
            return error("ThrottlingException", "Rate exceeded");
        }
        let body: Value = request
            .body()
            .bytes()
            .and_then(|bytes| serde_json::from_slice(bytes).ok())
            .unwrap_or_default();
        let repository = body["repositoryName"].as_str().unwrap_or_default();
        match operation {
            Operation::DescribeImages => error(
                "RepositoryNotFoundException",
                &format!(
                    "The repository with name '{repository}' does not exist in the registry \
                     with id '{REGISTRY_ID}'"
                ),
            ),
            Operation::BatchGetImage => {
                let ids = body["imageIds"].as_array().cloned().unwrap_or_default();
                (200, batch_get_image(repository, &ids).to_string())
            }
            Operation::GetDownloadUrlForLayer => {
                let layer = body["layerDigest"].as_str().unwrap_or_default();
                let url = format!("{LAYER_STORAGE}/{REGISTRY_ID}/{layer}?X-Amz-Signature=0");
                let answer = json!({"downloadUrl": url, "layerDigest": layer});
                (200, answer.to_string())
            }
            Operation::Other => error("UnknownOperationException", "not in the stand-in"),
        }
    }
}

fn error(code: &str, message: &str) -> (u16, String) {
    (400, json!({"__type": code, "message": message}).to_string())
}

/// Tags are `t<N>`; digests are those this stand-in made.
fn batch_get_image(repository: &str, ids: &[Value]) -> Value {
    let multi = repository.contains("/multi-");
    let mut images = Vec::new();
    let mut failures = Vec::new();
    for id in ids {
        let tag = id["imageTag"].as_str();
        let found = match (tag, id["imageDigest"].as_str()) {
            (Some(tag), _) => tag
                .strip_prefix('t')
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n < TAGS)
                .map(|n| match multi {
                    true => (digest(repository, Kind::Index, n, 0), index(repository, n)),
                    false => (
                        digest(repository, Kind::Image, n, 0),
                        image_manifest(repository, n, 0),
                    ),
                }),
            (None, Some(asked)) => decode(asked)
                .filter(|&(kind, _, _)| kind == Kind::Image as u32)
                .map(|(_, n, platform)| {
                    (asked.to_string(), image_manifest(repository, n, platform))
                }),
            (None, None) => None,
        };
        match found {
            Some((digest, manifest)) => {
                let media_type =
                    if decode(&digest).is_some_and(|(kind, ..)| kind == Kind::Index as u32) {
                        OCI_INDEX
                    } else {
                        OCI_MANIFEST
                    };
                let mut image_id = json!({"imageDigest": digest});
                if let Some(tag) = tag {
                    image_id["imageTag"] = json!(tag);
                }
                images.push(json!({
                    "registryId": REGISTRY_ID,
                    "repositoryName": repository,
                    "imageId": image_id,
                    "imageManifest": manifest,
                    "imageManifestMediaType": media_type,
                }));
            }
            None => failures.push(json!({
                "imageId": id,
                "failureCode": "ImageNotFound",
                "failureReason": "Requested image not found",
            })),
        }
    }
    json!({"images": images, "failures": failures})
}

impl HttpConnector for StandIn {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (status, body) = self.answer(&request);
        let latency = self.0.latency;
        HttpConnectorFuture::new(async move {
            // A timer, not a busy wait: calls overlap as they would over the network.
            tokio::time::sleep(latency).await;
            let mut response = HttpResponse::new(
                StatusCode::try_from(status).expect("a valid status"),
                SdkBody::from(body),
            );
            response
                .headers_mut()
                .insert("content-type", "application/x-amz-json-1.1");
            Ok(response)
        })
    }
}

impl HttpClient for StandIn {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}
