//! The testkit's conformance suite against a real PostgreSQL server: the
//! suite reads records, checkpoints and dead letters back from the
//! database, injects a permanent failure with a trigger, and races two
//! writers on one chain.

mod common;

use std::sync::Arc;

use audit_core::chain::{ChainId, SignMode, VerifyOptions};
use audit_core::chain_writer::{ChainSinkOptions, CheckpointPolicy};
use audit_core::dead_letter::DeadLetter;
use audit_core::keys::{AuditSigner, Keyring};
use audit_core::{Checkpoint, Record};
use audit_postgres::{PostgresOptions, PostgresReader, PostgresStore, StoredRecord, sink_factory};
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

/// Every record of `chain`, in seq order, read with the crate's reader.
async fn read_records(url: String, chain: ChainId) -> Result<Vec<Record>, String> {
    let reader = PostgresReader::connect(&url, PostgresOptions::default())
        .await
        .map_err(|error| error.to_string())?;
    let mut records = Vec::new();
    let mut malformed = Vec::new();
    reader
        .for_each_record(&chain, |stored| match stored {
            StoredRecord::Record(record) => records.push(*record),
            StoredRecord::Malformed { seq, detail } => malformed.push(format!("{seq}: {detail}")),
        })
        .await
        .map_err(|error| error.to_string())?;
    if malformed.is_empty() {
        Ok(records)
    } else {
        Err(format!("malformed rows: {malformed:?}"))
    }
}

/// Every stored checkpoint of `chain`.
async fn read_checkpoints(url: String, chain: ChainId) -> Result<Vec<Checkpoint>, String> {
    let reader = PostgresReader::connect(&url, PostgresOptions::default())
        .await
        .map_err(|error| error.to_string())?;
    reader
        .checkpoints(&chain)
        .await
        .map_err(|error| error.to_string())?
        .into_iter()
        .map(|checkpoint| checkpoint.map_err(|(seq, detail)| format!("{seq}: {detail}")))
        .collect()
}

/// Every dead letter of `chain`, as the store lists them.
async fn read_dead_letters(url: String, chain: ChainId) -> Result<Vec<DeadLetter>, String> {
    let store = PostgresStore::connect(&url, PostgresOptions::default())
        .await
        .map_err(|error| error.to_string())?;
    let stored = store
        .list_dead_letters(Some(&chain))
        .await
        .map_err(|error| error.to_string())?;
    Ok(stored.into_iter().map(|stored| stored.letter).collect())
}

/// The capabilities of the PostgreSQL sink on `server`'s database `audit`.
fn postgres_caps(
    server: &Arc<PostgresServer>,
    url: &str,
    chain: &ChainId,
    keyring: Keyring,
    verify_options: VerifyOptions,
) -> Capabilities {
    let (records_url, checkpoints_url, letters_url) =
        (url.to_owned(), url.to_owned(), url.to_owned());
    let (records_chain, checkpoints_chain, letters_chain) =
        (chain.clone(), chain.clone(), chain.clone());
    let fault_server = server.clone();
    Capabilities::new()
        .read_back(move || read_records(records_url.clone(), records_chain.clone()))
        .read_checkpoints(move || {
            read_checkpoints(checkpoints_url.clone(), checkpoints_chain.clone())
        })
        .read_dead_letters(move || read_dead_letters(letters_url.clone(), letters_chain.clone()))
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
    ChainSinkOptions {
        chain: chain.clone(),
        signer,
        sign_mode: mode,
        // Often enough that the suite's ~200 records get several.
        checkpoints: CheckpointPolicy {
            every_records: Some(25),
            every: None,
        },
        ..ChainSinkOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sink_passes_conformance_signed() {
    let (server, url) = server_with_fault_trigger().await;
    let signer = Arc::new(AuditSigner::generate());
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    let chain = ChainId::new("conformance").unwrap();
    let verify_options = VerifyOptions {
        require_signed: true,
        ..VerifyOptions::default()
    };
    let caps = postgres_caps(&server, &url, &chain, keyring, verify_options);
    let factory = sink_factory(
        url.clone(),
        options(&chain, Some(signer), SignMode::EveryRecord),
        PostgresOptions::default(),
    );
    conformance::run(factory, caps).await;

    let records = read_records(url.clone(), chain.clone()).await.unwrap();
    assert!(
        records.len() > 100,
        "the suite wrote {} records",
        records.len()
    );
    let letters = read_dead_letters(url.clone(), chain.clone()).await.unwrap();
    assert_eq!(letters.len(), 3, "the dead-letter check's batch, once");
    let checkpoints = read_checkpoints(url, chain).await.unwrap();
    assert!(
        checkpoints.len() >= 2,
        "scheduled checkpoints were written: {}",
        checkpoints.len()
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
    let caps = postgres_caps(
        &server,
        &url,
        &chain,
        Keyring::new(),
        VerifyOptions::default(),
    );
    let factory = sink_factory(
        url.clone(),
        options(&chain, None, SignMode::CheckpointsOnly),
        PostgresOptions::default(),
    );
    conformance::run(factory, caps).await;
    let others = read_records(url, other).await.unwrap();
    assert_eq!(others.len(), 7, "the other chain is untouched");
}
