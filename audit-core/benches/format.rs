//! Criterion benches of the format's hot pieces: canonicalisation, event
//! building, sealing (sequential and parallel signing) and verification.

use std::sync::Arc;

use audit_core::canonical::canonicalize;
use audit_core::chain::{ChainHead, ChainId, Sealer, SignMode, Verifier, VerifyOptions};
use audit_core::keys::{AuditSigner, Keyring};
use audit_core::AuditEvent;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};

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
    (0..count).map(|n| AuditEvent::new("governance.refusal", "agent:alice", payload(n)).unwrap()).collect()
}

fn bench_canonical(c: &mut Criterion) {
    let value = payload(7);
    c.bench_function("canonicalize_300b_payload", |b| b.iter(|| canonicalize(&value).unwrap()));
    c.bench_function("build_event_300b_payload", |b| {
        b.iter_batched(|| payload(7), |value| AuditEvent::new("governance.refusal", "agent:alice", value).unwrap(), BatchSize::SmallInput)
    });
}

fn bench_seal(c: &mut Criterion) {
    let signer = Arc::new(AuditSigner::generate());
    let batch = events(1024);
    let mut group = c.benchmark_group("seal_batch_1024");
    group.throughput(Throughput::Elements(batch.len() as u64));
    let chain = ChainId::new("bench").unwrap();
    let unsigned = Sealer::new(chain.clone(), None, SignMode::EveryRecord);
    let signed = Sealer::new(chain, Some(signer.clone()), SignMode::EveryRecord);
    group.bench_function("unsigned", |b| b.iter(|| unsigned.seal_batch(ChainHead::EMPTY, &batch)));
    group.bench_function("signed_parallel", |b| b.iter(|| signed.seal_batch(ChainHead::EMPTY, &batch)));
    group.bench_function("signed_sequential", |b| {
        b.iter(|| {
            let mut head = ChainHead::EMPTY;
            batch.iter().map(|event| { let record = signed.seal(head, event); head = record.head(); record }).collect::<Vec<_>>()
        })
    });
    group.finish();
}

fn bench_verify(c: &mut Criterion) {
    let signer = Arc::new(AuditSigner::generate());
    let sealer = Sealer::new(ChainId::new("bench").unwrap(), Some(signer.clone()), SignMode::EveryRecord);
    let records = sealer.seal_batch(ChainHead::EMPTY, &events(4096));
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    let mut group = c.benchmark_group("verify_4096_signed");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.sample_size(10);
    group.bench_function("verifier", |b| {
        b.iter(|| {
            let mut verifier = Verifier::new(keyring.clone(), VerifyOptions { require_signed: true, ..VerifyOptions::default() });
            records.iter().for_each(|record| verifier.record(record));
            assert!(verifier.finish().is_ok());
        })
    });
    let key = *signer.public_key().verifying_key();
    group.bench_function("baseline_verify_strict_one_by_one", |b| {
        b.iter(|| {
            for record in &records {
                let signature = ed25519_dalek::Signature::from_bytes(record.sig.as_ref().unwrap());
                key.verify_strict(record.hash.as_bytes(), &signature).unwrap();
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_canonical, bench_seal, bench_verify);
criterion_main!(benches);
