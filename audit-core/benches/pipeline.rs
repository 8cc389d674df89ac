//! Criterion bench of the producer's cost: `AuditQueue::submit` into a
//! running pipeline whose sink discards every batch at once, so that only
//! the queue and the metrics ledger are measured; then the caller's whole
//! cost, building a 300-byte event and submitting it, with its median and
//! 99th percentile timed call by call (printed after criterion's report).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use audit_core::pipeline::AuditPipeline;
use audit_core::sink::{AppendOutcome, AuditSink, Receipt, SinkError};
use audit_core::{AuditEvent, ChainId};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

/// Accepts every event and keeps nothing.
struct Discarding(u64);

#[async_trait]
impl AuditSink for Discarding {
    async fn append_batch(
        &mut self,
        events: &[AuditEvent],
    ) -> Result<Vec<AppendOutcome>, SinkError> {
        Ok(events
            .iter()
            .map(|event| {
                self.0 += 1;
                AppendOutcome::Appended(Receipt {
                    chain: ChainId::default(),
                    seq: self.0,
                    record_hash: event.event_hash(),
                    already_present: false,
                })
            })
            .collect())
    }

    fn describe(&self) -> String {
        "discarding".into()
    }
}

/// A refusal payload of about 300 bytes, like the demo's.
fn payload() -> serde_json::Value {
    json!({
        "action": {"kind": "memory_write", "namespace": "secrets/api", "key": "token-7"},
        "decision": {"refuse": {"reason": "no writes to secrets/*", "rule_id": "R001"}},
        "request": {"id": 7, "agent_session": "5f0c2c2e-8d1b-4c59-9c55-1d2e3f4a5b6c", "bytes": 4096},
        "labels": ["governance", "refusal", "écriture"]
    })
}

fn bench_submit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let pipeline = {
        let _context = runtime.enter();
        AuditPipeline::builder(|| async { Ok::<_, SinkError>(Discarding(0)) })
            .max_batch(8_192)
            .spawn()
    };
    let queue = pipeline.queue();
    let event = AuditEvent::new(
        "governance.refusal",
        "agent:alice",
        json!({"rule": "R001", "path": "secrets/api-keys.env", "reason": "x".repeat(240)}),
    )
    .unwrap();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));
    group.bench_function("submit_discarding_sink", |b| {
        b.iter(|| queue.submit(event.clone()))
    });
    let value = payload();
    group.bench_function("build_and_submit_300b_payload", |b| {
        b.iter_batched(
            || value.clone(),
            |value| {
                queue.submit(AuditEvent::new("governance.refusal", "agent:alice", value).unwrap())
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
    let mut nanos: Vec<u64> = (0..200_000)
        .map(|_| {
            let value = value.clone();
            let started = Instant::now();
            queue.submit(AuditEvent::new("governance.refusal", "agent:alice", value).unwrap());
            u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX)
        })
        .collect();
    nanos.sort_unstable();
    println!(
        "build_and_submit_300b_payload, timed one by one over {} calls: median {} ns, p99 {} ns",
        nanos.len(),
        nanos[nanos.len() / 2],
        nanos[nanos.len() * 99 / 100]
    );
    let report = runtime.block_on(pipeline.shutdown(Duration::from_secs(60)));
    assert!(!report.timed_out);
}

criterion_group!(benches, bench_submit);
criterion_main!(benches);
