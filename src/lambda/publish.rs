//! What the function tells CloudWatch of a warm: the metrics, a log line per
//! image that is not warm, the summary, and the images lost before any warm
//! could report them.

use crate::metrics;
use crate::warm::Report;

/// Logs what is not warm and the summary, and emits the metrics.
pub fn report(namespace: &str, report: &Report) {
    for line in metrics::emf_lines(report, namespace) {
        println!("{line}");
    }
    for image in &report.images {
        if !image.status.is_warm() {
            tracing::warn!(
                input = %image.input,
                status = image.status.name(),
                code = image.failure_code.as_deref().unwrap_or_default(),
                message = image.message.as_deref().unwrap_or_default(),
                hint = image.hint.as_deref().unwrap_or_default(),
                "image not warm"
            );
        }
    }
    let s = &report.summary;
    tracing::info!(
        total = s.total,
        imported = s.imported,
        refreshed = s.refreshed,
        unchanged = s.unchanged,
        pending = s.pending,
        failed = s.failed,
        skipped = s.skipped,
        layers = s.layers.total,
        layers_cached = s.layers.cached,
        layers_pending = s.layers.pending,
        layers_failed = s.layers.failed,
        duration_ms = s.duration_ms,
        "warm finished"
    );
}

/// Images that no warm report counts: they could not be planned, put on the
/// queue, or told apart in a record. Logged and counted as `Failed` in the
/// metrics, so that the failed-images alarm sees them.
#[derive(Debug, Default)]
pub struct Lost {
    pub not_planned: usize,
    pub not_enqueued: usize,
    pub unreadable_records: usize,
    /// The images object of WARM_IMAGES_S3_URI, which could not be read.
    pub list_unreadable: usize,
    /// The images that ECS runs (WARM_FROM_ECS), which could not be listed.
    pub ecs_unreadable: usize,
}

impl Lost {
    pub fn publish(&self, namespace: &str) {
        let reasons = [
            ("NotPlanned", self.not_planned),
            ("NotEnqueued", self.not_enqueued),
            ("UnreadableRecords", self.unreadable_records),
            ("ListUnreadable", self.list_unreadable),
            ("EcsUnreadable", self.ecs_unreadable),
        ];
        if reasons.iter().all(|(_, count)| *count == 0) {
            return;
        }
        tracing::error!(
            not_planned = self.not_planned,
            not_enqueued = self.not_enqueued,
            unreadable_records = self.unreadable_records,
            list_unreadable = self.list_unreadable,
            ecs_unreadable = self.ecs_unreadable,
            "images lost before a warm could report them"
        );
        println!("{}", metrics::lost_line(namespace, &reasons));
    }
}
