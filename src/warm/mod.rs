//! The warm engine: pull every planned image through the cache and say what
//! happened to each.
//!
//! Per cache repository: DescribeImages learns what is cached already (it never
//! creates anything), then BatchGetImage pulls the manifests, which makes ECR
//! import or re-check them upstream. Repositories are worked on concurrently,
//! throttling and outages are retried with backoff, and nothing starts after
//! the deadline.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecr::operation::batch_get_image::{BatchGetImageError, BatchGetImageOutput};
use aws_sdk_ecr::operation::describe_images::DescribeImagesError;
use aws_sdk_ecr::types::{ImageDetail, ImageFailure, ImageIdentifier};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;

use crate::aws::describe_error;
use crate::backoff::Backoff;
use crate::outcome::{Failure, FailureContext, ImageOutcome, Status};
use crate::plan::PlannedImage;

/// ECR takes at most 100 image ids per BatchGetImage and DescribeImages call.
const IDS_PER_CALL: usize = 100;
const DEFAULT_TAG: &str = "latest";

/// Manifest types the warmer accepts: Docker v2 and OCI, single images and
/// multi-arch indexes, so that a multi-arch tag is cached whole.
pub const ACCEPTED_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

#[derive(Debug, Clone)]
pub struct WarmOptions {
    /// Cache repositories worked on at once.
    pub concurrency: usize,
    /// No call starts after this instant; what is left is `skipped`.
    pub deadline: Option<Instant>,
    /// Attempts per call for throttling and transient upstream trouble.
    pub max_attempts: u32,
    /// The first backoff; it doubles with each attempt, with jitter.
    pub backoff: Duration,
}

impl Default for WarmOptions {
    fn default() -> Self {
        WarmOptions {
            concurrency: 16,
            deadline: None,
            max_attempts: 4,
            backoff: Duration::from_millis(250),
        }
    }
}

/// The `warm --output json` document.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub summary: Summary,
    pub images: Vec<ImageOutcome>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub total: usize,
    pub imported: usize,
    pub refreshed: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub skipped: usize,
    pub duration_ms: u64,
}

impl Report {
    /// Every image reached imported, refreshed or unchanged.
    pub fn all_warm(&self) -> bool {
        self.summary.failed == 0 && self.summary.skipped == 0
    }
}

/// One distinct image id of a repository and the inputs that asked for it.
#[derive(Debug, Clone)]
struct Request {
    tag: Option<String>,
    digest: Option<String>,
    inputs: Vec<usize>,
    upstream_reference: String,
    docker_hub: bool,
}

/// The requests of one cache repository.
#[derive(Debug)]
struct Repository {
    name: String,
    rule_prefix: String,
    requests: Vec<Request>,
    /// (tag, digest) → position in `requests`, so that an image asked twice is pulled once.
    positions: HashMap<(Option<String>, Option<String>), usize>,
}

/// What became of one request.
#[derive(Debug, Clone)]
enum Answer {
    Pulled { digest: Option<String> },
    Failed(Failure),
    Skipped(String),
}

/// A request's result with the digest that was cached before.
#[derive(Debug)]
struct Resolved {
    answer: Answer,
    previous_digest: Option<String>,
}

/// Warms every planned image and returns one outcome per input, in input order.
/// `progress` is told how many inputs have reached their outcome so far.
pub async fn warm(
    ecr: &aws_sdk_ecr::Client,
    planned: &[PlannedImage],
    options: &WarmOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Report {
    let started = Instant::now();
    let mut outcomes: Vec<Option<ImageOutcome>> = vec![None; planned.len()];
    for (index, image) in planned.iter().enumerate() {
        if !image.is_ready() {
            outcomes[index] = Some(not_planned(image));
        }
    }
    let mut done = outcomes.iter().flatten().count();
    progress(done);

    let repositories = group_by_repository(planned);
    let mut results = stream::iter(repositories)
        .map(|repository| async move {
            let resolved = warm_repository(ecr, &repository, options).await;
            (repository, resolved)
        })
        .buffer_unordered(options.concurrency.max(1));
    while let Some((repository, resolved)) = results.next().await {
        for (request, resolved) in repository.requests.iter().zip(resolved) {
            for &index in &request.inputs {
                outcomes[index] = Some(outcome(&planned[index], &repository, request, &resolved));
                done += 1;
            }
        }
        progress(done);
    }

    let images: Vec<ImageOutcome> = outcomes
        .into_iter()
        .zip(planned)
        .map(|(outcome, image)| outcome.unwrap_or_else(|| skipped_outcome(image)))
        .collect();
    let mut summary = Summary {
        total: images.len(),
        duration_ms: started.elapsed().as_millis() as u64,
        ..Summary::default()
    };
    for image in &images {
        *match image.status {
            Status::Imported => &mut summary.imported,
            Status::Refreshed => &mut summary.refreshed,
            Status::Unchanged => &mut summary.unchanged,
            Status::Failed => &mut summary.failed,
            Status::Skipped => &mut summary.skipped,
        } += 1;
    }
    Report { summary, images }
}

fn group_by_repository(planned: &[PlannedImage]) -> Vec<Repository> {
    let mut repositories: BTreeMap<&str, Repository> = BTreeMap::new();
    for (index, image) in planned.iter().enumerate() {
        let (Some(target), Some(reference)) = (&image.target, &image.reference) else {
            continue;
        };
        let repository = repositories
            .entry(&target.cache_repository)
            .or_insert_with(|| Repository {
                name: target.cache_repository.clone(),
                rule_prefix: target.rule_prefix.clone(),
                requests: Vec::new(),
                positions: HashMap::new(),
            });
        let digest = reference.digest().map(str::to_string);
        // Docker pulls `latest` when neither tag nor digest is written.
        let tag = match (reference.tag(), &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        let key = (tag.clone(), digest.clone());
        if let Some(&position) = repository.positions.get(&key) {
            repository.requests[position].inputs.push(index);
            continue;
        }
        let upstream_reference = match (reference.tag(), reference.digest()) {
            (None, None) => format!("{reference}:{DEFAULT_TAG}"),
            _ => reference.to_string(),
        };
        repository.positions.insert(key, repository.requests.len());
        repository.requests.push(Request {
            tag,
            digest,
            inputs: vec![index],
            upstream_reference,
            docker_hub: reference.is_docker_hub(),
        });
    }
    repositories.into_values().collect()
}

async fn warm_repository(
    ecr: &aws_sdk_ecr::Client,
    repository: &Repository,
    options: &WarmOptions,
) -> Vec<Resolved> {
    let previous = match cached_digests(ecr, repository, options).await {
        Ok(previous) => previous,
        Err(answer) => {
            return repository
                .requests
                .iter()
                .map(|request| Resolved {
                    answer: with_context(&answer, repository, request, false),
                    previous_digest: None,
                })
                .collect()
        }
    };
    let mut results = Vec::with_capacity(repository.requests.len());
    for (chunk, chunk_previous) in repository
        .requests
        .chunks(IDS_PER_CALL)
        .zip(previous.chunks(IDS_PER_CALL))
    {
        let pulled = pull(ecr, repository, chunk, chunk_previous, options).await;
        results.extend(
            pulled
                .into_iter()
                .zip(chunk_previous)
                .map(|(answer, previous)| Resolved {
                    answer,
                    previous_digest: previous.clone(),
                }),
        );
    }
    results
}

/// The digest cached now for each request, `None` when not cached.
/// DescribeImages fails whole when one of the ids is missing; then the
/// repository's images are listed once instead, to tell which ones are there.
async fn cached_digests(
    ecr: &aws_sdk_ecr::Client,
    repository: &Repository,
    options: &WarmOptions,
) -> Result<Vec<Option<String>>, Answer> {
    let requests = &repository.requests;
    let mut digests = Vec::with_capacity(requests.len());
    for chunk in requests.chunks(IDS_PER_CALL) {
        let ids: Vec<ImageIdentifier> = chunk.iter().map(image_id).collect();
        let described = call_with_retries(options, describe_images_code, || {
            ecr.describe_images()
                .repository_name(&repository.name)
                .set_image_ids(Some(ids.clone()))
                .send()
        })
        .await;
        let details = match described {
            Attempted::Done(Ok(output)) => output.image_details().to_vec(),
            Attempted::Done(Err(error)) => match error.as_service_error() {
                Some(DescribeImagesError::RepositoryNotFoundException(_)) => {
                    return Ok(vec![None; requests.len()])
                }
                Some(DescribeImagesError::ImageNotFoundException(_)) if chunk.len() == 1 => {
                    Vec::new()
                }
                Some(DescribeImagesError::ImageNotFoundException(_)) => {
                    let details = list_images(ecr, repository, options).await?;
                    return Ok(requests
                        .iter()
                        .map(|r| cached_digest(&details, r))
                        .collect());
                }
                _ => return Err(failed_call("DescribeImages", &error, describe_images_code)),
            },
            Attempted::OutOfTime => return Err(Answer::Skipped(out_of_time())),
        };
        digests.extend(chunk.iter().map(|request| cached_digest(&details, request)));
    }
    Ok(digests)
}

/// Every image of the repository, page by page.
async fn list_images(
    ecr: &aws_sdk_ecr::Client,
    repository: &Repository,
    options: &WarmOptions,
) -> Result<Vec<ImageDetail>, Answer> {
    let mut details = Vec::new();
    let mut next_token = None;
    loop {
        let listed = call_with_retries(options, describe_images_code, || {
            ecr.describe_images()
                .repository_name(&repository.name)
                .set_next_token(next_token.clone())
                .send()
        })
        .await;
        match listed {
            Attempted::Done(Ok(output)) => {
                details.extend_from_slice(output.image_details());
                next_token = output.next_token().map(str::to_string);
                if next_token.is_none() {
                    return Ok(details);
                }
            }
            Attempted::Done(Err(error)) => {
                return Err(failed_call("DescribeImages", &error, describe_images_code))
            }
            Attempted::OutOfTime => return Err(Answer::Skipped(out_of_time())),
        }
    }
}

fn cached_digest(details: &[ImageDetail], request: &Request) -> Option<String> {
    details
        .iter()
        .find(|detail| match &request.tag {
            Some(tag) => detail.image_tags().contains(tag),
            None => detail.image_digest() == request.digest.as_deref(),
        })
        .and_then(|detail| detail.image_digest().map(str::to_string))
}

/// Pulls one chunk of requests; ids that fail for a retryable reason are
/// asked again, up to the attempt limit.
async fn pull(
    ecr: &aws_sdk_ecr::Client,
    repository: &Repository,
    requests: &[Request],
    previous: &[Option<String>],
    options: &WarmOptions,
) -> Vec<Answer> {
    let mut results: Vec<Option<Answer>> = vec![None; requests.len()];
    let mut backoff = Backoff::new(options.backoff, options.max_attempts, options.deadline);
    loop {
        let pending: Vec<usize> = (0..requests.len())
            .filter(|&i| match &results[i] {
                None => true,
                Some(Answer::Failed(failure)) => failure.retryable(),
                _ => false,
            })
            .collect();
        if pending.is_empty() {
            break;
        }
        if !results.iter().all(Option::is_none) && !backoff.wait().await {
            break;
        }
        let ids: Vec<ImageIdentifier> = pending.iter().map(|&i| image_id(&requests[i])).collect();
        let called = call_with_retries(options, batch_get_image_code, || {
            let mut call = ecr
                .batch_get_image()
                .repository_name(&repository.name)
                .set_image_ids(Some(ids.clone()));
            for media_type in ACCEPTED_MEDIA_TYPES {
                call = call.accepted_media_types(media_type);
            }
            call.send()
        })
        .await;
        match called {
            Attempted::Done(Ok(output)) => {
                let answered = match_output(&output, &pending, requests);
                for (i, result) in pending.iter().zip(answered) {
                    results[*i] = Some(result);
                }
            }
            Attempted::Done(Err(error)) => {
                let result = failed_call("BatchGetImage", &error, batch_get_image_code);
                for &i in &pending {
                    results[i] = Some(result.clone());
                }
                // The call itself was already retried as often as allowed.
                break;
            }
            Attempted::OutOfTime => {
                for &i in &pending {
                    results[i] = Some(Answer::Skipped(out_of_time()));
                }
                break;
            }
        }
    }
    results
        .into_iter()
        .zip(requests)
        .zip(previous)
        .map(|((result, request), previous)| {
            let result = result.unwrap_or_else(|| Answer::Skipped(out_of_time()));
            with_context(&result, repository, request, previous.is_none())
        })
        .collect()
}

/// Pairs BatchGetImage's images and failures with the requests asked.
/// Failures whose id matches no request (some implementations leave the
/// digest out) go to the requests still unanswered, in order.
fn match_output(
    output: &BatchGetImageOutput,
    pending: &[usize],
    requests: &[Request],
) -> Vec<Answer> {
    let asked: Vec<&Request> = pending.iter().map(|&i| &requests[i]).collect();
    let mut answers: Vec<Option<Answer>> = asked
        .iter()
        .map(|request| {
            output
                .images()
                .iter()
                .filter_map(|image| image.image_id())
                .find(|id| answers_request(id, request))
                .map(|id| Answer::Pulled {
                    digest: id
                        .image_digest()
                        .map(str::to_string)
                        .or(request.digest.clone()),
                })
        })
        .collect();
    let mut unmatched: Vec<&ImageFailure> = Vec::new();
    for failure in output.failures() {
        let target = asked.iter().enumerate().position(|(i, request)| {
            answers[i].is_none()
                && failure
                    .image_id()
                    .is_some_and(|id| answers_request(id, request))
        });
        match target {
            Some(i) => answers[i] = Some(image_failure(failure)),
            None => unmatched.push(failure),
        }
    }
    let mut unmatched = unmatched.into_iter();
    answers
        .into_iter()
        .map(|answer| {
            answer
                .or_else(|| unmatched.next().map(image_failure))
                .unwrap_or_else(|| {
                    Answer::Failed(Failure::new(
                        "NotReturned",
                        "BatchGetImage returned neither the image nor a failure for it",
                    ))
                })
        })
        .collect()
}

fn answers_request(id: &ImageIdentifier, request: &Request) -> bool {
    match &request.tag {
        Some(tag) => id.image_tag() == Some(tag.as_str()),
        None => id.image_digest().is_some() && id.image_digest() == request.digest.as_deref(),
    }
}

fn image_failure(failure: &ImageFailure) -> Answer {
    let code = failure
        .failure_code()
        .map_or("Unknown", |code| code.as_str())
        .to_string();
    let message = failure.failure_reason().unwrap_or_default();
    Answer::Failed(Failure::new(&code, message))
}

fn image_id(request: &Request) -> ImageIdentifier {
    ImageIdentifier::builder()
        .set_image_tag(request.tag.clone())
        .set_image_digest(request.digest.clone())
        .build()
}

/// A failed call, as the failure of every image it carried.
fn failed_call<E, R>(operation: &str, error: &SdkError<E, R>, code_of: fn(&E) -> String) -> Answer
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let (code, detail) = match error {
        SdkError::ServiceError(context) => (
            code_of(context.err()),
            context
                .err()
                .message()
                .map_or_else(|| describe_error(error), str::to_string),
        ),
        SdkError::TimeoutError(_) => ("RequestTimeout".to_string(), describe_error(error)),
        _ => ("NetworkError".to_string(), describe_error(error)),
    };
    Answer::Failed(Failure::new(&code, &format!("{operation}: {detail}")))
}

fn batch_get_image_code(error: &BatchGetImageError) -> String {
    let code = match error {
        BatchGetImageError::InvalidParameterException(_) => "InvalidParameterException",
        BatchGetImageError::LimitExceededException(_) => "LimitExceededException",
        BatchGetImageError::RepositoryNotFoundException(_) => "RepositoryNotFoundException",
        BatchGetImageError::ServerException(_) => "ServerException",
        BatchGetImageError::UnableToGetUpstreamImageException(_) => {
            "UnableToGetUpstreamImageException"
        }
        other => other.code().unwrap_or("Unknown"),
    };
    code.to_string()
}

fn describe_images_code(error: &DescribeImagesError) -> String {
    let code = match error {
        DescribeImagesError::ImageNotFoundException(_) => "ImageNotFoundException",
        DescribeImagesError::InvalidParameterException(_) => "InvalidParameterException",
        DescribeImagesError::RepositoryNotFoundException(_) => "RepositoryNotFoundException",
        DescribeImagesError::ServerException(_) => "ServerException",
        other => other.code().unwrap_or("Unknown"),
    };
    code.to_string()
}

/// Adds the hint that fits the image to a failure.
fn with_context(
    result: &Answer,
    repository: &Repository,
    request: &Request,
    uncached: bool,
) -> Answer {
    match result {
        Answer::Failed(failure) => {
            let context = FailureContext {
                cache_repository: &repository.name,
                rule_prefix: &repository.rule_prefix,
                upstream_reference: &request.upstream_reference,
                docker_hub: request.docker_hub,
                uncached_digest_only: uncached && request.tag.is_none(),
            };
            Answer::Failed(Failure::from_ecr(&failure.code, &failure.message, &context))
        }
        other => other.clone(),
    }
}

fn outcome(
    image: &PlannedImage,
    repository: &Repository,
    request: &Request,
    resolved: &Resolved,
) -> ImageOutcome {
    let mut outcome = ImageOutcome {
        input: image.input.clone(),
        cache_repository: Some(repository.name.clone()),
        tag: request.tag.clone(),
        digest: request.digest.clone(),
        status: Status::Skipped,
        previous_digest: resolved.previous_digest.clone(),
        failure_code: None,
        message: None,
        hint: None,
        rule_prefix: Some(repository.rule_prefix.clone()),
        retryable: false,
    };
    match &resolved.answer {
        Answer::Pulled { digest } => {
            outcome.digest = digest.clone().or(outcome.digest);
            outcome.status = match &resolved.previous_digest {
                None => Status::Imported,
                Some(previous) if Some(previous) != digest.as_ref() => Status::Refreshed,
                Some(_) => Status::Unchanged,
            };
            if outcome.status != Status::Refreshed {
                outcome.previous_digest = None;
            }
        }
        Answer::Failed(failure) => {
            outcome.status = Status::Failed;
            outcome.failure_code = Some(failure.code.clone());
            outcome.message = Some(failure.message.clone());
            outcome.hint = failure.hint.clone();
            outcome.retryable = failure.retryable();
        }
        Answer::Skipped(message) => {
            outcome.message = Some(message.clone());
            outcome.retryable = true;
        }
    }
    outcome
}

/// An input that could not be planned: it failed before any call.
fn not_planned(image: &PlannedImage) -> ImageOutcome {
    let (code, hint) = if image.reference.is_none() {
        (
            "InvalidReference",
            "write the reference as for docker pull, e.g. nginx:1.27 or quay.io/org/app@sha256:...",
        )
    } else {
        (
            "NoMatchingRule",
            "`ecr-cache-warmer plan` shows how each reference maps onto the rules",
        )
    };
    ImageOutcome {
        input: image.input.clone(),
        cache_repository: None,
        tag: image
            .reference
            .as_ref()
            .and_then(|r| r.tag().map(str::to_string)),
        digest: image
            .reference
            .as_ref()
            .and_then(|r| r.digest().map(str::to_string)),
        status: Status::Failed,
        previous_digest: None,
        failure_code: Some(code.to_string()),
        message: image.error.clone(),
        hint: Some(hint.to_string()),
        rule_prefix: None,
        retryable: false,
    }
}

fn skipped_outcome(image: &PlannedImage) -> ImageOutcome {
    ImageOutcome {
        status: Status::Skipped,
        failure_code: None,
        message: Some(out_of_time()),
        hint: None,
        retryable: true,
        ..not_planned(image)
    }
}

fn out_of_time() -> String {
    "not attempted: the deadline was reached first".to_string()
}

/// A call made before the deadline, or not at all.
enum Attempted<T> {
    Done(T),
    OutOfTime,
}

/// Runs a call, again after a backoff while it fails for a retryable reason,
/// never past the deadline.
async fn call_with_retries<T, E, R, F, Fut>(
    options: &WarmOptions,
    code_of: fn(&E) -> String,
    mut call: F,
) -> Attempted<Result<T, SdkError<E, R>>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
{
    let mut backoff = Backoff::new(options.backoff, options.max_attempts, options.deadline);
    loop {
        let result = match options.deadline {
            Some(deadline) if Instant::now() >= deadline => return Attempted::OutOfTime,
            Some(deadline) => match tokio::time::timeout_at(deadline.into(), call()).await {
                Ok(result) => result,
                Err(_) => return Attempted::OutOfTime,
            },
            None => call().await,
        };
        let retryable = match &result {
            Err(SdkError::ServiceError(context)) => {
                crate::outcome::is_retryable(&code_of(context.err()))
            }
            Err(SdkError::TimeoutError(_) | SdkError::DispatchFailure(_)) => true,
            _ => false,
        };
        if !retryable || !backoff.wait().await {
            return Attempted::Done(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::sync::{Arc, Mutex};

    use aws_sdk_ecr::config::retry::RetryConfig;
    use aws_sdk_ecr::error::ErrorMetadata;
    use aws_sdk_ecr::operation::batch_get_image::BatchGetImageOutput;
    use aws_sdk_ecr::operation::describe_images::DescribeImagesOutput;
    use aws_sdk_ecr::types::error::{
        ImageNotFoundException, LimitExceededException, RepositoryNotFoundException,
        ServerException, UnableToGetUpstreamImageException,
    };
    use aws_sdk_ecr::types::{Image, ImageFailureCode};
    use aws_smithy_mocks::{mock, mock_client, MockResponse, Rule, RuleMode};

    use super::*;
    use crate::rules::Rules;

    fn digest(n: u32) -> String {
        format!("sha256:{n:064x}")
    }

    /// A registry as ECR shows it: what is cached, what upstream holds, and
    /// the answers it gives.
    #[derive(Default)]
    struct Registry {
        /// (repository, tag) → digest in the cache.
        cached: HashMap<(String, String), String>,
        /// (repository, tag) → digest upstream, or a failure code.
        upstream: HashMap<(String, String), Result<String, &'static str>>,
        /// Repositories whose first pull ECR refuses as "does not exist".
        denied: HashSet<String>,
        /// Whole BatchGetImage calls to answer with ThrottlingException first.
        throttle_calls: usize,
        /// Per-id UpstreamUnavailable answers to give first.
        unavailable_answers: usize,
        batch_calls: Vec<usize>,
        describe_calls: usize,
    }

    impl Registry {
        fn cache(&mut self, repository: &str, tag: &str, digest: String) {
            self.cached.insert((repository.into(), tag.into()), digest);
        }
        fn upstream(&mut self, repository: &str, tag: &str, answer: Result<String, &'static str>) {
            self.upstream
                .insert((repository.into(), tag.into()), answer);
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
                    .find(|((repo, _), d)| {
                        repo == repository && Some(d.as_str()) == id.image_digest()
                    })
                    .map(|(_, d)| d.clone()),
            }
        }
    }

    fn service_error(code: &str) -> ErrorMetadata {
        ErrorMetadata::builder()
            .code(code)
            .message(format!("{code} from ECR"))
            .build()
    }

    fn mock_ecr(registry: &Arc<Mutex<Registry>>) -> (aws_sdk_ecr::Client, Rule, Rule) {
        let state = registry.clone();
        let describe =
            mock!(aws_sdk_ecr::Client::describe_images).then_compute_response(move |req| {
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
                            return MockResponse::Error(
                                DescribeImagesError::ImageNotFoundException(
                                    ImageNotFoundException::builder()
                                        .message("no image")
                                        .build(),
                                ),
                            )
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
                        .failure_reason(format!(
                            "{code} for {}",
                            id.image_tag().unwrap_or("digest")
                        ))
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
                    Some(Ok(digest)) => {
                        if let Some(tag) = id.image_tag() {
                            registry.cache(&repository, tag, digest.clone());
                        }
                        let image_id = ImageIdentifier::builder()
                            .set_image_tag(id.image_tag().map(str::to_string))
                            .image_digest(digest)
                            .build();
                        output = output.images(
                            Image::builder()
                                .image_id(image_id)
                                .image_manifest("{}")
                                .build(),
                        );
                    }
                    Some(Err(code)) => output = output.failures(failure(code)),
                    None => output = output.failures(failure("ImageNotFound")),
                }
            }
            MockResponse::Output(output.build())
        });
        let client = mock_client!(aws_sdk_ecr, RuleMode::MatchAny, [&describe, &batch], |c| c
            .retry_config(RetryConfig::disabled()));
        (client, describe, batch)
    }

    fn fast() -> WarmOptions {
        WarmOptions {
            backoff: Duration::from_millis(1),
            ..WarmOptions::default()
        }
    }

    fn planned(inputs: &[&str]) -> Vec<PlannedImage> {
        let rules =
            Rules::parse_each(&["docker-hub=registry-1.docker.io", "quay=quay.io"]).unwrap();
        let inputs: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
        crate::plan::plan(&inputs, &rules)
    }

    async fn run(
        registry: &Arc<Mutex<Registry>>,
        inputs: &[&str],
        options: &WarmOptions,
    ) -> Report {
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
                duration_ms: report.summary.duration_ms
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
                "lower --concurrency",
                4,
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
        let options = WarmOptions {
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
        let options = WarmOptions {
            deadline: Some(Instant::now() + Duration::from_millis(300)),
            backoff: Duration::from_secs(1),
            ..WarmOptions::default()
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
}
