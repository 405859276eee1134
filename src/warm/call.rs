//! Calls to ECR: bounded in number at once, paced by an adaptive rate per
//! operation, made again under that rate while throttled, retried with
//! backoff while they fail for another retryable reason, never started after
//! the deadline.

use std::future::Future;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use aws_sdk_ecr::config::http::HttpResponse;
use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecr::operation::batch_get_image::BatchGetImageError;
use aws_sdk_ecr::operation::describe_images::DescribeImagesError;
use aws_sdk_ecr::operation::get_download_url_for_layer::GetDownloadUrlForLayerError;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

use super::rate::{self, Rate};
use super::settings::WarmSettings;
use crate::aws::describe_error;
use crate::backoff::Backoff;
use crate::outcome::Failure;
use crate::retry;

/// How many times one attempt of a call is made again while ECR throttles
/// it, before the throttling counts as a failed attempt. Throttled calls wait
/// for the rate instead of spending the image's attempts, but an endless
/// throttle must still end.
pub const THROTTLED_RETRIES: u32 = 20;

/// The operations the engine calls: ECR's quotas are per operation, so each
/// has its own rate.
#[derive(Debug, Clone, Copy)]
pub enum Operation {
    DescribeImages,
    BatchGetImage,
    GetDownloadUrlForLayer,
}

/// The operation whose error type this is: it tells a call's rate from its type.
pub trait OperationError: ProvideErrorMetadata {
    const OPERATION: Operation;
}

impl OperationError for DescribeImagesError {
    const OPERATION: Operation = Operation::DescribeImages;
}

impl OperationError for BatchGetImageError {
    const OPERATION: Operation = Operation::BatchGetImage;
}

impl OperationError for GetDownloadUrlForLayerError {
    const OPERATION: Operation = Operation::GetDownloadUrlForLayer;
}

/// What every call of one warm shares: the client, the options, the permits
/// that bound the calls in flight over all repositories, and the rates.
pub struct Engine<'a> {
    pub ecr: &'a aws_sdk_ecr::Client,
    pub options: &'a WarmSettings,
    permits: Semaphore,
    /// `--max-tps`: one bucket over every ECR call of the warm.
    cap: Option<DefaultDirectRateLimiter>,
    /// One per [`Operation`], adapted to ECR's throttling.
    rates: [Rate; 3],
}

impl<'a> Engine<'a> {
    pub fn new(ecr: &'a aws_sdk_ecr::Client, options: &'a WarmSettings) -> Engine<'a> {
        let cap = options
            .max_tps
            .map(|tps| RateLimiter::direct(rate_cap(tps)));
        Engine {
            ecr,
            options,
            permits: Semaphore::new(options.concurrency.max(1)),
            cap,
            rates: Default::default(),
        }
    }

    /// Runs a call, again after a backoff while it fails for a retryable
    /// reason, up to the attempt limit and never past the deadline.
    pub async fn call<T, E, F, Fut>(
        &self,
        code_of: fn(&E) -> String,
        mut call: F,
    ) -> Attempted<Result<T, SdkError<E, HttpResponse>>>
    where
        E: OperationError,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        let options = self.options;
        let mut backoff = Backoff::new(options.backoff, options.max_attempts, options.deadline);
        loop {
            let result = match self.attempt(&mut call).await {
                Attempted::Done(result) => result,
                other => return other,
            };
            let code = match &result {
                Err(SdkError::ServiceError(context)) => Some(code_of(context.err())),
                _ => None,
            };
            let retryable = match &result {
                Err(error) => retry::is_retryable(error, code.as_deref()),
                Ok(_) => false,
            };
            if !retryable || !backoff.wait().await {
                return Attempted::Done(result);
            }
        }
    }

    /// One attempt, as [`Engine::call`] makes them; the caller retries. The
    /// call is cloned to be made again while it is throttled.
    pub async fn once<T, E, F, Fut>(
        &self,
        call: F,
    ) -> Attempted<Result<T, SdkError<E, HttpResponse>>>
    where
        E: OperationError,
        F: FnOnce() -> Fut + Clone,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        self.attempt(|| call.clone()()).await
    }

    /// One attempt under a permit, within the rate cap and the operation's
    /// rate, started only before the deadline and cut at it; made again
    /// under the rate while ECR throttles it, up to [`THROTTLED_RETRIES`].
    /// The call is made only once it may start, on the heap: an SDK call's
    /// future is large (5 KB, several times that as it nests), and far more
    /// calls wait for a permit than hold one, which made the peak memory of a
    /// warm grow with its pending blobs.
    async fn attempt<T, E, Fut>(
        &self,
        mut call: impl FnMut() -> Fut,
    ) -> Attempted<Result<T, SdkError<E, HttpResponse>>>
    where
        E: OperationError,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        let deadline = self.options.deadline;
        let rate = &self.rates[E::OPERATION as usize];
        // The semaphore is never closed.
        let Some(Some(_permit)) = within(deadline, self.permits.acquire())
            .await
            .map(Result::ok)
        else {
            return Attempted::NotStarted;
        };
        let mut throttled = None;
        for _ in 0..=THROTTLED_RETRIES {
            if within(deadline, self.ready(rate)).await.is_none() {
                break;
            }
            let result = match within(deadline, Box::pin(call())).await {
                Some(result) => result,
                None => return Attempted::Cut,
            };
            let is_throttled = is_throttled(&result);
            rate.answered(is_throttled);
            if !is_throttled {
                return Attempted::Done(result);
            }
            throttled = Some(result);
        }
        // Throttled to the end, or until the deadline: the caller judges it
        // as any other retryable failure.
        throttled.map_or(Attempted::NotStarted, Attempted::Done)
    }

    /// Waits for the operation's rate, then for the `--max-tps` cap: last,
    /// as it is the bound that must hold when the call starts.
    async fn ready(&self, rate: &Rate) {
        rate.ready().await;
        if let Some(cap) = &self.cap {
            cap.until_ready().await;
        }
    }
}

/// Whether ECR refused a call for its rate.
fn is_throttled<T, E: ProvideErrorMetadata>(result: &Result<T, SdkError<E, HttpResponse>>) -> bool {
    match result {
        Err(SdkError::ServiceError(context)) => {
            context.err().code().is_some_and(rate::is_throttling)
                || context.raw().status().as_u16() == 429
        }
        _ => false,
    }
}

/// At most `tps` calls in any one second. Calls wait for the bucket on a
/// timer and wake a little late; with a burst of one, each late start pushes
/// every later one back, and the rate falls short of the cap (464/s for a cap
/// of 500 in `make bench`). A burst of 20 ms worth of calls absorbs that
/// lateness, and the rate is lowered by as much so that no second holds more
/// than `tps`. The period is rounded up, never down, for the same reason.
fn rate_cap(tps: NonZeroU32) -> Quota {
    let burst = NonZeroU32::new(tps.get() / 50).unwrap_or(NonZeroU32::MIN);
    let rate = u64::from(tps.get() - burst.get() + 1);
    Quota::with_period(Duration::from_nanos(1_000_000_000u64.div_ceil(rate)))
        .expect("a rate of at least one call per second")
        .allow_burst(burst)
}

/// A future's output, or `None` when the deadline comes first.
async fn within<T>(deadline: Option<Instant>, work: impl Future<Output = T>) -> Option<T> {
    match deadline {
        Some(deadline) if Instant::now() >= deadline => None,
        Some(deadline) => tokio::time::timeout_at(deadline.into(), work).await.ok(),
        None => Some(work.await),
    }
}

/// A call that was answered, or what the deadline did to it.
pub enum Attempted<T> {
    Done(T),
    /// The deadline came before the call started.
    NotStarted,
    /// The call was made but cut at the deadline: AWS may have acted on it.
    Cut,
}

impl<T> Attempted<T> {
    /// Why the call has no answer, for the image's message.
    pub fn unanswered(&self) -> String {
        match self {
            Attempted::Cut => "attempted, but the deadline cut the call before ECR answered: ECR \
                               may have imported it, the next run tells"
                .to_string(),
            _ => "not attempted: the deadline was reached first".to_string(),
        }
    }
}

/// A failed call, as the failure of every image or blob it carried.
pub fn failed_call<E, R>(
    operation: &str,
    error: &SdkError<E, R>,
    code_of: fn(&E) -> String,
) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let (code, detail) = match error {
        SdkError::ServiceError(context) => (
            code_of(context.err()),
            context
                .err()
                .message()
                .map_or_else(|| describe_error(error), str::to_string),
        ),
        SdkError::TimeoutError(_) => ("RequestTimeout".to_string(), describe_error(error)),
        _ => ("NetworkError".to_string(), describe_error(error)),
    };
    Failure::new(&code, &format!("{operation}: {detail}"))
}

pub fn batch_get_image_code(error: &BatchGetImageError) -> String {
    let code = match error {
        BatchGetImageError::InvalidParameterException(_) => "InvalidParameterException",
        BatchGetImageError::LimitExceededException(_) => "LimitExceededException",
        BatchGetImageError::RepositoryNotFoundException(_) => "RepositoryNotFoundException",
        BatchGetImageError::ServerException(_) => "ServerException",
        BatchGetImageError::UnableToGetUpstreamImageException(_) => {
            "UnableToGetUpstreamImageException"
        }
        other => other.code().unwrap_or("Unknown"),
    };
    code.to_string()
}

pub fn describe_images_code(error: &DescribeImagesError) -> String {
    let code = match error {
        DescribeImagesError::ImageNotFoundException(_) => "ImageNotFoundException",
        DescribeImagesError::InvalidParameterException(_) => "InvalidParameterException",
        DescribeImagesError::RepositoryNotFoundException(_) => "RepositoryNotFoundException",
        DescribeImagesError::ServerException(_) => "ServerException",
        other => other.code().unwrap_or("Unknown"),
    };
    code.to_string()
}

pub fn download_url_code(error: &GetDownloadUrlForLayerError) -> String {
    let code = match error {
        GetDownloadUrlForLayerError::InvalidParameterException(_) => "InvalidParameterException",
        GetDownloadUrlForLayerError::LayerInaccessibleException(_) => "LayerInaccessibleException",
        GetDownloadUrlForLayerError::LayersNotFoundException(_) => "LayersNotFoundException",
        GetDownloadUrlForLayerError::RepositoryNotFoundException(_) => {
            "RepositoryNotFoundException"
        }
        GetDownloadUrlForLayerError::ServerException(_) => "ServerException",
        GetDownloadUrlForLayerError::UnableToGetUpstreamLayerException(_) => {
            "UnableToGetUpstreamLayerException"
        }
        other => other.code().unwrap_or("Unknown"),
    };
    code.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calls one second can hold: the burst at its start, then one per period.
    fn calls_in_a_second(quota: Quota) -> u128 {
        let period = quota.replenish_interval().as_nanos();
        u128::from(quota.burst_size().get()) + (1_000_000_000 - 1) / period
    }

    #[test]
    fn the_rate_cap_holds_in_every_second_and_bursts_above_a_few_calls_per_second() {
        for tps in [1, 10, 49, 50, 500, 2_000, 100_000] {
            let quota = rate_cap(NonZeroU32::new(tps).unwrap());
            assert!(calls_in_a_second(quota) <= u128::from(tps), "{tps}/s");
            assert!(
                calls_in_a_second(quota) >= u128::from(tps) * 98 / 100,
                "{tps}/s"
            );
        }
        let low = rate_cap(NonZeroU32::new(10).unwrap());
        assert_eq!(low.burst_size().get(), 1);
        assert_eq!(low.replenish_interval(), Duration::from_millis(100));
        assert_eq!(
            rate_cap(NonZeroU32::new(500).unwrap()).burst_size().get(),
            10
        );
    }
}
