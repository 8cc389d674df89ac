//! The server goes away under a running [`AuditPipeline`]: a restart in the
//! middle of a run (the supervisor reconnects), and an outage longer than
//! the retry budget (the fallback file, then its replay).

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_core::AuditEvent;
use audit_core::chain::ChainId;
use audit_core::dead_letter::FallbackFile;
use audit_core::keys::AuditSigner;
use audit_core::pipeline::{AuditPipeline, SubmitError};
use audit_core::retry::RetryPolicy;
use audit_postgres::{PostgresOptions, sink_factory};
use common::{chain_options, events, server, verify};

/// The event ids stored in `chain`, one entry per record.
async fn stored_ids(url: &str, chain: &ChainId) -> Vec<String> {
    common::stored_records(url, chain)
        .await
        .into_iter()
        .map(|record| record.columns.unwrap().id.to_string())
        .collect()
}

fn ids_of(events: &[AuditEvent]) -> HashSet<String> {
    events.iter().map(|event| event.id().to_owned()).collect()
}

/// Asserts that `chain` holds each of `events` exactly once and nothing else.
async fn assert_chain_holds_exactly(url: &str, chain: &ChainId, events: &[AuditEvent]) {
    let stored = stored_ids(url, chain).await;
    let unique: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), unique.len(), "an event is stored twice");
    assert_eq!(
        unique,
        ids_of(events),
        "the chain differs from the submitted events"
    );
}

const RESTART_RUN: usize = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_run_through_the_pipeline_loses_and_duplicates_nothing() {
    let (mut server, url) = server();
    let signer = Arc::new(AuditSigner::generate());
    let options = chain_options("main", &signer);
    let chain = options.chain().clone();
    let pipeline = AuditPipeline::builder(sink_factory(
        url.clone(),
        options,
        PostgresOptions::default(),
    ))
    .max_batch(100)
    // About 10 s of reconnection attempts: far longer than a restart takes.
    .retry(RetryPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(250),
        max_retries: 0,
    })
    .max_restarts(40)
    .chain(chain.clone())
    .spawn();
    let submitted = events(0, RESTART_RUN);
    let producer = tokio::spawn({
        let queue = pipeline.queue();
        let submitted = submitted.clone();
        async move {
            for chunk in submitted.chunks(20) {
                for event in chunk {
                    assert!(queue.submit(event.clone()));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    // Restart once a third is appended, while the producer still submits.
    let metrics = pipeline.metrics();
    while metrics.snapshot().appended < (RESTART_RUN / 3) as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let restart = Instant::now();
    tokio::task::block_in_place(|| server.restart()).unwrap();
    let restart = restart.elapsed();
    let appended_at_restart = metrics.snapshot().appended;
    assert!(
        appended_at_restart < RESTART_RUN as u64,
        "the run was over before the restart"
    );
    println!("restart took {restart:?}; {appended_at_restart} events appended before");
    producer.await.unwrap();
    assert!(pipeline.drain_pending(Duration::from_secs(30)).await);
    let report = pipeline.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{:?}", report.errors);

    let metrics = report.metrics;
    assert_eq!(metrics.submitted, RESTART_RUN as u64);
    assert_eq!(metrics.appended, metrics.submitted, "{metrics:?}");
    assert_eq!((metrics.lost, metrics.dead_lettered), (0, 0), "{metrics:?}");
    assert!(!metrics.terminal, "{metrics:?}");
    assert!(
        metrics.restarts > 0,
        "the restart ({restart:?}) was not noticed: {metrics:?}"
    );
    assert!(report.checkpoint.is_some(), "shutdown writes a checkpoint");
    assert_chain_holds_exactly(&url, &chain, &submitted).await;
    let verified = verify(&url, &signer).await;
    assert!(verified.is_ok(), "{:?}", verified.failures);
    assert_eq!(verified.records, RESTART_RUN as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_past_the_retry_budget_goes_to_the_fallback_file_and_replays_once() {
    let (mut server, url) = server();
    let signer = Arc::new(AuditSigner::generate());
    let options = chain_options("main", &signer);
    let chain = options.chain().clone();
    let dir = tempfile::tempdir().unwrap();
    let fallback = dir.path().join("fallback.jsonl");
    let factory = sink_factory(url.clone(), options.clone(), PostgresOptions::default());
    let pipeline = AuditPipeline::builder(factory)
        .max_batch(50)
        .retry(RetryPolicy {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(20),
            max_retries: 0,
        })
        .max_restarts(2)
        .fallback_path(&fallback)
        .chain(chain.clone())
        .spawn();
    let queue = pipeline.queue();
    let before = events(0, 100);
    before
        .iter()
        .for_each(|event| assert!(queue.submit(event.clone())));
    assert!(pipeline.drain_pending(Duration::from_secs(10)).await);

    tokio::task::block_in_place(|| server.stop()).unwrap();
    let during = events(100, 250);
    let waited = queue.submit_wait(during[0].clone()).await;
    match waited {
        Err(SubmitError::DeadLettered { reason }) => {
            assert!(reason.contains("fallback.jsonl"), "{reason}")
        }
        other => panic!("expected the fallback file, got {other:?}"),
    }
    during[1..]
        .iter()
        .for_each(|event| assert!(queue.submit(event.clone())));
    assert!(pipeline.drain_pending(Duration::from_secs(30)).await);
    let metrics = pipeline.metrics().snapshot();
    assert_eq!(metrics.appended, 100, "{metrics:?}");
    assert_eq!(metrics.dead_lettered, 250, "{metrics:?}");
    assert_eq!(metrics.lost, 0, "{metrics:?}");
    assert!(metrics.terminal, "{metrics:?}");
    let refused = queue.try_submit(events(1_000, 1).remove(0));
    assert!(
        matches!(refused, Err(SubmitError::Terminal { .. })),
        "{refused:?}"
    );
    let letters = FallbackFile::new(&fallback).read_all().unwrap();
    assert_eq!(letters.len(), 250);
    assert!(letters.iter().all(|letter| letter.chain_id == "main"));

    // Back: the terminal pipeline uses a working sink again for new events.
    tokio::task::block_in_place(|| server.start_again()).unwrap();
    let after = events(350, 10);
    for event in &after {
        queue.submit_wait(event.clone()).await.unwrap();
    }
    let report = pipeline.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.metrics.appended, 110, "{:?}", report.metrics);

    let mut sink = common::sink(&url, options).await;
    let replay = FallbackFile::new(&fallback)
        .replay_into(&mut sink, &chain)
        .await
        .unwrap();
    assert_eq!((replay.appended, replay.already_present), (250, 0));
    assert!(replay.is_complete(), "{replay:?}");
    let again = FallbackFile::new(&fallback)
        .replay_into(&mut sink, &chain)
        .await
        .unwrap();
    assert_eq!((again.appended, again.already_present), (0, 250));

    let everything: Vec<AuditEvent> = [before, during, after].concat();
    assert_chain_holds_exactly(&url, &chain, &everything).await;
    let verified = verify(&url, &signer).await;
    assert!(verified.is_ok(), "{:?}", verified.failures);
    assert_eq!(verified.records, 360);
}
