//! Four writers racing on one prefix of moto's S3 server: create-only puts
//! let exactly one win each segment name; the losers catch up and re-seal.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use audit_core::keys::AuditSigner;
use audit_core::sink::{AppendOutcome, AuditSink};
use audit_s3_jsonl::{ArchiveOptions, open_sink};
use audit_testkit::servers::s3::MotoServer;
use object_store::path::Path;

const WRITERS: usize = 4;
const BATCHES: usize = 25;
const BATCH: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_writers_race_on_one_prefix_and_every_acknowledged_event_is_there_once() {
    let server = MotoServer::start().unwrap();
    let store = server.store("");
    let prefix = Path::from("race");
    let signer = Arc::new(AuditSigner::generate());
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        let prefix = prefix.clone();
        let options = common::options("shared", &signer);
        tasks.push(tokio::spawn(async move {
            let mut sink = open_sink(store, prefix, options, ArchiveOptions::default())
                .await
                .unwrap();
            let mut acknowledged = Vec::new();
            for batch in 0..BATCHES {
                let events = common::events(&format!("w{writer}b{batch}"), BATCH);
                let outcomes = sink.append_batch(&events).await.unwrap();
                for (event, outcome) in events.iter().zip(&outcomes) {
                    match outcome {
                        AppendOutcome::Appended(receipt) => {
                            assert!(!receipt.already_present);
                            acknowledged.push((event.id().to_owned(), receipt.seq));
                        }
                        other => panic!("not appended: {other:?}"),
                    }
                }
            }
            (acknowledged, sink.race_retries())
        }));
    }
    let mut acknowledged = Vec::new();
    let mut race_retries = 0;
    for task in tasks {
        let (ids, retries) = task.await.unwrap();
        acknowledged.extend(ids);
        race_retries += retries;
    }
    assert_eq!(acknowledged.len(), WRITERS * BATCHES * BATCH);
    assert!(
        race_retries > 0,
        "the writers never raced; the test proves nothing"
    );

    // Every seq was acknowledged to exactly one event.
    let seqs: BTreeSet<u64> = acknowledged.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(seqs.len(), acknowledged.len());
    assert_eq!(seqs.last().copied(), Some(acknowledged.len() as u64));

    // Every segment is distinct and the archive verifies (no overlap, no
    // gap, no duplicate id).
    let report = common::verify(&store, &prefix, &signer).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, acknowledged.len() as u64);
    let segments = common::object_paths(
        store.as_ref(),
        &prefix.clone().join("shared").join("records"),
    )
    .await;
    assert_eq!(segments.len(), WRITERS * BATCHES, "one segment per batch");

    // Exactly the acknowledged events, at the acknowledged seqs.
    let stored = common::stored_ids(
        &store,
        &prefix,
        &audit_core::ChainId::new("shared").unwrap(),
    )
    .await;
    let mut expected = acknowledged.clone();
    expected.sort_by_key(|(_, seq)| *seq);
    assert_eq!(stored, expected);
}
