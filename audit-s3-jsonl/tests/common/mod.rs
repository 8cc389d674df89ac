//! Helpers shared by the archive's tests: everything is read back through
//! [`ArchiveSource`], the crate's read side.
#![allow(dead_code)]

use std::sync::Arc;

use audit_core::chain::{VerifyOptions, VerifyReport};
use audit_core::chain_writer::{ChainSinkOptions, CheckpointPolicy};
use audit_core::dead_letter::DeadLetter;
use audit_core::keys::{AuditSigner, Keyring};
use audit_core::sink::AppendOutcome;
use audit_core::store::{ChainSource, SourceRecord};
use audit_core::verification::{SourceVerifyOptions, verify_source};
use audit_core::{AuditEvent, ChainId, Checkpoint, Record};
use audit_s3_jsonl::ArchiveSource;
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path;

/// `count` events of type `test`, payload `{"writer": writer, "n": n}`.
pub fn events(writer: &str, count: usize) -> Vec<AuditEvent> {
    (0..count)
        .map(|n| {
            AuditEvent::new(
                "test",
                format!("agent:{writer}"),
                serde_json::json!({ "writer": writer, "n": n }),
            )
            .unwrap()
        })
        .collect()
}

/// Options for chain `chain`, signed by `signer`, no automatic checkpoints.
pub fn options(chain: &str, signer: &Arc<AuditSigner>) -> ChainSinkOptions {
    ChainSinkOptions::signed(signer.clone())
        .for_chain(ChainId::new(chain).unwrap())
        .with_checkpoints(CheckpointPolicy {
            every_records: None,
            every: None,
        })
}

/// The keyring of `signer`.
pub fn keyring(signer: &AuditSigner) -> Keyring {
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    keyring
}

/// The archive under `prefix` of `store`.
pub fn source(store: &Arc<dyn ObjectStore>, prefix: &Path) -> ArchiveSource {
    ArchiveSource::new(store.clone(), prefix.clone())
}

/// Verifies every chain under `prefix` with the core's verifier (a key
/// given: signatures required).
pub async fn verify(
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
    signer: &AuditSigner,
) -> VerifyReport {
    verify_with(store, prefix, keyring(signer), Vec::new()).await
}

/// Verifies every chain under `prefix` with `keyring` and outside checkpoints.
pub async fn verify_with(
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
    keyring: Keyring,
    outside_checkpoints: Vec<Checkpoint>,
) -> VerifyReport {
    let options = SourceVerifyOptions::default()
        .with_verify(VerifyOptions::default())
        .with_outside_checkpoints(outside_checkpoints);
    verify_source(&source(store, prefix), &keyring, options)
        .await
        .unwrap()
}

/// Every record of `chain`, in seq order (panics on a malformed line).
pub async fn records(store: &Arc<dyn ObjectStore>, prefix: &Path, chain: &ChainId) -> Vec<Record> {
    let source = source(store, prefix);
    let rows: Vec<_> = source.records(chain, 1).await.unwrap().collect().await;
    rows.into_iter()
        .map(|row| match row.unwrap() {
            SourceRecord::Record(record) => record,
            SourceRecord::Malformed { seq, detail } => panic!("malformed at {seq}: {detail}"),
        })
        .collect()
}

/// The `(event id, seq)` of every record of `chain`.
pub async fn stored_ids(
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
    chain: &ChainId,
) -> Vec<(String, u64)> {
    records(store, prefix, chain)
        .await
        .into_iter()
        .map(|record| {
            let event = AuditEvent::from_canonical(&record.event_json).unwrap();
            (event.id().to_owned(), record.seq)
        })
        .collect()
}

/// Every checkpoint of `chain` (panics on a bad one).
pub async fn checkpoints(
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
    chain: &ChainId,
) -> Vec<Checkpoint> {
    source(store, prefix)
        .checkpoints(chain)
        .await
        .unwrap()
        .into_iter()
        .map(|checkpoint| checkpoint.unwrap())
        .collect()
}

/// Every dead letter of `chain`.
pub async fn dead_letters(
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
    chain: &ChainId,
) -> Vec<DeadLetter> {
    source(store, prefix)
        .dead_letters(Some(chain))
        .await
        .unwrap()
        .into_iter()
        .map(|stored| stored.letter)
        .collect()
}

/// The seqs of appended outcomes (panics on a dead letter).
pub fn seqs(outcomes: &[AppendOutcome]) -> Vec<(u64, bool)> {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            AppendOutcome::Appended(receipt) => (receipt.seq, receipt.already_present),
            other => panic!("not appended: {other:?}"),
        })
        .collect()
}

/// Paths of every object under `prefix`, sorted.
pub async fn object_paths(store: &dyn ObjectStore, prefix: &Path) -> Vec<String> {
    use futures::TryStreamExt;
    let mut paths: Vec<String> = store
        .list(Some(prefix))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap();
    paths.sort();
    paths
}
