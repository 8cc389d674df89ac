//! The sink against a real PostgreSQL server: appends, idempotent ids,
//! dead letters and replay, checkpoints, concurrent writers.

mod common;

use std::sync::Arc;

use audit_core::chain::{BatchPlan, ChainId, Sealer, SignMode};
use audit_core::dead_letter::DeadLetter;
use audit_core::keys::{AuditSigner, Keyring};
use audit_core::replay::replay_dead_letters;
use audit_core::sink::{AppendOutcome, AuditSink, ErrorClass};
use audit_core::store::{ChainSource, ChainStore};
use common::{chain_options, events, server, sink, source, verify};

fn receipts(outcomes: &[AppendOutcome]) -> Vec<(u64, bool)> {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            AppendOutcome::Appended(receipt) => (receipt.seq, receipt.already_present),
            other => panic!("not appended: {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_append_in_order_and_the_chain_verifies() {
    let (_server, url) = server();
    let signer = Arc::new(AuditSigner::generate());
    let mut sink = sink(&url, chain_options("main", &signer)).await;
    let first = sink.append_batch(&events(0, 3)).await.unwrap();
    let second = sink.append_batch(&events(3, 500)).await.unwrap();
    assert_eq!(receipts(&first), vec![(1, false), (2, false), (3, false)]);
    assert_eq!(receipts(&second).last(), Some(&(503, false)));
    let report = verify(&url, &signer).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, 503);
    assert_eq!(report.chains["main"].head_seq, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_event_ids_get_their_existing_record() {
    let (_server, url) = server();
    let signer = Arc::new(AuditSigner::generate());
    let mut sink = sink(&url, chain_options("main", &signer)).await;
    let batch = events(0, 4);
    sink.append_batch(&batch[..2]).await.unwrap();
    // Two known ids, two new ones, and one of the new ones twice.
    let mut retry = batch.clone();
    retry.push(batch[3].clone());
    let outcomes = sink.append_batch(&retry).await.unwrap();
    assert_eq!(
        receipts(&outcomes),
        vec![(1, true), (2, true), (3, false), (4, false), (4, true)]
    );
    let report = verify(&url, &signer).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed_once() {
    let (_server, url) = server();
    let signer = Arc::new(AuditSigner::generate());
    let options = chain_options("main", &signer);
    let chain = options.chain().clone();
    let mut sink = sink(&url, options).await;
    let batch = events(0, 5);
    sink.append_batch(&batch[..1]).await.unwrap();
    let letters: Vec<DeadLetter> = batch
        .iter()
        .map(|event| DeadLetter::new(&chain, event, "server down", 3).authenticated(&signer))
        .collect();
    sink.store_mut().dead_letter(&letters).await.unwrap();
    let source = source(&url).await;
    let listed = source.dead_letters(Some(&chain)).await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.letter.clone()).collect::<Vec<_>>(),
        letters
    );
    assert!(listed.iter().all(|s| s.key.parse::<i64>().is_ok()));
    let other = ChainId::new("other").unwrap();
    assert!(source.dead_letters(Some(&other)).await.unwrap().is_empty());

    // A letter nobody authenticated, inserted behind the writer's back.
    let forged = DeadLetter::new(&chain, &events(9, 1)[0], "forged", 1);
    sink.store_mut()
        .dead_letter(std::slice::from_ref(&forged))
        .await
        .unwrap();

    let trusted = Keyring::new();
    let report = replay_dead_letters(&source, &mut sink, &trusted)
        .await
        .unwrap();
    assert_eq!((report.appended, report.already_present), (4, 1));
    assert_eq!(report.unauthenticated.len(), 1, "{report:?}");
    let left = source.dead_letters(None).await.unwrap();
    assert_eq!(
        left.iter().map(|s| s.letter.clone()).collect::<Vec<_>>(),
        [forged],
        "only the forged letter stays"
    );
    let again = replay_dead_letters(&source, &mut sink, &trusted)
        .await
        .unwrap();
    assert_eq!((again.appended, again.already_present), (0, 0));

    let report = verify(&url, &signer).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_is_not_a_row_id_is_refused() {
    let (_server, url) = server();
    let signer = Arc::new(AuditSigner::generate());
    let mut sink = sink(&url, chain_options("main", &signer)).await;
    let error = sink
        .store_mut()
        .remove_dead_letters(&["main/dead-letters/x.json".into()])
        .await
        .unwrap_err();
    assert_eq!(error.class, audit_core::sink::ErrorClass::Permanent);
    assert!(
        error.to_string().contains("not a dead-letter key"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_stored_and_checked_by_verification() {
    let (_server, url) = server();
    let signer = Arc::new(AuditSigner::generate());
    let mut sink = sink(&url, chain_options("main", &signer)).await;
    sink.append_batch(&events(0, 10)).await.unwrap();
    let checkpoint = sink.checkpoint().await.unwrap().expect("a checkpoint");
    assert_eq!(checkpoint.seq, 10);
    assert_eq!(
        sink.checkpoint().await.unwrap(),
        None,
        "no new records, no new checkpoint"
    );
    let report = verify(&url, &signer).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.checkpoints, 1);

    // Truncating the chain below the checkpoint is detected.
    sink.store()
        .client()
        .execute("DELETE FROM audit_records WHERE seq > 8", &[])
        .await
        .unwrap();
    let report = verify(&url, &signer).await;
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.kind == audit_core::chain::FailureKind::Truncated),
        "{:?}",
        report.failures
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sinks_in_one_process_never_fork_the_chain() {
    let (_server, url) = server();
    let signer = Arc::new(AuditSigner::generate());
    let mut tasks = Vec::new();
    for writer in 0..4 {
        let url = url.clone();
        let options = chain_options("shared", &signer);
        tasks.push(tokio::spawn(async move {
            let mut sink = common::sink(&url, options).await;
            for batch in 0..10 {
                let outcomes = sink
                    .append_batch(&events(writer * 1000 + batch * 50, 50))
                    .await
                    .unwrap();
                assert!(receipts(&outcomes).iter().all(|(_, known)| !known));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let report = verify(&url, &signer).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, 2000);
    let head = {
        let mut sink = sink(&url, chain_options("shared", &signer)).await;
        sink.store_mut()
            .head(&ChainId::new("shared").unwrap())
            .await
            .unwrap()
    };
    assert_eq!(head.seq, 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_behind_its_records_is_grown_on_open_and_proofs_hold() {
    use audit_core::proving::{newest_tree_checkpoint, prove_consistency, prove_inclusion};
    let (_server, url) = server();
    let signer = Arc::new(AuditSigner::generate());
    let chain = ChainId::new("main").unwrap();
    let mut sink = sink(&url, chain_options("main", &signer)).await;
    sink.append_batch(&events(0, 300)).await.unwrap();
    drop(sink);
    // As a database migrated from schema version 2 looks: every tree empty.
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "DELETE FROM audit_tree_nodes; UPDATE audit_heads SET tree_size = 0, tree_frontier = '\\x'::bytea;",
        )
        .await
        .unwrap();
    let mut sink = common::sink(&url, chain_options("main", &signer)).await;
    let size: i64 = client
        .query_one(
            "SELECT tree_size FROM audit_heads WHERE chain_id = 'main'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(size, 300, "the writer grew the tree when it opened");
    sink.append_batch(&events(300, 21)).await.unwrap();
    sink.checkpoint().await.unwrap();
    let source = source(&url).await;
    let note = newest_tree_checkpoint(&source, &chain).await.unwrap();
    assert!(note.body().contains("\n321\n"), "{}", note.body());
    for seq in [1, 150, 300, 301, 321] {
        prove_inclusion(&source, &chain, seq, &note).await.unwrap();
    }
    prove_consistency(&source, &chain, 299, &note)
        .await
        .unwrap();
    let report = verify(&url, &signer).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.chains["main"].tree_checkpoints, 1);
}

/// A row at a seq past the head, written by something that did not take
/// the head row's lock, makes that chunk's binary `COPY` fail with a
/// unique violation: the attempt is a conflict, and none of its records
/// stays, not even the chunks copied before the failing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seq_taken_behind_the_lock_fails_the_copy_as_a_conflict_and_writes_nothing() {
    let (_server, url) = server();
    let signer = Arc::new(AuditSigner::generate());
    let main = ChainId::new("main").unwrap();
    let mut sink = sink(&url, chain_options("main", &signer)).await;
    sink.append_batch(&events(0, 3)).await.unwrap();
    let client = sink.store_mut().client();
    client
        .execute(
            "INSERT INTO audit_records (chain_id, seq, event_id, event_type, actor, event_time, \
             event_json, event_hash, prev_hash, record_hash, key_id, signature) \
             SELECT chain_id, 600, 'taken-behind-the-lock', event_type, actor, event_time, \
             event_json, event_hash, prev_hash, record_hash, key_id, signature \
             FROM audit_records WHERE chain_id = 'main' AND seq = 3",
            &[],
        )
        .await
        .unwrap();

    let sealer = Sealer::new(main.clone(), Some(signer.clone()), SignMode::EveryRecord);
    let plan = BatchPlan::new(sealer, &events(3, 1_200));
    let error = sink.store_mut().append_once(&plan).await.unwrap_err();

    assert_eq!(error.class, ErrorClass::Conflict, "{error}");
    assert_eq!(sink.store_mut().head(&main).await.unwrap().seq, 3);
    let rows: i64 = sink
        .store_mut()
        .client()
        .query_one(
            "SELECT count(*) FROM audit_records WHERE chain_id = 'main'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rows, 4,
        "the three records and the row taken behind the lock"
    );
}
