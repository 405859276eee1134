//! The ECS events that start a warm, as EventBridge delivers them: the
//! CloudTrail record of `RegisterTaskDefinition` (a revision about to be
//! deployed), and an "ECS Task State Change" of a task that stopped because it
//! could not pull its image. Every other ECS event is ignored, with the reason.

use aws_lambda_events::cloudwatch_events::cloudtrail::AWSAPICall;
use serde::Deserialize;
use serde_json::Value;

/// The `source` of every event ECS sends to EventBridge.
pub const SOURCE: &str = "aws.ecs";
const API_CALL: &str = "AWS API Call via CloudTrail";
const REGISTER: &str = "RegisterTaskDefinition";
const TASK_STATE_CHANGE: &str = "ECS Task State Change";
/// How ECS's reasons start when a container image could not be pulled.
const PULL_FAILURE: &str = "CannotPullContainerError";

/// What an ECS event asks of the warmer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EcsEvent {
    /// A task definition revision was registered: warm its images before a
    /// service starts it. `images` is empty when the record left them out.
    Registered {
        task_definition: String,
        images: Vec<String>,
    },
    /// A task stopped because an image could not be pulled: warm the images
    /// whose pull failed, so that ECS's next attempt finds them in the cache.
    PullFailed {
        task: String,
        task_definition: Option<String>,
        images: Vec<String>,
    },
    /// Any other ECS event, and why it starts nothing.
    Ignored(String),
}

/// The parts of `RegisterTaskDefinition`'s request and response that name images.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Registration {
    family: Option<String>,
    revision: Option<i32>,
    task_definition_arn: Option<String>,
    #[serde(default)]
    container_definitions: Vec<Container>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterResponse {
    task_definition: Option<Registration>,
}

/// The detail of an "ECS Task State Change" event.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskStateChange {
    task_arn: String,
    last_status: String,
    stopped_reason: Option<String>,
    task_definition_arn: Option<String>,
    #[serde(default)]
    containers: Vec<Container>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    image: Option<String>,
    reason: Option<String>,
}

/// Decodes the detail of an event from ECS; the error says what is wrong with it.
pub fn decode(detail_type: &str, detail: Value) -> Result<EcsEvent, String> {
    match detail_type {
        API_CALL => registered(detail),
        TASK_STATE_CHANGE => pull_failed(detail),
        other => Ok(EcsEvent::Ignored(format!(
            "an {other:?} event of ECS: only a registered task definition or a task that \
             could not pull starts a warm"
        ))),
    }
}

fn registered(detail: Value) -> Result<EcsEvent, String> {
    let call: AWSAPICall<Value, Value> = serde_json::from_value(detail)
        .map_err(|error| format!("the CloudTrail record in detail: {error}"))?;
    if call.event_name != REGISTER {
        return Ok(EcsEvent::Ignored(format!(
            "the CloudTrail record of ECS's {}, not {REGISTER}",
            call.event_name
        )));
    }
    // A call that failed has no response: nothing was registered.
    let Some(response) = call.response_elements.filter(|r| !r.is_null()) else {
        return Ok(EcsEvent::Ignored(format!(
            "a {REGISTER} call that failed: nothing was registered"
        )));
    };
    let response: RegisterResponse = serde_json::from_value(response)
        .map_err(|error| format!("detail.responseElements: {error}"))?;
    let request: Registration = match call.request_parameters {
        Value::Null => Registration::default(),
        request => serde_json::from_value(request)
            .map_err(|error| format!("detail.requestParameters: {error}"))?,
    };
    let registered = response.task_definition.unwrap_or_default();
    let task_definition = match (&registered.task_definition_arn, &registered.family) {
        (Some(arn), _) => arn.clone(),
        (None, Some(family)) => match registered.revision {
            Some(revision) => format!("{family}:{revision}"),
            None => family.clone(),
        },
        (None, None) => request.family.clone().ok_or(
            "detail.responseElements.taskDefinition names no task definition (no \
             taskDefinitionArn or family)",
        )?,
    };
    // The response holds the revision as ECS stored it; CloudTrail may leave
    // parts of a large record out, hence the request, then DescribeTaskDefinition.
    let mut images = images_of(&registered.container_definitions);
    if images.is_empty() {
        images = images_of(&request.container_definitions);
    }
    Ok(EcsEvent::Registered {
        task_definition,
        images,
    })
}

fn pull_failed(detail: Value) -> Result<EcsEvent, String> {
    let task: TaskStateChange =
        serde_json::from_value(detail).map_err(|error| format!("the task in detail: {error}"))?;
    if task.last_status != "STOPPED" {
        return Ok(EcsEvent::Ignored(format!(
            "task {} is {}, not STOPPED",
            task.task_arn, task.last_status
        )));
    }
    let failed_pull = |reason: &Option<String>| {
        reason
            .as_deref()
            .is_some_and(|reason| reason.trim_start().starts_with(PULL_FAILURE))
    };
    let failed: Vec<Container> = match task.containers.iter().any(|c| failed_pull(&c.reason)) {
        true => task
            .containers
            .into_iter()
            .filter(|c| failed_pull(&c.reason))
            .collect(),
        // Only the task says so: which container failed is not known, so all of them.
        false if failed_pull(&task.stopped_reason) => task.containers,
        false => {
            return Ok(EcsEvent::Ignored(format!(
                "task {} stopped for another reason than a failed pull: {}",
                task.task_arn,
                task.stopped_reason.as_deref().unwrap_or("none given")
            )))
        }
    };
    Ok(EcsEvent::PullFailed {
        task: task.task_arn,
        task_definition: task.task_definition_arn,
        images: images_of(&failed),
    })
}

/// The images of the containers, each once, in order.
fn images_of(containers: &[Container]) -> Vec<String> {
    let mut images: Vec<String> = Vec::new();
    for image in containers.iter().filter_map(|c| c.image.as_deref()) {
        let image = image.trim();
        if !image.is_empty() && !images.iter().any(|i| i == image) {
            images.push(image.to_string());
        }
    }
    images
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

    fn sample(name: &str) -> Value {
        let path = format!("{}/events/{name}.json", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn detail_of(event: &Value) -> (String, Value) {
        (
            event["detail-type"].as_str().unwrap().to_string(),
            event["detail"].clone(),
        )
    }

    #[test]
    fn a_registered_revision_names_its_images() {
        let (kind, detail) = detail_of(&sample("ecs-register-task-definition"));
        let Ok(EcsEvent::Registered {
            task_definition,
            images,
        }) = decode(&kind, detail.clone())
        else {
            panic!("a registration")
        };
        assert!(
            task_definition.ends_with(":task-definition/web:8"),
            "{task_definition}"
        );
        assert_eq!(
            images,
            [
                format!("{HOST}/docker-hub/library/nginx:1.26"),
                format!("{HOST}/ecr-public/docker/library/redis:7"),
                "public.ecr.aws/aws-observability/aws-otel-collector:v0.41.1".to_string()
            ]
        );

        // Without the response's containers, the request's; without both, none.
        let mut request_only = detail.clone();
        request_only["responseElements"]["taskDefinition"]["containerDefinitions"] = json!([]);
        let Ok(EcsEvent::Registered { images, .. }) = decode(&kind, request_only.clone()) else {
            panic!("a registration")
        };
        assert_eq!(images.len(), 3);
        request_only["requestParameters"] = Value::Null;
        assert!(matches!(
            decode(&kind, request_only),
            Ok(EcsEvent::Registered { images, .. }) if images.is_empty()
        ));

        let mut failed = detail.clone();
        failed["responseElements"] = Value::Null;
        failed["errorCode"] = json!("ClientException");
        assert!(matches!(decode(&kind, failed), Ok(EcsEvent::Ignored(_))));
        let mut other = detail;
        other["eventName"] = json!("DeregisterTaskDefinition");
        assert_eq!(
            decode(&kind, other),
            Ok(EcsEvent::Ignored(
                "the CloudTrail record of ECS's DeregisterTaskDefinition, not RegisterTaskDefinition"
                    .into()
            ))
        );
    }

    #[test]
    fn a_task_that_could_not_pull_names_the_images_that_failed() {
        let (kind, detail) = detail_of(&sample("ecs-task-stopped-cannot-pull"));
        let Ok(EcsEvent::PullFailed {
            task,
            task_definition,
            images,
        }) = decode(&kind, detail.clone())
        else {
            panic!("a pull failure")
        };
        assert!(task.contains(":task/prod/"), "{task}");
        assert!(task_definition
            .unwrap()
            .ends_with("task-definition/worker:3"));
        assert_eq!(images, [format!("{HOST}/docker-hub/library/redis:7.4")]);

        // Only the task's reason says so: every container's image.
        let mut task_only = detail.clone();
        for container in task_only["containers"].as_array_mut().unwrap() {
            container.as_object_mut().unwrap().remove("reason");
        }
        let Ok(EcsEvent::PullFailed { images, .. }) = decode(&kind, task_only) else {
            panic!("a pull failure")
        };
        assert_eq!(images.len(), 2);
    }

    #[test]
    fn other_ecs_events_are_ignored_with_the_reason() {
        let (kind, detail) = detail_of(&sample("ecs-task-stopped-cannot-pull"));
        let mut running = detail.clone();
        running["lastStatus"] = json!("RUNNING");
        assert!(matches!(
            decode(&kind, running),
            Ok(EcsEvent::Ignored(reason)) if reason.ends_with("is RUNNING, not STOPPED")
        ));
        let mut essential_exit = detail;
        essential_exit["stoppedReason"] = json!("Essential container in task exited");
        for container in essential_exit["containers"].as_array_mut().unwrap() {
            container["reason"] = json!("exit code 1");
        }
        assert!(matches!(
            decode(&kind, essential_exit),
            Ok(EcsEvent::Ignored(reason)) if reason.contains("Essential container in task exited")
        ));
        assert!(matches!(
            decode("ECS Container Instance State Change", json!({})),
            Ok(EcsEvent::Ignored(_))
        ));
        let error = decode(TASK_STATE_CHANGE, json!({"lastStatus": "STOPPED"})).unwrap_err();
        assert!(error.contains("taskArn"), "{error}");
    }
}
