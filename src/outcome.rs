//! What happened to each image, and the hint that says what to check.

use serde::Serialize;

use crate::plan::Source;

/// The final state of one input image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not cached before; ECR imported it now.
    Imported,
    /// Cached before with another digest; ECR refreshed it from upstream.
    Refreshed,
    /// Cached before with the same digest.
    Unchanged,
    Failed,
    /// Not attempted before the deadline.
    Skipped,
    /// The manifests are cached, but some blob is not on ECR's layer storage yet.
    Pending,
    /// Not warm yet for a reason that may pass, and back on the function's
    /// queue to be tried again (the function only).
    Retrying,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Imported,
        Status::Refreshed,
        Status::Unchanged,
        Status::Failed,
        Status::Skipped,
        Status::Pending,
        Status::Retrying,
    ];

    /// Imported, refreshed or unchanged: a private pull would succeed.
    pub fn is_warm(self) -> bool {
        matches!(
            self,
            Status::Imported | Status::Refreshed | Status::Unchanged
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::Imported => "imported",
            Status::Refreshed => "refreshed",
            Status::Unchanged => "unchanged",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Pending => "pending",
            Status::Retrying => "retrying",
        }
    }
}

/// One image of the `warm --output json` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageOutcome {
    pub input: String,
    /// The selector entry the image came from; `None` for a plain reference.
    pub selector: Option<String>,
    /// Where the image came from: `list`, `ecs-service:<cluster>/<service>`,
    /// `ecs-family:<family>:<revision>` or `event`.
    pub source: Source,
    pub cache_repository: Option<String>,
    pub tag: Option<String>,
    /// The digest now in the cache, or the digest asked for.
    pub digest: Option<String>,
    pub status: Status,
    pub previous_digest: Option<String>,
    pub failure_code: Option<String>,
    pub message: Option<String>,
    pub hint: Option<String>,
    /// Each image manifest warmed: the platforms of an index, or the single manifest.
    pub platforms: Vec<PlatformOutcome>,
    /// A digest the cache did not hold was pulled by this tag, which points
    /// at it upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via_tag: Option<String>,
    /// When `retrying`: the try it goes back for, and in which message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// The rule's ECR prefix, for metrics per upstream.
    #[serde(skip)]
    pub rule_prefix: Option<String>,
    /// Whether trying again later may succeed (throttling, outages, deadline).
    #[serde(skip)]
    pub retryable: bool,
}

/// What an upstream said it has left, as the report and `doctor` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullsLeft {
    /// The rule's ECR prefix (`docker-hub`).
    pub upstream: String,
    pub limit: u64,
    pub remaining: u64,
    pub window_s: Option<u64>,
}

/// An image sent back to the queue to be tried again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Retry {
    /// The try it goes back for: 2 for the first time it comes back.
    pub attempt: u32,
    /// The last try it gets; after it, the image fails with its last reason.
    pub last_attempt: u32,
    /// How long it waits on the queue.
    pub delay_s: u64,
    /// The SQS message that carries it.
    pub message_id: Option<String>,
}

/// One image manifest of an image and its blobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlatformOutcome {
    /// `linux/amd64`; `None` when not known (a single-platform manifest).
    pub platform: Option<String>,
    pub digest: Option<String>,
    pub status: Status,
    /// `None` with `--layers none`, or when the manifest itself failed.
    pub layers: Option<LayerCounts>,
}

/// Blobs (config and layers) by where they stand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LayerCounts {
    pub total: usize,
    /// On ECR's layer storage (with `--layers request`: ECR gave a URL).
    pub cached: usize,
    /// Not on ECR's layer storage yet, or not asked before the deadline.
    pub pending: usize,
    pub failed: usize,
}

/// A failure as ECR reported it, before it is attached to an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// ECR's failure code or exception name.
    pub code: String,
    pub message: String,
    pub hint: Option<String>,
}

/// What the hints need to know about the image.
#[derive(Debug, Clone, Copy)]
pub struct FailureContext<'a> {
    pub cache_repository: &'a str,
    /// The rule's ECR prefix (`docker-hub`).
    pub rule_prefix: &'a str,
    /// The upstream reference, as the user wrote it normalized.
    pub upstream_reference: &'a str,
    pub docker_hub: bool,
    /// Only a digest was asked for, and the cache did not hold it.
    pub uncached_digest_only: bool,
}

impl Failure {
    /// A failure as ECR reported it, before it is known which image it concerns.
    pub fn new(code: &str, message: &str) -> Failure {
        Failure {
            code: code.to_string(),
            message: message.to_string(),
            hint: None,
        }
    }

    /// A failure with the hint that fits the image.
    pub fn from_ecr(code: &str, message: &str, context: &FailureContext<'_>) -> Failure {
        Failure {
            hint: hint(code, context),
            ..Failure::new(code, message)
        }
    }

    pub fn retryable(&self) -> bool {
        crate::retry::is_retryable_code(&self.code)
    }
}

fn hint(code: &str, context: &FailureContext<'_>) -> Option<String> {
    let repository = context.cache_repository;
    let prefix = context.rule_prefix;
    let upstream = context.upstream_reference;
    let text = match code {
        "RepositoryNotFoundException" => format!(
            "ECR says {repository} does not exist although rule {prefix} covers it. The first pull \
             creates the cache repository, so the registry permissions policy (aws ecr \
             get-registry-policy) and this caller's IAM role must allow ecr:CreateRepository and \
             ecr:BatchImportUpstreamImage on repository/{prefix}/*"
        ),
        "UnableToGetUpstreamImageException" | "UpstreamAccessDenied" => {
            let mut text = format!(
                "ECR could not get {upstream} from upstream. Check the rule's Secrets Manager \
                 credential: a secret named ecr-pullthroughcache/..., in the rule's account and \
                 Region, holding the keys username and accessToken, with a token that is still valid"
            );
            if context.docker_hub {
                text.push_str(
                    "; and for Docker Hub official images the path needs library/ \
                     (docker-hub/library/nginx, not docker-hub/nginx)",
                );
            }
            text
        }
        "ImageNotFound" | "ImageNotFoundException" if context.uncached_digest_only => format!(
            "{upstream} is not in the cache, and ECR cannot fill the cache from a pull by digest: \
             warm a tag of this image first (add {repository}'s tag to the list), then the digest"
        ),
        "ImageNotFound" | "ImageNotFoundException" => format!(
            "{upstream} was not found upstream: check that the tag exists there. If it does, the \
             caller may lack ecr:BatchImportUpstreamImage on {repository}, which ECR also reports \
             as not found"
        ),
        "UpstreamTooManyRequests" => {
            let mut text =
                "the upstream registry is limiting pulls; retried with backoff".to_string();
            if context.docker_hub {
                text.push_str(
                    ". Docker Hub allows 100 manifest pulls per 6 hours per IP without an \
                     account and 200 with a personal account (a multi-arch pull counts once per \
                     architecture): give the rule Docker Hub credentials, warm less often, or \
                     spread the list over more runs",
                );
            }
            text
        }
        "UpstreamUnavailable" | "ServerException" | "ServiceUnavailableException" => {
            "the upstream registry or ECR was unavailable after retries; the next run tries again"
                .to_string()
        }
        "ThrottlingException" => {
            "ECR throttled the calls after retries (BatchGetImage allows 2,000 calls per second \
             per Region, shared by the account): lower --concurrency (WARM_CONCURRENCY)"
                .to_string()
        }
        "LimitExceededException" => format!(
            "ECR refused the call for a service quota, most often the number of repositories per \
             Region (a first pull creates {repository}): see Service Quotas for Amazon ECR \
             (aws service-quotas list-service-quotas --service-code ecr), delete unused \
             repositories or ask for a higher quota; trying again does not help"
        ),
        "AccessDeniedException" => format!(
            "the caller's IAM role needs ecr:DescribeImages, ecr:BatchGetImage, \
             ecr:BatchImportUpstreamImage and ecr:CreateRepository on repository/{prefix}/*"
        ),
        "UnableToGetUpstreamLayerException" => format!(
            "ECR could not get a layer of {upstream} from upstream, after retries. Check the \
             rule's Secrets Manager credential (ecr-pullthroughcache/..., keys username and \
             accessToken, still valid) and whether the upstream registry is having an outage; \
             the next run tries again"
        ),
        "LayerInaccessibleException" => format!(
            "ECR says a layer of {repository} cannot be accessed (a foreign or non-distributable \
             layer, such as a Windows base layer, is not served by ECR): pull this image from its \
             upstream, or warm only the platforms that have no such layer with --platform"
        ),
        "LayersNotFoundException" => format!(
            "ECR does not hold a layer of {repository}: warm again later; if it persists, the \
             caller may lack ecr:BatchImportUpstreamImage on repository/{prefix}/*"
        ),
        "PlatformNotFound" => "name only platforms the image has with --platform \
             (WARM_PLATFORMS), or leave it out to warm every runnable platform"
            .to_string(),
        "UnreadableManifest" => "ECR returned a manifest the warmer cannot read, so its layers \
             cannot be checked; warm it with --layers none, and report the media type"
            .to_string(),
        "LayersNotCached" => format!(
            "ECR kept serving some blobs of {upstream} from outside its own storage on every \
             check, so private pulls of it fail. Pull it once from a host with internet access, \
             check the upstream, then warm it again"
        ),
        "ImageInaccessible" => format!(
            "ECR archived this image of {repository} (its storage class is ARCHIVE), or is still \
             restoring it: restore it with `aws ecr update-image-storage-class --repository-name \
             {repository} --image-id imageDigest=<digest> --target-storage-class STANDARD`, wait \
             until it is ACTIVE, then warm it again; a lifecycle rule of the repository that \
             archives images archives it again"
        ),
        "DeadlineReached" => "every try of the function ended before this image was started: \
             raise the function's Timeout, or lower WARM_MESSAGE_IMAGES so that one message fits \
             one invocation"
            .to_string(),
        "ImageTagDoesNotMatchDigest" => format!(
            "{upstream}: the tag has moved upstream to another digest than the pinned one, and \
             a pull-through cache can only import what a tag points at now, so pulls of the \
             pinned digest through the cache will fail: update the pinned digest to the one the \
             tag points at now (in the message), or warm the tag alone"
        ),
        "KmsError" => format!(
            "ECR could not use the KMS key of {repository}: check that the key exists and its \
             policy lets ECR use it (see the repository creation template for {prefix})"
        ),
        _ => return None,
    };
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(docker_hub: bool, uncached_digest_only: bool) -> FailureContext<'static> {
        FailureContext {
            cache_repository: "docker-hub/library/nginx",
            rule_prefix: "docker-hub",
            upstream_reference: "docker.io/library/nginx:1.27",
            docker_hub,
            uncached_digest_only,
        }
    }

    #[test]
    fn each_known_failure_says_what_to_check() {
        let cases = [
            (
                "RepositoryNotFoundException",
                false,
                "ecr:CreateRepository and ecr:BatchImportUpstreamImage on repository/docker-hub/*",
            ),
            (
                "UnableToGetUpstreamImageException",
                false,
                "ecr-pullthroughcache/",
            ),
            ("UpstreamAccessDenied", false, "username and accessToken"),
            (
                "ImageNotFound",
                false,
                "docker.io/library/nginx:1.27 was not found upstream",
            ),
            (
                "UpstreamTooManyRequests",
                true,
                "100 manifest pulls per 6 hours",
            ),
            ("UpstreamUnavailable", true, "next run tries again"),
            ("ServerException", true, "next run tries again"),
            ("ThrottlingException", true, "lower --concurrency"),
            ("LimitExceededException", false, "Service Quotas"),
            (
                "ImageTagDoesNotMatchDigest",
                false,
                "update the pinned digest",
            ),
            ("KmsError", false, "KMS key of docker-hub/library/nginx"),
            ("AccessDeniedException", false, "ecr:BatchGetImage"),
        ];
        for (code, retryable, expected) in cases {
            let failure = Failure::from_ecr(code, "ECR's message", &context(true, false));
            assert_eq!(failure.message, "ECR's message");
            assert_eq!(failure.retryable(), retryable, "{code}");
            let hint = failure.hint.unwrap_or_default();
            assert!(hint.contains(expected), "{code}: {hint}");
        }
    }

    #[test]
    fn docker_hub_hints_mention_library_and_rate_limits_only_for_docker_hub() {
        let hub = Failure::from_ecr("UpstreamAccessDenied", "", &context(true, false));
        assert!(hub
            .hint
            .unwrap()
            .contains("official images the path needs library/"));
        let quay = Failure::from_ecr("UpstreamAccessDenied", "", &context(false, false));
        assert!(!quay.hint.unwrap().contains("official images"));
        let quay = Failure::from_ecr("UpstreamTooManyRequests", "", &context(false, false));
        assert!(!quay.hint.unwrap().contains("Docker Hub"));
    }

    #[test]
    fn an_uncached_digest_is_explained() {
        let failure = Failure::from_ecr("ImageNotFound", "not found", &context(true, true));
        assert!(failure
            .hint
            .unwrap()
            .contains("cannot fill the cache from a pull by digest"));
    }

    #[test]
    fn an_archived_image_says_how_to_restore_it() {
        let failure = Failure::from_ecr("ImageInaccessible", "archived", &context(true, false));
        assert!(!failure.retryable());
        let hint = failure.hint.unwrap();
        assert!(hint.contains("--target-storage-class STANDARD"), "{hint}");
    }

    #[test]
    fn unknown_and_pass_through_codes_keep_their_message() {
        let code = "SomethingNew";
        let failure = Failure::from_ecr(code, "as ECR said it", &context(true, false));
        assert_eq!(
            (failure.code.as_str(), failure.message.as_str()),
            (code, "as ECR said it")
        );
        assert_eq!(failure.hint, None);
        assert!(!failure.retryable());
    }
}
