//! Proptest strategies for events and payloads within the format's rules.
//!
//! Payloads are arbitrary JSON within the number rule of FORMAT.md: integers
//! within ±(2^53 − 1), finite floats, strings of any Unicode (including the
//! astral plane), nested arrays and objects.
//!
//! ```
//! use audit_testkit::strategies::any_event;
//! use proptest::prelude::*;
//! proptest!(ProptestConfig::with_cases(8), |(event in any_event())| {
//!     let again = audit_core::AuditEvent::from_canonical(event.canonical_json()).unwrap();
//!     prop_assert_eq!(again, event);
//! });
//! ```

use audit_core::{AuditEvent, ChainId};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

/// The largest integer magnitude a payload may hold exactly.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Strings of any Unicode scalar values, including the astral plane.
pub fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9 _.-]{0,12}",
        any::<String>().prop_map(|text| text.chars().take(16).collect()),
        prop::collection::vec(prop::char::range('\u{10000}', '\u{10FFFF}'), 0..4)
            .prop_map(|chars| chars.into_iter().collect()),
    ]
}

/// A JSON number the format accepts: a safe integer or a finite float.
pub fn any_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).prop_map(|n| Value::Number(n.into())),
        any::<f64>()
            .prop_filter("finite", |float| float.is_finite())
            .prop_filter_map("representable", |float| Number::from_f64(float)
                .map(Value::Number)),
    ]
}

/// Any JSON value the format accepts, nested up to a few levels.
pub fn any_payload() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any_number(),
        any_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any_text(), inner, 0..4)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A valid event type: 1 to 40 characters, dotted words or any Unicode.
pub fn any_event_type() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,10}(\\.[a-z_]{1,10}){0,2}",
        any_text().prop_filter("non-empty", |text| !text.is_empty()),
    ]
}

/// A valid actor (may be empty).
pub fn any_actor() -> impl Strategy<Value = String> {
    prop_oneof!["(agent|user|service):[a-z0-9]{1,8}", any_text()]
}

/// Any valid event with a fresh id and the current time.
pub fn any_event() -> impl Strategy<Value = AuditEvent> {
    (any_event_type(), any_actor(), any_payload()).prop_filter_map(
        "event within the format's limits",
        |(event_type, actor, payload)| AuditEvent::new(event_type, actor, payload).ok(),
    )
}

/// A valid chain name: 1 to 128 bytes of `[A-Za-z0-9._:-]`.
pub fn any_chain_name() -> impl Strategy<Value = ChainId> {
    "[A-Za-z0-9._:-]{1,128}".prop_filter_map("valid chain name", |name| ChainId::new(name).ok())
}
