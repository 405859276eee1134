//! The upstream's pull budget. Docker Hub allows 100 pulls per 6 hours
//! without an account and 200 with a free one, and the cache's imports are
//! pulls of the rule's credential, shared with everyone who uses it. A HEAD of
//! a manifest says what is left (`ratelimit-remaining: N;w=21600`) and spends
//! nothing, so before importing through Docker Hub the warm reads it, counts
//! what its imports would spend (one pull per manifest: an index and each
//! platform), and starts only what fits, keeping a reserve for the others.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};

use crate::host;
use crate::outcome::PullsLeft;
use crate::plan::{PlanFailure, PlannedImage};
use crate::rules::Rules;
use crate::upstream::error::RegistryError;
use crate::upstream::manifest::{is_index, ManifestHead, RateLimit};
use crate::upstream::resolver::{upstream_repository, Resolver};
use crate::warm::settings::WarmSettings;

/// HEADs asked at once.
const CONCURRENCY: usize = 8;
/// What reading the budget may take: past it, the warm goes on without one.
const ASK_WITHIN: Duration = Duration::from_secs(10);
/// What the first HEAD may take.
const PROBE_WITHIN: Duration = Duration::from_secs(2);
/// Platforms an index is counted for when the warm does not name them.
const PLATFORMS_OF_AN_INDEX: u64 = 2;

pub const OVER_BUDGET: PlanFailure = PlanFailure {
    code: "UpstreamPullBudget",
    hint: "Docker Hub counts pulls over a rolling window (w= in its ratelimit headers, 6 hours): \
           pulls come back as the oldest leave it, and the function tries again by itself. Warm \
           fewer new images at once, give the rule a credential with a higher limit, or lower \
           the reserve kept for other users (--pull-reserve, WARM_PULL_RESERVE)",
    retryable: true,
    skipped: true,
};

/// The images, with those whose imports would not fit in what their Docker
/// Hub rule has left (less the reserve) held back as `UpstreamPullBudget`;
/// and what each such upstream has left.
pub async fn hold_back(
    ecr: &aws_sdk_ecr::Client,
    resolver: &Resolver,
    rules: &Rules,
    images: Vec<PlannedImage>,
    settings: &WarmSettings,
) -> (Vec<PlannedImage>, Vec<PullsLeft>) {
    let ask_by = Instant::now() + ASK_WITHIN;
    let ask_by = settings
        .deadline
        .map_or(ask_by, |deadline| deadline.min(ask_by));
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, image) in images.iter().enumerate() {
        if let Some(prefix) = counted(image, rules) {
            groups.entry(prefix).or_default().push(index);
        }
    }
    let mut held = images;
    let mut left = Vec::new();
    for (prefix, members) in groups {
        let asked = budget(
            ecr,
            resolver,
            rules,
            &held,
            &members,
            settings,
            Some(ask_by),
        );
        let Ok(Some((pulls, over))) = tokio::time::timeout_at(ask_by.into(), asked).await else {
            continue;
        };
        for index in over {
            let needs = held[index].clone();
            held[index] = needs.unselected(
                OVER_BUDGET,
                format!(
                    "{} of {} pulls left in the upstream's window{}, {}% kept for other users \
                     of the credential: this import does not fit now",
                    pulls.remaining,
                    pulls.limit,
                    pulls
                        .window_seconds
                        .map_or(String::new(), |w| format!(" of {} h", w / 3600)),
                    settings.pull_reserve,
                ),
            );
        }
        left.push(PullsLeft {
            upstream: prefix,
            limit: pulls.limit,
            remaining: pulls.remaining,
            window_s: pulls.window_seconds,
        });
    }
    (held, left)
}

/// The rule prefix of an image whose import Docker Hub counts: a tag, ready
/// to pull, through a rule whose upstream is Docker Hub.
fn counted(image: &PlannedImage, rules: &Rules) -> Option<String> {
    let reference = image.reference.as_ref()?;
    let target = image.target.as_ref()?;
    reference.tag()?;
    let (registry, _) = upstream_repository(reference, rules);
    (image.is_ready() && host::is_docker_hub_host(&registry)).then(|| target.rule_prefix.clone())
}

/// What one rule's upstream has left, and which of `members` do not fit;
/// `None` when the upstream does not say (no headers, or no answer).
async fn budget(
    ecr: &aws_sdk_ecr::Client,
    resolver: &Resolver,
    rules: &Rules,
    images: &[PlannedImage],
    members: &[usize],
    settings: &WarmSettings,
    deadline: Option<Instant>,
) -> Option<(RateLimit, Vec<usize>)> {
    let uncached = uncached(ecr, images, members).await;
    let first = images[*uncached.first()?].reference.as_ref()?;
    let login = resolver.login_for(first, rules, deadline).await.ok()?;
    let login = login.as_deref();
    // One HEAD first, briefly: an upstream that says nothing of a limit, or
    // does not answer, costs the warm no more than this.
    let probe = resolver.head_of(first, first.tag()?, login, rules, deadline);
    let probed = tokio::time::timeout(PROBE_WITHIN, probe).await.ok()?;
    match &probed {
        Ok(head) if head.rate_limit.is_some() => {}
        Err(error) if error.kind() == "not-found" => {}
        _ => return None,
    }
    let mut heads = vec![counted_head(uncached[0], probed, settings)];
    let rest: Vec<(usize, Option<RateLimit>, u64)> = stream::iter(&uncached[1..])
        .map(|&index| async move {
            let Some(reference) = images[index].reference.as_ref() else {
                return (index, None, 0);
            };
            let tag = reference.tag().unwrap_or_default();
            let head = resolver
                .head_of(reference, tag, login, rules, deadline)
                .await;
            counted_head(index, head, settings)
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    heads.extend(rest);
    // The least left that any answer reported: the freshest count.
    let pulls = heads
        .iter()
        .filter_map(|(_, limit, _)| *limit)
        .min_by_key(|limit| limit.remaining)?;
    let reserve = (pulls.limit * u64::from(settings.pull_reserve)).div_ceil(100);
    let mut available = pulls.remaining.saturating_sub(reserve);
    let mut over = Vec::new();
    for (index, _, cost) in heads {
        match cost <= available {
            true => available -= cost,
            false => over.push(index),
        }
    }
    Some((pulls, over))
}

/// What a HEAD says of one import: the image, the upstream's count, and the
/// pulls the import would spend (an index: one, and one per platform).
fn counted_head(
    index: usize,
    head: Result<ManifestHead, RegistryError>,
    settings: &WarmSettings,
) -> (usize, Option<RateLimit>, u64) {
    // A tag the upstream does not have is no pull: it fails on its own.
    let head = match head {
        Err(error) if error.kind() == "not-found" => return (index, None, 0),
        head => head.ok(),
    };
    let cost = match head.as_ref().and_then(|h| h.media_type.as_deref()) {
        Some(media_type) if is_index(media_type) => {
            1 + match settings.platforms.len() as u64 {
                0 => PLATFORMS_OF_AN_INDEX,
                n => n,
            }
        }
        _ => 1,
    };
    (index, head.and_then(|h| h.rate_limit), cost)
}

/// The members whose tag the cache does not hold yet: only those are pulls.
async fn uncached(
    ecr: &aws_sdk_ecr::Client,
    images: &[PlannedImage],
    members: &[usize],
) -> Vec<usize> {
    let mut repositories: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &index in members {
        if let Some(target) = &images[index].target {
            repositories
                .entry(target.cache_repository.as_str())
                .or_default()
                .push(index);
        }
    }
    let mut uncached = Vec::new();
    for (repository, indices) in repositories {
        let cached = cached_tags(ecr, repository).await;
        for index in indices {
            let tag = images[index].reference.as_ref().and_then(|r| r.tag());
            if !tag.is_some_and(|tag| cached.contains(tag)) {
                uncached.push(index);
            }
        }
    }
    uncached.sort_unstable();
    uncached
}

/// The tags a cache repository holds (none when it does not exist yet).
async fn cached_tags(ecr: &aws_sdk_ecr::Client, repository: &str) -> HashSet<String> {
    let mut pages = ecr
        .list_images()
        .repository_name(repository)
        .into_paginator()
        .items()
        .send();
    let mut tags = HashSet::new();
    while let Some(Ok(id)) = pages.next().await {
        if let Some(tag) = id.image_tag() {
            tags.insert(tag.to_string());
        }
    }
    tags
}
