//! The read side against a real PostgreSQL server, with hostile rows: every
//! stored trace reaches the one verifier of the core
//! (`audit_core::verification::verify_source`), and what is wrong in the
//! database is a verification failure at the seq where it is found, never
//! an I/O error and never skipped.

mod common;

use std::sync::Arc;

use audit_core::chain::{ChainHead, ChainId, FailureKind, Record, Sealer, SignMode, VerifyReport};
use audit_core::chain_writer::ChainWriter;
use audit_core::dead_letter::DeadLetter;
use audit_core::export::{ExportOptions, export};
use audit_core::keys::{AuditSigner, Keyring};
use audit_core::sink::{AuditSink, ErrorClass, SinkError};
use audit_core::store::memory::MemoryStore;
use audit_core::store::{ChainSource, ChainStore, SourceRecord};
use audit_core::verification::{SourceVerifyOptions, verify_source};
use audit_core::{AuditEvent, Digest};
use audit_postgres::{PostgresOptions, PostgresSink, PostgresStore, open_source};
use common::{chain_options, events, server, sink, source, stored_rows};
use tokio_postgres::Client;

fn chain(name: &str) -> ChainId {
    ChainId::new(name).unwrap()
}

/// A signed sink on `chain` holding `count` records.
async fn chain_of(url: &str, name: &str, signer: &Arc<AuditSigner>, count: usize) -> PostgresSink {
    let mut sink = sink(url, chain_options(name, signer)).await;
    sink.append_batch(&events(0, count)).await.unwrap();
    sink
}

/// Verifies only `chain` at `url`, requiring `signer`'s signatures.
async fn verify_chain(url: &str, signer: &AuditSigner, chain: &ChainId) -> VerifyReport {
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    let options = SourceVerifyOptions::default().with_chains(vec![chain.clone()]);
    verify_source(&source(url).await, &keyring, options)
        .await
        .unwrap()
}

/// Asserts the report fails, and that its first failure is `kind` at `seq`.
fn assert_fails(report: &VerifyReport, kind: FailureKind, seq: u64) {
    assert!(!report.is_ok(), "verified OK: {report:?}");
    let first = report.first_failure().unwrap();
    assert_eq!(
        (first.kind, first.seq),
        (kind, seq),
        "{:?}",
        report.failures
    );
}

/// An unsigned `role.granted` record, sealed as the first of `chain`: what
/// an attacker with write access to the table would forge.
fn forged_record(chain: &ChainId) -> Record {
    let event = AuditEvent::new(
        "role.granted",
        "mallory",
        serde_json::json!({"role": "admin"}),
    )
    .unwrap();
    let sealer = Sealer::new(chain.clone(), None, SignMode::EveryRecord);
    sealer.seal_batch(ChainHead::EMPTY, &[event]).remove(0)
}

/// Inserts `record` as a row at `seq`, behind the writer's back.
async fn insert_row(client: &Client, seq: i64, record: &Record) {
    let columns = record.columns.clone().unwrap();
    client
        .execute(
            "INSERT INTO audit_records (chain_id, seq, event_id, event_type, actor, event_time, \
             event_json, event_hash, prev_hash, record_hash, key_id, signature) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &[
                &record.chain.as_str(),
                &seq,
                &columns.id.as_str(),
                &columns.event_type.as_str(),
                &columns.actor.as_str(),
                &columns.time.as_str(),
                &record.event_json.as_str(),
                &record.event_hash.as_bytes().as_slice(),
                &record.prev.as_bytes().as_slice(),
                &record.hash.as_bytes().as_slice(),
                &record.key_id.as_deref(),
                &record.sig.as_ref().map(|sig| sig.as_slice()),
            ],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_forged_at_seq_zero_negative_and_min_are_out_of_range() {
    let (_server, url) = server();
    let signer = Arc::new(AuditSigner::generate());
    let clean = chain_of(&url, "clean", &signer, 3).await;
    for (name, seq) in [("zero", 0), ("minus-one", -1), ("min", i64::MIN)] {
        let sink = chain_of(&url, name, &signer, 3).await;
        let forged = forged_record(&chain(name));
        insert_row(sink.store().client(), seq, &forged).await;

        // The source returns the forged row first, as stored, with pages
        // smaller than the chain.
        let small_pages = open_source(&url, PostgresOptions::default().with_page_size(2))
            .await
            .unwrap();
        let rows = stored_rows(&small_pages, &chain(name), 1).await;
        assert_eq!(rows.len(), 4, "{rows:?}");
        match &rows[0] {
            SourceRecord::Malformed {
                seq: stored,
                detail,
            } => {
                assert_eq!(*stored, i128::from(seq));
                assert!(detail.contains("outside 1.."), "{detail}");
            }
            other => panic!("the forged row came back as {other:?}"),
        }
        let seqs: Vec<u64> = rows[1..]
            .iter()
            .map(|row| match row {
                SourceRecord::Record(record) => record.seq,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(seqs, [1, 2, 3]);

        let report = verify_chain(&url, &signer, &chain(name)).await;
        assert_fails(&report, FailureKind::SeqOutOfRange, 0);
        assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
        assert!(
            report.failures[0].detail.contains(&seq.to_string()),
            "{:?}",
            report.failures
        );
        // The same verdict when verifying every chain at once.
        let everything = common::verify(&url, &signer).await;
        assert!(
            everything
                .failures
                .iter()
                .any(|f| f.chain == name && f.kind == FailureKind::SeqOutOfRange && f.seq == 0),
            "{:?}",
            everything.failures
        );
    }
    let report = verify_chain(&url, &signer, clean.options().chain()).await;
    assert!(report.is_ok(), "{:?}", report.failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_row_ahead_of_the_records_is_truncation() {
    let (server, url) = server();
    let signer = Arc::new(AuditSigner::generate());
    chain_of(&url, "main", &signer, 10).await;
    assert!(verify_chain(&url, &signer, &chain("main")).await.is_ok());
    server
        .psql("audit", "DELETE FROM audit_records WHERE seq > 8")
        .unwrap();

    let anchors = source(&url).await.anchors(&chain("main")).await.unwrap();
    assert_eq!(anchors.len(), 1);
    assert_eq!(
        (anchors[0].seq, anchors[0].what.as_str()),
        (10, "audit_heads")
    );
    let report = verify_chain(&url, &signer, &chain("main")).await;
    assert_fails(&report, FailureKind::Truncated, 10);
    assert!(
        report.failures[0].detail.contains("audit_heads"),
        "{:?}",
        report.failures
    );
    assert_eq!(report.records, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_kept_while_every_record_is_deleted_is_truncation() {
    let (server, url) = server();
    let signer = Arc::new(AuditSigner::generate());
    let mut sink = chain_of(&url, "main", &signer, 10).await;
    let checkpoint = sink.checkpoint().await.unwrap().unwrap();
    assert_eq!(checkpoint.seq, 10);
    server
        .psql("audit", "DELETE FROM audit_records WHERE chain_id = 'main'")
        .unwrap();
    let report = verify_chain(&url, &signer, &chain("main")).await;
    assert_fails(&report, FailureKind::Truncated, 10);
    assert_eq!(report.records, 0);

    // Without its head row too, the chain lives on in its checkpoints only:
    // still listed, still truncated.
    server
        .psql("audit", "DELETE FROM audit_heads WHERE chain_id = 'main'")
        .unwrap();
    let inventory = source(&url).await.inventory().await.unwrap();
    assert_eq!(inventory.chains, [chain("main")]);
    assert!(inventory.strays.is_empty(), "{:?}", inventory.strays);
    let report = common::verify(&url, &signer).await;
    assert_fails(&report, FailureKind::Truncated, 10);
    assert!(
        report.failures[0].detail.contains("checkpoint"),
        "{:?}",
        report.failures
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_rows_are_failures_not_errors() {
    let (server, url) = server();
    let signer = Arc::new(AuditSigner::generate());
    chain_of(&url, "main", &signer, 8).await;
    server
        .psql(
            "audit",
            "ALTER TABLE audit_records ALTER COLUMN event_json DROP NOT NULL; \
             UPDATE audit_records SET event_json = NULL WHERE seq = 3; \
             UPDATE audit_records SET record_hash = '\\x00' WHERE seq = 5; \
             UPDATE audit_records SET signature = substring(signature from 2) WHERE seq = 6;",
        )
        .unwrap();
    let rows = stored_rows(&source(&url).await, &chain("main"), 1).await;
    let malformed: Vec<(i128, String)> = rows
        .iter()
        .filter_map(|row| match row {
            SourceRecord::Malformed { seq, detail } => Some((*seq, detail.clone())),
            SourceRecord::Record(_) => None,
        })
        .collect();
    assert_eq!(rows.len(), 8);
    assert_eq!(
        malformed.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        [3, 5, 6]
    );
    assert!(
        malformed[0].1.contains("event_json is NULL"),
        "{malformed:?}"
    );
    assert!(malformed[1].1.contains("record_hash"), "{malformed:?}");
    assert!(malformed[2].1.contains("63 bytes, not 64"), "{malformed:?}");
    let report = verify_chain(&url, &signer, &chain("main")).await;
    assert_fails(&report, FailureKind::Malformed, 3);
    for seq in [5, 6] {
        assert!(
            report
                .failures
                .iter()
                .any(|f| f.seq == seq && f.kind == FailureKind::Malformed),
            "{:?}",
            report.failures
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_chain_names_and_broken_head_rows_are_strays() {
    let (server, url) = server();
    let signer = Arc::new(AuditSigner::generate());
    let sink = chain_of(&url, "main", &signer, 3).await;
    chain_of(&url, "other", &signer, 2).await;
    insert_row(sink.store().client(), 1, &forged_record(&chain("x"))).await;
    server
        .psql(
            "audit",
            "UPDATE audit_records SET chain_id = 'not a chain' WHERE chain_id = 'x'; \
             UPDATE audit_heads SET seq = -5 WHERE chain_id = 'other'; \
             ALTER TABLE audit_dead_letters ALTER COLUMN chain_id DROP NOT NULL; \
             INSERT INTO audit_dead_letters (chain_id, event_id, event_json, failure_reason, failed_at) \
               VALUES (NULL, 'e', '{}', 'r', 't');",
        )
        .unwrap();
    let inventory = source(&url).await.inventory().await.unwrap();
    assert_eq!(inventory.chains, [chain("main"), chain("other")]);
    let mut strays: Vec<(String, u64)> = inventory
        .strays
        .iter()
        .map(|stray| (stray.chain.clone(), stray.seq))
        .collect();
    strays.sort();
    assert_eq!(
        strays,
        [
            ("\"not a chain\"".to_owned(), 1),
            ("NULL".to_owned(), 0),
            ("other".to_owned(), 0)
        ],
        "{:?}",
        inventory.strays
    );
    let report = common::verify(&url, &signer).await;
    assert!(!report.is_ok());
    let stray_failures = report
        .failures
        .iter()
        .filter(|f| f.kind == FailureKind::Stray)
        .count();
    assert_eq!(stray_failures, 3, "{:?}", report.failures);
    // The chains themselves are intact.
    assert_eq!(report.records, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_event_ids_are_found_once_the_constraint_is_gone() {
    let (server, url) = server();
    let signer = Arc::new(AuditSigner::generate());
    let mut sink = sink(&url, chain_options("main", &signer)).await;
    let batch = events(0, 5);
    sink.append_batch(&batch).await.unwrap();
    let main = chain("main");
    server
        .psql(
            "audit",
            "ALTER TABLE audit_records DROP CONSTRAINT audit_records_chain_id_event_id_key",
        )
        .unwrap();
    // The first event again, properly sealed and signed at seq 6.
    let first = &batch[..1];
    let head = sink.store_mut().head(&main).await.unwrap();
    let again = sink.options().sealer().seal_batch(head, first);
    sink.store_mut().import(&again).await.unwrap();

    let report = verify_chain(&url, &signer, &main).await;
    assert_fails(&report, FailureKind::DuplicateEventId, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_imports_verbatim_and_the_writer_continues_the_chain() {
    let (_server, url) = server();
    let signer = Arc::new(AuditSigner::generate());
    let memory = MemoryStore::new("export");
    let options = chain_options("main", &signer);
    let mut writer = ChainWriter::new(memory.clone(), options.clone());
    writer.append_batch(&events(0, 20)).await.unwrap();
    writer.checkpoint().await.unwrap();

    let open = |_: &ChainId| {
        let url = url.clone();
        async move {
            let store = PostgresStore::connect(&url, PostgresOptions::default()).await?;
            Ok::<_, SinkError>(Box::new(store) as Box<dyn ChainStore>)
        }
    };
    let report = export(&memory, open, ExportOptions::default())
        .await
        .unwrap();
    assert_eq!((report.records, report.checkpoints), (20, 1));
    let again = export(&memory, open, ExportOptions::default())
        .await
        .unwrap();
    assert_eq!(again.records, 0, "{again:?}");
    assert_eq!(
        common::stored_records(&url, &chain("main")).await,
        memory.records(&chain("main"))
    );

    let mut sink = sink(&url, options).await;
    let outcomes = sink.append_batch(&events(20, 2)).await.unwrap();
    assert_eq!(outcomes.len(), 2);
    let report = common::verify(&url, &signer).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!((report.records, report.checkpoints), (22, 1));

    // Records that do not continue the head are a conflict, and nothing is written.
    let stale = memory.records(&chain("main"))[19..].to_vec();
    let error = sink.store_mut().import(&stale).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Conflict, "{error}");
    assert_eq!(sink.store_mut().head(&chain("main")).await.unwrap().seq, 22);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_from_a_seq_in_small_pages_and_every_table_in_the_inventory() {
    let (_server, url) = server();
    let signer = Arc::new(AuditSigner::generate());
    let mut sink = chain_of(&url, "main", &signer, 10).await;
    let small_pages = open_source(&url, PostgresOptions::default().with_page_size(3))
        .await
        .unwrap();
    let seqs = |rows: Vec<SourceRecord>| -> Vec<u64> {
        rows.into_iter()
            .map(|row| match row {
                SourceRecord::Record(record) => record.seq,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let main = chain("main");
    assert_eq!(
        seqs(stored_rows(&small_pages, &main, 0).await),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(stored_rows(&small_pages, &main, 7).await),
        [7, 8, 9, 10]
    );
    assert!(stored_rows(&small_pages, &main, u64::MAX).await.is_empty());
    assert_eq!(small_pages.count_records().await.unwrap(), Some(10));

    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    let from_seven = SourceVerifyOptions::default().with_from(Some(7));
    let report = verify_source(&small_pages, &keyring, from_seven)
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, 4);

    // A chain named only by a dead letter, by a checkpoint or by a head row
    // is listed all the same.
    let letter = DeadLetter::new(&chain("letters-only"), &events(50, 1)[0], "down", 1);
    sink.store_mut().dead_letter(&[letter]).await.unwrap();
    let mut checkpoint = sink.checkpoint().await.unwrap().unwrap();
    checkpoint.chain = chain("checkpoints-only");
    sink.store_mut()
        .write_checkpoint(&checkpoint)
        .await
        .unwrap();
    sink.store()
        .client()
        .execute(
            "INSERT INTO audit_heads (chain_id, seq, record_hash) VALUES ('heads-only', 0, $1)",
            &[&Digest::ZERO.as_bytes().as_slice()],
        )
        .await
        .unwrap();
    let inventory = small_pages.inventory().await.unwrap();
    assert_eq!(
        inventory.chains,
        [
            chain("checkpoints-only"),
            chain("heads-only"),
            chain("letters-only"),
            main
        ]
    );
    assert!(inventory.strays.is_empty(), "{:?}", inventory.strays);
}
