//! The testkit's conformance suite against a real PostgreSQL server: the
//! suite reads records and dead letters back through the crate's
//! `PostgresSource` (one source for the whole run, so it must see every
//! later write), injects a permanent failure with a trigger, and races two
//! writers on one chain.

mod common;

use std::sync::Arc;

use audit_core::chain::{ChainId, SignMode, VerifyOptions};
use audit_core::chain_writer::{ChainSinkOptions, CheckpointPolicy};
use audit_core::keys::{AuditSigner, Keyring};
use audit_core::store::ChainSource;
use audit_postgres::{PostgresOptions, PostgresStore, sink_factory};
use audit_testkit::conformance::{self, Capabilities};
use audit_testkit::servers::postgres::PostgresServer;
use common::server;

/// A statement-level trigger on `audit_records` that raises
/// `raise_exception` (SQLSTATE P0001, a permanent error) for every insert
/// statement whose call number is at most `audit_fault.fail_through`.
/// The call counter is a sequence, so a failing (rolled back) insert still
/// consumes its number, and arming fails exactly the next insert.
const FAULT_TRIGGER: &str = r#"
CREATE SEQUENCE audit_fault_calls;
CREATE TABLE audit_fault (fail_through BIGINT NOT NULL);
INSERT INTO audit_fault VALUES (0);
CREATE FUNCTION audit_fault_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF nextval('audit_fault_calls') <= (SELECT fail_through FROM audit_fault) THEN
    RAISE EXCEPTION 'injected failure on audit_records';
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER audit_fault_before_insert BEFORE INSERT ON audit_records
  FOR EACH STATEMENT EXECUTE FUNCTION audit_fault_check();
"#;

/// Makes the next insert into `audit_records` fail.
const ARM_FAULT: &str =
    "UPDATE audit_fault SET fail_through = (SELECT nextval('audit_fault_calls')) + 1";

/// The capabilities of the PostgreSQL sink on `server`'s database `audit`:
/// the crate's source, the fault trigger, concurrent writers.
async fn postgres_caps(
    server: &Arc<PostgresServer>,
    url: &str,
    keyring: Keyring,
    verify_options: VerifyOptions,
) -> Capabilities {
    let fault_server = server.clone();
    Capabilities::new()
        .source(common::source(url).await)
        .inject_permanent_failure(move || {
            let server = fault_server.clone();
            async move {
                tokio::task::spawn_blocking(move || server.psql("audit", ARM_FAULT))
                    .await
                    .unwrap()
                    .unwrap_or_else(|error| panic!("arming the fault trigger: {error}"));
            }
        })
        .concurrent_writers(true)
        .keyring(keyring)
        .verify_options(verify_options)
}

/// A server with the schema created and the fault trigger installed.
async fn server_with_fault_trigger() -> (Arc<PostgresServer>, String) {
    let (server, url) = server();
    // Creates the schema, so that the trigger has its table.
    PostgresStore::connect(&url, PostgresOptions::default())
        .await
        .unwrap();
    server.psql("audit", FAULT_TRIGGER).unwrap();
    (Arc::new(server), url)
}

fn options(chain: &ChainId, signer: Option<Arc<AuditSigner>>, mode: SignMode) -> ChainSinkOptions {
    let options = match signer {
        Some(signer) => ChainSinkOptions::signed(signer),
        None => ChainSinkOptions::unsigned(),
    };
    options
        .for_chain(chain.clone())
        .with_sign_mode(mode)
        // Often enough that the suite's ~200 records get several.
        .with_checkpoints(CheckpointPolicy {
            every_records: Some(25),
            every: None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sink_passes_conformance_signed() {
    let (server, url) = server_with_fault_trigger().await;
    let signer = Arc::new(AuditSigner::generate());
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    let chain = ChainId::new("conformance").unwrap();
    let verify_options = VerifyOptions::default().with_require_signed(true);
    let caps = postgres_caps(&server, &url, keyring, verify_options).await;
    let factory = sink_factory(
        url.clone(),
        options(&chain, Some(signer), SignMode::EveryRecord),
        PostgresOptions::default(),
    );
    conformance::run(factory, caps).await;

    let records = common::stored_records(&url, &chain).await;
    assert!(
        records.len() > 100,
        "the suite wrote {} records",
        records.len()
    );
    let source = common::source(&url).await;
    let letters = source.dead_letters(Some(&chain)).await.unwrap();
    assert_eq!(letters.len(), 3, "the dead-letter check's batch, once");
    let checkpoints = source.checkpoints(&chain).await.unwrap();
    assert!(
        checkpoints.len() >= 2 && checkpoints.iter().all(Result::is_ok),
        "scheduled checkpoints were written: {checkpoints:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sink_passes_conformance_unsigned_beside_another_chain() {
    let (server, url) = server_with_fault_trigger().await;
    // Another chain already in the database must not disturb this one.
    let other = ChainId::new("other").unwrap();
    let mut other_sink = common::sink(&url, options(&other, None, SignMode::CheckpointsOnly)).await;
    audit_core::sink::AuditSink::append_batch(&mut other_sink, &common::events(0, 7))
        .await
        .unwrap();

    let chain = ChainId::new("unsigned").unwrap();
    let caps = postgres_caps(&server, &url, Keyring::new(), VerifyOptions::default()).await;
    let factory = sink_factory(
        url.clone(),
        options(&chain, None, SignMode::CheckpointsOnly),
        PostgresOptions::default(),
    );
    conformance::run(factory, caps).await;
    let others = common::stored_records(&url, &other).await;
    assert_eq!(others.len(), 7, "the other chain is untouched");
}
