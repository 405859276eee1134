//! The body of a message on the function's queue, as every sender writes it
//! (fan-out, images sent back to be tried again) and the receiver reads it:
//! `{"images": [...], "recheck": N, "selectors": {...}}`, or plain text, one
//! entry per line, from anyone else. Fields this version does not know are
//! ignored, so that a sender one version newer or older is still warmed
//! during a deploy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::list;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueMessage {
    /// References and selectors as text, or selector objects.
    #[serde(default)]
    pub images: Option<Vec<Value>>,
    /// How many times these images were tried already; 0 for a first warm.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub recheck: u32,
    /// The selector that selected an image, by image, so that its report
    /// still names it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selectors: BTreeMap<String, String>,
    #[serde(flatten, skip_serializing)]
    unknown: BTreeMap<String, Value>,
}

/// A message as read: its entries, with what the sender said of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    pub entries: Vec<String>,
    pub recheck: u32,
    pub selectors: BTreeMap<String, String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl QueueMessage {
    pub fn new(
        images: &[String],
        recheck: u32,
        selectors: BTreeMap<String, String>,
    ) -> QueueMessage {
        QueueMessage {
            images: Some(images.iter().cloned().map(Value::String).collect()),
            recheck,
            selectors,
            unknown: BTreeMap::new(),
        }
    }

    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a body: JSON as the senders write it, or a plain list.
    pub fn read(body: &str) -> Result<Received, String> {
        let body = body.trim();
        if body.is_empty() {
            return Err("the message body is empty".to_string());
        }
        let received = if body.starts_with(['{', '[']) {
            let message: QueueMessage = serde_json::from_str(body).map_err(|error| {
                format!("the message body is not {{\"images\": [...]}}: {error}")
            })?;
            if !message.unknown.is_empty() {
                let fields: Vec<&String> = message.unknown.keys().collect();
                tracing::debug!(
                    ?fields,
                    "fields of the message that this version does not know are ignored"
                );
            }
            let Some(images) = message.images else {
                let fields: Vec<&str> = message.unknown.keys().map(String::as_str).collect();
                return Err(match fields.is_empty() {
                    true => "the message body has no \"images\" list".to_string(),
                    false => format!(
                        "the message body has no \"images\" list (its fields: {})",
                        fields.join(", ")
                    ),
                });
            };
            Received {
                entries: list::json_entries(&Value::Array(images))
                    .map_err(|reason| format!("images {reason}"))?,
                recheck: message.recheck,
                selectors: message.selectors,
            }
        } else {
            Received {
                entries: list::read_list(body),
                ..Received::default()
            }
        };
        if received.entries.iter().all(|entry| entry.trim().is_empty()) {
            return Err("the message body names no image".to_string());
        }
        Ok(received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_sender_writes_the_receiver_reads() {
        let selectors = BTreeMap::from([("nginx:1.27.3".to_string(), "nginx:~1.27".to_string())]);
        let images = ["nginx:1.27.3".to_string(), "redis:7".to_string()];
        let body = QueueMessage::new(&images, 2, selectors.clone()).body();
        assert_eq!(
            QueueMessage::read(&body),
            Ok(Received {
                entries: images.to_vec(),
                recheck: 2,
                selectors
            })
        );
        let first = QueueMessage::new(&images, 0, BTreeMap::new()).body();
        assert_eq!(first, r#"{"images":["nginx:1.27.3","redis:7"]}"#);
    }

    #[test]
    fn a_field_this_version_does_not_know_is_ignored() {
        let body = r#"{"images": ["nginx:1.27"], "recheck": 1, "priority": "high", "attempts": {"nginx:1.27": 3}}"#;
        let received = QueueMessage::read(body).unwrap();
        assert_eq!(received.entries, ["nginx:1.27"]);
        assert_eq!(received.recheck, 1);
        let error = QueueMessage::read(r#"{"image": "nginx"}"#).unwrap_err();
        assert_eq!(
            error,
            "the message body has no \"images\" list (its fields: image)"
        );
    }

    proptest::proptest! {
        /// Whatever a sender writes, reading it neither panics nor makes more
        /// than the body held.
        #[test]
        fn reading_any_body_is_bounded(body in crate::testing::json::value(), text in "(.|\n){0,300}") {
            for body in [body.to_string(), text] {
                if let Ok(received) = QueueMessage::read(&body) {
                    let bytes: usize = received.entries.iter().map(String::len).sum();
                    proptest::prop_assert!(received.entries.len() <= body.len());
                    proptest::prop_assert!(bytes <= body.len() * 4 + 64);
                }
            }
        }
    }
}
