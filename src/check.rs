//! `check`: whether the cache holds each image as its upstream has it now,
//! without changing either. The cache is only described (DescribeImages,
//! which imports nothing and records no pull) and the upstream is only asked
//! for a manifest's digest with a HEAD, which Docker Hub does not count as a
//! pull. Entries are planned and selectors resolved by the one pipeline, so
//! that `check` looks at exactly the images `warm` would pull.

use std::collections::BTreeMap;
use std::time::Instant;

use aws_sdk_ecr::operation::describe_images::DescribeImagesError;
use aws_sdk_ecr::primitives::{DateTime, DateTimeFormat};
use aws_sdk_ecr::types::{ImageDetail, ImageIdentifier};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;

use crate::aws::describe_error;
use crate::pipeline::{Parcel, Pipeline};
use crate::plan::PlannedImage;
use crate::reference::Reference;

/// ECR takes at most 100 image ids per DescribeImages call.
const IDS_PER_CALL: usize = 100;
/// Manifests asked upstream at once.
const HEADS_AT_ONCE: usize = 8;
/// The tag Docker pulls when a reference names none.
const IMPLIED_TAG: &str = "latest";

/// What the cache holds of an image, against its upstream now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cache {
    /// Cached, and the cached digest is what the upstream's tag points at now.
    Fresh,
    /// Cached, but the upstream's tag points elsewhere: the next pull through
    /// the cache refreshes it, once the cache's 24-hour re-check allows.
    Stale,
    /// Not in the cache.
    Missing,
    /// Not known: the image could not be planned, described or asked upstream.
    Unknown,
}

impl Cache {
    pub const ALL: [Cache; 4] = [Cache::Fresh, Cache::Stale, Cache::Missing, Cache::Unknown];

    pub fn name(self) -> &'static str {
        match self {
            Cache::Fresh => "fresh",
            Cache::Stale => "stale",
            Cache::Missing => "missing",
            Cache::Unknown => "unknown",
        }
    }
}

/// One image of the check, as the JSON document gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckedImage {
    pub input: String,
    pub selector: Option<String>,
    pub cache_repository: Option<String>,
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub cache: Cache,
    pub cached_digest: Option<String>,
    pub upstream_digest: Option<String>,
    /// When the cache imported the image (RFC 3339).
    pub pushed_at: Option<String>,
    /// ECR's `lastRecordedPullTime`, when it has one.
    pub last_pulled: Option<String>,
    /// Why `cache` is `unknown`.
    pub error: Option<String>,
    /// The rule's ECR prefix, to count per upstream.
    #[serde(skip)]
    pub rule_prefix: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub total: usize,
    pub fresh: usize,
    pub stale: usize,
    pub missing: usize,
    pub unknown: usize,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub summary: Summary,
    pub images: Vec<CheckedImage>,
}

/// The check, and the images set apart because ECS pulls them without a
/// pull-through cache (as `warm` sets them apart).
#[derive(Debug, Default)]
pub struct Checked {
    pub report: Report,
    pub not_warmed: Vec<PlannedImage>,
}

impl Summary {
    pub fn count(&self, cache: Cache) -> usize {
        match cache {
            Cache::Fresh => self.fresh,
            Cache::Stale => self.stale,
            Cache::Missing => self.missing,
            Cache::Unknown => self.unknown,
        }
    }
}

impl Report {
    fn new(images: Vec<CheckedImage>, started: Instant) -> Report {
        let count = |cache| images.iter().filter(|image| image.cache == cache).count();
        Report {
            summary: Summary {
                total: images.len(),
                fresh: count(Cache::Fresh),
                stale: count(Cache::Stale),
                missing: count(Cache::Missing),
                unknown: count(Cache::Unknown),
                duration_ms: started.elapsed().as_millis() as u64,
            },
            images,
        }
    }

    pub fn all_fresh(&self) -> bool {
        self.summary.fresh == self.summary.total
    }
}

/// What is asked of ECR for one image: its tag, its digest, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    tag: Option<String>,
    digest: Option<String>,
}

/// An image in the cache, as DescribeImages tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cached {
    digest: Option<String>,
    pushed_at: Option<String>,
    last_pulled: Option<String>,
}

/// Plans the parcel, resolves its selectors, and checks every image.
pub async fn check(ecr: &aws_sdk_ecr::Client, pipeline: &Pipeline<'_>, parcel: Parcel) -> Checked {
    let started = Instant::now();
    let planned = pipeline.plan(parcel);
    let work = Pipeline::work(pipeline.resolve(vec![planned]).await);
    let deadline = pipeline.settings.deadline;
    let mut images: Vec<CheckedImage> = work.images.iter().map(unjudged).collect();

    let mut by_repository: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, image) in work.images.iter().enumerate() {
        if let (true, Some(target)) = (image.is_ready(), &image.target) {
            by_repository
                .entry(&target.cache_repository)
                .or_default()
                .push(index);
        }
    }
    for (repository, indices) in by_repository {
        let wanted: Vec<Wanted> = indices
            .iter()
            .filter_map(|&i| work.images[i].reference.as_ref().map(wanted))
            .collect();
        match describe(ecr, repository, &wanted).await {
            Ok(found) => {
                for (&i, (wanted, (by_tag, by_digest))) in
                    indices.iter().zip(wanted.iter().zip(found))
                {
                    judge_cached(&mut images[i], wanted, by_tag, by_digest);
                }
            }
            Err(error) => {
                for &i in &indices {
                    images[i].error = Some(error.clone());
                }
            }
        }
    }

    // Only a cached tag without a pin needs the upstream: the others are judged already.
    let heads: Vec<usize> = (0..images.len())
        .filter(|&i| images[i].cache == Cache::Unknown && images[i].error.is_none())
        .collect();
    let answers: Vec<(usize, Result<String, String>)> = stream::iter(heads)
        .map(|i| {
            let image = &work.images[i];
            let tag = images[i].tag.clone().unwrap_or_default();
            async move { (i, upstream_digest(pipeline, image, &tag, deadline).await) }
        })
        .buffer_unordered(HEADS_AT_ONCE)
        .collect()
        .await;
    for (i, answer) in answers {
        let image = &mut images[i];
        match answer {
            Ok(upstream) => {
                image.cache = match image.cached_digest.as_deref() == Some(upstream.as_str()) {
                    true => Cache::Fresh,
                    false => Cache::Stale,
                };
                image.upstream_digest = Some(upstream);
            }
            Err(error) => image.error = Some(error),
        }
    }
    Checked {
        report: Report::new(images, started),
        not_warmed: work.not_warmed,
    }
}

/// An image before ECR and the upstream are asked: `unknown`, with the
/// plan's error when it could not be planned.
fn unjudged(image: &PlannedImage) -> CheckedImage {
    let reference = image.reference.as_ref();
    let error = match image.is_ready() {
        true => None,
        false => Some(
            image
                .error
                .clone()
                .unwrap_or_else(|| "not planned: no rule maps it".to_string()),
        ),
    };
    CheckedImage {
        input: image.input.clone(),
        selector: image.selector.clone(),
        cache_repository: image.target.as_ref().map(|t| t.cache_repository.clone()),
        tag: reference.and_then(|r| wanted(r).tag),
        digest: reference.and_then(Reference::digest).map(str::to_string),
        cache: Cache::Unknown,
        cached_digest: None,
        upstream_digest: None,
        pushed_at: None,
        last_pulled: None,
        error,
        rule_prefix: image.target.as_ref().map(|t| t.rule_prefix.clone()),
    }
}

fn wanted(reference: &Reference) -> Wanted {
    let digest = reference.digest().map(str::to_string);
    let tag = match (reference.tag(), &digest) {
        (Some(tag), _) => Some(tag.to_string()),
        (None, None) => Some(IMPLIED_TAG.to_string()),
        (None, Some(_)) => None,
    };
    Wanted { tag, digest }
}

/// Judges what ECR alone can tell: an image not cached is missing; a digest
/// never goes stale; a pinned tag is fresh when the pin is what the cache
/// holds. A cached tag without a pin stays `unknown` until the upstream says
/// where it points now.
fn judge_cached(
    image: &mut CheckedImage,
    wanted: &Wanted,
    by_tag: Option<Cached>,
    by_digest: Option<Cached>,
) {
    // A pull of `tag@digest` asks for the digest: it works when the pin is cached.
    let Some(cached) = by_tag.or_else(|| by_digest.clone()) else {
        image.cache = Cache::Missing;
        image.upstream_digest = wanted.digest.clone();
        return;
    };
    image.cached_digest = cached.digest.clone();
    image.pushed_at = cached.pushed_at;
    image.last_pulled = cached.last_pulled;
    let Some(pin) = &wanted.digest else {
        return;
    };
    image.upstream_digest = Some(pin.clone());
    // A pin of one platform of the tag's index is cached under its own digest.
    image.cache = match cached.digest.as_ref() == Some(pin) || by_digest.is_some() {
        true => Cache::Fresh,
        false => Cache::Stale,
    };
}

/// The digest the upstream's tag points at now, from a HEAD with the rule's
/// credential.
async fn upstream_digest(
    pipeline: &Pipeline<'_>,
    image: &PlannedImage,
    tag: &str,
    deadline: Option<Instant>,
) -> Result<String, String> {
    let reference = image
        .reference
        .as_ref()
        .ok_or_else(|| "no reference to ask upstream".to_string())?;
    let resolver = pipeline.resolver;
    let login = resolver
        .login_for(reference, pipeline.rules, deadline)
        .await
        .map_err(|error| error.to_string())?;
    let head = resolver
        .head_of(reference, tag, login.as_deref(), pipeline.rules, deadline)
        .await
        .map_err(|error| error.to_string())?;
    head.digest.ok_or_else(|| {
        format!(
            "the upstream registry answered the HEAD of {}:{tag} without a Docker-Content-Digest \
             header, so the cached digest cannot be compared with it",
            reference.name()
        )
    })
}

/// What the cache holds of each wanted image: by its tag, and by its digest.
type Found = (Option<Cached>, Option<Cached>);

/// Describes the wanted images of one repository, at most 100 ids a call.
/// A repository that does not exist holds nothing. DescribeImages fails
/// whole when one id is missing; then the repository is listed instead.
async fn describe(
    ecr: &aws_sdk_ecr::Client,
    repository: &str,
    wanted: &[Wanted],
) -> Result<Vec<Found>, String> {
    let ids: Vec<ImageIdentifier> = wanted.iter().flat_map(ids_of).collect();
    let mut details = Vec::new();
    for chunk in ids.chunks(IDS_PER_CALL) {
        let described = ecr
            .describe_images()
            .repository_name(repository)
            .set_image_ids(Some(chunk.to_vec()))
            .send()
            .await;
        match described {
            Ok(output) => details.extend(output.image_details().iter().cloned()),
            Err(error) => match error.as_service_error() {
                Some(DescribeImagesError::RepositoryNotFoundException(_)) => {
                    return Ok(vec![(None, None); wanted.len()])
                }
                Some(DescribeImagesError::ImageNotFoundException(_)) if chunk.len() == 1 => {}
                Some(DescribeImagesError::ImageNotFoundException(_)) => {
                    let details = list(ecr, repository).await?;
                    return Ok(wanted.iter().map(|w| found(&details, w)).collect());
                }
                _ => {
                    return Err(format!(
                        "DescribeImages of {repository}: {}",
                        describe_error(&error)
                    ))
                }
            },
        }
    }
    Ok(wanted.iter().map(|w| found(&details, w)).collect())
}

fn ids_of(wanted: &Wanted) -> Vec<ImageIdentifier> {
    let tag = wanted
        .tag
        .iter()
        .map(|tag| ImageIdentifier::builder().image_tag(tag).build());
    let digest = wanted
        .digest
        .iter()
        .map(|digest| ImageIdentifier::builder().image_digest(digest).build());
    tag.chain(digest).collect()
}

/// Every image of the repository, page by page.
async fn list(ecr: &aws_sdk_ecr::Client, repository: &str) -> Result<Vec<ImageDetail>, String> {
    let mut details = Vec::new();
    let mut pages = ecr
        .describe_images()
        .repository_name(repository)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(output) => details.extend(output.image_details().iter().cloned()),
            Err(error) => {
                if let Some(DescribeImagesError::RepositoryNotFoundException(_)) =
                    error.as_service_error()
                {
                    return Ok(Vec::new());
                }
                return Err(format!(
                    "DescribeImages of {repository}: {}",
                    describe_error(&error)
                ));
            }
        }
    }
    Ok(details)
}

fn found(details: &[ImageDetail], wanted: &Wanted) -> Found {
    let by_tag = wanted.tag.as_ref().and_then(|tag| {
        details
            .iter()
            .find(|detail| detail.image_tags().contains(tag))
    });
    let by_digest = wanted.digest.as_deref().and_then(|digest| {
        details
            .iter()
            .find(|detail| detail.image_digest() == Some(digest))
    });
    (by_tag.map(cached), by_digest.map(cached))
}

fn cached(detail: &ImageDetail) -> Cached {
    Cached {
        digest: detail.image_digest().map(str::to_string),
        pushed_at: detail.image_pushed_at().and_then(rfc3339),
        last_pulled: detail.last_recorded_pull_time().and_then(rfc3339),
    }
}

fn rfc3339(time: &DateTime) -> Option<String> {
    time.fmt(DateTimeFormat::DateTime).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(tag: Option<&str>, digest: Option<&str>) -> (CheckedImage, Wanted) {
        let planned = PlannedImage::new(
            "nginx:1.27",
            &crate::rules::Rules::parse_each(&["docker-hub=registry-1.docker.io"]).unwrap(),
        );
        let wanted = Wanted {
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
        };
        (unjudged(&planned), wanted)
    }

    fn at(digest: &str) -> Option<Cached> {
        Some(Cached {
            digest: Some(digest.to_string()),
            pushed_at: Some("2026-11-30T10:00:00Z".into()),
            last_pulled: None,
        })
    }

    #[test]
    fn what_the_cache_alone_tells() {
        let (mut missing, wanted) = image(Some("1.27"), None);
        judge_cached(&mut missing, &wanted, None, None);
        assert_eq!(missing.cache, Cache::Missing);

        // A cached tag waits for the upstream's word.
        let (mut cached, wanted) = image(Some("1.27"), None);
        judge_cached(&mut cached, &wanted, at("sha256:a"), None);
        assert_eq!(cached.cache, Cache::Unknown);
        assert_eq!(cached.cached_digest.as_deref(), Some("sha256:a"));
        assert_eq!(cached.pushed_at.as_deref(), Some("2026-11-30T10:00:00Z"));

        let (mut digest, wanted) = image(None, Some("sha256:a"));
        judge_cached(&mut digest, &wanted, None, at("sha256:a"));
        assert_eq!(digest.cache, Cache::Fresh);
        assert_eq!(digest.upstream_digest.as_deref(), Some("sha256:a"));
        let (mut uncached, wanted) = image(None, Some("sha256:a"));
        judge_cached(&mut uncached, &wanted, None, None);
        assert_eq!(uncached.cache, Cache::Missing);

        let (mut moved, wanted) = image(Some("1.26"), Some("sha256:old"));
        judge_cached(&mut moved, &wanted, at("sha256:new"), None);
        assert_eq!(moved.cache, Cache::Stale);
        let (mut platform, wanted) = image(Some("1.27"), Some("sha256:arm64"));
        judge_cached(
            &mut platform,
            &wanted,
            at("sha256:index"),
            at("sha256:arm64"),
        );
        assert_eq!(platform.cache, Cache::Fresh);
    }
}
