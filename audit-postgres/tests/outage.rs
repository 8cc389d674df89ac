//! The server goes away: a restart in the middle of a run, and an outage
//! longer than any retry budget.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use audit_core::AuditEvent;
use audit_core::dead_letter::{DeadLetter, FallbackFile};
use audit_core::keys::AuditSigner;
use audit_core::sink::{AppendOutcome, AuditSink, ErrorClass, SinkFactory};
use audit_postgres::{PostgresOptions, sink_factory};
use common::{chain_options, events, server, verify};

/// Appends `batch`, rebuilding the sink from `factory` after transient
/// errors as the pipeline's supervisor does; returns the receipts' seqs
/// and how many transient errors were seen.
async fn append_reconnecting(
    factory: &impl SinkFactory,
    sink: &mut Box<dyn AuditSink>,
    batch: &[AuditEvent],
) -> (Vec<u64>, u32) {
    let mut transient = 0;
    loop {
        match sink.append_batch(batch).await {
            Ok(outcomes) => {
                let seqs = outcomes
                    .iter()
                    .map(|outcome| match outcome {
                        AppendOutcome::Appended(receipt) => receipt.seq,
                        AppendOutcome::DeadLettered { reason } => panic!("dead-lettered: {reason}"),
                    })
                    .collect();
                return (seqs, transient);
            }
            Err(error) => {
                assert_eq!(error.class, ErrorClass::Transient, "{error}");
                transient += 1;
                assert!(transient < 200, "never reconnected: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                if let Ok(fresh) = factory.create().await {
                    *sink = fresh;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_run_loses_and_duplicates_nothing() {
    let (mut server, url) = server();
    let signer = Arc::new(AuditSigner::generate());
    let factory = sink_factory(
        url.clone(),
        chain_options("main", &signer),
        PostgresOptions::default(),
    );
    let mut sink = factory.create().await.unwrap();
    let batches: Vec<Vec<AuditEvent>> = (0..40).map(|b| events(b * 50, 50)).collect();
    let mut seqs = Vec::new();
    let mut transient = 0;
    for (index, batch) in batches.iter().enumerate() {
        if index == 20 {
            tokio::task::block_in_place(|| server.restart()).unwrap();
        }
        let (batch_seqs, errors) = append_reconnecting(&factory, &mut sink, batch).await;
        seqs.extend(batch_seqs);
        transient += errors;
    }
    assert!(transient > 0, "the restart was not noticed");
    let unique: HashSet<u64> = seqs.iter().copied().collect();
    assert_eq!(
        unique.len(),
        2000,
        "an event got two seqs or two events one"
    );
    assert_eq!(unique, (1..=2000).collect());
    let report = verify(&url, &signer).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_transient_and_fallback_letters_replay_once_the_server_is_back() {
    let (mut server, url) = server();
    let signer = Arc::new(AuditSigner::generate());
    let options = chain_options("main", &signer);
    let chain = options.chain.clone();
    let factory = sink_factory(url.clone(), options, PostgresOptions::default());
    let mut sink = factory.create().await.unwrap();
    sink.append_batch(&events(0, 10)).await.unwrap();

    tokio::task::block_in_place(|| server.stop()).unwrap();
    let lost_batch = events(10, 25);
    let error = sink.append_batch(&lost_batch).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Transient, "{error}");
    let error = factory.create().await.err().expect("no server, no sink");
    assert_eq!(error.class, ErrorClass::Transient, "{error}");
    // Past the retry budget the supervisor writes the batch to its fallback file.
    let dir = tempfile::tempdir().unwrap();
    let fallback = FallbackFile::new(dir.path().join("fallback.jsonl"));
    let letters: Vec<DeadLetter> = lost_batch
        .iter()
        .map(|event| DeadLetter::new(&chain, event, error.to_string(), 5))
        .collect();
    fallback.append(&letters).unwrap();

    tokio::task::block_in_place(|| server.start_again()).unwrap();
    let mut sink = factory.create().await.unwrap();
    let replay: Vec<AuditEvent> = fallback
        .read_all()
        .unwrap()
        .iter()
        .map(|letter| letter.event().unwrap())
        .collect();
    assert_eq!(replay, lost_batch);
    for _ in 0..2 {
        // Replaying twice appends once.
        sink.append_batch(&replay).await.unwrap();
    }
    let report = verify(&url, &signer).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, 35);
}
