//! The worker protocol's decoders on hostile input (issue 16): random bytes, random JSON, and
//! valid messages with fields replaced at random never panic — each decodes or is refused
//! with an error naming a field.

use proptest::prelude::*;
use serde_json::{json, Value};
use weft_model::worker::{decode_notify, decode_request, decode_response, failure_from_dict};

fn decode_all(v: &Value) {
    let refusals = [
        decode_request(v).err().map(|e| e.field),
        decode_response(v).err().map(|e| e.field),
        decode_notify(v, true).err().map(|e| e.field),
        decode_notify(v, false).err().map(|e| e.field),
        failure_from_dict(v).err().map(|e| e.field),
    ];
    for field in refusals.into_iter().flatten() {
        assert!(!field.is_empty());
    }
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-zA-Z_]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "WAITING", "PENDING", "RUNNING", "SUCCESS", "FAILURE", "EVENT", "execute", "revert",
            "success", "failure",
        ])
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "task_cls",
                    "task_name",
                    "task_version",
                    "action",
                    "arguments",
                    "result",
                    "failures",
                    "state",
                    "data",
                    "event_type",
                    "details",
                    "topic",
                    "tasks",
                    "exception_str",
                    "traceback_str",
                    "exc_type_names",
                    "causes",
                    "x",
                ])
                .prop_map(str::to_string),
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            decode_all(&v);
        }
    }

    #[test]
    fn random_messages_never_panic(v in any_json()) {
        decode_all(&v);
    }

    #[test]
    fn valid_messages_with_a_field_replaced_never_panic(
        which in 0usize..3,
        key in prop::sample::select(vec!["task_cls", "task_version", "action", "arguments",
            "result", "failures", "state", "data", "topic", "tasks"]),
        value in any_json(),
    ) {
        let failure = weft_model::Failure::new("boom", "x").to_taskflow();
        let mut v = [
            json!({"task_cls": "t", "task_name": "n", "task_version": "1", "action": "revert",
                   "arguments": {}, "result": ["failure", failure], "failures": {"n": failure}}),
            json!({"state": "FAILURE", "data": {"result": weft_model::Failure::new("a", "b").to_taskflow()}}),
            json!({"topic": "t", "tasks": ["a"]}),
        ][which].clone();
        v[key] = value;
        decode_all(&v);
    }
}
