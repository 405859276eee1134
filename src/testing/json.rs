//! Arbitrary JSON, for the property tests of what reads events and messages.

use proptest::prelude::*;
use serde_json::{Map, Value};

/// Any JSON value, a few levels deep, with the keys the decoders look for
/// among the random ones so that they are reached.
pub fn value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("images".to_string()),
        Just("Records".to_string()),
        Just("body".to_string()),
        Just("messageId".to_string()),
        Just("eventSource".to_string()),
        Just("detail-type".to_string()),
        Just("detail".to_string()),
        Just("source".to_string()),
        Just("recheck".to_string()),
        Just("selectors".to_string()),
        Just("repository".to_string()),
        Just("semver".to_string()),
        Just("newest".to_string()),
        "[a-z]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        Just(Value::String("aws:sqs".into())),
        Just(Value::String("Scheduled Event".into())),
        Just(Value::String("nginx:~1.27 match=\\w{20}".into())),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}
