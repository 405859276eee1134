//! A rate of calls that adapts to ECR's throttling, for one operation.
//!
//! ECR's quotas are per operation, per account and Region, and shared with
//! every other client of the account: the warm cannot know them in advance.
//! So it starts unbounded, and when throttling says it is over the quota it
//! lowers its rate to what ECR accepted, then raises it again step by step
//! while calls succeed, to find out whether the quota has room again.
//!
//! Throttling is judged over windows of calls, not call by call: ECR may
//! throttle a share of calls whatever the rate (other clients' bursts), and a
//! rate that fell at each throttled call would fall to nothing under it.
//! Until the rate has been lowered once, throttling of up to 30% of a
//! window's calls is taken for that noise; beyond it in two windows in a row,
//! for the quota. After each lowering, the share of calls still throttled
//! shows how much of it is noise: the quota is then judged 10 points above it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A window closes after this long and at least `WINDOW_ANSWERS` answers:
/// fewer would make the share of throttled calls too noisy to act on.
const WINDOW: Duration = Duration::from_millis(100);
const WINDOW_ANSWERS: u32 = 50;
/// Above this share of throttled calls a window counts as over the quota,
/// until the share that is noise is known.
const OVER_QUOTA: f64 = 0.3;
/// How far above the noise a window's share counts as over the quota.
const OVER_NOISE: f64 = 0.1;
/// Windows over the quota in a row before the rate is lowered.
const WINDOWS_OVER: u32 = 2;
/// The rate is lowered a little below what ECR accepted, so that the next
/// windows have room to show that it is enough.
const BELOW_ACCEPTED: f64 = 0.95;
/// Each window under the quota raises the rate by this share of the rate
/// last found, so that finding the quota again takes about 10 windows.
const STEP: f64 = 0.05;
/// Calls per second: never slower, so that an endless throttle still ends.
const FLOOR: f64 = 1.0;
/// Calls whose start was due this long ago still start at once: they wake a
/// little late on a busy timer, and should not push every later call back.
const SLACK: Duration = Duration::from_millis(20);

/// ECR's codes for a call refused for its rate (the same that
/// [`crate::retry`] retries).
const THROTTLING_CODES: [&str; 5] = [
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottled",
    "TooManyRequestsException",
];

pub fn is_throttling(code: &str) -> bool {
    THROTTLING_CODES.contains(&code)
}

/// One operation's rate, shared by every call of the warm.
pub struct Rate {
    state: Mutex<State>,
}

struct State {
    /// Calls per second; `None` until throttling first asks for a limit.
    limit: Option<f64>,
    /// When the next call may start under the limit.
    next: Instant,
    /// What the rate is raised by after each window under the quota.
    step: f64,
    window: Window,
    /// Windows over the quota in a row.
    over: u32,
    /// The share of throttled calls above which a window is over the quota.
    over_quota: f64,
    /// Windows closed since the rate was last lowered.
    since_lowered: Option<u32>,
}

struct Window {
    start: Instant,
    answers: u32,
    throttled: u32,
}

impl Window {
    fn new(start: Instant) -> Window {
        Window {
            start,
            answers: 0,
            throttled: 0,
        }
    }
}

impl Default for Rate {
    fn default() -> Rate {
        let now = Instant::now();
        Rate {
            state: Mutex::new(State {
                limit: None,
                next: now,
                step: 0.0,
                window: Window::new(now),
                over: 0,
                over_quota: OVER_QUOTA,
                since_lowered: None,
            }),
        }
    }
}

impl Rate {
    /// Waits until a call may start under the rate.
    pub async fn ready(&self) {
        if let Some(start) = self.reserve() {
            tokio::time::sleep_until(start).await;
        }
    }

    /// The start of the next call, when the rate puts it in the future.
    fn reserve(&self) -> Option<Instant> {
        let mut state = self.state.lock().expect("the rate's lock");
        let limit = state.limit?;
        let now = Instant::now();
        let earliest = now.checked_sub(SLACK).unwrap_or(now);
        let start = state.next.max(earliest);
        state.next = start + Duration::from_secs_f64(1.0 / limit);
        (start > now).then_some(start)
    }

    /// Counts an answer of ECR: throttled or not.
    pub fn answered(&self, throttled: bool) {
        let mut state = self.state.lock().expect("the rate's lock");
        let now = Instant::now();
        let window = &mut state.window;
        window.answers += 1;
        window.throttled += u32::from(throttled);
        let elapsed = now - window.start;
        if window.answers < WINDOW_ANSWERS || elapsed < WINDOW {
            return;
        }
        let seconds = elapsed.as_secs_f64();
        let share = f64::from(window.throttled) / f64::from(window.answers);
        let accepted = f64::from(window.answers - window.throttled) / seconds;
        let sent = f64::from(window.answers) / seconds;
        state.window = Window::new(now);
        // The first window after lowering the rate still holds calls sent
        // before it; the second tells what throttling is left at the new rate.
        if state.since_lowered == Some(1) {
            state.over_quota = (share + OVER_NOISE).min(1.0);
        }
        state.since_lowered = state.since_lowered.map(|windows| windows + 1);
        if share > state.over_quota {
            state.over += 1;
            if state.over >= WINDOWS_OVER {
                state.over = 0;
                state.since_lowered = Some(0);
                let lower = (accepted * BELOW_ACCEPTED).max(FLOOR);
                let limit = state.limit.map_or(lower, |limit| limit.min(lower));
                state.limit = Some(limit);
                state.step = (limit * STEP).max(FLOOR);
            }
            return;
        }
        state.over = 0;
        if let Some(limit) = state.limit {
            // A limit far above the calls sent says nothing about the
            // quota: raising it further would only make it slow to matter.
            if limit < 2.0 * sent {
                state.limit = Some(limit + state.step);
            }
        }
    }

    /// Calls per second, or `None` while unbounded.
    #[cfg(test)]
    pub fn limit(&self) -> Option<f64> {
        self.state.lock().unwrap().limit
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures_util::future::join_all;

    use super::*;

    const LATENCY: Duration = Duration::from_millis(50);
    const RUN: Duration = Duration::from_secs(20);

    /// ECR as the rate meets it: a token bucket per operation holding a tenth
    /// of a second's worth of calls, or a share of calls throttled at random
    /// whatever the rate.
    enum Ecr {
        Quota {
            per_second: f64,
            tokens: f64,
            at: Instant,
        },
        Random {
            share: f64,
            draws: fastrand::Rng,
        },
    }

    impl Ecr {
        fn quota(per_second: f64) -> Ecr {
            Ecr::Quota {
                per_second,
                tokens: per_second / 10.0,
                at: Instant::now(),
            }
        }

        fn throttles(&mut self) -> bool {
            match self {
                Ecr::Quota {
                    per_second,
                    tokens,
                    at,
                } => {
                    let now = Instant::now();
                    let burst = *per_second / 10.0;
                    *tokens = (*tokens + (now - *at).as_secs_f64() * *per_second).min(burst);
                    *at = now;
                    let refused = *tokens < 1.0;
                    if !refused {
                        *tokens -= 1.0;
                    }
                    refused
                }
                Ecr::Random { share, draws } => draws.f64() < *share,
            }
        }
    }

    #[derive(Debug, Default)]
    struct Run {
        accepted: usize,
        throttled: usize,
        /// The most times in a row one call was throttled.
        longest_throttle: usize,
    }

    /// `callers` calls at once for `RUN`, each after the rate lets it, each
    /// made again while it is throttled.
    async fn run(ecr: Ecr, callers: usize) -> Run {
        let rate = Rate::default();
        let ecr = Mutex::new(ecr);
        let totals = Mutex::new(Run::default());
        let end = Instant::now() + RUN;
        join_all((0..callers).map(|_| async {
            let mut in_a_row = 0;
            while Instant::now() < end {
                rate.ready().await;
                let throttled = ecr.lock().unwrap().throttles();
                tokio::time::sleep(LATENCY).await;
                rate.answered(throttled);
                let mut totals = totals.lock().unwrap();
                if throttled {
                    in_a_row += 1;
                    totals.throttled += 1;
                    totals.longest_throttle = totals.longest_throttle.max(in_a_row);
                } else {
                    in_a_row = 0;
                    totals.accepted += 1;
                }
            }
        }))
        .await;
        totals.into_inner().unwrap()
    }

    fn per_second(calls: usize) -> f64 {
        calls as f64 / RUN.as_secs_f64()
    }

    #[tokio::test(start_paused = true)]
    async fn under_a_quota_calls_go_at_nearly_the_quota_and_none_is_throttled_for_long() {
        for (quota, callers) in [(200.0, 64), (20.0, 16), (2_000.0, 256)] {
            let run = run(Ecr::quota(quota), callers).await;
            let accepted = per_second(run.accepted);
            assert!(accepted >= 0.9 * quota, "{quota}/s: {accepted}/s, {run:?}");
            assert!(
                run.longest_throttle < crate::warm::call::THROTTLED_RETRIES as usize,
                "{quota}/s: {run:?}"
            );
            // Over the quota at first and while the rate probes for more,
            // not all the time.
            assert!(run.throttled < run.accepted / 2, "{quota}/s: {run:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_at_random_whatever_the_rate_does_not_slow_calls_down() {
        // Fewer callers make fewer answers per window, and noisier shares.
        for (callers, seed) in [(64, 7), (16, 7), (16, 8), (4, 9)] {
            let unbounded = callers as f64 / LATENCY.as_secs_f64();
            let ecr = Ecr::Random {
                share: 0.2,
                draws: fastrand::Rng::with_seed(seed),
            };
            let run = run(ecr, callers).await;
            let sent = per_second(run.accepted + run.throttled);
            assert!(
                sent >= 0.95 * unbounded,
                "{callers} callers: {sent}/s of {unbounded}/s, {run:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_is_unbounded_until_throttled_and_rises_again_while_calls_succeed() {
        let rate = Rate::default();
        tokio::time::advance(WINDOW).await;
        answer(&rate, WINDOW_ANSWERS, 0);
        assert_eq!(rate.limit(), None);

        // Two windows in which every call is throttled: nothing was accepted,
        // so the rate falls to its floor.
        for _ in 0..2 {
            tokio::time::advance(WINDOW).await;
            answer(&rate, 0, WINDOW_ANSWERS);
        }
        assert_eq!(rate.limit(), Some(FLOOR));

        tokio::time::advance(WINDOW).await;
        answer(&rate, WINDOW_ANSWERS, 0);
        assert!(rate.limit().unwrap() > FLOOR);
    }

    #[tokio::test(start_paused = true)]
    async fn one_window_over_the_quota_is_not_enough_to_slow_down() {
        let rate = Rate::default();
        tokio::time::advance(WINDOW).await;
        answer(&rate, 40, 10);
        tokio::time::advance(WINDOW).await;
        answer(&rate, 40, 10);
        assert_eq!(rate.limit(), None, "10 of 50 throttled twice: noise");
        tokio::time::advance(WINDOW).await;
        answer(&rate, 10, 40);
        tokio::time::advance(WINDOW).await;
        answer(&rate, 40, 10);
        assert_eq!(rate.limit(), None, "over the quota once, then not");
        tokio::time::advance(WINDOW).await;
        answer(&rate, 10, 40);
        assert_eq!(rate.limit(), None);
        tokio::time::advance(WINDOW).await;
        answer(&rate, 10, 40);
        // 10 accepted in 100 ms, twice in a row: 100 calls/s, less a little.
        let limit = rate
            .limit()
            .expect("limited after two windows over the quota");
        assert!((90.0..100.0).contains(&limit), "{limit}");
    }

    /// A window of answers that took `ms`.
    async fn window(rate: &Rate, ms: u64, accepted: u32, throttled: u32) {
        tokio::time::advance(Duration::from_millis(ms)).await;
        answer(rate, accepted, throttled);
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_that_stays_when_the_rate_is_lowered_is_taken_for_noise() {
        let rate = Rate::default();
        window(&rate, 250, 20, 30).await;
        window(&rate, 250, 20, 30).await;
        let lowered = rate.limit().expect("lowered after two windows over");
        // Calls sent before the rate was lowered, then a fifth still throttled.
        window(&rate, 250, 20, 30).await;
        window(&rate, 250, 40, 10).await;
        for _ in 0..10 {
            window(&rate, 250, 38, 12).await;
        }
        assert!(
            rate.limit().unwrap() > lowered,
            "24% throttled, 20% at the lower rate: {:?} after {lowered}",
            rate.limit()
        );

        // Had the throttling gone at the lower rate, 24% would be the quota.
        let rate = Rate::default();
        window(&rate, 250, 20, 30).await;
        window(&rate, 250, 20, 30).await;
        window(&rate, 250, 20, 30).await;
        window(&rate, 250, 50, 0).await;
        let raised = rate.limit().unwrap();
        // 76 calls accepted per second, under the limit of about 80.
        window(&rate, 500, 38, 12).await;
        window(&rate, 500, 38, 12).await;
        assert!(
            rate.limit().unwrap() < raised,
            "{:?} after {raised}",
            rate.limit()
        );
    }

    fn answer(rate: &Rate, accepted: u32, throttled: u32) {
        for _ in 0..accepted {
            rate.answered(false);
        }
        for _ in 0..throttled {
            rate.answered(true);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn calls_start_one_interval_apart_under_a_limit() {
        let rate = Rate::default();
        rate.state.lock().unwrap().limit = Some(10.0);
        let started = Instant::now();
        for _ in 0..5 {
            rate.ready().await;
        }
        // The first starts at once, the others 100 ms apart.
        assert_eq!(started.elapsed(), Duration::from_millis(400));
    }
}
