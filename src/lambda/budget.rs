//! The invocation's time: when the warm must stop, and when the sends to the
//! queue that follow it must, both before Lambda's deadline less a margin to
//! answer in.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::Context;

/// The time kept back from the invocation's deadline to answer in.
const MIN_MARGIN: Duration = Duration::from_millis(500);
const MAX_MARGIN: Duration = Duration::from_secs(5);
const SEND_RESERVE_MIN: Duration = Duration::from_millis(250);
const SEND_RESERVE_MAX: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub warm_by: Option<Instant>,
    pub send_by: Option<Instant>,
}

impl Budget {
    /// A function with a queue keeps a part of its time for sending: a
    /// twentieth of it, from a quarter of a second to three seconds.
    pub fn new(deadline: Option<Instant>, sends: bool) -> Budget {
        let reserve = |deadline: Instant| {
            let left = deadline.saturating_duration_since(Instant::now());
            (left / 20).clamp(SEND_RESERVE_MIN, SEND_RESERVE_MAX)
        };
        Budget {
            warm_by: match (deadline, sends) {
                (Some(deadline), true) => Some(deadline - reserve(deadline)),
                _ => deadline,
            },
            send_by: deadline,
        }
    }
}

/// When the work must stop: the invocation's deadline less a margin to
/// answer in (a tenth of the time left, from half a second to five seconds).
pub fn deadline(context: &Context) -> Option<Instant> {
    // A deadline of 0 is no deadline (a context made outside Lambda).
    if context.deadline == 0 {
        return None;
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    tracing::debug!(
        deadline_ms = context.deadline,
        now_ms,
        "invocation deadline"
    );
    // Some runtime emulators send the timeout itself rather than an epoch
    // time; a deadline decades in the past can only mean that.
    let deadline_ms = if context.deadline < now_ms / 2 {
        now_ms.saturating_add(context.deadline)
    } else {
        context.deadline
    };
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    let margin = (left / 10).clamp(MIN_MARGIN, MAX_MARGIN);
    // A deadline too far to represent is no deadline.
    Instant::now().checked_add(left.saturating_sub(margin))
}
