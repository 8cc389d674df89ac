//! Every refusal of event building and parsing, checked for what it says.

use audit_core::EventError;
use audit_core::event::{AuditEvent, EventLimits};
use serde_json::json;

fn build(event_type: &str, actor: &str) -> Result<AuditEvent, EventError> {
    AuditEvent::new(event_type, actor, json!({}))
}

#[test]
fn empty_type_is_refused_with_its_length() {
    assert_eq!(
        build("", "a").unwrap_err(),
        EventError::TypeLength { len: 0, max: 256 }
    );
}

#[test]
fn type_over_256_bytes_is_refused_with_its_length() {
    assert!(build(&"t".repeat(256), "a").is_ok());
    assert_eq!(
        build(&"é".repeat(129), "a").unwrap_err(),
        EventError::TypeLength { len: 258, max: 256 }
    );
}

#[test]
fn actor_over_1024_bytes_is_refused_with_its_length() {
    assert!(build("t", "").is_ok());
    assert!(build("t", &"a".repeat(1024)).is_ok());
    assert_eq!(
        build("t", &"a".repeat(1025)).unwrap_err(),
        EventError::ActorLength {
            len: 1025,
            max: 1024
        }
    );
}

#[test]
fn ids_must_be_lowercase_hyphenated_uuids() {
    for bad in [
        "",
        "not-a-uuid",
        "0190B0C4-0000-7000-8000-000000000000",
        "0190b0c400007000800000000000000",
        "{0190b0c4-0000-7000-8000-000000000000}",
    ] {
        let error = AuditEvent::builder("t", "a", json!(1))
            .id(bad)
            .build()
            .unwrap_err();
        assert_eq!(error, EventError::InvalidId { value: bad.into() });
        assert!(error.to_string().contains("`id`"));
    }
    let good = AuditEvent::builder("t", "a", json!(1))
        .id("0190b0c4-0000-7000-8000-000000000000")
        .build()
        .unwrap();
    assert_eq!(good.id(), "0190b0c4-0000-7000-8000-000000000000");
}

#[test]
fn generated_ids_are_uuid_v7_and_times_have_six_fraction_digits() {
    let event = build("t", "a").unwrap();
    let id = uuid::Uuid::parse_str(event.id()).unwrap();
    assert_eq!(id.get_version_num(), 7);
    assert_eq!(event.time().len(), 27);
    assert!(event.time().ends_with('Z'));
    assert_eq!(&event.time()[19..20], ".");
}

#[test]
fn times_must_have_the_exact_format_and_be_real() {
    for bad in [
        "2026-11-02T01:01:07Z",
        "2026-11-02T01:01:07.00791Z",
        "2026-11-02T01:01:07.0079190Z",
        "2026-11-02 01:01:07.007919Z",
        "2026-11-02T01:01:07.007919+00:00",
        "2026-02-30T01:01:07.007919Z",
        "2026-11-02T25:01:07.007919Z",
        "２026-11-02T01:01:07.00791Z",
    ] {
        let error = AuditEvent::builder("t", "a", json!(1))
            .time(bad)
            .build()
            .unwrap_err();
        assert_eq!(
            error,
            EventError::InvalidTime { value: bad.into() },
            "{bad}"
        );
    }
}

#[test]
fn unsafe_integers_are_refused_with_path_and_number() {
    let error = AuditEvent::new(
        "t",
        "a",
        json!({"list": [0, {"big": -9007199254740993i64}]}),
    )
    .unwrap_err();
    assert_eq!(
        error,
        EventError::UnsafeInteger {
            path: "$.payload.list[1].big".into(),
            number: "-9007199254740993".into()
        }
    );
    assert!(error.to_string().contains("-9007199254740993"));
}

#[test]
fn events_over_the_size_limit_are_refused_with_both_numbers() {
    let limits = EventLimits {
        max_event_bytes: 200,
    };
    let error = AuditEvent::builder("t", "a", json!("x".repeat(200)))
        .limits(limits)
        .build()
        .unwrap_err();
    let EventError::TooLarge { size, limit } = error else {
        panic!("{error:?}")
    };
    assert_eq!(limit, 200);
    assert!(size > 200);
    assert!(error.to_string().contains(&size.to_string()));
}

#[test]
fn parsing_refuses_bytes_that_are_not_json() {
    let error = AuditEvent::from_canonical("{\"id\":").unwrap_err();
    assert!(matches!(error, EventError::NotJson { .. }), "{error:?}");
}

#[test]
fn parsing_refuses_the_wrong_shape_and_names_the_member() {
    let event = build("t", "a").unwrap();
    let mut value: serde_json::Value = serde_json::from_str(event.canonical_json()).unwrap();
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (json!([1]), "not an object"),
        (
            {
                let mut v = value.clone();
                v["extra"] = json!(1);
                v
            },
            "extra",
        ),
        (
            {
                let mut v = value.clone();
                v.as_object_mut().unwrap().remove("actor");
                v
            },
            "actor",
        ),
        (
            {
                let mut v = value.clone();
                v.as_object_mut().unwrap().remove("payload");
                v["x"] = json!(0);
                v
            },
            "payload",
        ),
        (
            {
                let mut v = value.clone();
                v["type"] = json!(5);
                v
            },
            "`type` must be a string",
        ),
    ];
    for (bad, needle) in cases {
        let text = audit_core::canonical::canonicalize(&bad).unwrap();
        let error = AuditEvent::from_canonical(&text).unwrap_err();
        assert!(matches!(error, EventError::WrongShape { .. }), "{error:?}");
        assert!(error.to_string().contains(needle), "{error} lacks {needle}");
    }
    value["actor"] = json!("b");
    assert!(
        AuditEvent::from_canonical(&audit_core::canonical::canonicalize(&value).unwrap()).is_ok()
    );
}

#[test]
fn parsing_refuses_non_canonical_bytes() {
    let event = AuditEvent::new("t", "a", json!({"b": 1, "a": 2.5})).unwrap();
    let canonical = event.canonical_json();
    let spaced = canonical.replacen(':', ": ", 1);
    assert_eq!(
        AuditEvent::from_canonical(&spaced).unwrap_err(),
        EventError::NotCanonical
    );
    let unsorted = canonical.replace(r#"{"a":2.5,"b":1}"#, r#"{"b":1,"a":2.5}"#);
    assert_ne!(unsorted, canonical);
    assert_eq!(
        AuditEvent::from_canonical(&unsorted).unwrap_err(),
        EventError::NotCanonical
    );
    // Only the payload's number: the event's time may hold "2.5" too.
    let float_form = canonical.replace(r#""a":2.5"#, r#""a":25e-1"#);
    assert_ne!(float_form, canonical);
    assert_eq!(
        AuditEvent::from_canonical(&float_form).unwrap_err(),
        EventError::NotCanonical
    );
}

#[test]
fn parsing_applies_the_same_rules_as_building() {
    let event = build("t", "a").unwrap();
    let too_long_actor = event.canonical_json().replace(
        r#""actor":"a""#,
        &format!(r#""actor":"{}""#, "a".repeat(1025)),
    );
    assert_eq!(
        AuditEvent::from_canonical(&too_long_actor).unwrap_err(),
        EventError::ActorLength {
            len: 1025,
            max: 1024
        }
    );
    let limits = EventLimits {
        max_event_bytes: 10,
    };
    assert!(matches!(
        AuditEvent::from_canonical_with(event.canonical_json(), limits).unwrap_err(),
        EventError::TooLarge { limit: 10, .. }
    ));
}

#[test]
fn debug_output_never_shows_the_payload() {
    let event = AuditEvent::new("t", "a", json!({"secret": "hunter2"})).unwrap();
    assert!(!format!("{event:?}").contains("hunter2"));
    assert_eq!(event.payload(), json!({"secret": "hunter2"}));
}
