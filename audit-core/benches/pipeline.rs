//! Criterion bench of the producer's cost: `AuditQueue::submit` into a
//! running pipeline whose sink discards every batch at once, so that only
//! the queue and the metrics ledger are measured.

use std::time::Duration;

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
    group.finish();
    let report = runtime.block_on(pipeline.shutdown(Duration::from_secs(60)));
    assert!(!report.timed_out);
}

criterion_group!(benches, bench_submit);
criterion_main!(benches);
