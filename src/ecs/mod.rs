//! What the account's ECS runs or is about to run: the container images of the
//! task definitions its services deploy, and of the latest revision of each
//! family ([`discovery`]); and the images named by ECS events: a task
//! definition just registered, a task that could not pull its image ([`events`]).

mod discovery;
pub mod events;

use std::collections::HashSet;

use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use thiserror::Error;

use crate::plan::PlannedImage;
use crate::rules::Rules;

pub use discovery::{discover, task_definition_images, Discovered, Scope};

/// Task definitions and clusters described at once: ECS throttles its list and
/// describe calls per account, and deployment tools share that budget.
const CONCURRENCY: usize = 4;

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
    fn call<E, R>(action: &'static str, subject: &str, error: &SdkError<E, R>) -> EcsError
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

/// The last part of an ECS ARN (`arn:aws:ecs:…:cluster/prod` → `prod`), or the
/// name itself.
fn short_name(arn_or_name: &str) -> &str {
    arn_or_name.rsplit('/').next().unwrap_or(arn_or_name)
}

/// The discovered images as ECS pulls them ([`PlannedImage::pulled_by_ecs`]),
/// each once, leaving out those that `listed` warms already.
pub fn plan(
    discovered: Vec<Discovered>,
    rules: &Rules,
    listed: &[PlannedImage],
) -> Vec<PlannedImage> {
    let mut seen: HashSet<String> = listed.iter().map(same_pull).collect();
    discovered
        .into_iter()
        .map(|found| PlannedImage::pulled_by_ecs(&found.image, found.source, rules))
        .filter(|image| seen.insert(same_pull(image)))
        .collect()
}

/// What makes two entries the same pull: the cache repository and the tag or
/// digest, however the reference was written (`nginx:1.27` on the list and
/// `<registry>/docker-hub/library/nginx:1.27` in a task definition).
fn same_pull(image: &PlannedImage) -> String {
    match (&image.target, &image.reference) {
        (Some(target), Some(reference)) => format!(
            "{}:{}@{}",
            target.cache_repository,
            reference.tag().unwrap_or_default(),
            reference.digest().unwrap_or_default()
        ),
        (None, Some(reference)) => reference.to_string(),
        _ => image.input.clone(),
    }
}
