//! The events that start a warm: an EventBridge schedule, a direct invocation
//! (or EventBridge Scheduler input), a batch of SQS messages, or an event of
//! ECS ([`crate::ecs::events`]); and the direct invocation that asks for a
//! check instead (`{"check": true}` or `{"check": [...]}`).

use std::collections::BTreeMap;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::SqsEvent;
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use crate::ecs::events::{self as ecs_events, EcsEvent};
use crate::list;
use crate::message::QueueMessage;

const SCHEDULED_EVENT: &str = "Scheduled Event";
const SQS_SOURCE: &str = "aws:sqs";

/// What an invocation was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// An EventBridge schedule: the configured list, or `detail.images`.
    Schedule { images: Option<Vec<String>> },
    /// `{"images": [...]}`, or `{}` for the configured list.
    Direct { images: Option<Vec<String>> },
    /// SQS messages, each with the references of its body.
    Sqs(Vec<Message>),
    /// An EventBridge event from ECS.
    Ecs(EcsEvent),
    /// `{"check": [...]}`, or `{"check": true}` for the configured list:
    /// whether the cache is fresh, pulling nothing.
    Check { images: Option<Vec<String>> },
}

/// One SQS message and what its body holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub message_id: String,
    /// The references, or why the body cannot be read.
    pub images: Result<Vec<String>, String>,
    /// How many times these images were checked again for pending layers.
    pub recheck: u32,
    /// The selector that selected an image, by image, for the images the
    /// function itself sent after resolving selectors.
    pub selectors: BTreeMap<String, String>,
}

/// The body of a direct invocation. Unlike a queue message, a field it does
/// not know is refused: a person wrote it, and a misspelt one would go unseen.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImagesRequest {
    images: Option<Vec<Value>>,
    check: Option<Value>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EventError {
    #[error("unsupported EventBridge event {0:?}: only \"Scheduled Event\" and events from ECS (aws.ecs) start a warm")]
    DetailType(String),
    #[error("cannot read the {kind} event: {reason}. Send {{\"images\": [\"nginx:1.27\", ...]}}, or {{}} for the configured list")]
    Shape { kind: &'static str, reason: String },
    #[error("cannot read the check request: {0}. Send {{\"check\": true}} for the configured list, or {{\"check\": [\"nginx:1.27\", ...]}}")]
    Check(String),
    #[error("unsupported event: its Records come from {0}, not from SQS. The function accepts EventBridge \"Scheduled Event\"s, direct invocations with {{\"images\": [...]}} (or {{}}), and SQS messages; check the trigger that sends it")]
    RecordSource(String),
}

/// Decodes an invocation's payload.
pub fn decode(payload: Value) -> Result<Trigger, EventError> {
    if payload.get("Records").is_some() {
        return decode_sqs(payload);
    }
    if payload.get("detail-type").is_some() {
        let event: EventBridgeEvent<Value> =
            serde_json::from_value(payload).map_err(|error| EventError::Shape {
                kind: "EventBridge",
                reason: error.to_string(),
            })?;
        if event.source == ecs_events::SOURCE {
            return ecs_events::decode(&event.detail_type, event.detail)
                .map(Trigger::Ecs)
                .map_err(|reason| EventError::Shape {
                    kind: "ECS",
                    reason,
                });
        }
        if event.detail_type != SCHEDULED_EVENT {
            return Err(EventError::DetailType(event.detail_type));
        }
        let images = match event.detail.get("images") {
            None | Some(Value::Null) => None,
            Some(images) => {
                Some(
                    list::json_entries(images).map_err(|reason| EventError::Shape {
                        kind: "EventBridge",
                        reason: format!("detail.images {reason}"),
                    })?,
                )
            }
        };
        return Ok(Trigger::Schedule { images });
    }
    let request: ImagesRequest =
        serde_json::from_value(payload).map_err(|error| EventError::Shape {
            kind: "direct invocation",
            reason: error.to_string(),
        })?;
    if let Some(check) = request.check {
        return decode_check(check, request.images.is_some());
    }
    let images = request
        .images
        .map(|images| list::json_entries(&Value::Array(images)))
        .transpose()
        .map_err(|reason| EventError::Shape {
            kind: "direct invocation",
            reason: format!("images {reason}"),
        })?;
    Ok(Trigger::Direct { images })
}

/// `true` for the configured list, or the list to check.
fn decode_check(check: Value, with_images: bool) -> Result<Trigger, EventError> {
    if with_images {
        return Err(EventError::Check(
            "it has both \"check\" and \"images\"; put the images to check in \"check\""
                .to_string(),
        ));
    }
    let images = match check {
        Value::Bool(true) => None,
        images @ Value::Array(_) => Some(
            list::json_entries(&images)
                .map_err(|reason| EventError::Check(format!("check {reason}")))?,
        ),
        other => {
            return Err(EventError::Check(format!(
                "\"check\" is {other}, neither true nor a list"
            )))
        }
    };
    Ok(Trigger::Check { images })
}

fn decode_sqs(payload: Value) -> Result<Trigger, EventError> {
    // S3, SNS, DynamoDB and Kinesis events have Records too; each record names its source.
    let sources = payload["Records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|record| {
            record
                .get("eventSource")
                .or_else(|| record.get("EventSource"))
                .and_then(Value::as_str)
        });
    for source in sources {
        if source != SQS_SOURCE {
            return Err(EventError::RecordSource(source.to_string()));
        }
    }
    let event: SqsEvent = serde_json::from_value(payload).map_err(|error| EventError::Shape {
        kind: "SQS",
        reason: error.to_string(),
    })?;
    let messages = event
        .records
        .into_iter()
        .map(|record| {
            let received = QueueMessage::read(record.body.as_deref().unwrap_or_default());
            let (recheck, selectors) = match &received {
                Ok(received) => (received.recheck, received.selectors.clone()),
                Err(_) => (0, BTreeMap::new()),
            };
            Message {
                message_id: record.message_id.unwrap_or_default(),
                recheck,
                selectors,
                images: received.map(|received| received.entries),
            }
        })
        .collect();
    Ok(Trigger::Sqs(messages))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_schedule_warms_the_configured_list_or_its_detail_images() {
        let event = json!({
            "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-11-28T12:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/warm"], "detail": {}
        });
        assert_eq!(
            decode(event.clone()),
            Ok(Trigger::Schedule { images: None })
        );
        let mut with_images = event;
        with_images["detail"] = json!({"images": ["nginx:1.27"]});
        assert_eq!(
            decode(with_images.clone()),
            Ok(Trigger::Schedule {
                images: Some(vec!["nginx:1.27".into()])
            })
        );
        with_images["detail"] = json!({"images": "nginx"});
        assert!(decode(with_images)
            .unwrap_err()
            .to_string()
            .contains("detail.images must be a list of references, selectors or selector objects"));
    }

    #[test]
    fn other_eventbridge_events_are_refused() {
        let event = json!({"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2", "detail": {}});
        assert_eq!(
            decode(event),
            Err(EventError::DetailType(
                "EC2 Instance State-change Notification".into()
            ))
        );
    }

    #[test]
    fn ecs_events_are_decoded_and_others_of_ecs_ignored() {
        let sample = |name: &str| -> Value {
            let path = format!("{}/events/{name}.json", env!("CARGO_MANIFEST_DIR"));
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
        };
        assert!(matches!(
            decode(sample("ecs-register-task-definition")),
            Ok(Trigger::Ecs(EcsEvent::Registered { .. }))
        ));
        assert!(matches!(
            decode(sample("ecs-task-stopped-cannot-pull")),
            Ok(Trigger::Ecs(EcsEvent::PullFailed { .. }))
        ));
        let deployment = json!({"detail-type": "ECS Deployment State Change", "source": "aws.ecs",
            "detail": {"eventName": "SERVICE_DEPLOYMENT_COMPLETED"}});
        assert!(matches!(
            decode(deployment),
            Ok(Trigger::Ecs(EcsEvent::Ignored(_)))
        ));
        let mut broken = sample("ecs-register-task-definition");
        broken["detail"]["eventName"] = json!(7);
        let error = decode(broken).unwrap_err().to_string();
        assert!(
            error.starts_with("cannot read the ECS event: the CloudTrail record"),
            "{error}"
        );
    }

    #[test]
    fn a_direct_invocation_names_images_or_none() {
        assert_eq!(decode(json!({})), Ok(Trigger::Direct { images: None }));
        assert_eq!(
            decode(json!({"images": ["nginx", "redis:7"]})),
            Ok(Trigger::Direct {
                images: Some(vec!["nginx".into(), "redis:7".into()])
            })
        );
        let error = decode(json!({"image": "nginx"})).unwrap_err().to_string();
        assert!(
            error.contains("unknown field `image`") && error.contains("{\"images\""),
            "{error}"
        );
        assert!(decode(json!(["nginx"])).is_err());
    }

    #[test]
    fn a_direct_invocation_may_ask_for_a_check() {
        assert_eq!(
            decode(json!({"check": true})),
            Ok(Trigger::Check { images: None })
        );
        assert_eq!(
            decode(json!({"check": ["nginx:1.27", {"repository": "redis", "semver": "~7"}]})),
            Ok(Trigger::Check {
                images: Some(vec!["nginx:1.27".into(), "redis:~7".into()])
            })
        );
        let error = decode(json!({"check": false})).unwrap_err().to_string();
        assert!(
            error.contains("\"check\" is false") && error.contains("{\"check\": true}"),
            "{error}"
        );
        let error = decode(json!({"check": true, "images": ["nginx"]}))
            .unwrap_err()
            .to_string();
        assert!(error.contains("both"), "{error}");
        let error = decode(json!({"check": [7]})).unwrap_err().to_string();
        assert!(error.contains("check [0] is 7"), "{error}");
    }

    #[test]
    fn selectors_may_be_objects_in_json_bodies() {
        let object = json!({"repository": "nginx", "semver": ">=1.26, <1.28",
            "match": "-alpine$", "newest": 3});
        let expected = vec![
            "nginx:~1.27".to_string(),
            "nginx:>=1.26, <1.28 match=-alpine$ newest=3".to_string(),
        ];
        assert_eq!(
            decode(json!({"images": ["nginx:~1.27", object]})),
            Ok(Trigger::Direct {
                images: Some(expected.clone())
            })
        );
        let body = json!({"images": ["nginx:~1.27", object]}).to_string();
        let Ok(Trigger::Sqs(messages)) = decode(json!({"Records": [
            {"messageId": "a", "body": body, "eventSource": "aws:sqs"}
        ]})) else {
            panic!("an SQS trigger")
        };
        assert_eq!(messages[0].images, Ok(expected));
        let schedule = json!({"detail-type": "Scheduled Event", "source": "aws.events",
            "detail": {"images": [object]}});
        assert!(
            matches!(decode(schedule), Ok(Trigger::Schedule { images: Some(images) }) if images.len() == 1)
        );

        let error = decode(json!({"images": ["redis:7", {"repository": "nginx", "semvr": "~1"}]}))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("images [1]: not a selector object") && error.contains("semvr"),
            "{error}"
        );
        let error = decode(json!({"images": [7]})).unwrap_err().to_string();
        assert!(error.contains("images [0] is 7"), "{error}");
    }

    #[test]
    fn sqs_bodies_are_json_or_plain_text_and_bad_ones_say_why() {
        let event = json!({"Records": [
            {"messageId": "a", "body": "{\"images\": [\"nginx:1.27\"]}", "eventSource": "aws:sqs"},
            {"messageId": "b", "body": "nginx:1.27\n# comment\nredis:7\n"},
            {"messageId": "c", "body": "{\"image\": \"nginx\"}"},
            {"messageId": "d", "body": "   "},
            {"messageId": "e", "body": "{\"images\": []}"},
            {"messageId": "f", "body": "[\"nginx\"]"},
            {"messageId": "g"},
            {"messageId": "h", "body": "{\"images\": [\"nginx:1.27.3\"], \"recheck\": 3, \"selectors\": {\"nginx:1.27.3\": \"nginx:~1.27\"}}"}
        ]});
        let Ok(Trigger::Sqs(messages)) = decode(event) else {
            panic!("an SQS trigger")
        };
        let ids: Vec<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d", "e", "f", "g", "h"]);
        assert_eq!(messages[7].recheck, 3);
        assert_eq!(
            messages[7].selectors,
            BTreeMap::from([("nginx:1.27.3".to_string(), "nginx:~1.27".to_string())])
        );
        assert!(messages[0].selectors.is_empty());
        assert_eq!(messages[0].recheck, 0);
        assert_eq!(messages[0].images, Ok(vec!["nginx:1.27".to_string()]));
        assert_eq!(
            messages[1].images,
            Ok(vec!["nginx:1.27".to_string(), "redis:7".to_string()])
        );
        assert!(messages[2]
            .images
            .as_ref()
            .unwrap_err()
            .contains("no \"images\" list (its fields: image)"));
        assert_eq!(
            messages[3].images,
            Err("the message body is empty".to_string())
        );
        assert_eq!(
            messages[4].images,
            Err("the message body names no image".to_string())
        );
        assert!(messages[5]
            .images
            .as_ref()
            .unwrap_err()
            .contains("not {\"images\": [...]}"));
        assert_eq!(
            messages[6].images,
            Err("the message body is empty".to_string())
        );
    }

    #[test]
    fn records_from_another_service_are_refused_with_their_source() {
        let s3 = json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}}]});
        let error = decode(s3).unwrap_err();
        assert_eq!(error, EventError::RecordSource("aws:s3".into()));
        assert!(error.to_string().contains("SQS messages"), "{error}");
        let sns = json!({"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0",
            "Sns": {"Message": "nginx:1.27"}}]});
        assert_eq!(
            decode(sns).unwrap_err(),
            EventError::RecordSource("aws:sns".into())
        );
        let sqs =
            json!({"Records": [{"messageId": "a", "body": "nginx", "eventSource": "aws:sqs"}]});
        assert!(matches!(decode(sqs), Ok(Trigger::Sqs(_))));
    }

    proptest::proptest! {
        #[test]
        fn no_payload_makes_the_decoder_panic(payload in crate::testing::json::value()) {
            let _ = decode(payload);
        }

        #[test]
        fn no_sqs_body_makes_the_decoder_panic(body in crate::testing::json::value(), text in ".{0,200}") {
            for body in [body.to_string(), text] {
                let event = json!({"Records": [{"messageId": "m", "body": body, "eventSource": "aws:sqs"}]});
                let _ = decode(event);
            }
        }
    }
}
