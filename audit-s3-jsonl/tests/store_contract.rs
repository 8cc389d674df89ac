//! The archive sink's behaviour on every kind of store: memory, a local
//! folder, and moto's S3 server: appends, idempotency for any id anywhere
//! in the chain (also for a sink opened afresh, as after a crash), imports,
//! dead letters and their removal.

mod common;

use std::sync::Arc;

use audit_core::AuditEvent;
use audit_core::chain_writer::{ChainStore, ChainWriter};
use audit_core::keys::AuditSigner;
use audit_core::sink::{AppendOutcome, AuditSink, ErrorClass};
use audit_core::store::ChainSource;
use audit_s3_jsonl::ObjectStoreChain;
use audit_s3_jsonl::{ArchiveOptions, open_sink};
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
        open_sink(
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

    let records_dir = prefix.clone().join("orders").join("records");
    assert_eq!(
        object_paths(store.as_ref(), &records_dir).await,
        [1, 4, 9].map(|seq| format!("{records_dir}/{seq:020}.jsonl"))
    );

    // A checkpoint of the head.
    let checkpoint = sink.checkpoint().await.unwrap().unwrap();
    assert_eq!(checkpoint.seq, 9);
    drop(sink);

    // A new sink finds the head by listing and continues; every id of the
    // chain is known again, the first segment's as well as the last one's.
    let mut sink = open().await.unwrap();
    let state = sink.store().state().clone();
    assert_eq!(state.head().map(|head| head.seq), Some(9));
    assert_eq!(state.indexed_ids(), 9);
    let outcomes = sink.append_batch(&fresh).await.unwrap();
    assert_eq!(seqs(&outcomes), [(9, true)]);
    let outcomes = sink.append_batch(&events("d", 2)).await.unwrap();
    assert_eq!(seqs(&outcomes), [(10, false), (11, false)]);

    let chain = options("orders", &signer).chain().clone();
    assert_eq!(checkpoints(&store, &prefix, &chain).await, [checkpoint]);

    let report = verify(&store, &prefix, &signer).await;
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
    let mut sink = open_sink(
        failing.clone(),
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
    let letters = dead_letters(&store, &prefix, &Default::default()).await;
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
    let report = verify(&store, &prefix, &signer).await;
    assert_eq!(report.records, 0);

    // Removing them by the keys the source gives; keys outside the
    // chain's dead-letter folder are refused.
    let keys: Vec<String> = source(&store, &prefix)
        .dead_letters(None)
        .await
        .unwrap()
        .into_iter()
        .map(|stored| stored.key)
        .collect();
    assert_eq!(keys.len(), 2);
    let store_side = sink.store_mut();
    let refused = store_side
        .remove_dead_letters(&["dl/default/records/00000000000000000001.jsonl".to_owned()])
        .await
        .unwrap_err();
    assert!(refused.message.contains("not an object under"), "{refused}");
    store_side.remove_dead_letters(&keys).await.unwrap();
    store_side.remove_dead_letters(&keys).await.unwrap();
    assert!(
        dead_letters(&store, &prefix, &Default::default())
            .await
            .is_empty()
    );
    drop(failing);
}

/// A chain of several segments, then a sink opened afresh (as after a
/// crash: no state shared) replays events whose ids are in the first
/// segment, mixed with new ones: the old ones are answered with their
/// records, nothing is appended twice, the chain verifies.
async fn idempotent_for_any_id_contract(store: Arc<dyn ObjectStore>) {
    let signer = Arc::new(AuditSigner::generate());
    let prefix = Path::from("replay");
    let open = || {
        open_sink(
            store.clone(),
            prefix.clone(),
            options("default", &signer),
            ArchiveOptions::default(),
        )
    };
    let mut sink = open().await.unwrap();
    let first = events("first", 4);
    let mut receipts = seqs(&sink.append_batch(&first).await.unwrap());
    for batch in 0..5 {
        sink.append_batch(&events(&format!("later{batch}"), 3))
            .await
            .unwrap();
    }
    drop(sink);
    assert_eq!(
        object_paths(
            store.as_ref(),
            &prefix.clone().join("default").join("records")
        )
        .await
        .len(),
        6
    );

    let mut sink = open().await.unwrap();
    let replayed = sink.append_batch(&first).await.unwrap();
    receipts.iter_mut().for_each(|(_, present)| *present = true);
    assert_eq!(seqs(&replayed), receipts);
    let hashes = |outcomes: &[AppendOutcome]| -> Vec<String> {
        outcomes
            .iter()
            .map(|outcome| match outcome {
                AppendOutcome::Appended(receipt) => receipt.record_hash.to_hex(),
                other => panic!("not appended: {other:?}"),
            })
            .collect()
    };
    let stored = records(&store, &prefix, &Default::default()).await;
    let expected: Vec<String> = stored[..4]
        .iter()
        .map(|record| record.hash.to_hex())
        .collect();
    assert_eq!(hashes(&replayed), expected);

    // Old ids (first and middle segments) mixed with fresh ones, in a sink
    // opened afresh again.
    drop(sink);
    let mut sink = open().await.unwrap();
    let middle = stored_ids(&store, &prefix, &Default::default()).await[7].clone();
    let mut mixed = events("fresh", 2);
    mixed.insert(1, first[2].clone());
    mixed.push(AuditEvent::from_canonical(&stored[middle.1 as usize - 1].event_json).unwrap());
    let outcomes = sink.append_batch(&mixed).await.unwrap();
    assert_eq!(
        seqs(&outcomes),
        [(20, false), (3, true), (21, false), (middle.1, true)]
    );

    let ids = stored_ids(&store, &prefix, &Default::default()).await;
    assert_eq!(ids.len(), 21);
    let mut unique: Vec<&str> = ids.iter().map(|(id, _)| id.as_str()).collect();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 21, "an id was appended twice");
    let report = verify(&store, &prefix, &signer).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, 21);
}

/// `import` writes sealed records verbatim as one segment named after the
/// first; records that do not continue the head are refused.
async fn import_contract(store: Arc<dyn ObjectStore>) {
    let signer = Arc::new(AuditSigner::generate());
    let from: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut sink = open_sink(
        from.clone(),
        Path::from("src"),
        options("default", &signer),
        ArchiveOptions::default(),
    )
    .await
    .unwrap();
    sink.append_batch(&events("a", 5)).await.unwrap();
    sink.append_batch(&events("b", 5)).await.unwrap();
    let all = records(&from, &Path::from("src"), &Default::default()).await;

    let prefix = Path::from("copy");
    let mut chain = ObjectStoreChain::open(store.clone(), prefix.clone(), Default::default())
        .await
        .unwrap();
    let gap = chain.import(&all[1..3]).await.unwrap_err();
    assert_eq!(gap.class, ErrorClass::Permanent, "{gap}");
    chain.import(&all[..7]).await.unwrap();
    let taken = chain.import(&all[5..]).await.unwrap_err();
    assert_eq!(taken.class, ErrorClass::Conflict, "{taken}");
    let mut forged = all[7..].to_vec();
    forged[0].prev = forged[1].hash;
    let refused = chain.import(&forged).await.unwrap_err();
    assert_eq!(refused.class, ErrorClass::Permanent, "{refused}");
    chain.import(&all[7..]).await.unwrap();
    assert_eq!(
        object_paths(
            store.as_ref(),
            &prefix.clone().join("default").join("records")
        )
        .await,
        [1, 8].map(|seq| format!("copy/default/records/{seq:020}.jsonl"))
    );
    assert_eq!(records(&store, &prefix, &Default::default()).await, all);
    let report = verify(&store, &prefix, &signer).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, 10);

    // The imported ids are known: appending one again is idempotent.
    let mut writer = ChainWriter::new(chain, options("default", &signer));
    let again = AuditEvent::from_canonical(&all[8].event_json).unwrap();
    assert_eq!(
        seqs(&writer.append_batch(&[again]).await.unwrap()),
        [(9, true)]
    );
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

#[tokio::test]
async fn in_memory_store_is_idempotent_for_any_id_in_the_chain() {
    idempotent_for_any_id_contract(Arc::new(InMemory::new())).await;
}

#[tokio::test]
async fn local_folder_is_idempotent_for_any_id_in_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    idempotent_for_any_id_contract(Arc::new(
        LocalFileSystem::new_with_prefix(dir.path()).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn moto_s3_is_idempotent_for_any_id_in_the_chain() {
    let server = MotoServer::start().unwrap();
    idempotent_for_any_id_contract(server.store("")).await;
}

#[tokio::test]
async fn in_memory_store_imports_records_verbatim() {
    import_contract(Arc::new(InMemory::new())).await;
}

#[tokio::test]
async fn moto_s3_imports_records_verbatim() {
    let server = MotoServer::start().unwrap();
    import_contract(server.store("")).await;
}
