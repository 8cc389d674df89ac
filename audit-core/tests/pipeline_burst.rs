//! A burst of 1,000,000 events from 8 producer tasks into the in-memory
//! chain sink: nothing dropped, per-producer order kept, the chain verifies.

use std::collections::HashMap;
use std::time::Duration;

use audit_core::AuditEvent;
use audit_core::chain_writer::ChainSinkOptions;
use audit_core::keys::Keyring;
use audit_core::pipeline::AuditPipeline;
use audit_testkit::sinks::MemoryChain;

const PRODUCERS: usize = 8;
const PER_PRODUCER: usize = 125_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_events_from_eight_producers_arrive_and_verify() {
    let chain = MemoryChain::new();
    let pipeline = AuditPipeline::builder(chain.factory(ChainSinkOptions::unsigned()))
        .max_batch(16_384)
        .spawn();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let queue = pipeline.queue();
            tokio::spawn(async move {
                let actor = format!("p{producer}");
                let mut ids = Vec::with_capacity(PER_PRODUCER);
                for n in 0..PER_PRODUCER {
                    let event =
                        AuditEvent::new("b", actor.as_str(), serde_json::Value::Null).unwrap();
                    ids.push(event.id().to_owned());
                    assert!(
                        queue.submit(event),
                        "submit refused event {n} of producer {producer}"
                    );
                    if n % 4096 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                ids
            })
        })
        .collect();
    let mut submitted: Vec<Vec<String>> = Vec::new();
    for producer in producers {
        submitted.push(producer.await.unwrap());
    }
    let report = pipeline.shutdown(Duration::from_secs(120)).await;
    assert!(report.is_clean(), "{report:?}");
    let total = (PRODUCERS * PER_PRODUCER) as u64;
    let metrics = &report.metrics;
    assert!(metrics.is_balanced());
    assert_eq!(
        (
            metrics.submitted,
            metrics.appended,
            metrics.dead_lettered,
            metrics.lost
        ),
        (total, total, 0, 0)
    );
    assert_eq!(chain.len() as u64, total);
    // Per-producer submit order survives, and every event is there once.
    let records = chain.records();
    let position: HashMap<&str, usize> = records
        .iter()
        .enumerate()
        .map(|(index, record)| (record.columns.as_ref().unwrap().id.as_str(), index))
        .collect();
    assert_eq!(
        position.len() as u64,
        total,
        "event ids in the chain are not unique"
    );
    for (producer, ids) in submitted.iter().enumerate() {
        let mut last = None;
        for id in ids {
            let index = *position
                .get(id.as_str())
                .unwrap_or_else(|| panic!("event {id} of producer {producer} missing"));
            assert!(
                last < Some(index),
                "producer {producer}: event {id} out of order"
            );
            last = Some(index);
        }
    }
    drop(position);
    drop(records);
    let verified = chain.verify(Keyring::new());
    assert!(verified.is_ok(), "{:?}", verified.first_failure());
    assert_eq!(verified.records, total);
}
