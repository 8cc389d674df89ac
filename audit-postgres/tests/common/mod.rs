//! Helpers shared by the integration tests: a real server, events, options.
#![allow(dead_code)]

use std::sync::Arc;

use audit_core::AuditEvent;
use audit_core::chain::{ChainId, VerifyOptions, VerifyReport};
use audit_core::chain_writer::{ChainSinkOptions, CheckpointPolicy};
use audit_core::keys::{AuditSigner, Keyring};
use audit_postgres::{PostgresOptions, PostgresSink, PostgresSinkExt, verify_postgres};
use audit_testkit::servers::postgres::PostgresServer;

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
    ChainSinkOptions {
        chain: ChainId::new(chain).unwrap(),
        signer: Some(signer.clone()),
        checkpoints: CheckpointPolicy {
            every_records: None,
            every: None,
        },
        ..ChainSinkOptions::default()
    }
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

/// Verifies every chain at `url` with `signer`'s key.
pub async fn verify_with(url: &str, signer: &AuditSigner, require_signed: bool) -> VerifyReport {
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    let options = VerifyOptions {
        require_signed,
        ..VerifyOptions::default()
    };
    verify_postgres(url, keyring, options, &[], |_| {})
        .await
        .unwrap()
}
pub mod writer;
