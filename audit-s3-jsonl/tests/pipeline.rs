//! The archive behind the real pipeline: several producers submit while
//! moto's S3 server is killed (SIGKILL) and restarted; nothing is lost.
//!
//! moto keeps its objects in memory, so the restarted server is empty. The
//! store the archive writes through copies every put the server
//! acknowledged into a kept store ([`KeepsCopies`]), standing in for S3's
//! durability: the kept store must verify as one chain holding exactly the
//! submitted events, each once, and the pipeline's metrics must balance
//! with nothing lost or dead-lettered.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use audit_core::AuditEvent;
use audit_core::chain_writer::CheckpointPolicy;
use audit_core::keys::AuditSigner;
use audit_core::metrics::PipelineMetrics;
use audit_core::pipeline::{AuditPipeline, AuditQueue};
use audit_core::retry::RetryPolicy;
use audit_core::sink::Receipt;
use audit_s3_jsonl::url::s3_retry_config;
use audit_s3_jsonl::{ArchiveFactory, ArchiveOptions};
use audit_testkit::object_stores::KeepsCopies;
use audit_testkit::servers::s3::MotoServer;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use object_store::path::Path;

const PRODUCERS: usize = 4;
/// The S3 client's retry deadline: shorter than the outage, so the sink
/// fails and the supervisor rebuilds it.
const CLIENT_DEADLINE: Duration = Duration::from_millis(800);
const OUTAGE: Duration = Duration::from_millis(2000);

/// What a producer submitted: every event id, and the receipts it waited for.
#[derive(Default)]
struct Submitted {
    ids: Vec<String>,
    receipts: Vec<(String, Receipt)>,
}

/// Submits paced events until `stop`; every 20th is awaited durably.
async fn produce(queue: AuditQueue, producer: usize, stop: Arc<AtomicBool>) -> Submitted {
    let mut submitted = Submitted::default();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let event = AuditEvent::new(
            "test.pipeline",
            format!("agent:p{producer}"),
            serde_json::json!({ "producer": producer, "n": n }),
        )
        .unwrap();
        submitted.ids.push(event.id().to_owned());
        if n % 20 == 0 {
            let id = event.id().to_owned();
            let receipt = queue.submit_wait(event).await.unwrap();
            submitted.receipts.push((id, receipt));
        } else {
            assert!(queue.submit(event), "the pipeline refused an event");
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    submitted
}

/// Waits until at least `count` events are appended.
async fn appended_at_least(metrics: &PipelineMetrics, count: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while metrics.snapshot().appended < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} events appended",
            metrics.snapshot().appended
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_lose_nothing_when_the_server_is_killed_and_restarted_mid_run() {
    let mut server = MotoServer::start().unwrap();
    let s3 = server
        .store_builder()
        .with_retry(s3_retry_config(CLIENT_DEADLINE))
        .build()
        .unwrap();
    let kept: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let copying = Arc::new(KeepsCopies::new(Arc::new(s3), kept.clone()));
    let store: Arc<dyn ObjectStore> = copying.clone();
    let prefix = Path::from("pipeline");
    let signer = Arc::new(AuditSigner::generate());
    let options = common::options("default", &signer).with_checkpoints(CheckpointPolicy {
        every_records: Some(200),
        every: None,
    });
    let factory = ArchiveFactory::new(store, prefix.clone(), options, ArchiveOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let pipeline = AuditPipeline::builder(factory)
        .max_batch(32)
        .linger(Duration::from_millis(2))
        .retry(RetryPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(300),
            max_retries: 0,
        })
        .max_restarts(1_000)
        .fallback_path(dir.path().join("fallback.jsonl"))
        .spawn();
    let metrics = pipeline.metrics();
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| tokio::spawn(produce(pipeline.queue(), producer, stop.clone())))
        .collect();

    appended_at_least(&metrics, 100).await;
    server.kill().unwrap();
    let at_kill = metrics.snapshot();
    tokio::time::sleep(OUTAGE).await;
    let at_restart = metrics.snapshot();
    server.restart().unwrap();
    appended_at_least(&metrics, at_restart.submitted + 100).await;
    stop.store(true, Ordering::SeqCst);
    let mut submitted = Submitted::default();
    for producer in producers {
        let one = producer.await.unwrap();
        submitted.ids.extend(one.ids);
        submitted.receipts.extend(one.receipts);
    }
    assert!(pipeline.drain_pending(Duration::from_secs(30)).await);
    let report = pipeline.shutdown(Duration::from_secs(10)).await;

    // The outage was real: events were queued while the server was down,
    // and the sink failed and was rebuilt.
    assert!(
        at_restart.submitted > at_kill.submitted,
        "no event was submitted during the outage"
    );
    let end = &report.metrics;
    assert!(report.is_clean(), "{:?}", report.errors);
    assert!(end.is_balanced(), "{end:?}");
    assert_eq!(end.lost, 0);
    assert_eq!(end.dead_lettered, 0);
    assert!(!end.terminal);
    assert_eq!(end.submitted, submitted.ids.len() as u64);
    assert_eq!(end.appended, end.submitted);
    assert!(end.append_failures > 0, "the sink never failed: {end:?}");
    assert!(end.restarts > 0, "the sink was never rebuilt: {end:?}");

    // What the server acknowledged verifies as one chain holding exactly
    // the submitted events, once each, and matches the receipts.
    assert_eq!(copying.conflicting_copies(), 0);
    let report = common::verify(&kept, &prefix, &signer).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert!(report.checkpoints > 0);
    let stored = stored_events(&kept, &prefix).await;
    assert_eq!(stored.len(), submitted.ids.len(), "stored once each");
    let stored_ids: BTreeSet<&String> = stored.keys().collect();
    let submitted_ids: BTreeSet<&String> = submitted.ids.iter().collect();
    assert_eq!(stored_ids, submitted_ids);
    for (id, receipt) in &submitted.receipts {
        assert_eq!(stored[id], (receipt.seq, receipt.record_hash.to_hex()));
    }
}

/// Event id -> (seq, record hash) of every record of chain `default`.
async fn stored_events(
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
) -> HashMap<String, (u64, String)> {
    let mut stored = HashMap::new();
    for record in common::records(store, prefix, &Default::default()).await {
        let event: serde_json::Value = serde_json::from_str(&record.event_json).unwrap();
        let id = event["id"].as_str().unwrap().to_owned();
        let previous = stored.insert(id, (record.seq, record.hash.to_hex()));
        assert!(previous.is_none(), "an event stored twice");
    }
    stored
}
