//! CloudWatch Embedded Metric Format: one JSON line per upstream rule with the
//! count of each status, and one line with the totals, the distinct blobs by
//! state and the warm's duration.
//! A check has lines of its own: `Fresh`, `Stale`, `Missing` and `Unknown`
//! per upstream rule and in total, so that an alarm can watch staleness.
//! In Lambda these lines go to stdout, where CloudWatch Logs turns them into
//! metrics without any API call.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::check::{self, Cache};
use crate::outcome::Status;
use crate::warm::Report;

pub const DEFAULT_NAMESPACE: &str = "EcrCacheWarmer";
/// The dimension that tells upstream rules apart; its value is the rule's ECR prefix.
pub const UPSTREAM_DIMENSION: &str = "Upstream";
/// The `Upstream` value of images that no rule covers.
const NO_RULE: &str = "none";

/// The EMF lines for a warm, stamped with the current time.
pub fn emf_lines(report: &Report, namespace: &str) -> Vec<String> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    emf_lines_at(report, namespace, now_ms)
}

/// The pulls an upstream has left in its window (Docker Hub's ratelimit headers).
const PULLS_LEFT: &str = "UpstreamPullsLeft";

fn emf_lines_at(report: &Report, namespace: &str, timestamp_ms: u64) -> Vec<String> {
    let mut per_upstream: BTreeMap<&str, BTreeMap<Status, usize>> = BTreeMap::new();
    for image in &report.images {
        let upstream = image.rule_prefix.as_deref().unwrap_or(NO_RULE);
        *per_upstream
            .entry(upstream)
            .or_default()
            .entry(image.status)
            .or_default() += 1;
    }
    let mut lines: Vec<String> = per_upstream
        .iter()
        .map(|(upstream, counts)| {
            let mut members = status_counts(|status| counts.get(&status).copied().unwrap_or(0));
            members.insert(UPSTREAM_DIMENSION.into(), json!(upstream));
            // What the upstream said it has left of its pull limit, when it says.
            let left = report.pulls_left.iter().find(|p| p.upstream == *upstream);
            let extra: &[(&str, &str)] = match left {
                Some(left) => {
                    members.insert(PULLS_LEFT.into(), json!(left.remaining));
                    &[(PULLS_LEFT, "Count")]
                }
                None => &[],
            };
            document(
                namespace,
                timestamp_ms,
                &[UPSTREAM_DIMENSION],
                members,
                extra,
            )
        })
        .collect();

    let summary = &report.summary;
    let mut totals = status_counts(|status| summary.count(status));
    totals.insert("Images".into(), json!(summary.total));
    totals.insert("Duration".into(), json!(summary.duration_ms));
    let layers = &summary.layers;
    for (name, count) in [
        ("Layers", layers.total),
        ("LayersCached", layers.cached),
        ("LayersPending", layers.pending),
        ("LayersFailed", layers.failed),
    ] {
        totals.insert(name.into(), json!(count));
    }
    lines.push(document(
        namespace,
        timestamp_ms,
        &[],
        totals,
        &[
            ("Images", "Count"),
            ("Duration", "Milliseconds"),
            ("Layers", "Count"),
            ("LayersCached", "Count"),
            ("LayersPending", "Count"),
            ("LayersFailed", "Count"),
        ],
    ));
    lines
}

/// The EMF lines for a check, stamped with the current time.
pub fn check_lines(report: &check::Report, namespace: &str) -> Vec<String> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    check_lines_at(report, namespace, now_ms)
}

fn check_lines_at(report: &check::Report, namespace: &str, timestamp_ms: u64) -> Vec<String> {
    let mut per_upstream: BTreeMap<&str, BTreeMap<Cache, usize>> = BTreeMap::new();
    for image in &report.images {
        let upstream = image.rule_prefix.as_deref().unwrap_or(NO_RULE);
        *per_upstream
            .entry(upstream)
            .or_default()
            .entry(image.cache)
            .or_default() += 1;
    }
    let declared: Vec<(String, &str)> = Cache::ALL
        .iter()
        .map(|&cache| (cache_metric(cache), "Count"))
        .collect();
    let cache_counts = |count: &dyn Fn(Cache) -> usize| -> Map<String, Value> {
        Cache::ALL
            .iter()
            .map(|&cache| (cache_metric(cache), json!(count(cache))))
            .collect()
    };
    let mut lines: Vec<String> = per_upstream
        .iter()
        .map(|(upstream, counts)| {
            let mut members = cache_counts(&|cache| counts.get(&cache).copied().unwrap_or(0));
            members.insert(UPSTREAM_DIMENSION.into(), json!(upstream));
            emf_document(
                namespace,
                timestamp_ms,
                &[UPSTREAM_DIMENSION],
                members,
                &declared,
            )
        })
        .collect();
    let summary = &report.summary;
    let mut totals = cache_counts(&|cache| summary.count(cache));
    totals.insert("Checked".into(), json!(summary.total));
    totals.insert("CheckDuration".into(), json!(summary.duration_ms));
    let mut declared = declared;
    declared.push(("Checked".into(), "Count"));
    declared.push(("CheckDuration".into(), "Milliseconds"));
    lines.push(emf_document(
        namespace,
        timestamp_ms,
        &[],
        totals,
        &declared,
    ));
    lines
}

fn cache_metric(cache: Cache) -> String {
    let name = cache.name();
    name[..1].to_uppercase() + &name[1..]
}

/// One EMF line of the metrics named in `declared`, with their units.
fn emf_document(
    namespace: &str,
    timestamp_ms: u64,
    dimensions: &[&str],
    mut members: Map<String, Value>,
    declared: &[(String, &str)],
) -> String {
    let metrics: Vec<Value> = declared
        .iter()
        .map(|(name, unit)| json!({ "Name": name, "Unit": unit }))
        .collect();
    members.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [dimensions],
                "Metrics": metrics,
            }],
        }),
    );
    Value::Object(members).to_string()
}

/// One EMF line, without dimensions, for images that no warm report counts:
/// `Failed` is their total, so that the failed-images alarm sees them, and
/// each reason is a metric of its own (`NotEnqueued`, ...).
pub fn lost_line(namespace: &str, reasons: &[(&str, usize)]) -> String {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let total: usize = reasons.iter().map(|(_, count)| count).sum();
    let mut members = Map::new();
    members.insert("Failed".into(), json!(total));
    for (reason, count) in reasons {
        members.insert((*reason).into(), json!(count));
    }
    let metrics: Vec<Value> = std::iter::once("Failed")
        .chain(reasons.iter().map(|(reason, _)| *reason))
        .map(|name| json!({ "Name": name, "Unit": "Count" }))
        .collect();
    members.insert(
        "_aws".into(),
        json!({
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [[]],
                "Metrics": metrics,
            }],
        }),
    );
    Value::Object(members).to_string()
}

/// `Imported`, `Refreshed`, ... as root members.
fn status_counts(count: impl Fn(Status) -> usize) -> Map<String, Value> {
    Status::ALL
        .iter()
        .map(|&status| (metric_name(status), json!(count(status))))
        .collect()
}

fn metric_name(status: Status) -> String {
    let name = status.name();
    name[..1].to_uppercase() + &name[1..]
}

/// One EMF document: the metric members, the `_aws` metadata that declares
/// them, and the dimension keys (an empty set publishes without dimensions).
fn document(
    namespace: &str,
    timestamp_ms: u64,
    dimensions: &[&str],
    mut members: Map<String, Value>,
    extra_metrics: &[(&str, &str)],
) -> String {
    let mut metrics: Vec<Value> = Status::ALL
        .iter()
        .map(|&status| json!({ "Name": metric_name(status), "Unit": "Count" }))
        .collect();
    metrics.extend(
        extra_metrics
            .iter()
            .map(|(name, unit)| json!({ "Name": name, "Unit": unit })),
    );
    members.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [dimensions],
                "Metrics": metrics,
            }],
        }),
    );
    Value::Object(members).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{ImageOutcome, LayerCounts};
    use crate::warm::Summary;

    fn image(status: Status, rule_prefix: Option<&str>) -> ImageOutcome {
        ImageOutcome {
            input: "x".into(),
            selector: None,
            source: Default::default(),
            cache_repository: None,
            tag: None,
            digest: None,
            status,
            previous_digest: None,
            failure_code: None,
            message: None,
            hint: None,
            platforms: Vec::new(),
            via_tag: None,
            retry: None,
            rule_prefix: rule_prefix.map(str::to_string),
            retryable: false,
        }
    }

    fn report() -> Report {
        let images = vec![
            image(Status::Imported, Some("docker-hub")),
            image(Status::Imported, Some("docker-hub")),
            image(Status::Unchanged, Some("docker-hub")),
            image(Status::Refreshed, Some("quay")),
            image(Status::Failed, Some("quay")),
            image(Status::Failed, None),
            image(Status::Skipped, Some("quay")),
            image(Status::Pending, Some("quay")),
        ];
        Report {
            pulls_left: vec![crate::outcome::PullsLeft {
                upstream: "docker-hub".into(),
                limit: 200,
                remaining: 37,
                window_s: Some(21600),
            }],
            summary: Summary {
                total: 8,
                imported: 2,
                refreshed: 1,
                unchanged: 1,
                failed: 2,
                skipped: 1,
                pending: 1,
                retrying: 0,
                duration_ms: 1234,
                layers: LayerCounts {
                    total: 9,
                    cached: 6,
                    pending: 2,
                    failed: 1,
                },
            },
            images,
        }
    }

    /// Checks a line against the EMF specification and returns it parsed.
    fn valid_emf(line: &str) -> Value {
        let doc: Value = serde_json::from_str(line).expect("one JSON object per line");
        let aws = &doc["_aws"];
        assert!(aws["Timestamp"].is_u64(), "{line}");
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        let directive = &directives[0];
        assert!(!directive["Namespace"].as_str().unwrap().is_empty());
        for set in directive["Dimensions"].as_array().unwrap() {
            for key in set.as_array().unwrap() {
                assert!(
                    doc[key.as_str().unwrap()].is_string(),
                    "dimension {key} is a root string member"
                );
            }
        }
        let metrics = directive["Metrics"].as_array().unwrap();
        assert!(!metrics.is_empty() && metrics.len() <= 100);
        for metric in metrics {
            let name = metric["Name"].as_str().unwrap();
            assert!(
                doc[name].is_number(),
                "metric {name} is a root number member"
            );
            let unit = metric["Unit"].as_str().unwrap();
            assert!(["Count", "Milliseconds"].contains(&unit));
        }
        doc
    }

    #[test]
    fn counts_each_status_per_upstream_and_in_total() {
        let lines = emf_lines_at(&report(), "TeamWarmer", 1_700_000_000_000);
        let docs: Vec<Value> = lines.iter().map(|l| valid_emf(l)).collect();
        assert_eq!(docs.len(), 4, "docker-hub, none, quay, total");
        let by_upstream = |name: &str| docs.iter().find(|d| d["Upstream"] == name).unwrap().clone();
        let hub = by_upstream("docker-hub");
        assert_eq!(
            (
                hub["Imported"].as_u64(),
                hub["Unchanged"].as_u64(),
                hub["Failed"].as_u64()
            ),
            (Some(2), Some(1), Some(0))
        );
        assert_eq!(hub["UpstreamPullsLeft"], 37, "what Docker Hub has left");
        let quay = by_upstream("quay");
        assert!(quay.get("UpstreamPullsLeft").is_none());
        assert_eq!(
            (
                quay["Refreshed"].as_u64(),
                quay["Failed"].as_u64(),
                quay["Skipped"].as_u64(),
                quay["Pending"].as_u64()
            ),
            (Some(1), Some(1), Some(1), Some(1))
        );
        assert_eq!(by_upstream("none")["Failed"], 1);
        assert_eq!(
            hub["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Upstream"]])
        );
        assert_eq!(
            hub["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "TeamWarmer"
        );
        assert_eq!(hub["_aws"]["Timestamp"], 1_700_000_000_000u64);

        let total = docs.last().unwrap();
        assert_eq!(
            total["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([[]])
        );
        assert_eq!(total["Images"], 8);
        assert_eq!(total["Pending"], 1);
        assert_eq!(
            [
                &total["Layers"],
                &total["LayersCached"],
                &total["LayersPending"],
                &total["LayersFailed"]
            ],
            [9, 6, 2, 1]
        );
        assert_eq!(total["Imported"], 2);
        assert_eq!(total["Failed"], 2);
        assert_eq!(total["Duration"], 1234);
        let units: Vec<&Value> = total["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .collect();
        assert!(units.contains(&&json!({"Name": "Duration", "Unit": "Milliseconds"})));
    }

    #[test]
    fn per_upstream_counts_add_up_to_the_totals() {
        let lines = emf_lines_at(&report(), DEFAULT_NAMESPACE, 0);
        let docs: Vec<Value> = lines.iter().map(|l| valid_emf(l)).collect();
        let (total, upstreams) = docs.split_last().unwrap();
        for status in Status::ALL {
            let name = metric_name(status);
            let sum: u64 = upstreams.iter().map(|d| d[&name].as_u64().unwrap()).sum();
            assert_eq!(Some(sum), total[&name].as_u64(), "{name}");
        }
    }

    #[test]
    fn a_check_counts_fresh_stale_missing_and_unknown_per_upstream_and_in_total() {
        use crate::check::{CheckedImage, Report as CheckReport};
        let image = |cache, rule: Option<&str>| CheckedImage {
            input: "x".into(),
            selector: None,
            cache_repository: None,
            tag: None,
            digest: None,
            cache,
            cached_digest: None,
            upstream_digest: None,
            pushed_at: None,
            last_pulled: None,
            error: None,
            rule_prefix: rule.map(str::to_string),
        };
        let images = vec![
            image(Cache::Fresh, Some("docker-hub")),
            image(Cache::Stale, Some("docker-hub")),
            image(Cache::Stale, Some("quay")),
            image(Cache::Missing, Some("quay")),
            image(Cache::Unknown, None),
        ];
        let report = CheckReport {
            summary: crate::check::Summary {
                total: 5,
                fresh: 1,
                stale: 2,
                missing: 1,
                unknown: 1,
                duration_ms: 40,
            },
            images,
        };
        let docs: Vec<Value> = check_lines_at(&report, "Warm", 0)
            .iter()
            .map(|line| valid_emf(line))
            .collect();
        assert_eq!(docs.len(), 4, "docker-hub, none, quay, total");
        let hub = docs.iter().find(|d| d["Upstream"] == "docker-hub").unwrap();
        assert_eq!([&hub["Fresh"], &hub["Stale"], &hub["Missing"]], [1, 1, 0]);
        let total = docs.last().unwrap();
        assert_eq!(
            [
                &total["Fresh"],
                &total["Stale"],
                &total["Missing"],
                &total["Unknown"]
            ],
            [1, 2, 1, 1]
        );
        assert_eq!(total["Checked"], 5);
        assert_eq!(total["CheckDuration"], 40);
        assert!(total.get("Imported").is_none(), "a check is no warm");
    }

    #[test]
    fn lost_images_count_as_failed() {
        let line = lost_line("Warm", &[("NotEnqueued", 3), ("NotPlanned", 2)]);
        let doc = valid_emf(&line);
        assert_eq!(doc["Failed"], 5);
        assert_eq!(doc["NotEnqueued"], 3);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([[]])
        );
    }
}
