//! Exponential backoff with jitter, bounded in attempts and by a deadline:
//! the one way this crate waits before trying a call again.

use std::time::{Duration, Instant};

const CAP: Duration = Duration::from_secs(10);

pub struct Backoff {
    base: Duration,
    max_attempts: u32,
    deadline: Option<Instant>,
    attempt: u32,
}

impl Backoff {
    /// `base` is the first wait; it doubles with each attempt, up to 10 s.
    pub fn new(base: Duration, max_attempts: u32, deadline: Option<Instant>) -> Backoff {
        Backoff {
            base,
            max_attempts,
            deadline,
            attempt: 1,
        }
    }

    /// Sleeps before the next attempt; false when there is none to make,
    /// because the attempts are used up or the wait would pass the deadline.
    pub async fn wait(&mut self) -> bool {
        if self.attempt >= self.max_attempts {
            return false;
        }
        let ceiling = self.base.saturating_mul(1 << self.attempt.min(16)).min(CAP);
        // Half fixed, half random: spreads retries of concurrent calls apart.
        let delay = ceiling / 2 + ceiling.mul_f64(fastrand::f64() / 2.0);
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() + delay >= deadline)
        {
            return false;
        }
        self.attempt += 1;
        tokio::time::sleep(delay).await;
        true
    }
}
