//! The SQLite sink on a real file: appends, idempotent event ids,
//! checkpoints, dead letters and their replay, error classification.

use std::path::Path;
use std::sync::Arc;

use audit_core::AuditEvent;
use audit_core::chain::ChainId;
use audit_core::chain_writer::{ChainSinkOptions, ChainStore, CheckpointPolicy};
use audit_core::dead_letter::DeadLetter;
use audit_core::keys::{AuditSigner, Keyring};
use audit_core::sink::{AppendOutcome, AuditSink, ErrorClass};
use audit_sqlite::{SqliteOptions, open_sink};

mod common;
use common::{list as list_dead_letters, replay, verify_file};

fn event(n: usize) -> AuditEvent {
    AuditEvent::new(
        "governance.refusal",
        format!("agent-{}", n % 7),
        serde_json::json!({"rule": "R001", "path": format!("secrets/{n}")}),
    )
    .unwrap()
}

fn signed_options() -> (ChainSinkOptions, Keyring) {
    let signer = Arc::new(AuditSigner::generate());
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    let options = ChainSinkOptions::signed(signer).with_checkpoints(CheckpointPolicy {
        every_records: Some(100),
        every: None,
    });
    (options, keyring)
}

fn verify(path: &Path, keyring: &Keyring) -> audit_core::chain::VerifyReport {
    let report = verify_file(path, keyring);
    assert!(report.is_ok(), "{:?}", report.failures);
    report
}

fn receipts(outcomes: &[AppendOutcome]) -> Vec<(u64, bool)> {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            AppendOutcome::Appended(receipt) => (receipt.seq, receipt.already_present),
            other => panic!("not appended: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn batches_append_in_order_with_signatures_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let (options, keyring) = signed_options();
    let mut sink = open_sink(&path, options, SqliteOptions::default())
        .await
        .unwrap();
    let events: Vec<AuditEvent> = (0..250).map(event).collect();
    let first = sink.append_batch(&events[..200]).await.unwrap();
    let second = sink.append_batch(&events[200..]).await.unwrap();
    assert_eq!(
        receipts(&first),
        (1..=200).map(|seq| (seq, false)).collect::<Vec<_>>()
    );
    assert_eq!(
        receipts(&second),
        (201..=250).map(|seq| (seq, false)).collect::<Vec<_>>()
    );
    let checkpoint = sink.checkpoint().await.unwrap().unwrap();
    assert_eq!(checkpoint.seq, 250);
    sink.close().await.unwrap();
    let report = verify(&path, &keyring);
    assert_eq!(report.records, 250);
    assert_eq!(report.chains["default"].signed, 250);
    let checkpoints = common::checkpoints(&path);
    let seqs: Vec<u64> = checkpoints.iter().map(|c| c.seq).collect();
    assert_eq!(
        seqs,
        [200, 250],
        "scheduled after the first batch, then at shutdown"
    );
    assert_eq!(report.checkpoints, 2);
}

#[tokio::test]
async fn an_event_id_already_in_the_chain_keeps_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let mut sink = open_sink(
        &path,
        ChainSinkOptions::unsigned(),
        SqliteOptions::default(),
    )
    .await
    .unwrap();
    let events: Vec<AuditEvent> = (0..5).map(event).collect();
    sink.append_batch(&events[..3]).await.unwrap();
    let retried = vec![
        events[1].clone(),
        events[3].clone(),
        events[3].clone(),
        events[0].clone(),
        events[4].clone(),
    ];
    let outcomes = sink.append_batch(&retried).await.unwrap();
    assert_eq!(
        receipts(&outcomes),
        [(2, true), (4, false), (4, true), (1, true), (5, false)]
    );
    let report = verify(&path, &Keyring::new());
    assert_eq!(report.records, 5);
}

/// Appends insert without looking ids up first and leave repeats to the
/// UNIQUE constraint: a repeat deep in a large signed batch (met while
/// later chunks are still being signed) and one long after the last
/// repeat both fall back to the lookup, and nothing is stored twice.
#[tokio::test]
async fn a_repeat_found_by_the_constraint_is_appended_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let (options, keyring) = signed_options();
    let mut sink = open_sink(&path, options, SqliteOptions::default())
        .await
        .unwrap();
    let events: Vec<AuditEvent> = (0..4_000).map(event).collect();
    sink.append_batch(&events[..2_000]).await.unwrap();
    let mut second: Vec<AuditEvent> = events[2_000..3_999].to_vec();
    second.insert(1_500, events[7].clone());
    let outcomes = receipts(&sink.append_batch(&second).await.unwrap());
    assert_eq!(outcomes[1_500], (8, true));
    assert_eq!(outcomes[1_499], (3_500, false));
    assert_eq!(outcomes[1_501], (3_501, false));
    assert_eq!(outcomes.last(), Some(&(3_999, false)));
    sink.append_batch(&events[3_999..]).await.unwrap();
    // Twenty clean batches, past the window of lookups after a repeat.
    let clean: Vec<AuditEvent> = (4_000..4_020).map(event).collect();
    for one in clean.chunks(1) {
        sink.append_batch(one).await.unwrap();
    }
    let outcomes = sink
        .append_batch(&[clean[0].clone(), event(5_000)])
        .await
        .unwrap();
    assert_eq!(receipts(&outcomes), [(4_001, true), (4_021, false)]);
    let report = verify(&path, &keyring);
    assert_eq!(report.records, 4_021);
}

#[tokio::test]
async fn a_second_sink_on_the_same_file_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let mut one = open_sink(
        &path,
        ChainSinkOptions::unsigned(),
        SqliteOptions::default(),
    )
    .await
    .unwrap();
    let mut two = open_sink(
        &path,
        ChainSinkOptions::unsigned(),
        SqliteOptions::default(),
    )
    .await
    .unwrap();
    for round in 0..10 {
        one.append_batch(&[event(round), event(round + 100)])
            .await
            .unwrap();
        two.append_batch(&[event(round + 200)]).await.unwrap();
    }
    assert_eq!(verify(&path, &Keyring::new()).records, 30);
    let chain = ChainId::new("default").unwrap();
    assert_eq!(one.store_mut().head(&chain).await.unwrap().seq, 30);
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayed_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let (options, keyring) = signed_options();
    let mut sink = open_sink(&path, options.clone(), SqliteOptions::default())
        .await
        .unwrap();
    let events: Vec<AuditEvent> = (0..6).map(event).collect();
    sink.append_batch(&events[..2]).await.unwrap();
    let chain = ChainId::default();
    let signer = options.signer().cloned().unwrap();
    let letters: Vec<DeadLetter> = events[1..]
        .iter()
        .map(|event| DeadLetter::new(&chain, event, "disk full", 3).authenticated(&signer))
        .collect();
    sink.store_mut().dead_letter(&letters).await.unwrap();
    let other = DeadLetter::new(&ChainId::new("other").unwrap(), &events[5], "x", 1);
    sink.store_mut().dead_letter(&[other]).await.unwrap();
    // Inserted by someone with write access to the table: not authenticated.
    let forged_event = AuditEvent::new("role.granted", "attacker", serde_json::json!({})).unwrap();
    let forged = DeadLetter::new(&chain, &forged_event, "disk full", 1);
    sink.store_mut().dead_letter(&[forged]).await.unwrap();
    drop(sink);

    let listed = list_dead_letters(&path);
    assert_eq!(listed.len(), 7);
    assert_eq!(listed[0].letter, letters[0]);
    assert_eq!(listed[0].letter.attempts, 3);

    let report = replay(&path, &options);
    assert_eq!(report.appended, 4);
    assert_eq!(
        report.already_present, 1,
        "event 1 was in the chain already"
    );
    assert_eq!(report.other_chains, 1);
    assert_eq!(report.unauthenticated.len(), 1, "{report:?}");
    assert!(
        report.unauthenticated[0].1.contains(forged_event.id()),
        "{report:?}"
    );
    assert!(report.unreadable.is_empty());
    let left = list_dead_letters(&path);
    assert_eq!(
        left.len(),
        2,
        "the other chain's letter and the forged one stay"
    );
    assert_eq!(left[0].letter.chain_id, "other");
    assert_eq!(left[1].letter.event_id, forged_event.id());

    let again = replay(&path, &options);
    assert_eq!((again.appended, again.already_present), (0, 0));
    let verified = verify(&path, &keyring);
    assert_eq!(verified.records, 6);
    assert_eq!(verified.chains["default"].head_seq, 6);
}

#[tokio::test]
async fn an_unreadable_dead_letter_stays_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let mut sink = open_sink(
        &path,
        ChainSinkOptions::unsigned(),
        SqliteOptions::default(),
    )
    .await
    .unwrap();
    let mut letter = DeadLetter::new(&ChainId::default(), &event(1), "x", 1);
    letter.event_json = "{not json".into();
    let good = DeadLetter::new(&ChainId::default(), &event(2), "x", 1);
    sink.store_mut().dead_letter(&[letter, good]).await.unwrap();
    drop(sink);
    let report = replay(&path, &ChainSinkOptions::unsigned());
    assert_eq!(report.appended, 1);
    assert_eq!(report.unreadable.len(), 1);
    assert!(
        report.unreadable[0].1.contains("JSON"),
        "{:?}",
        report.unreadable
    );
    assert_eq!(list_dead_letters(&path).len(), 1);
}

#[test]
fn constraint_violations_are_conflicts_by_their_extended_code() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    drop(audit_sqlite::SqliteStore::open_blocking(&path, SqliteOptions::default()).unwrap());
    let connection = rusqlite::Connection::open(&path).unwrap();
    let insert = "INSERT INTO audit_records VALUES ('c', ?1, ?2, 't', 'a', 'x', '{}', x'00', x'00', x'00', NULL, NULL)";
    connection
        .execute(insert, rusqlite::params![1, "id-1"])
        .unwrap();
    let same_seq = connection
        .execute(insert, rusqlite::params![1, "id-2"])
        .unwrap_err();
    let same_id = connection
        .execute(insert, rusqlite::params![2, "id-1"])
        .unwrap_err();
    assert_eq!(audit_sqlite::classify(&same_seq), ErrorClass::Conflict);
    assert_eq!(audit_sqlite::classify(&same_id), ErrorClass::Conflict);
    let not_null = connection
        .execute("INSERT INTO audit_meta VALUES ('k', NULL)", [])
        .unwrap_err();
    assert_eq!(audit_sqlite::classify(&not_null), ErrorClass::Permanent);
}
