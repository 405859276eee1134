//! The one rule for what a warm leaves, on every trigger: an image that is
//! not warm for a reason that may pass (throttling, an upstream outage or
//! rate limit, a layer the upstream did not give, the network, the deadline,
//! blobs still pending, a listing of tags that failed) goes back on the
//! queue by itself, with a delay that grows from `WARM_RECHECK_DELAY` up to
//! SQS's 15 minutes and its own count of tries. It is `retrying` until its
//! last try, and then `failed` with its last reason.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::fanout::Delivery;
use crate::outcome::{Failure, FailureContext, ImageOutcome, Retry, Status};
use crate::warm::settings::{WarmSettings, MAX_RECHECK_DELAY};
use crate::warm::Report;

use super::publish::Lost;
use super::queue;
use super::warmer::Warmer;

/// What became of the images a warm left.
#[derive(Debug, Default)]
pub struct SentBack {
    /// Per image of the report: it was to go back on the queue, and could not.
    pub unsent: Vec<bool>,
}

/// Whether trying again later may warm the image.
pub fn may_pass(image: &ImageOutcome) -> bool {
    match image.status {
        Status::Skipped | Status::Pending => true,
        Status::Failed => image.retryable,
        _ => false,
    }
}

/// How long an image waits on the queue before its next try, after `sent`
/// times back already: the re-check delay, doubled each time, at most 15
/// minutes. An image skipped at the deadline was not tried: it goes at once.
pub fn delay(settings: &WarmSettings, image: &ImageOutcome, sent: u32) -> Duration {
    // Held back for the upstream's pull budget: pulls come back only as the
    // window slides, so it waits the longest SQS allows.
    if image.failure_code.as_deref() == Some(crate::pulls::OVER_BUDGET.code) {
        return MAX_RECHECK_DELAY;
    }
    if image.status == Status::Skipped {
        return Duration::ZERO;
    }
    let factor = 2u32.saturating_pow(sent.min(16));
    settings
        .recheck_delay
        .saturating_mul(factor)
        .min(MAX_RECHECK_DELAY)
}

/// Sends back what may pass, each image with `sent[i]`, the times it came
/// back already; an image out of tries fails with its last reason. Without
/// a queue nothing is sent, and every status stays as the warm left it.
pub async fn send_back(
    warmer: &Warmer,
    report: &mut Report,
    sent: &[u32],
    send_by: Option<Instant>,
    lost: &mut Lost,
) -> SentBack {
    let settings = &warmer.settings.warm;
    let mut result = SentBack {
        unsent: vec![false; report.images.len()],
    };
    let Some(queue_url) = &warmer.settings.queue_url else {
        for (index, image) in report.images.iter().enumerate() {
            result.unsent[index] = may_pass(image);
        }
        return result;
    };
    // Images that go back together: the same try, the same delay.
    let mut groups: BTreeMap<(u32, Duration), Vec<usize>> = BTreeMap::new();
    for (index, image) in report.images.iter_mut().enumerate() {
        if !may_pass(image) {
            continue;
        }
        let times = sent.get(index).copied().unwrap_or_default();
        if times >= settings.recheck_attempts {
            give_up(image, times + 1);
            continue;
        }
        groups
            .entry((times + 1, delay(settings, image, times)))
            .or_default()
            .push(index);
    }
    let selectors = queue::selectors_of(report);
    for ((recheck, delay), indices) in groups {
        let inputs: Vec<String> = indices
            .iter()
            .map(|&index| report.images[index].input.clone())
            .collect();
        let delivery = Delivery {
            delay,
            recheck,
            selectors: Some(&selectors),
        };
        let enqueued = queue::enqueue(warmer, queue_url, &inputs, delivery, send_by).await;
        lost.not_enqueued += enqueued.failed_images.len();
        for index in indices {
            let image = &mut report.images[index];
            if enqueued.failed_images.contains(&image.input) {
                result.unsent[index] = true;
                continue;
            }
            image.status = Status::Retrying;
            image.retry = Some(Retry {
                attempt: recheck + 1,
                last_attempt: settings.recheck_attempts + 1,
                delay_s: delay.as_secs(),
                message_id: enqueued.message_ids.get(&image.input).cloned(),
            });
        }
    }
    report.recount();
    result
}

/// An image that was tried as often as allowed: `failed`, with its last
/// reason and what to do.
fn give_up(image: &mut ImageOutcome, tries: u32) {
    let (code, message) = match image.status {
        Status::Pending => (
            "LayersNotCached",
            format!(
                "still pending after {tries} tries: {}",
                image.message.take().unwrap_or_default()
            ),
        ),
        Status::Skipped => (
            "DeadlineReached",
            format!("not started before the invocation's deadline in {tries} tries"),
        ),
        _ => {
            image.retryable = false;
            if let Some(message) = &mut image.message {
                message.push_str(&format!(" (after {tries} tries)"));
            }
            return;
        }
    };
    let context = FailureContext {
        cache_repository: image.cache_repository.as_deref().unwrap_or_default(),
        rule_prefix: image.rule_prefix.as_deref().unwrap_or_default(),
        upstream_reference: &image.input,
        docker_hub: false,
        uncached_digest_only: false,
    };
    let failure = Failure::from_ecr(code, &message, &context);
    image.status = Status::Failed;
    image.retryable = false;
    image.failure_code = Some(failure.code);
    image.message = Some(failure.message);
    image.hint = failure.hint;
}
