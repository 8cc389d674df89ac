//! The one-pass canonicaliser against the reference RFC 8785 implementation
//! (`serde_json_canonicalizer`): identical bytes for arbitrary JSON, from a
//! `Value` and from any `Serialize`, and identical refusals (the number rule).

use std::collections::{BTreeMap, HashMap};

use audit_core::AuditEvent;
use audit_core::EventError;
use audit_core::canonical::{
    MAX_SAFE_INTEGER, canonicalize, canonicalize_serialize, check_numbers, cmp_utf16,
};
use proptest::prelude::*;
use serde_json::{Number, Value, json};

/// What the old code did: the number rule, then the reference canonicaliser.
fn reference(value: &Value) -> Result<String, EventError> {
    check_numbers(value, "$")?;
    serde_json_canonicalizer::to_string(value).map_err(|error| EventError::NotSerializable {
        detail: error.to_string(),
    })
}

/// Doubles that sit on the edges of ECMAScript's formatting rules.
const EDGE_FLOATS: &[f64] = &[
    0.0,
    -0.0,
    1e21,
    -1e21,
    9.999999999999999e20,
    1e-7,
    1e-6,
    // The double just below 1e-6, where the exponent form starts.
    f64::from_bits(1e-6f64.to_bits() - 1),
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    2.225073858507201e-308,
    f64::MAX,
    f64::MIN,
    f64::EPSILON,
    0.1,
    0.30000000000000004,
    123456789012345680000.0,
    9007199254740992.0,
    -9007199254740992.0,
    9007199254740994.0,
    4.35,
    1e300,
    333333333.3333333,
    1.5e-10,
];

/// Names that probe UTF-16 order: surrogate pairs against U+E000..U+FFFF.
const EDGE_NAMES: &[&str] = &[
    "",
    "a",
    "A",
    "\u{7f}",
    "\u{80}",
    "\u{d7ff}",
    "\u{e000}",
    "\u{ff61}",
    "\u{ffff}",
    "\u{10000}",
    "\u{1f600}",
    "\u{10ffff}",
    "a\u{e000}",
    "a\u{1f600}",
    "\u{0}",
    "\n",
    "\"",
    "\\",
    "é",
];

fn any_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        // Every magnitude, subnormals included, by raw bit pattern.
        any::<u64>().prop_filter_map("finite", |bits| Number::from_f64(f64::from_bits(bits))),
        any::<f64>().prop_filter_map("finite", Number::from_f64),
        proptest::sample::select(EDGE_FLOATS).prop_filter_map("finite", Number::from_f64),
        // Integral doubles of every size, inside and beyond 2^53.
        (any::<i64>(), 0i32..80).prop_filter_map("finite", |(mantissa, shift)| {
            Number::from_f64(mantissa as f64 * 2f64.powi(shift))
        }),
        any::<i64>().prop_map(Number::from),
        any::<u64>().prop_map(Number::from),
        // Integers around ±2^53, where the number rule draws its line.
        (-8i64..=8).prop_map(|delta| Number::from(MAX_SAFE_INTEGER as i64 + delta)),
        (-8i64..=8).prop_map(|delta| Number::from(-(MAX_SAFE_INTEGER as i64) + delta)),
        (-8i64..=8).prop_filter_map("finite", |delta| Number::from_f64(
            (MAX_SAFE_INTEGER as i64 + delta) as f64
        )),
    ]
    .prop_map(Value::Number)
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\u{0}-\u{1f}\"\\\\/\u{7f}\u{80}\u{2028}\u{e000}\u{ff61}\u{ffff}\u{10000}\u{1f600}\u{10ffff}a-c]{0,8}",
        proptest::sample::select(EDGE_NAMES).prop_map(str::to_owned),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any_number(),
        any_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(any_text(), inner, 0..8)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// A payload type of the kind services write: struct fields out of order,
/// a hash map (random member order), options, enums and wide integers.
#[derive(Debug, Clone, serde::Serialize)]
struct Refusal {
    zone: String,
    labels: HashMap<String, i64>,
    action: Action,
    score: Option<f64>,
    count: u128,
    bytes: Vec<u8>,
    nested: BTreeMap<char, Vec<Action>>,
}

#[derive(Debug, Clone, serde::Serialize)]
enum Action {
    Read,
    Write { path: String, len: u32 },
    Copy(String, String),
    Limit(i16),
}

fn any_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::Read),
        (any_text(), any::<u32>()).prop_map(|(path, len)| Action::Write { path, len }),
        (any_text(), any_text()).prop_map(|(from, to)| Action::Copy(from, to)),
        any::<i16>().prop_map(Action::Limit),
    ]
}

fn any_refusal() -> impl Strategy<Value = Refusal> {
    (
        any_text(),
        prop::collection::hash_map(any_text(), -(1i64 << 53)..=(1i64 << 53), 0..8),
        any_action(),
        prop::option::of(any::<f64>().prop_filter("finite", |float| float.is_finite())),
        0u128..=u128::from(MAX_SAFE_INTEGER),
        prop::collection::vec(any::<u8>(), 0..6),
        prop::collection::btree_map(
            any::<char>(),
            prop::collection::vec(any_action(), 0..3),
            0..4,
        ),
    )
        .prop_map(
            |(zone, labels, action, score, count, bytes, nested)| Refusal {
                zone,
                labels,
                action,
                score,
                count,
                bytes,
                nested,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn value_bytes_equal_the_reference_and_refusals_follow_the_number_rule(value in any_json()) {
        prop_assert_eq!(canonicalize(&value), reference(&value));
    }

    #[test]
    fn serialize_bytes_equal_the_value_bytes(value in any_json()) {
        prop_assert_eq!(canonicalize_serialize(&value), canonicalize(&value));
    }

    #[test]
    fn every_number_is_written_as_the_reference_writes_it(number in any_number()) {
        let value = json!({"n": number, "a": [number]});
        prop_assert_eq!(canonicalize(&value), reference(&value));
    }

    #[test]
    fn member_names_sort_as_their_utf16_code_units(a in any_text(), b in any_text()) {
        prop_assert_eq!(cmp_utf16(&a, &b), a.encode_utf16().cmp(b.encode_utf16()));
    }

    #[test]
    fn typed_payloads_equal_their_value_round_trip(refusal in any_refusal()) {
        // Refusals too: a score that is an integral double beyond 2^53 is
        // refused with the same path and number.
        let through_value = serde_json::to_value(&refusal).unwrap();
        prop_assert_eq!(canonicalize_serialize(&refusal), reference(&through_value));
    }

    #[test]
    fn events_built_from_serialize_equal_events_built_from_values(
        refusal in any_refusal(),
        actor in any_text().prop_filter("actor length", |actor| actor.len() <= 1024),
    ) {
        let value = serde_json::to_value(&refusal).unwrap();
        prop_assume!(check_numbers(&value, "$").is_ok());
        let (id, time) = ("0190b0c4-0000-7000-8000-000000000000", "2026-01-02T03:04:05.123456Z");
        let typed = AuditEvent::builder_from_serialize("t.e", actor.clone(), &refusal)
            .unwrap()
            .id(id)
            .time(time)
            .build()
            .unwrap();
        let untyped = AuditEvent::builder("t.e", actor.clone(), value.clone())
            .id(id)
            .time(time)
            .build()
            .unwrap();
        prop_assert_eq!(typed.canonical_json(), untyped.canonical_json());
        let whole = json!({"id": id, "type": "t.e", "actor": actor, "time": time, "payload": value});
        prop_assert_eq!(untyped.canonical_json(), reference(&whole).unwrap());
        let fresh = AuditEvent::from_serialize("t.e", actor, &refusal).unwrap();
        prop_assert_eq!(fresh.payload(), untyped.payload());
    }
}

#[test]
fn edge_floats_are_written_as_ecmascript_writes_them() {
    let cases: &[(f64, &str)] = &[
        (0.0, "0"),
        (-0.0, "0"),
        (1e21, "1e+21"),
        (1e-7, "1e-7"),
        (1e-6, "0.000001"),
        (5e-324, "5e-324"),
        (f64::MAX, "1.7976931348623157e+308"),
        (0.30000000000000004, "0.30000000000000004"),
        (-1.5e-10, "-1.5e-10"),
    ];
    for (float, text) in cases {
        assert_eq!(canonicalize(&json!(float)).unwrap(), *text, "{float:e}");
    }
    // Just below 1e21 ECMAScript writes all 21 digits: an integer beyond
    // 2^53, so the number rule refuses it, as it did before.
    assert!(matches!(
        canonicalize(&json!(9.999999999999999e20)),
        Err(EventError::UnsafeInteger { ref path, .. }) if path == "$"
    ));
}

#[test]
fn astral_names_sort_before_private_use_names() {
    let value = json!({"\u{e000}": 1, "\u{1f600}": 2, "\u{ffff}": 3, "\u{10000}": 4, "z": 5});
    let text = canonicalize(&value).unwrap();
    assert_eq!(
        text,
        "{\"z\":5,\"\u{10000}\":4,\"\u{1f600}\":2,\"\u{e000}\":1,\"\u{ffff}\":3}"
    );
    assert_eq!(Ok(text), reference(&value));
}

#[test]
fn unsafe_numbers_in_typed_payloads_are_refused_with_their_path() {
    #[derive(serde::Serialize)]
    struct Counter {
        total: i128,
    }
    let error =
        AuditEvent::from_serialize("t", "a", &vec![Counter { total: -(1 << 60) }]).unwrap_err();
    assert_eq!(
        error,
        EventError::UnsafeInteger {
            path: "$.payload[0].total".into(),
            number: (-(1i128 << 60)).to_string(),
        }
    );
    assert!(error.to_string().contains("$.payload[0].total"));
}

#[test]
fn non_string_map_keys_and_non_finite_floats_are_refused() {
    let mut by_float = BTreeMap::new();
    by_float.insert(vec![1u8], 1);
    assert!(matches!(
        canonicalize_serialize(&by_float),
        Err(EventError::NotSerializable { .. })
    ));
    assert!(matches!(
        AuditEvent::from_serialize("t", "a", &Some(f64::INFINITY)),
        Err(EventError::NotSerializable { ref detail }) if detail.contains("$.payload")
    ));
}

#[test]
fn integer_map_keys_are_written_as_strings_like_serde_json() {
    let mut map = HashMap::new();
    map.insert(10u32, "ten");
    map.insert(9u32, "nine");
    map.insert(100u32, "hundred");
    let expected = reference(&serde_json::to_value(&map).unwrap()).unwrap();
    assert_eq!(canonicalize_serialize(&map).unwrap(), expected);
    assert_eq!(expected, r#"{"10":"ten","100":"hundred","9":"nine"}"#);
}
