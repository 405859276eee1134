//! What is worth trying again, for every AWS call this crate makes: the ECR
//! engine, the fan-out to SQS and the answer to SQS all ask here.
//!
//! Retryable: throttling, server-side faults (5xx) and the network failing
//! (timeouts, connections that could not be made). Not retryable: a request
//! AWS refused for what it is (access, a missing queue, a quota), a request
//! the SDK could not build, or an answer it could not read.

use aws_sdk_ecr::config::http::HttpResponse;
use aws_sdk_ecr::error::SdkError;

/// Error and failure codes that come from load or outages, not from the
/// request. `NetworkError` and `RequestTimeout` are this crate's names for
/// calls that got no answer.
const RETRYABLE_CODES: [&str; 13] = [
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottled",
    "TooManyRequestsException",
    "UpstreamTooManyRequests",
    "UpstreamUnavailable",
    "UnableToGetUpstreamLayerException",
    "ServerException",
    "ServiceUnavailableException",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
];

/// Whether a failure code (ECR's per-image codes, AWS error codes, or this
/// crate's own) is worth trying again.
pub fn is_retryable_code(code: &str) -> bool {
    RETRYABLE_CODES.contains(&code) || code == "NetworkError" || code == "NotReturned"
}

/// Whether a failed call is worth making again; `code` is the service
/// error's code, when AWS answered with one.
/// (Both SDKs this crate uses share the error type.)
pub fn is_retryable<E>(error: &SdkError<E, HttpResponse>, code: Option<&str>) -> bool {
    match error {
        SdkError::ServiceError(context) => {
            code.is_some_and(is_retryable_code) || context.raw().status().is_server_error()
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
        // The SDK could not build the request, or could not read the answer:
        // sending it again gives the same result.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_outages_and_the_network_are_retryable() {
        for code in [
            "ThrottlingException",
            "UpstreamTooManyRequests",
            "UpstreamUnavailable",
            "UnableToGetUpstreamLayerException",
            "ServerException",
            "ServiceUnavailable",
            "NetworkError",
            "RequestTimeout",
        ] {
            assert!(is_retryable_code(code), "{code}");
        }
    }

    #[test]
    fn refusals_and_quotas_are_not() {
        for code in [
            // A service quota (repositories, rules): waiting does not raise it.
            "LimitExceededException",
            "AccessDenied",
            "AccessDeniedException",
            "AWS.SimpleQueueService.NonExistentQueue",
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.BatchRequestTooLong",
            "BatchRequestTooLong",
            "InvalidParameterException",
            "UnableToGetUpstreamImageException",
            "ImageNotFound",
            "SomethingNew",
        ] {
            assert!(!is_retryable_code(code), "{code}");
        }
    }
}
