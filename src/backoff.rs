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
    /// The wait after attempt n is between half and all of `base`·2^n, at most
    /// 10 s: the first is between `base` and twice `base`.
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
        let delay = jittered(ceiling(self.base, self.attempt), fastrand::f64());
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

/// The longest wait after attempt `attempt`: `base`·2^attempt, at most 10 s.
/// The doubling saturates rather than stopping early, so that a small base
/// still grows to the cap.
fn ceiling(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(2u32.saturating_pow(attempt)).min(CAP)
}

/// Half fixed, half random (`random` in [0, 1)): spreads the retries of
/// concurrent calls apart while keeping each wait at least half its ceiling.
fn jittered(ceiling: Duration, random: f64) -> Duration {
    ceiling / 2 + ceiling.mul_f64(random / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(250);

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn the_ceiling_doubles_from_twice_the_base_up_to_ten_seconds() {
        let ceilings: Vec<Duration> = (1..=7).map(|attempt| ceiling(BASE, attempt)).collect();
        assert_eq!(
            ceilings,
            [ms(500), ms(1000), ms(2000), ms(4000), ms(8000), CAP, CAP]
        );
        assert_eq!(ceiling(BASE, u32::MAX), CAP);
        assert_eq!(ceiling(Duration::MAX, 1), CAP);
        assert_eq!(ceiling(Duration::ZERO, 40), Duration::ZERO);
        // A base too small to reach the cap in 16 doublings still gets there.
        assert_eq!(ceiling(Duration::from_micros(1), 30), CAP);
    }

    #[test]
    fn a_wait_is_between_half_and_all_of_its_ceiling() {
        assert_eq!(jittered(ms(8000), 0.0), ms(4000));
        assert_eq!(jittered(ms(8000), 0.5), ms(6000));
        let longest = jittered(ms(8000), 1.0 - f64::EPSILON);
        assert!(longest > ms(7999) && longest <= ms(8000), "{longest:?}");
        assert_eq!(jittered(Duration::ZERO, 0.7), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn each_wait_sleeps_within_its_range() {
        let ceilings = [ms(500), ms(1000), ms(2000), ms(4000), ms(8000), CAP, CAP];
        let mut backoff = Backoff::new(BASE, u32::MAX, None);
        for (n, ceiling) in ceilings.into_iter().enumerate() {
            let started = tokio::time::Instant::now();
            assert!(backoff.wait().await, "wait {}", n + 1);
            let slept = started.elapsed();
            assert!(
                slept >= ceiling / 2 && slept <= ceiling,
                "wait {} slept {slept:?}, outside {:?}..={ceiling:?}",
                n + 1,
                ceiling / 2
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_capped_and_the_last_refusal_does_not_sleep() {
        for max_attempts in [0, 1, 2, 4] {
            let mut backoff = Backoff::new(BASE, max_attempts, None);
            let mut waits = 0;
            while backoff.wait().await {
                waits += 1;
            }
            assert_eq!(
                waits,
                max_attempts.saturating_sub(1),
                "max_attempts {max_attempts}"
            );
            let started = tokio::time::Instant::now();
            assert!(!backoff.wait().await, "max_attempts {max_attempts}");
            assert_eq!(started.elapsed(), Duration::ZERO);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_that_would_pass_the_deadline_is_not_made() {
        // The deadline is a std Instant, which paused tokio time leaves alone:
        // it stays 3 s away while the first wait is 4 to 8 s.
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut backoff = Backoff::new(Duration::from_secs(4), 10, Some(deadline));
        let started = tokio::time::Instant::now();
        assert!(!backoff.wait().await);
        assert!(!backoff.wait().await);
        assert_eq!(started.elapsed(), Duration::ZERO);

        let mut passed = Backoff::new(Duration::ZERO, 10, Some(Instant::now()));
        assert!(!passed.wait().await, "a deadline already passed");

        let far = Instant::now() + Duration::from_secs(60);
        let mut backoff = Backoff::new(BASE, 10, Some(far));
        assert!(backoff.wait().await, "a wait well before the deadline");
        assert!(started.elapsed() >= ms(250));
    }
}
