//! Helpers shared by the integration tests: a real server, events, options.
#![allow(dead_code)]

use std::sync::Arc;

use audit_core::AuditEvent;
use audit_core::chain::{ChainId, Record, VerifyOptions, VerifyReport};
use audit_core::chain_writer::{ChainSinkOptions, CheckpointPolicy};
use audit_core::keys::{AuditSigner, Keyring};
use audit_core::store::{ChainSource, SourceRecord};
use audit_core::verification::{SourceVerifyOptions, verify_source};
use audit_postgres::{PostgresOptions, PostgresSink, PostgresSinkExt, PostgresSource, open_source};
use audit_testkit::servers::postgres::PostgresServer;
use futures::TryStreamExt;

/// A fresh server with a database `audit`; panics saying what to install.
pub fn server() -> (PostgresServer, String) {
    let server = PostgresServer::start()
        .unwrap_or_else(|error| panic!("cannot start a test PostgreSQL server: {error}"));
    server.create_database("audit").unwrap();
    let url = server.url_for("audit");
    (server, url)
}

/// `n` events of type `test`, numbered from `from`.
pub fn events(from: usize, n: usize) -> Vec<AuditEvent> {
    (from..from + n)
        .map(|i| AuditEvent::new("test", "agent:test", serde_json::json!({ "n": i })).unwrap())
        .collect()
}

/// Chain options for `chain` signed by `signer`, no scheduled checkpoints.
pub fn chain_options(chain: &str, signer: &Arc<AuditSigner>) -> ChainSinkOptions {
    ChainSinkOptions::signed(signer.clone())
        .for_chain(ChainId::new(chain).unwrap())
        .with_checkpoints(CheckpointPolicy {
            every_records: None,
            every: None,
        })
}

/// A sink on `url`.
pub async fn sink(url: &str, options: ChainSinkOptions) -> PostgresSink {
    PostgresSink::connect(url, options, PostgresOptions::default())
        .await
        .unwrap()
}

/// Verifies every chain at `url` with `signer`'s key, requiring signatures.
pub async fn verify(url: &str, signer: &AuditSigner) -> VerifyReport {
    verify_with(url, signer, true).await
}

/// Verifies every chain at `url` with `signer`'s key; unsigned records
/// are accepted unless `require_signed`.
pub async fn verify_with(url: &str, signer: &AuditSigner, require_signed: bool) -> VerifyReport {
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    let options = SourceVerifyOptions::default()
        .with_verify(VerifyOptions::default().with_require_signed(require_signed))
        .with_allow_unsigned(!require_signed);
    verify_source(&source(url).await, &keyring, options)
        .await
        .unwrap()
}

/// A read-only source on `url`.
pub async fn source(url: &str) -> PostgresSource {
    open_source(url, PostgresOptions::default()).await.unwrap()
}

/// Every stored row of `chain`, as the source returns it.
pub async fn stored_rows(
    source: &dyn ChainSource,
    chain: &ChainId,
    from: u64,
) -> Vec<SourceRecord> {
    source
        .records(chain, from)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// Every record of `chain` (panics on a malformed row).
pub async fn stored_records(url: &str, chain: &ChainId) -> Vec<Record> {
    stored_rows(&source(url).await, chain, 1)
        .await
        .into_iter()
        .map(|row| match row {
            SourceRecord::Record(record) => record,
            SourceRecord::Malformed { seq, detail } => panic!("malformed row {seq}: {detail}"),
        })
        .collect()
}
pub mod writer;
