//! The AWS Lambda function: one handler for schedules, direct invocations,
//! SQS batches and ECS events, and for checks of the cache ([`check`]). Settings are read and checked once at init
//! ([`environment`]), and the SDK clients are built once ([`warmer`]); every
//! invocation warms through the one [`crate::pipeline`] before its own
//! deadline ([`budget`]).

mod answer;
mod budget;
mod check;
pub mod environment;
mod publish;
mod queue;
mod retrying;
mod triggers;
pub mod warmer;

#[cfg(test)]
mod tests;

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

use crate::event::{self, Trigger};

pub use environment::{Settings, SettingsError};
pub use warmer::Warmer;

use budget::Budget;

/// Runs the function under the Lambda runtime API until the sandbox stops.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let warmer = Warmer::init().await.inspect_err(|error| {
        tracing::error!(%error, "the function cannot start");
    })?;
    let warmer = &warmer;
    lambda_runtime::run(service_fn(move |event| handle(warmer, event))).await
}

/// Handles one invocation of any trigger.
pub async fn handle(
    warmer: &Warmer,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let budget = Budget::new(
        budget::deadline(&event.context),
        warmer.settings.queue_url.is_some(),
    );
    match event::decode(event.payload)? {
        Trigger::Schedule { images } | Trigger::Direct { images } => {
            triggers::warm_list(warmer, images, budget).await
        }
        Trigger::Sqs(messages) => {
            let answer = answer::warm_messages(warmer, &messages, budget).await;
            Ok(serde_json::to_value(answer)?)
        }
        Trigger::Ecs(event) => triggers::warm_ecs_event(warmer, event, budget).await,
        Trigger::Check { images } => check::check_list(warmer, images, budget).await,
    }
}
