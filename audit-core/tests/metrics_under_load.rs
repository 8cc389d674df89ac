//! The metrics ledger of a running pipeline, hammered: producer threads
//! submit into a bounded queue (some submissions refused) while other threads
//! take snapshots; no snapshot may show a negative (wrapped) figure or an
//! unbalanced ledger, and once quiescent every event is accounted for.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use audit_core::pipeline::{AuditPipeline, Backpressure};
use audit_core::sink::{AppendOutcome, AuditSink, Receipt, SinkError};
use audit_core::{AuditEvent, ChainId};
use serde_json::json;

/// Accepts every event at once.
struct Accepting(u64);

#[async_trait]
impl AuditSink for Accepting {
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
        "accepting".into()
    }
}

#[test]
fn snapshots_of_a_hammered_pipeline_never_wrap_and_balance_once_quiescent() {
    const PRODUCERS: usize = 4;
    const PER_PRODUCER: usize = 5_000;
    const CAPACITY: usize = 256;
    const MAX_BATCH: usize = 64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pipeline = {
        let _context = runtime.enter();
        AuditPipeline::builder(|| async { Ok::<_, SinkError>(Accepting(0)) })
            .max_batch(MAX_BATCH)
            .backpressure(Backpressure::Reject { capacity: CAPACITY })
            .spawn()
    };
    let metrics = pipeline.metrics();
    let producing = AtomicUsize::new(PRODUCERS);
    let event = AuditEvent::new("load.test", "agent:hammer", json!({"n": 1})).unwrap();
    let accepted: usize = std::thread::scope(|scope| {
        let observers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut rounds = 0u64;
                    while rounds < 1_000 || producing.load(Ordering::SeqCst) > 0 {
                        rounds += 1;
                        let snapshot = metrics.snapshot();
                        assert!(snapshot.is_balanced(), "{snapshot:?}");
                        assert!(snapshot.in_flight <= snapshot.submitted, "{snapshot:?}");
                        assert!(snapshot.queue_depth <= snapshot.in_flight, "{snapshot:?}");
                        let bound = (PRODUCERS * PER_PRODUCER) as u64;
                        assert!(snapshot.submitted <= bound, "{snapshot:?}");
                        assert!(snapshot.peak_queue_depth <= bound, "{snapshot:?}");
                    }
                    rounds
                })
            })
            .collect();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|_| {
                let queue = pipeline.queue();
                let event = event.clone();
                let producing = &producing;
                scope.spawn(move || {
                    let mut accepted = 0;
                    for _ in 0..PER_PRODUCER {
                        if queue.try_submit(event.clone()).is_ok() {
                            accepted += 1;
                        } else {
                            std::thread::yield_now();
                        }
                    }
                    producing.fetch_sub(1, Ordering::SeqCst);
                    accepted
                })
            })
            .collect();
        let accepted = producers.into_iter().map(|p| p.join().unwrap()).sum();
        for observer in observers {
            assert!(observer.join().unwrap() >= 1_000);
        }
        accepted
    });
    let report = runtime.block_on(pipeline.shutdown(Duration::from_secs(60)));
    assert!(report.is_clean(), "{report:?}");
    let snapshot = report.metrics;
    assert_eq!(snapshot.submitted, accepted as u64, "{snapshot:?}");
    assert_eq!(snapshot.appended, accepted as u64, "{snapshot:?}");
    assert_eq!(
        (snapshot.in_flight, snapshot.queue_depth),
        (0, 0),
        "{snapshot:?}"
    );
    assert!(snapshot.is_balanced(), "{snapshot:?}");
    assert_eq!(
        snapshot.send_failures,
        (PRODUCERS * PER_PRODUCER - accepted) as u64
    );
    assert!(snapshot.peak_queue_depth >= 1, "{snapshot:?}");
    // The depth counts an event from just before its hand-over until the
    // drainer has taken the batch it belongs to off the channel: at most the
    // channel's capacity, one batch being taken, and one hand-over per
    // producer.
    assert!(
        snapshot.peak_queue_depth <= (CAPACITY + MAX_BATCH + PRODUCERS) as u64,
        "{snapshot:?}"
    );
}
