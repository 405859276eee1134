//! Why the ECS listing failed, with what to check.

use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EcsError {
    #[error("ECS {action} failed for {subject}: {cause}. {hint}")]
    Call {
        action: &'static str,
        subject: String,
        cause: String,
        hint: String,
    },
    #[error("the ECS listing did not finish before the deadline; give it more time (--timeout, or the function's Timeout) or limit it to some clusters with --ecs-cluster (WARM_ECS_CLUSTERS)")]
    Deadline,
}

impl EcsError {
    /// A failed call, with what to check for the error ECS gave.
    pub(crate) fn call<E, R>(
        action: &'static str,
        subject: &str,
        error: &SdkError<E, R>,
    ) -> EcsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        // The error's code starts the account of it, as ECS names it.
        let cause = crate::aws::describe_error(error);
        let code = cause.split(':').next().unwrap_or_default();
        let hint = match code {
            "AccessDeniedException" => format!(
                "The caller needs the read-only permission ecs:{action} (the template grants it \
                 when WarmFromEcs is on); or leave out --from-ecs (WARM_FROM_ECS)"
            ),
            "ClusterNotFoundException" => "Check the cluster's name given with --ecs-cluster \
                 (WARM_ECS_CLUSTERS) and the Region"
                .to_string(),
            _ => "Check that ECS is reachable from here; the next run tries again".to_string(),
        };
        EcsError::Call {
            action,
            subject: subject.to_string(),
            cause,
            hint,
        }
    }
}
