//! The AWS SDK configuration, built once per process.

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Credentials, Region and endpoint from the usual chain (environment,
/// profile, container or instance role; `AWS_ENDPOINT_URL` is honoured),
/// with the Region overridden when one is given.
pub async fn load_config(region: Option<String>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    // WARM_AWS_ENDPOINT_URL: where every AWS call goes (an emulator under `sam local
    // invoke`, which can only set variables the template declares). Empty means unset,
    // as for every setting; the SDK's own AWS_ENDPOINT_URL, empty, stops the start.
    if let Ok(url) = std::env::var("WARM_AWS_ENDPOINT_URL") {
        if !url.trim().is_empty() {
            loader = loader.endpoint_url(url.trim());
        }
    }
    loader.load().await
}

/// The ECR client of the warm engine. The engine retries by itself, with one
/// budget of attempts per image ([`crate::retry`]); the SDK's own retries
/// would multiply it.
pub fn engine_ecr(config: &SdkConfig) -> aws_sdk_ecr::Client {
    let config = aws_sdk_ecr::config::Builder::from(config)
        .retry_config(aws_sdk_ecr::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_ecr::Client::from_conf(config)
}

/// The SQS client of fan-out and re-checks, which also retry by themselves.
pub fn engine_sqs(config: &SdkConfig) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::config::Builder::from(config)
        .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// A one-line account of a failed AWS call: the service's error code and
/// message, or why the call never got an answer.
pub fn describe_error<E, R>(error: &aws_sdk_ecr::error::SdkError<E, R>) -> String
where
    E: aws_sdk_ecr::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    use aws_sdk_ecr::error::SdkError;
    match error {
        SdkError::ServiceError(context) => {
            let service_error = context.err();
            match (service_error.code(), service_error.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_string(),
                _ => innermost_cause(error),
            }
        }
        SdkError::TimeoutError(_) => "the call to AWS timed out".to_string(),
        SdkError::DispatchFailure(_) => {
            format!("cannot reach the AWS endpoint: {}", innermost_cause(error))
        }
        _ => innermost_cause(error),
    }
}

fn innermost_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
