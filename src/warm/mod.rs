//! The warm engine: pull every planned image through the cache, every wanted
//! platform and every blob, and say what happened to each.
//!
//! Per cache repository ([`repository`]): DescribeImages learns what is cached
//! already (it never creates anything), BatchGetImage pulls the tags and
//! digests asked, which makes ECR import or re-check them upstream, then the
//! manifest of each wanted platform of a multi-arch index ([`manifest`],
//! [`platform`]), then GetDownloadUrlForLayer for every blob ([`layers`]).
//! Repositories are worked on concurrently under one bound on the calls in
//! flight ([`call`]) and one adaptive rate per operation ([`rate`]): throttling
//! slows every repository down and is retried under the rate, outages are
//! retried with backoff, and nothing starts after the deadline.

mod call;
pub mod layers;
mod manifest;
pub mod platform;
mod rate;
mod repository;
pub mod settings;

use std::collections::HashMap;
use std::time::Instant;

use futures_util::stream::{self, StreamExt};
use serde::Serialize;

pub use layers::LayerMode;
pub use platform::Platform;
pub use repository::ACCEPTED_MEDIA_TYPES;

use call::Engine;
use layers::BlobState;
use repository::{Answer, PlatformPull, PlatformState, Repository, Request, Resolved};

use crate::outcome::{
    Failure, FailureContext, ImageOutcome, LayerCounts, PlatformOutcome, PullsLeft, Status,
};
use crate::plan::PlannedImage;
use settings::WarmSettings;

/// The `warm --output json` document.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub summary: Summary,
    pub images: Vec<ImageOutcome>,
    /// What the upstreams that count pulls said they have left.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pulls_left: Vec<PullsLeft>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub total: usize,
    pub imported: usize,
    pub refreshed: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub skipped: usize,
    pub pending: usize,
    pub retrying: usize,
    pub duration_ms: u64,
    /// Distinct blobs, per cache repository.
    pub layers: LayerCounts,
}

impl Summary {
    /// The number of images with a status.
    pub fn count(&self, status: Status) -> usize {
        match status {
            Status::Imported => self.imported,
            Status::Refreshed => self.refreshed,
            Status::Unchanged => self.unchanged,
            Status::Failed => self.failed,
            Status::Skipped => self.skipped,
            Status::Pending => self.pending,
            Status::Retrying => self.retrying,
        }
    }

    fn count_mut(&mut self, status: Status) -> &mut usize {
        match status {
            Status::Imported => &mut self.imported,
            Status::Refreshed => &mut self.refreshed,
            Status::Unchanged => &mut self.unchanged,
            Status::Failed => &mut self.failed,
            Status::Skipped => &mut self.skipped,
            Status::Pending => &mut self.pending,
            Status::Retrying => &mut self.retrying,
        }
    }
}

impl Report {
    /// Counts the images by status again, after an outcome was changed.
    pub fn recount(&mut self) {
        let summary = &mut self.summary;
        summary.total = self.images.len();
        for status in Status::ALL {
            *summary.count_mut(status) = 0;
        }
        for image in &self.images {
            *summary.count_mut(image.status) += 1;
        }
    }

    /// Every image reached imported, refreshed or unchanged.
    pub fn all_warm(&self) -> bool {
        self.images.iter().all(|image| image.status.is_warm())
    }
}

/// Warms every planned image and returns one outcome per input, in input order.
/// `progress` is told how many inputs have reached their outcome so far.
pub async fn warm(
    ecr: &aws_sdk_ecr::Client,
    planned: &[PlannedImage],
    options: &WarmSettings,
    progress: &(dyn Fn(usize) + Sync),
) -> Report {
    let started = Instant::now();
    let engine = Engine::new(ecr, options);
    let mut outcomes: Vec<Option<ImageOutcome>> = vec![None; planned.len()];
    for (index, image) in planned.iter().enumerate() {
        if !image.is_ready() {
            outcomes[index] = Some(not_planned(image));
        }
    }
    let mut done = outcomes.iter().flatten().count();
    progress(done);

    let mut layers = LayerCounts::default();
    let repositories = repository::group_by_repository(planned);
    let engine = &engine;
    let mut results = stream::iter(repositories)
        .map(|repository| async move {
            let warmed = repository::warm_repository(engine, &repository).await;
            (repository, warmed)
        })
        .buffer_unordered(options.concurrency.max(1));
    while let Some((repository, warmed)) = results.next().await {
        for state in warmed.blobs.values() {
            layers.add(state);
        }
        for (request, resolved) in repository.requests.iter().zip(&warmed.resolved) {
            for &index in &request.inputs {
                let outcome = outcome(
                    &planned[index],
                    &repository,
                    request,
                    resolved,
                    &warmed.blobs,
                    options,
                );
                outcomes[index] = Some(outcome);
                done += 1;
            }
        }
        progress(done);
    }

    let images: Vec<ImageOutcome> = outcomes
        .into_iter()
        .zip(planned)
        .map(|(outcome, image)| {
            outcome.unwrap_or_else(|| {
                // Every planned input belongs to a repository; this is only a safety net.
                let mut outcome = not_planned(image);
                outcome.status = Status::Skipped;
                outcome.failure_code = None;
                outcome.message = Some(repository::out_of_time());
                outcome.hint = None;
                outcome.retryable = true;
                outcome
            })
        })
        .collect();
    let mut report = Report {
        pulls_left: Vec::new(),
        summary: Summary {
            duration_ms: started.elapsed().as_millis() as u64,
            layers,
            ..Summary::default()
        },
        images,
    };
    report.recount();
    report
}

impl LayerCounts {
    fn add(&mut self, state: &BlobState) {
        self.total += 1;
        match state {
            BlobState::Cached => self.cached += 1,
            BlobState::Pending(_) => self.pending += 1,
            BlobState::Failed(_) => self.failed += 1,
        }
    }
}

/// What one input became: its pull, then the worst of its platforms.
fn outcome(
    image: &PlannedImage,
    repository: &Repository,
    request: &Request,
    resolved: &Resolved,
    blobs: &HashMap<String, BlobState>,
    options: &WarmSettings,
) -> ImageOutcome {
    let context = FailureContext {
        cache_repository: &repository.name,
        rule_prefix: &repository.rule_prefix,
        upstream_reference: &request.upstream_reference,
        docker_hub: request.docker_hub,
        uncached_digest_only: resolved.previous_digest.is_none() && request.tag.is_none(),
    };
    let mut outcome = ImageOutcome {
        input: image.input.clone(),
        selector: image.selector.clone(),
        source: image.source.clone(),
        cache_repository: Some(repository.name.clone()),
        tag: request.tag.clone(),
        digest: request.digest.clone(),
        status: Status::Skipped,
        previous_digest: resolved.previous_digest.clone(),
        failure_code: None,
        message: None,
        hint: None,
        platforms: Vec::new(),
        via_tag: image.via_tag.clone(),
        retry: None,
        rule_prefix: Some(repository.rule_prefix.clone()),
        retryable: false,
    };
    match &resolved.answer {
        Answer::Pulled { digest, .. } => {
            outcome.digest = digest.clone().or(outcome.digest);
            let pulled = match &resolved.previous_digest {
                None => Status::Imported,
                Some(previous) if Some(previous) != digest.as_ref() => Status::Refreshed,
                Some(_) => Status::Unchanged,
            };
            if pulled != Status::Refreshed {
                outcome.previous_digest = None;
            }
            outcome.platforms = resolved
                .platforms
                .iter()
                .map(|platform| platform_outcome(platform, pulled, blobs))
                .collect();
            outcome.status = pulled;
            judge_platforms(&mut outcome, &resolved.platforms, blobs, options, &context);
        }
        Answer::Failed(failure) => fail(&mut outcome, failure, &context),
        Answer::Skipped(message) => {
            outcome.message = Some(message.clone());
            outcome.retryable = true;
        }
    }
    outcome
}

fn platform_outcome(
    pull: &PlatformPull,
    pulled: Status,
    blobs: &HashMap<String, BlobState>,
) -> PlatformOutcome {
    let (status, layers) = match &pull.state {
        PlatformState::Manifest => (pulled, None),
        PlatformState::Failed(_) => (Status::Failed, None),
        PlatformState::Skipped(_) => (Status::Skipped, None),
        PlatformState::Blobs(digests) => {
            let mut counts = LayerCounts::default();
            for digest in digests {
                let not_asked = BlobState::Pending(String::new());
                counts.add(blobs.get(digest).unwrap_or(&not_asked));
            }
            let status = if counts.failed > 0 {
                Status::Failed
            } else if counts.pending > 0 {
                Status::Pending
            } else {
                pulled
            };
            (status, Some(counts))
        }
    };
    PlatformOutcome {
        platform: pull.platform.clone(),
        digest: pull.digest.clone(),
        status,
        layers,
    }
}

/// An image is only as warm as its least warm platform: a failed manifest or
/// blob fails it, an unpulled platform skips it, a blob not on ECR's storage
/// leaves it pending.
fn judge_platforms(
    outcome: &mut ImageOutcome,
    platforms: &[PlatformPull],
    blobs: &HashMap<String, BlobState>,
    options: &WarmSettings,
    context: &FailureContext<'_>,
) {
    let named = |platform: &PlatformPull| match &platform.platform {
        Some(name) => format!("{name}: "),
        None => String::new(),
    };
    let blob_states = |platform: &PlatformPull| match &platform.state {
        PlatformState::Blobs(digests) => digests
            .iter()
            .map(|digest| (digest.clone(), blobs.get(digest).cloned()))
            .collect(),
        _ => Vec::new(),
    };
    for platform in platforms {
        if let PlatformState::Failed(failure) = &platform.state {
            let failure = Failure::new(
                &failure.code,
                &format!("{}{}", named(platform), failure.message),
            );
            return fail(outcome, &failure, context);
        }
        for (digest, state) in blob_states(platform) {
            if let Some(BlobState::Failed(failure)) = state {
                let failure = Failure::new(
                    &failure.code,
                    &format!("{}blob {digest}: {}", named(platform), failure.message),
                );
                return fail(outcome, &failure, context);
            }
        }
    }
    if let Some(platform) = platforms
        .iter()
        .find(|p| matches!(p.state, PlatformState::Skipped(_)))
    {
        if let PlatformState::Skipped(message) = &platform.state {
            outcome.status = Status::Skipped;
            outcome.message = Some(format!("{}{message}", named(platform)));
            outcome.retryable = true;
        }
        return;
    }
    let mut total = 0;
    let mut pending: Vec<(String, String)> = Vec::new();
    for platform in platforms {
        for (digest, state) in blob_states(platform) {
            total += 1;
            match state {
                Some(BlobState::Pending(reason)) => pending.push((digest, reason)),
                None => pending.push((digest, "not asked".to_string())),
                _ => {}
            }
        }
    }
    if let Some((digest, reason)) = pending.first() {
        outcome.status = Status::Pending;
        outcome.retryable = true;
        outcome.message = Some(format!(
            "{} of {total} blobs are not on ECR's layer storage after waiting up to {}s; \
             first {digest}: {reason}",
            pending.len(),
            options.layer_wait.as_secs()
        ));
        outcome.hint = Some(
            "ECR has the manifests but is still getting these blobs from upstream, so a pull \
             from a private subnet would fail on them now. Warm again later (the Lambda function \
             checks again by itself), or give it more time with --layer-wait (WARM_LAYER_WAIT)"
                .to_string(),
        );
    }
}

fn fail(outcome: &mut ImageOutcome, failure: &Failure, context: &FailureContext<'_>) {
    let failure = Failure::from_ecr(&failure.code, &failure.message, context);
    outcome.status = Status::Failed;
    outcome.retryable = failure.retryable();
    outcome.failure_code = Some(failure.code);
    outcome.message = Some(failure.message);
    outcome.hint = failure.hint;
}

/// An input that could not be planned: it failed before any call.
fn not_planned(image: &PlannedImage) -> ImageOutcome {
    let (code, hint) = match (&image.failure, &image.reference) {
        (Some(failure), _) => (failure.code, failure.hint),
        // Selectors are listed before the warm; one that was not has no tag to pull.
        _ if image.unresolved.is_some() => (
            "UpstreamTagsUnavailable",
            "the selector's tags upstream were not listed before the warm",
        ),
        (None, None) => (
            "InvalidReference",
            "write the reference as for docker pull, e.g. nginx:1.27 or quay.io/org/app@sha256:...",
        ),
        (None, Some(_)) => (
            "NoMatchingRule",
            "`ecr-cache-warmer plan` shows how each reference maps onto the rules",
        ),
    };
    ImageOutcome {
        input: image.input.clone(),
        selector: image.selector.clone(),
        source: image.source.clone(),
        cache_repository: image.target.as_ref().map(|t| t.cache_repository.clone()),
        tag: image
            .reference
            .as_ref()
            .and_then(|r| r.tag().map(str::to_string)),
        digest: image
            .reference
            .as_ref()
            .and_then(|r| r.digest().map(str::to_string)),
        status: match image.failure.as_ref().is_some_and(|f| f.skipped) {
            true => Status::Skipped,
            false => Status::Failed,
        },
        previous_digest: None,
        failure_code: Some(code.to_string()),
        message: image.error.clone(),
        hint: Some(hint.to_string()),
        platforms: Vec::new(),
        via_tag: None,
        retry: None,
        rule_prefix: image.target.as_ref().map(|t| t.rule_prefix.clone()),
        // Listing upstream may work next time; a malformed entry will not.
        retryable: image
            .failure
            .as_ref()
            .map_or(image.unresolved.is_some(), |f| f.retryable),
    }
}

#[cfg(test)]
mod tests;
