//! moto's S3 server killed (SIGKILL) mid-run and restarted on the same port:
//! writes are retried and no acknowledged event is lost.
//!
//! moto keeps its objects in memory, so a restarted server is empty. A real
//! S3 keeps what it acknowledged; the test stands in for that durability by
//! copying the server's objects aside before each kill, and checks the union
//! of those copies and what the server holds at the end: it must verify as
//! one chain holding exactly the acknowledged events. What is under test is
//! the writer: that it retries through the outage and continues the chain
//! from the head it knew, across sink rebuilds.
//!
//! Two outages: a short one, within the S3 client's retry deadline (the put
//! is retried by the client and succeeds, no rebuild); and a long one, past
//! it (the sink reports a transient error, the supervisor loop here rebuilds
//! it from its factory until the server is back).

mod common;

use std::sync::Arc;
use std::time::Duration;

use audit_core::AuditEvent;
use audit_core::keys::AuditSigner;
use audit_core::sink::{AppendOutcome, AuditSink, ErrorClass};
use audit_s3_jsonl::url::s3_retry_config;
use audit_s3_jsonl::{ArchiveFactory, ArchiveOptions, ArchiveSink};
use audit_testkit::servers::s3::MotoServer;
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};

/// The S3 client's retry deadline in this test.
const CLIENT_DEADLINE: Duration = Duration::from_secs(3);

/// Appends like the supervisor: on a transient error, rebuild the sink from
/// the factory (retrying while the store is unreachable) and retry the
/// batch. Returns the outcomes and how many rebuilds it took.
async fn append_supervised(
    factory: &ArchiveFactory,
    sink: &mut ArchiveSink,
    events: &[AuditEvent],
) -> (Vec<AppendOutcome>, usize) {
    let mut rebuilds = 0;
    loop {
        match sink.append_batch(events).await {
            Ok(outcomes) => return (outcomes, rebuilds),
            Err(error) => {
                assert_eq!(error.class, ErrorClass::Transient, "{error}");
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    rebuilds += 1;
                    match factory.open().await {
                        Ok(rebuilt) => {
                            *sink = rebuilt;
                            break;
                        }
                        Err(error) => assert_eq!(error.class(), ErrorClass::Transient, "{error}"),
                    }
                }
            }
        }
    }
}

/// Copies every object of `from` into `to`.
async fn keep(from: &dyn ObjectStore, to: &dyn ObjectStore) {
    let metas: Vec<_> = from.list(None).try_collect().await.unwrap();
    for meta in metas {
        let bytes = from
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        to.put(&meta.location, PutPayload::from(bytes))
            .await
            .unwrap();
    }
}

fn acknowledge(
    acknowledged: &mut Vec<(String, u64)>,
    events: &[AuditEvent],
    outcomes: &[AppendOutcome],
) {
    for (event, outcome) in events.iter().zip(outcomes) {
        match outcome {
            AppendOutcome::Appended(receipt) => {
                assert!(!receipt.already_present);
                acknowledged.push((event.id().to_owned(), receipt.seq));
            }
            other => panic!("not appended: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_killed_and_restarted_loses_no_acknowledged_event() {
    let mut server = MotoServer::start().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(
        server
            .store_builder()
            .with_retry(s3_retry_config(CLIENT_DEADLINE))
            .build()
            .unwrap(),
    );
    let kept: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let prefix = Path::from("archive");
    let signer = Arc::new(AuditSigner::generate());
    let factory = ArchiveFactory::new(
        store.clone(),
        prefix.clone(),
        common::options("default", &signer),
        ArchiveOptions::default(),
    );
    let mut sink = factory.open().await.unwrap();
    let mut acknowledged = Vec::new();
    for batch in 0..10 {
        let events = common::events(&format!("before{batch}"), 5);
        let (outcomes, rebuilds) = append_supervised(&factory, &mut sink, &events).await;
        assert_eq!(rebuilds, 0);
        acknowledge(&mut acknowledged, &events, &outcomes);
    }

    // Short outage: killed, a batch sent while it is down, restarted within
    // the client's retry deadline.
    keep(store.as_ref(), kept.as_ref()).await;
    server.kill().unwrap();
    let events = common::events("short-outage", 5);
    let in_flight = tokio::spawn({
        let factory = factory.clone();
        let events = events.clone();
        async move {
            let (outcomes, rebuilds) = append_supervised(&factory, &mut sink, &events).await;
            (sink, outcomes, rebuilds)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !in_flight.is_finished(),
        "the append did not wait for the server"
    );
    server.restart().unwrap();
    let (mut sink, outcomes, rebuilds) = in_flight.await.unwrap();
    assert_eq!(
        rebuilds, 0,
        "the client's own retries should have carried the put"
    );
    acknowledge(&mut acknowledged, &events, &outcomes);
    for batch in 0..5 {
        let events = common::events(&format!("between{batch}"), 5);
        let (outcomes, _) = append_supervised(&factory, &mut sink, &events).await;
        acknowledge(&mut acknowledged, &events, &outcomes);
    }

    // Long outage: past the client's deadline, so the sink fails with a
    // transient error and is rebuilt until the server is back.
    keep(store.as_ref(), kept.as_ref()).await;
    server.kill().unwrap();
    let events = common::events("long-outage", 5);
    let in_flight = tokio::spawn({
        let factory = factory.clone();
        let events = events.clone();
        async move {
            let (outcomes, rebuilds) = append_supervised(&factory, &mut sink, &events).await;
            (sink, outcomes, rebuilds)
        }
    });
    tokio::time::sleep(CLIENT_DEADLINE + Duration::from_millis(1500)).await;
    assert!(
        !in_flight.is_finished(),
        "the append did not wait for the server"
    );
    server.restart().unwrap();
    let (mut sink, outcomes, rebuilds) = in_flight.await.unwrap();
    assert!(
        rebuilds >= 1,
        "the outage should have outlasted the client's retries"
    );
    acknowledge(&mut acknowledged, &events, &outcomes);
    for batch in 0..5 {
        let events = common::events(&format!("after{batch}"), 5);
        let (outcomes, _) = append_supervised(&factory, &mut sink, &events).await;
        acknowledge(&mut acknowledged, &events, &outcomes);
    }
    keep(store.as_ref(), kept.as_ref()).await;

    // The union verifies as one chain holding exactly the acknowledged events.
    let report = common::verify(&kept, &prefix, &signer).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, acknowledged.len() as u64);
    assert_eq!(acknowledged.len(), (10 + 1 + 5 + 1 + 5) * 5);
    let seqs: Vec<u64> = acknowledged.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(seqs, (1..=acknowledged.len() as u64).collect::<Vec<_>>());
    let stored = common::stored_ids(&kept, &prefix, &Default::default()).await;
    assert_eq!(stored, acknowledged);
}
