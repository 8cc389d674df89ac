//! The hostile-chain suite of `audit-testkit` on real SQLite files, and
//! what only SQL storage can hold: chain names and seqs of the wrong type.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use audit_core::chain::{ChainId, FailureKind};
use audit_core::chain_writer::ChainStore;
use audit_core::store::ChainSource;
use audit_core::verification::{SourceVerifyOptions, verify_source};
use audit_sqlite::{SqliteOptions, SqliteSource, SqliteStore};
use audit_testkit::hostile::{self, RawRow, Tamper, TamperFactory};
use rusqlite::params;

struct SqliteTamper {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl SqliteTamper {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        drop(SqliteStore::open_blocking(&path, SqliteOptions::default()).unwrap());
        Self { _dir: dir, path }
    }

    fn connection(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.path).unwrap()
    }
}

fn member(event: &serde_json::Value, name: &str) -> String {
    event[name].as_str().unwrap_or_default().to_owned()
}

#[async_trait]
impl Tamper for SqliteTamper {
    fn source(&self) -> Arc<dyn ChainSource> {
        Arc::new(SqliteSource::open(&self.path).unwrap())
    }

    async fn store(&self) -> Box<dyn ChainStore> {
        Box::new(
            SqliteStore::open(&self.path, SqliteOptions::default())
                .await
                .unwrap(),
        )
    }

    async fn put_raw(&self, rows: &[RawRow]) {
        let mut connection = self.connection();
        let transaction = connection.transaction().unwrap();
        for row in rows {
            let record = &row.record;
            let event: serde_json::Value =
                serde_json::from_str(&record.event_json).unwrap_or_default();
            transaction
                .execute(
                    "INSERT INTO audit_records (chain_id, seq, event_id, event_type, actor, event_time, event_json, event_hash, prev_hash, record_hash, key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    params![
                        row.chain,
                        row.seq,
                        member(&event, "id"),
                        member(&event, "type"),
                        member(&event, "actor"),
                        member(&event, "time"),
                        record.event_json.as_str(),
                        record.event_hash.as_bytes().as_slice(),
                        record.prev.as_bytes().as_slice(),
                        record.hash.as_bytes().as_slice(),
                        record.key_id.as_deref(),
                        record.sig.as_ref().map(|sig| sig.as_slice()),
                    ],
                )
                .unwrap();
        }
        transaction.commit().unwrap();
    }

    async fn delete_records(&self, chain: &ChainId, seqs: RangeInclusive<u64>) {
        self.connection()
            .execute(
                "DELETE FROM audit_records WHERE chain_id = ?1 AND seq BETWEEN ?2 AND ?3",
                params![
                    chain.as_str(),
                    i64::try_from(*seqs.start()).unwrap(),
                    i64::try_from(*seqs.end()).unwrap()
                ],
            )
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_fails_the_hostile_suite_like_every_backend() {
    let factory: TamperFactory =
        Arc::new(|| Box::pin(async { Box::new(SqliteTamper::new()) as Box<dyn Tamper> }));
    hostile::run(factory).await;
}

async fn verify(tamper: &SqliteTamper) -> audit_core::chain::VerifyReport {
    verify_source(
        tamper.source().as_ref(),
        &audit_testkit::vectors::keyring(),
        SourceVerifyOptions::default(),
    )
    .await
    .expect("a hostile row is a verification failure, never a read error")
}

async fn good_chain() -> SqliteTamper {
    let tamper = SqliteTamper::new();
    let records = hostile::vector_records();
    let rows: Vec<RawRow> = records[..10].iter().map(RawRow::of).collect();
    tamper.put_raw(&rows).await;
    tamper
}

#[tokio::test]
async fn a_chain_id_stored_as_a_blob_is_a_stray_not_an_error() {
    let tamper = good_chain().await;
    tamper
        .connection()
        .execute(
            "UPDATE audit_records SET chain_id = CAST(chain_id AS BLOB) WHERE seq = 5",
            [],
        )
        .unwrap();
    let report = verify(&tamper).await;
    let strays: Vec<_> = report
        .failures
        .iter()
        .filter(|failure| failure.kind == FailureKind::Stray)
        .collect();
    assert_eq!(strays.len(), 1, "{:?}", report.failures);
    assert!(
        strays[0].detail.contains("x'64656661756c74'"),
        "{}",
        strays[0]
    );
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.kind == FailureKind::SeqGap && f.seq == 6)
    );
}

#[tokio::test]
async fn columns_of_the_wrong_type_are_malformed_at_their_seq() {
    let tamper = good_chain().await;
    let connection = tamper.connection();
    connection
        .execute(
            "UPDATE audit_records SET record_hash = 'text' WHERE seq = 3",
            [],
        )
        .unwrap();
    connection
        .execute("UPDATE audit_records SET actor = x'00ff' WHERE seq = 7", [])
        .unwrap();
    let report = verify(&tamper).await;
    let malformed: Vec<u64> = report
        .failures
        .iter()
        .filter(|failure| failure.kind == FailureKind::Malformed)
        .map(|failure| failure.seq)
        .collect();
    assert_eq!(malformed, [3, 7], "{:?}", report.failures);
}

#[tokio::test]
async fn a_seq_stored_as_text_or_real_is_reported() {
    let tamper = good_chain().await;
    tamper
        .connection()
        .execute("UPDATE audit_records SET seq = 'ten' WHERE seq = 10", [])
        .unwrap();
    tamper
        .connection()
        .execute("UPDATE audit_records SET seq = 4.5 WHERE seq = 4", [])
        .unwrap();
    let report = verify(&tamper).await;
    assert!(!report.is_ok());
    let kinds: Vec<(FailureKind, u64)> = report
        .failures
        .iter()
        .map(|failure| (failure.kind, failure.seq))
        .collect();
    assert!(kinds.contains(&(FailureKind::Malformed, 3)), "{kinds:?}");
    assert!(kinds.contains(&(FailureKind::Malformed, 9)), "{kinds:?}");
}

#[tokio::test]
async fn the_largest_seq_does_not_wrap() {
    let tamper = good_chain().await;
    tamper
        .connection()
        .execute(
            "UPDATE audit_records SET seq = ?1 WHERE seq = 10",
            [i64::MAX],
        )
        .unwrap();
    let report = verify(&tamper).await;
    let first = report.first_failure().unwrap();
    assert_eq!(
        (first.kind, first.seq),
        (FailureKind::SeqGap, i64::MAX as u64),
        "{first}"
    );
}
