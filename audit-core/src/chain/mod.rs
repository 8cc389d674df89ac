//! The chain format (FORMAT.md sections 2 to 4 and 8): records, the batch
//! plan, sealing, checkpoints and verification; the transparency-log view
//! of a chain: the RFC 6962 tree ([`tree`]), C2SP signed notes ([`note`]),
//! tree checkpoints ([`tree_checkpoint`]) and proofs ([`proof`]).
//!
//! Hashing, sealing and signing of records and checkpoints happen here and
//! nowhere else; every sink calls [`Sealer`] and every verifier runs
//! [`Verifier`].
//!
//! ```
//! use audit_core::chain::{ChainHead, ChainId, Sealer, SignMode, Verifier, VerifyOptions};
//! use audit_core::keys::{AuditSigner, Keyring};
//! use audit_core::AuditEvent;
//! use std::sync::Arc;
//!
//! let signer = Arc::new(AuditSigner::generate());
//! let sealer = Sealer::new(ChainId::new("default")?, Some(signer.clone()), SignMode::EveryRecord);
//! let events: Vec<AuditEvent> = (0..3)
//!     .map(|n| AuditEvent::new("demo", "agent:a", serde_json::json!({ "n": n })))
//!     .collect::<Result<_, _>>()?;
//! let records = sealer.seal_batch(ChainHead::EMPTY, &events);
//! assert_eq!(records[2].seq, 3);
//!
//! let mut keyring = Keyring::new();
//! keyring.insert(signer.public_key());
//! let mut verifier = Verifier::new(keyring, VerifyOptions::default());
//! records.iter().for_each(|record| verifier.record(record));
//! let report = verifier.finish();
//! assert!(report.is_ok(), "{:?}", report.failures);
//! assert_eq!(report.records, 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod checkpoint;
pub mod note;
mod plan;
pub mod proof;
mod record;
mod seal;
mod signatures;
pub mod tree;
pub mod tree_checkpoint;
pub mod tree_rows;
mod verify;

pub use checkpoint::{Checkpoint, checkpoint_hash};
pub use plan::{BLOCKING_SEAL_THRESHOLD, BatchPlan, PresentIds, SealedBatch};
pub use record::{ChainHead, ChainId, EventColumns, Record, record_hash};
pub use seal::{Sealer, SignMode};
pub use verify::{ChainSummary, Failure, FailureKind, Verifier, VerifyOptions, VerifyReport};

use crate::digest::Digest;

/// `str(s) = u32be(byte length of s) || UTF-8 bytes of s`.
fn push_str(buffer: &mut Vec<u8>, text: &str) {
    let length = u32::try_from(text.len()).unwrap_or(u32::MAX);
    buffer.extend_from_slice(&length.to_be_bytes());
    buffer.extend_from_slice(text.as_bytes());
}

fn sha256(bytes: &[u8]) -> Digest {
    use sha2::Digest as _;
    Digest(sha2::Sha256::digest(bytes).into())
}
