//! The AWS Lambda entry point.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

/// Runs the function under the Lambda runtime API until the sandbox stops.
pub async fn run() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    lambda_runtime::run(service_fn(handle)).await
}

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Error> {
    tracing::info!(request_id = %event.context.request_id, "invocation received");
    Ok(json!({ "message": "warming from Lambda is not available in this version" }))
}
