//! Criterion benches of the format's hot pieces: canonicalisation, event
//! building, sealing (sequential and parallel signing) and verification.
//!
//! The canonicaliser and event building are measured against the previous
//! implementation (`serde_json_canonicalizer`, chrono formatting, a
//! `serde_json::Map` of the members) in the same run, so that the ratio
//! old/new is read from one report:
//! `cargo bench -p audit-core --bench format -- 'canonicalize|build_event|parse_event|event_parts'`.

use std::sync::Arc;

use audit_core::AuditEvent;
use audit_core::canonical::{canonicalize, canonicalize_serialize, check_numbers};
use audit_core::chain::{ChainHead, ChainId, Sealer, SignMode, Verifier, VerifyOptions};
use audit_core::digest::Digest;
use audit_core::keys::{AuditSigner, Keyring};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use sha2::Digest as _;

/// A refusal payload of about 300 bytes, like the demo's.
fn payload(n: u64) -> Value {
    json!({
        "action": {"kind": "memory_write", "namespace": "secrets/api", "key": format!("token-{n}")},
        "decision": {"refuse": {"reason": "no writes to secrets/*", "rule_id": "R001"}},
        "request": {"id": n, "agent_session": "5f0c2c2e-8d1b-4c59-9c55-1d2e3f4a5b6c", "bytes": 4096},
        "labels": ["governance", "refusal", "écriture"]
    })
}

fn events(count: u64) -> Vec<AuditEvent> {
    (0..count)
        .map(|n| AuditEvent::new("governance.refusal", "agent:alice", payload(n)).unwrap())
        .collect()
}

/// The same payload as a typed value, for `AuditEvent::from_serialize`.
#[derive(serde::Serialize)]
struct Refusal {
    action: Action,
    decision: Decision,
    request: Request,
    labels: [&'static str; 3],
}

#[derive(serde::Serialize)]
struct Action {
    kind: &'static str,
    namespace: &'static str,
    key: String,
}

#[derive(serde::Serialize)]
struct Decision {
    refuse: Refuse,
}

#[derive(serde::Serialize)]
struct Refuse {
    reason: &'static str,
    rule_id: &'static str,
}

#[derive(serde::Serialize)]
struct Request {
    id: u64,
    agent_session: &'static str,
    bytes: u32,
}

fn typed_payload(n: u64) -> Refusal {
    Refusal {
        action: Action {
            kind: "memory_write",
            namespace: "secrets/api",
            key: format!("token-{n}"),
        },
        decision: Decision {
            refuse: Refuse {
                reason: "no writes to secrets/*",
                rule_id: "R001",
            },
        },
        request: Request {
            id: n,
            agent_session: "5f0c2c2e-8d1b-4c59-9c55-1d2e3f4a5b6c",
            bytes: 4096,
        },
        labels: ["governance", "refusal", "écriture"],
    }
}

/// The previous canonicaliser: the number check, then `serde_json_canonicalizer`.
fn old_canonicalize(value: &Value) -> String {
    check_numbers(value, "$").unwrap();
    serde_json_canonicalizer::to_string(value).unwrap()
}

/// What the previous `AuditEvent::new` did, step for step: a UUIDv7 via
/// `to_string`, chrono's formatter, the number check, a `Map` of the five
/// members canonicalised by `serde_json_canonicalizer`, SHA-256, one `Arc`.
fn old_build(event_type: &str, actor: &str, payload: Value) -> Arc<(Vec<String>, Digest)> {
    let id = uuid::Uuid::now_v7().hyphenated().to_string();
    let time = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    check_numbers(&payload, "$.payload").unwrap();
    let mut members = Map::new();
    members.insert("id".into(), Value::String(id));
    members.insert("type".into(), Value::String(event_type.into()));
    members.insert("actor".into(), Value::String(actor.into()));
    members.insert("time".into(), Value::String(time));
    members.insert("payload".into(), payload);
    let canonical = serde_json_canonicalizer::to_string(&members).unwrap();
    let hash = Digest(sha2::Sha256::digest(canonical.as_bytes()).into());
    let mut take = |name: &str| match members.remove(name) {
        Some(Value::String(value)) => value,
        _ => String::new(),
    };
    let strings = vec![
        take("id"),
        take("type"),
        take("actor"),
        take("time"),
        canonical,
    ];
    Arc::new((strings, hash))
}

/// What the previous `AuditEvent::from_canonical` did: parse, validate the
/// members (UUID re-encoded with `to_string`, time by chrono), rebuild the
/// member map, canonicalise it with the old canonicaliser, hash, compare.
fn old_from_canonical(canonical: &str) -> bool {
    let Ok(Value::Object(mut members)) = serde_json::from_str::<Value>(canonical) else {
        return false;
    };
    let mut take = |name: &str| match members.remove(name) {
        Some(Value::String(value)) => value,
        _ => String::new(),
    };
    let (id, event_type, actor, time) = (take("id"), take("type"), take("actor"), take("time"));
    let payload = members.remove("payload").unwrap_or(Value::Null);
    let id_ok =
        matches!(uuid::Uuid::try_parse(&id), Ok(parsed) if parsed.hyphenated().to_string() == id);
    let time_ok = audit_core::event::validate_time(time.clone()).is_ok();
    check_numbers(&payload, "$.payload").unwrap();
    let mut rebuilt = Map::new();
    rebuilt.insert("id".into(), Value::String(id));
    rebuilt.insert("type".into(), Value::String(event_type));
    rebuilt.insert("actor".into(), Value::String(actor));
    rebuilt.insert("time".into(), Value::String(time));
    rebuilt.insert("payload".into(), payload);
    let again = serde_json_canonicalizer::to_string(&rebuilt).unwrap();
    let hash = Digest(sha2::Sha256::digest(again.as_bytes()).into());
    id_ok && time_ok && again == canonical && hash != Digest::ZERO
}

fn bench_canonical(c: &mut Criterion) {
    let value = payload(7);
    let typed = typed_payload(7);
    assert_eq!(canonicalize(&value).unwrap(), old_canonicalize(&value));
    assert_eq!(
        canonicalize_serialize(&typed).unwrap(),
        old_canonicalize(&value)
    );
    let mut group = c.benchmark_group("canonicalize_300b_payload");
    group.bench_function("old_serde_json_canonicalizer", |b| {
        b.iter(|| old_canonicalize(&value))
    });
    group.bench_function("new_from_value", |b| {
        b.iter(|| canonicalize(&value).unwrap())
    });
    group.bench_function("new_from_serialize", |b| {
        b.iter(|| canonicalize_serialize(&typed).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("build_event_300b_payload");
    group.bench_function("old_new", |b| {
        b.iter_batched(
            || payload(7),
            |value| old_build("governance.refusal", "agent:alice", value),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("new_new", |b| {
        b.iter_batched(
            || payload(7),
            |value| AuditEvent::new("governance.refusal", "agent:alice", value).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("new_from_serialize", |b| {
        b.iter(|| AuditEvent::from_serialize("governance.refusal", "agent:alice", &typed).unwrap())
    });
    group.bench_function("payload_value_construction_only", |b| b.iter(|| payload(7)));
    group.finish();

    let mut group = c.benchmark_group("event_parts");
    group.bench_function("uuid_now_v7_to_string", |b| {
        b.iter(|| uuid::Uuid::now_v7().hyphenated().to_string())
    });
    group.bench_function("time_chrono_format", |b| {
        b.iter(|| {
            chrono::Utc::now()
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string()
        })
    });
    group.bench_function("time_now_utc", |b| b.iter(audit_core::event::now_utc));
    let text = canonicalize(&value).unwrap();
    group.bench_function("sha256_of_payload", |b| {
        b.iter(|| sha2::Sha256::digest(text.as_bytes()))
    });
    group.finish();

    let event = AuditEvent::new("governance.refusal", "agent:alice", payload(7)).unwrap();
    let stored = event.canonical_json().to_owned();
    assert!(old_from_canonical(&stored));
    let mut group = c.benchmark_group("parse_event_300b_payload");
    group.bench_function("old_from_canonical", |b| {
        b.iter(|| old_from_canonical(&stored))
    });
    group.bench_function("new_from_canonical", |b| {
        b.iter(|| AuditEvent::from_canonical(&stored).unwrap())
    });
    group.finish();
}

fn bench_seal(c: &mut Criterion) {
    let signer = Arc::new(AuditSigner::generate());
    let batch = events(1024);
    let mut group = c.benchmark_group("seal_batch_1024");
    group.throughput(Throughput::Elements(batch.len() as u64));
    let chain = ChainId::new("bench").unwrap();
    let unsigned = Sealer::new(chain.clone(), None, SignMode::EveryRecord);
    let signed = Sealer::new(chain, Some(signer.clone()), SignMode::EveryRecord);
    group.bench_function("unsigned", |b| {
        b.iter(|| unsigned.seal_batch(ChainHead::EMPTY, &batch))
    });
    group.bench_function("signed_parallel", |b| {
        b.iter(|| signed.seal_batch(ChainHead::EMPTY, &batch))
    });
    group.bench_function("signed_sequential", |b| {
        b.iter(|| {
            let mut head = ChainHead::EMPTY;
            batch
                .iter()
                .map(|event| {
                    let record = signed.seal(head, event);
                    head = record.head();
                    record
                })
                .collect::<Vec<_>>()
        })
    });
    group.finish();
}

fn bench_verify(c: &mut Criterion) {
    let signer = Arc::new(AuditSigner::generate());
    let sealer = Sealer::new(
        ChainId::new("bench").unwrap(),
        Some(signer.clone()),
        SignMode::EveryRecord,
    );
    let records = sealer.seal_batch(ChainHead::EMPTY, &events(4096));
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    let mut group = c.benchmark_group("verify_4096_signed");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.sample_size(10);
    group.bench_function("verifier", |b| {
        b.iter(|| {
            let mut verifier = Verifier::new(
                keyring.clone(),
                VerifyOptions::default().with_require_signed(true),
            );
            records.iter().for_each(|record| verifier.record(record));
            assert!(verifier.finish().is_ok());
        })
    });
    let key = *signer.public_key().verifying_key();
    group.bench_function("baseline_verify_strict_one_by_one", |b| {
        b.iter(|| {
            for record in &records {
                let signature = ed25519_dalek::Signature::from_bytes(record.sig.as_ref().unwrap());
                key.verify_strict(record.hash.as_bytes(), &signature)
                    .unwrap();
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_canonical, bench_seal, bench_verify);
criterion_main!(benches);
