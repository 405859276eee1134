//! The function's answer to `{"check": true}` (the configured list) or
//! `{"check": [...]}`: the same document as `check --output json`, and the
//! `Fresh`, `Stale`, `Missing` and `Unknown` metrics, so that a schedule can
//! watch the cache's staleness and an alarm fire on it. Nothing is warmed.

use serde_json::Value;

use crate::check;
use crate::metrics;

use super::budget::Budget;
use super::publish::Lost;
use super::triggers::{self, Wording};
use super::warmer::Warmer;

/// Checks the list given, or the configured one.
pub async fn check_list(
    warmer: &Warmer,
    given: Option<Vec<String>>,
    budget: Budget,
) -> Result<Value, lambda_runtime::Error> {
    let settings = &warmer.settings;
    let mut lost = Lost::default();
    let wording = Wording {
        nothing: "no images to check: set WARM_IMAGES, WARM_IMAGES_FILE, WARM_IMAGES_S3_URI or \
                  WARM_FROM_ECS, or send {\"check\": [...]}",
        split: "split the list over several check requests",
    };
    let mut configured = triggers::listed(warmer, given, budget, &mut lost, wording).await?;
    let warm_settings = settings.warm.until(budget.warm_by);
    let pipeline = warmer.pipeline(&warm_settings);
    // The warm's client retries nothing by itself (the warm keeps a budget per
    // image); a check has none, so the SDK's standard retries apply.
    let ecr = aws_sdk_ecr::Client::from_conf(
        warmer
            .ecr
            .config()
            .to_builder()
            .retry_config(aws_sdk_ecr::config::retry::RetryConfig::standard())
            .build(),
    );
    let checked = check::check(&ecr, &pipeline, std::mem::take(&mut configured.parcel)).await;
    report(&settings.metrics_namespace, &checked.report);
    let mut response = serde_json::to_value(&checked.report)?;
    configured.annotate(&mut response, &checked.not_warmed);
    lost.publish(&settings.metrics_namespace);
    Ok(response)
}

/// Emits the metrics, logs each image that is not fresh, and the summary.
fn report(namespace: &str, report: &check::Report) {
    for line in metrics::check_lines(report, namespace) {
        println!("{line}");
    }
    for image in &report.images {
        if image.cache != check::Cache::Fresh {
            tracing::warn!(
                input = %image.input,
                cache = image.cache.name(),
                cached_digest = image.cached_digest.as_deref().unwrap_or_default(),
                upstream_digest = image.upstream_digest.as_deref().unwrap_or_default(),
                error = image.error.as_deref().unwrap_or_default(),
                "image not fresh"
            );
        }
    }
    let s = &report.summary;
    tracing::info!(
        total = s.total,
        fresh = s.fresh,
        stale = s.stale,
        missing = s.missing,
        unknown = s.unknown,
        duration_ms = s.duration_ms,
        "check finished"
    );
}
