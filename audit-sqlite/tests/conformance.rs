//! The testkit's sink conformance suite on a real SQLite file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use audit_core::chain_writer::ChainSinkOptions;
use audit_core::keys::{AuditSigner, Keyring};
use audit_sqlite::{SqliteOptions, SqliteStore, sink_factory};
use audit_testkit::conformance::{self, Capabilities};

/// Makes the next append fail with a trigger error (SQLITE_CONSTRAINT_TRIGGER,
/// a permanent error); the dead-letter insert that follows clears the flag.
const FAULT_INJECTION: &str = "
CREATE TABLE test_fail_next (armed INTEGER NOT NULL);
INSERT INTO test_fail_next VALUES (0);
CREATE TRIGGER test_fail_append BEFORE INSERT ON audit_records
  WHEN (SELECT armed FROM test_fail_next) = 1
  BEGIN SELECT RAISE(ABORT, 'injected permanent failure'); END;
CREATE TRIGGER test_disarm AFTER INSERT ON audit_dead_letters
  BEGIN UPDATE test_fail_next SET armed = 0; END;
";

fn prepare(path: &Path) {
    drop(SqliteStore::open_blocking(path, SqliteOptions::default()).unwrap());
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch(FAULT_INJECTION)
        .unwrap();
}

fn capabilities(path: PathBuf, keyring: Keyring) -> Capabilities {
    Capabilities::new()
        .source(audit_sqlite::SqliteSource::open(&path).unwrap())
        .inject_permanent_failure(move || {
            let path = path.clone();
            async move {
                rusqlite::Connection::open(&path)
                    .unwrap()
                    .execute("UPDATE test_fail_next SET armed = 1", [])
                    .unwrap();
            }
        })
        .concurrent_writers(true)
        .keyring(keyring)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_sink_passes_the_conformance_suite_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    prepare(&path);
    let factory = sink_factory(
        &path,
        ChainSinkOptions::unsigned(),
        SqliteOptions::default(),
    );
    conformance::run(factory, capabilities(path, Keyring::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_sink_passes_the_conformance_suite_signed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    prepare(&path);
    let signer = Arc::new(AuditSigner::generate());
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    let options = ChainSinkOptions::signed(signer);
    let factory = sink_factory(&path, options, SqliteOptions::default());
    let caps = capabilities(path, keyring)
        .verify_options(audit_core::chain::VerifyOptions::default().with_require_signed(true));
    conformance::run(factory, caps).await;
}
