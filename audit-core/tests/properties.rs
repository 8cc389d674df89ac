//! Property tests of the format: canonicalisation, event round trips, and
//! that sealing then verifying succeeds while any tamper is caught at the
//! right seq.

use std::sync::{Arc, OnceLock};

use audit_core::AuditEvent;
use audit_core::canonical::canonicalize;
use audit_core::chain::{
    ChainHead, ChainId, Record, Sealer, SignMode, Verifier, VerifyOptions, VerifyReport,
};
use audit_core::keys::{AuditSigner, Keyring};
use proptest::prelude::*;
use serde_json::{Map, Value};

const MAX_SAFE: i64 = 1 << 53;

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-MAX_SAFE..=MAX_SAFE).prop_map(Value::from),
        any::<f64>()
            .prop_filter("a double JCS writes within the number rule", |f| {
                f.is_finite() && !(f.fract() == 0.0 && f.abs() > MAX_SAFE as f64 && f.abs() < 1e21)
            })
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[\\u{0}-\\u{7f}\\u{e9}\\u{ff61}\\u{1f600}]{0,8}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-z\\u{e9}\\u{ff61}\\u{1f600}]{0,4}", inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Writes `value` as JSON text with object members in a shuffled order.
fn shuffled_text(value: &Value, seed: u64) -> String {
    match value {
        Value::Object(members) => {
            let mut entries: Vec<(&String, &Value)> = members.iter().collect();
            let len = entries.len().max(1) as u64;
            entries.rotate_left((seed % len) as usize);
            if seed % 2 == 1 {
                entries.reverse();
            }
            let inner: Vec<String> = entries
                .iter()
                .map(|(key, item)| {
                    format!(
                        "{}:{}",
                        serde_json::to_string(key).unwrap(),
                        shuffled_text(item, seed / 3 + 1)
                    )
                })
                .collect();
            format!("{{{}}}", inner.join(" , "))
        }
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(|item| shuffled_text(item, seed + 7))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => serde_json::to_string(other).unwrap(),
    }
}

fn signer() -> Arc<AuditSigner> {
    static SIGNER: OnceLock<Arc<AuditSigner>> = OnceLock::new();
    SIGNER
        .get_or_init(|| Arc::new(AuditSigner::generate()))
        .clone()
}

fn keyring() -> Keyring {
    let mut keyring = Keyring::new();
    keyring.insert(signer().public_key());
    keyring
}

fn events() -> impl Strategy<Value = Vec<AuditEvent>> {
    prop::collection::vec(("[a-z.]{1,12}", ".{0,12}", json_value()), 1..12).prop_map(|items| {
        items
            .into_iter()
            .map(|(event_type, actor, payload)| {
                AuditEvent::new(event_type, actor, payload).unwrap()
            })
            .collect()
    })
}

fn seal(events: &[AuditEvent]) -> Vec<Record> {
    Sealer::new(
        ChainId::new("prop").unwrap(),
        Some(signer()),
        SignMode::EveryRecord,
    )
    .seal_batch(ChainHead::EMPTY, events)
}

fn verify(records: &[Record], head: ChainHead) -> VerifyReport {
    let options = VerifyOptions::default()
        .with_require_signed(true)
        .with_expect_head(Some(head));
    let mut verifier = Verifier::new(keyring(), options);
    verifier.expect_chain(&ChainId::new("prop").unwrap());
    records.iter().for_each(|record| verifier.record(record));
    verifier.finish()
}

fn first_failure_seq(records: &[Record], head: ChainHead) -> Option<u64> {
    verify(records, head)
        .first_failure()
        .map(|failure| failure.seq)
}

fn flip_string(text: &mut audit_core::SharedStr, bit: usize) {
    let mut bytes = text.as_bytes().to_vec();
    if bytes.is_empty() {
        bytes.push(b'x');
    } else {
        let index = (bit / 8) % bytes.len();
        bytes[index] ^= 1 << (bit % 8);
    }
    *text = String::from_utf8_lossy(&bytes).into_owned().into();
}

fn flip_array<const N: usize>(bytes: &mut [u8; N], bit: usize) {
    bytes[(bit / 8) % N] ^= 1 << (bit % 8);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn canonicalisation_is_idempotent(value in json_value()) {
        let once = canonicalize(&value).unwrap();
        let reparsed: Value = serde_json::from_str(&once).unwrap();
        prop_assert_eq!(canonicalize(&reparsed).unwrap(), once);
    }

    #[test]
    fn canonicalisation_ignores_member_order_and_whitespace(value in json_value(), seed in any::<u64>()) {
        let text = shuffled_text(&value, seed);
        let reparsed: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(canonicalize(&reparsed).unwrap(), canonicalize(&value).unwrap());
    }

    #[test]
    fn built_events_round_trip_through_their_canonical_bytes(event_type in "[a-z.]{1,40}", actor in ".{0,40}", payload in json_value()) {
        let event = AuditEvent::new(event_type.clone(), actor.clone(), payload.clone()).unwrap();
        let parsed = AuditEvent::from_canonical(event.canonical_json()).unwrap();
        prop_assert_eq!(&parsed, &event);
        prop_assert_eq!(parsed.event_hash(), event.event_hash());
        prop_assert_eq!((parsed.event_type(), parsed.actor()), (event_type.as_str(), actor.as_str()));
        prop_assert_eq!(canonicalize(&parsed.payload()).unwrap(), canonicalize(&payload).unwrap());
    }

    #[test]
    fn sealed_chains_verify(events in events()) {
        let records = seal(&events);
        let head = records.last().unwrap().head();
        let report = verify(&records, head);
        prop_assert!(report.is_ok(), "{:?}", report.failures);
        prop_assert_eq!(report.records, events.len() as u64);
    }

    #[test]
    fn flipping_any_bit_of_a_stored_field_fails_at_that_seq(events in events(), pick in any::<usize>(), field in 0usize..10, bit in any::<usize>()) {
        let mut records = seal(&events);
        let head = records.last().unwrap().head();
        let index = pick % records.len();
        let seq = records[index].seq;
        let record = &mut records[index];
        let columns = record.columns.as_mut().unwrap();
        match field {
            0 => flip_string(&mut record.event_json, bit),
            1 => flip_array(&mut record.event_hash.0, bit),
            2 => flip_array(&mut record.prev.0, bit),
            3 => flip_array(&mut record.hash.0, bit),
            4 => flip_array(record.sig.as_mut().unwrap(), bit),
            5 => flip_string(record.key_id.as_mut().unwrap(), bit),
            6 => flip_string(&mut columns.id, bit),
            7 => flip_string(&mut columns.event_type, bit),
            8 => flip_string(&mut columns.actor, bit),
            _ => flip_string(&mut columns.time, bit),
        }
        prop_assert_eq!(first_failure_seq(&records, head), Some(seq));
    }

    #[test]
    fn a_tampered_seq_fails_where_the_sequence_breaks(events in events(), pick in any::<usize>(), bit in 0u32..64) {
        let mut records = seal(&events);
        let head = records.last().unwrap().head();
        let index = pick % records.len();
        let seq = records[index].seq;
        let tampered = seq ^ (1u64 << bit);
        records[index].seq = tampered;
        let expected = if tampered < seq { tampered } else { tampered.min(seq + 1) };
        let failure = first_failure_seq(&records, head);
        // The last record has no successor: the expected head catches it at its own seq.
        let expected = if index + 1 == records.len() && tampered > seq { seq } else { expected };
        prop_assert_eq!(failure, Some(expected));
    }

    #[test]
    fn deleting_a_record_fails_at_the_record_after_the_gap(events in events(), pick in any::<usize>()) {
        let mut records = seal(&events);
        let head = records.last().unwrap().head();
        let index = pick % records.len();
        let deleted = records.remove(index).seq;
        // Deleting the head is caught by the expected head, at the missing seq.
        prop_assert_eq!(first_failure_seq(&records, head), Some(if index == records.len() { deleted } else { deleted + 1 }));
    }

    #[test]
    fn duplicating_a_record_fails_at_its_seq(events in events(), pick in any::<usize>()) {
        let mut records = seal(&events);
        let head = records.last().unwrap().head();
        let index = pick % records.len();
        let copy = records[index].clone();
        records.insert(index + 1, copy);
        prop_assert_eq!(first_failure_seq(&records, head), Some(records[index].seq));
    }

    #[test]
    fn swapping_two_records_fails_at_the_earlier_seq(events in events().prop_filter("two or more", |events| events.len() >= 2), pick in any::<usize>(), distance in 1usize..4) {
        let mut records = seal(&events);
        let head = records.last().unwrap().head();
        let first = pick % (records.len() - 1);
        let second = (first + distance).min(records.len() - 1);
        records.swap(first, second);
        prop_assert_eq!(first_failure_seq(&records, head), Some(records[second].seq));
    }
}
