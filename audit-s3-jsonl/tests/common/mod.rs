//! Helpers shared by the archive's tests.
#![allow(dead_code)]

use std::sync::Arc;

use audit_core::chain::{VerifyOptions, VerifyReport};
use audit_core::chain_writer::{ChainSinkOptions, CheckpointPolicy};
use audit_core::keys::{AuditSigner, Keyring};
use audit_core::sink::AppendOutcome;
use audit_core::{AuditEvent, ChainId};
use audit_s3_jsonl::verify::verify_archive;
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

/// The keyring of `signer`.
pub fn keyring(signer: &AuditSigner) -> Keyring {
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    keyring
}

/// Verifies every chain under `prefix`, requiring signatures.
pub async fn verify(store: &dyn ObjectStore, prefix: &Path, signer: &AuditSigner) -> VerifyReport {
    let options = VerifyOptions {
        require_signed: true,
        ..VerifyOptions::default()
    };
    verify_archive(store, prefix, None, keyring(signer), options, &[])
        .await
        .unwrap()
}

/// The seqs of appended outcomes (panics on a dead letter).
pub fn seqs(outcomes: &[AppendOutcome]) -> Vec<(u64, bool)> {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            AppendOutcome::Appended(receipt) => (receipt.seq, receipt.already_present),
            AppendOutcome::DeadLettered { reason } => panic!("dead-lettered: {reason}"),
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
