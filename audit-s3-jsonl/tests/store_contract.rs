//! The archive sink's behaviour on every kind of store: memory, a local
//! folder, and moto's S3 server.

mod common;

use std::sync::Arc;

use audit_core::keys::AuditSigner;
use audit_core::sink::AuditSink;
use audit_s3_jsonl::dead_letters::read_dead_letters;
use audit_s3_jsonl::{ArchiveOptions, ArchiveSink, read_checkpoints};
use audit_testkit::object_stores::FailingPuts;
use audit_testkit::servers::s3::MotoServer;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;

use common::*;

/// Appends, idempotency, reopening, checkpoints, verification.
async fn archive_contract(store: Arc<dyn ObjectStore>) {
    let signer = Arc::new(AuditSigner::generate());
    let prefix = Path::from("tenant/archive");
    let open = || {
        ArchiveSink::open(
            store.clone(),
            prefix.clone(),
            options("orders", &signer),
            ArchiveOptions::default(),
        )
    };
    let mut sink = open().await.unwrap();

    // One batch, one segment, seqs from 1.
    let first = events("a", 3);
    let outcomes = sink.append_batch(&first).await.unwrap();
    assert_eq!(seqs(&outcomes), [(1, false), (2, false), (3, false)]);
    let second = events("b", 5);
    let outcomes = sink.append_batch(&second).await.unwrap();
    assert_eq!(seqs(&outcomes).first(), Some(&(4, false)));
    assert_eq!(seqs(&outcomes).last(), Some(&(8, false)));

    // A retried batch is answered with the existing records; a repeated id
    // within a batch is appended once.
    let mut mixed = vec![second[1].clone()];
    let fresh = events("c", 1);
    mixed.push(fresh[0].clone());
    mixed.push(fresh[0].clone());
    let outcomes = sink.append_batch(&mixed).await.unwrap();
    assert_eq!(seqs(&outcomes), [(5, true), (9, false), (9, true)]);
    let outcomes = sink.append_batch(&first).await.unwrap();
    assert_eq!(seqs(&outcomes), [(1, true), (2, true), (3, true)]);

    let records_dir = prefix.child("orders").child("records");
    assert_eq!(
        object_paths(store.as_ref(), &records_dir).await,
        [1, 4, 9].map(|seq| format!("{records_dir}/{seq:020}.jsonl"))
    );

    // A checkpoint of the head.
    let checkpoint = sink.checkpoint().await.unwrap().unwrap();
    assert_eq!(checkpoint.seq, 9);
    drop(sink);

    // A new sink finds the head by listing and continues; the last
    // segment's ids are known again.
    let mut sink = open().await.unwrap();
    assert_eq!(sink.known_head().map(|head| head.seq), Some(9));
    let outcomes = sink.append_batch(&fresh).await.unwrap();
    assert_eq!(seqs(&outcomes), [(9, true)]);
    let outcomes = sink.append_batch(&events("d", 2)).await.unwrap();
    assert_eq!(seqs(&outcomes), [(10, false), (11, false)]);

    let checkpoints = read_checkpoints(store.as_ref(), &prefix, &options("orders", &signer).chain)
        .await
        .unwrap();
    assert_eq!(checkpoints, [checkpoint]);

    let report = verify(store.as_ref(), &prefix, &signer).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, 11);
    assert_eq!(report.checkpoints, 1);
    assert_eq!(report.chains["orders"].head_seq, 11);
}

/// A permanent failure of the segment put dead-letters the batch as
/// objects; the chain is untouched.
async fn dead_letter_contract(store: Arc<dyn ObjectStore>) {
    let signer = Arc::new(AuditSigner::generate());
    let prefix = Path::from("dl");
    let failing: Arc<dyn ObjectStore> = Arc::new(FailingPuts::new(store.clone(), "/records/"));
    let mut sink = ArchiveSink::open(
        failing,
        prefix.clone(),
        options("default", &signer),
        ArchiveOptions::default(),
    )
    .await
    .unwrap();
    let batch = events("a", 2);
    let outcomes = sink.append_batch(&batch).await.unwrap();
    for outcome in &outcomes {
        match outcome {
            audit_core::sink::AppendOutcome::DeadLettered { reason } => {
                assert!(reason.contains("denied"), "{reason}")
            }
            other => panic!("expected a dead letter, got {other:?}"),
        }
    }
    let letters = read_dead_letters(store.as_ref(), &prefix, &Default::default())
        .await
        .unwrap();
    let mut ids: Vec<&str> = letters
        .iter()
        .map(|letter| letter.event_id.as_str())
        .collect();
    ids.sort();
    let mut expected: Vec<&str> = batch.iter().map(|event| event.id()).collect();
    expected.sort();
    assert_eq!(ids, expected);
    let replayed = letters[0].event().unwrap();
    assert!(
        batch
            .iter()
            .any(|event| event.canonical_json() == replayed.canonical_json())
    );
    let report = verify(store.as_ref(), &prefix, &signer).await;
    assert_eq!(report.records, 0);
}

#[tokio::test]
async fn in_memory_store_keeps_a_verifiable_chain() {
    archive_contract(Arc::new(InMemory::new())).await;
}

#[tokio::test]
async fn local_folder_keeps_a_verifiable_chain() {
    let dir = tempfile::tempdir().unwrap();
    archive_contract(Arc::new(
        LocalFileSystem::new_with_prefix(dir.path()).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn moto_s3_keeps_a_verifiable_chain() {
    let server = MotoServer::start().unwrap();
    archive_contract(server.store("")).await;
}

#[tokio::test]
async fn in_memory_store_dead_letters_refused_batches() {
    dead_letter_contract(Arc::new(InMemory::new())).await;
}

#[tokio::test]
async fn local_folder_dead_letters_refused_batches() {
    let dir = tempfile::tempdir().unwrap();
    dead_letter_contract(Arc::new(
        LocalFileSystem::new_with_prefix(dir.path()).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn moto_s3_dead_letters_refused_batches() {
    let server = MotoServer::start().unwrap();
    dead_letter_contract(server.store("")).await;
}
