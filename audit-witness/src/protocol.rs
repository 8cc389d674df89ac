//! The witness side of C2SP `tlog-witness` `add-checkpoint`, without
//! HTTP: [`Witness::add_checkpoint`] takes a request body and returns the
//! cosignature lines or a [`Refusal`] that names its HTTP status.
//!
//! The checks, in the order of the specification:
//!
//! 1. the body is `old <M>\n`, at most [`MAX_PROOF_LINES`] base64 hashes,
//!    an empty line and a signed note whose body starts with the three
//!    checkpoint lines (origin, size, root); otherwise 400;
//! 2. the origin is a configured log (else 404) and the note carries a
//!    valid signature of one of that log's keys (else 403; signature lines
//!    of other keys are ignored);
//! 3. `M` is not beyond the checkpoint's size (else 400);
//! 4. `M` is the size of the latest head the witness cosigned for the
//!    origin, 0 when none (else 409 with that size, `text/x.tlog.size`);
//!    at equal sizes the roots are equal (else 409);
//! 5. the proof is an RFC 6962 consistency proof from the stored head to
//!    the new one (else 422);
//! 6. the new head replaces the stored one with a compare-and-swap
//!    ([`WitnessState::compare_and_swap`]): a request checked against a
//!    head that another request replaced meanwhile is checked again against
//!    the newer head, so two racing requests never roll a log back;
//! 7. the witness cosigns the checkpoint body at the current time
//!    (FORMAT.md section 8.4) and answers 200 with the cosignature line.
//!
//! ```
//! use std::sync::Arc;
//! use audit_core::chain::tree::EMPTY_ROOT;
//! use audit_core::chain::tree_checkpoint::TreeCheckpoint;
//! use audit_witness::protocol::{Refusal, Witness};
//! use audit_witness::state::MemoryState;
//! use ed25519_dalek::SigningKey;
//!
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let log_key = SigningKey::from_bytes(&[1; 32]);
//! let checkpoint = TreeCheckpoint::new("example.org/log", 0, EMPTY_ROOT)?;
//! let witness = Witness::new(
//!     "witness.example/w1",
//!     Arc::new(SigningKey::from_bytes(&[2; 32])),
//!     vec![checkpoint.log_vkey(&log_key.verifying_key())?],
//!     Arc::new(MemoryState::new()),
//! )?;
//! let body = format!("old 0\n\n{}", checkpoint.sign(&log_key)?);
//! let lines = witness.add_checkpoint(body.as_bytes()).await?;
//! assert_eq!(lines[0].name, "witness.example/w1");
//! let stale = format!("old 5\n\n{}", checkpoint.sign(&log_key)?);
//! assert!(matches!(witness.add_checkpoint(stale.as_bytes()).await, Err(Refusal::OldSizeBeyondSize { .. })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use audit_core::Digest;
use audit_core::chain::note::{KeyType, Note, NoteError, NoteSignature, NoteSigningKey, Vkey};
use audit_core::chain::proof::{ConsistencyProof, MAX_PROOF_FILE_BYTES, ProofFileError};
use audit_core::chain::tree::{EMPTY_ROOT, check_consistency};
use audit_core::chain::tree_checkpoint::{TreeCheckpoint, TreeCheckpointError};
use ed25519_dalek::VerifyingKey;

use crate::server::ServerError;
use crate::state::{StateError, Swap, WitnessState};

/// The path of the call, after the submission prefix.
pub const ADD_CHECKPOINT_PATH: &str = "/add-checkpoint";

/// The `Content-Type` of a 409 answer whose body is the witness's latest
/// size in decimal and a newline.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// The most consistency proof lines a client may send (tlog-witness).
pub const MAX_PROOF_LINES: usize = 63;

/// The largest tree size a witness stores: sizes are kept as signed 64-bit
/// integers in SQL.
pub const MAX_TREE_SIZE: u64 = i64::MAX as u64;

/// How often a request is checked again after its compare-and-swap lost a
/// race, before the witness answers 409 with the newest size it read.
const SWAP_ATTEMPTS: usize = 4;

/// A tree head a witness keeps for a log: size and root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TreeHead {
    /// The tree size.
    pub size: u64,
    /// The root hash at that size.
    pub root: Digest,
}

impl TreeHead {
    /// The head of a checkpoint.
    pub fn of(checkpoint: &TreeCheckpoint) -> Self {
        Self {
            size: checkpoint.size(),
            root: checkpoint.root(),
        }
    }
}

/// Why a witness refuses an `add-checkpoint` request; [`status`](Self::status)
/// is its HTTP status code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The body is larger than the server accepts (413).
    #[error("request body is over the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is not an `add-checkpoint` request (400).
    #[error("malformed request: {detail}")]
    Malformed {
        /// What is wrong.
        detail: String,
    },
    /// More consistency proof lines than the witness accepts (400).
    #[error("request has more than {limit} consistency proof lines")]
    TooManyProofLines {
        /// The limit.
        limit: usize,
    },
    /// The old size is beyond the checkpoint's size (400).
    #[error("old size {old} is beyond the checkpoint size {size}")]
    OldSizeBeyondSize {
        /// The request's old size.
        old: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// The checkpoint's origin is not a configured log (404).
    #[error("unknown log origin {origin:?}")]
    UnknownOrigin {
        /// The origin.
        origin: String,
    },
    /// The note carries no valid signature of the log's keys (403).
    #[error("checkpoint of {origin:?} has no valid signature of a configured log key: {detail}")]
    Forbidden {
        /// The origin.
        origin: String,
        /// Why the signatures did not verify.
        detail: String,
    },
    /// The old size is not the size of the latest cosigned head (409).
    #[error("old size {old} is not the latest cosigned size {latest_size}")]
    Conflict {
        /// The request's old size.
        old: u64,
        /// The latest size the witness cosigned (0 when none).
        latest_size: u64,
    },
    /// The checkpoint has the latest cosigned size but another root (409):
    /// a fork.
    #[error("checkpoint at the latest cosigned size {size} has another root")]
    RootConflict {
        /// The size.
        size: u64,
    },
    /// The consistency proof does not verify (422).
    #[error("consistency proof does not verify: {detail}")]
    Inconsistent {
        /// Why.
        detail: String,
    },
    /// The client was too slow to send its request (408).
    #[error("request not received in time")]
    Timeout,
    /// The witness state failed; the request may be retried (503).
    #[error("witness state: {0}")]
    State(#[from] StateError),
    /// Cosigning failed (500); should not happen with a valid configuration.
    #[error("cosigning failed: {0}")]
    Cosign(NoteError),
}

impl Refusal {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::TooLarge { .. } => 413,
            Refusal::Malformed { .. }
            | Refusal::TooManyProofLines { .. }
            | Refusal::OldSizeBeyondSize { .. } => 400,
            Refusal::UnknownOrigin { .. } => 404,
            Refusal::Forbidden { .. } => 403,
            Refusal::Conflict { .. } | Refusal::RootConflict { .. } => 409,
            Refusal::Inconsistent { .. } => 422,
            Refusal::Timeout => 408,
            Refusal::State(_) => 503,
            Refusal::Cosign(_) => 500,
        }
    }

    /// For a 409, the latest cosigned size sent back as `text/x.tlog.size`.
    pub fn latest_size(&self) -> Option<u64> {
        match self {
            Refusal::Conflict { latest_size, .. } => Some(*latest_size),
            Refusal::RootConflict { size } => Some(*size),
            _ => None,
        }
    }

    /// A short name for logs and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::TooLarge { .. } => "too_large",
            Refusal::Malformed { .. } => "malformed",
            Refusal::TooManyProofLines { .. } => "too_many_proof_lines",
            Refusal::OldSizeBeyondSize { .. } => "old_size_beyond_size",
            Refusal::UnknownOrigin { .. } => "unknown_origin",
            Refusal::Forbidden { .. } => "forbidden",
            Refusal::Conflict { .. } => "conflict",
            Refusal::RootConflict { .. } => "root_conflict",
            Refusal::Inconsistent { .. } => "inconsistent",
            Refusal::Timeout => "timeout",
            Refusal::State(_) => "state",
            Refusal::Cosign(_) => "cosign",
        }
    }
}

/// Parses the first three lines of a checkpoint body (origin, size,
/// root), ignoring any extension lines after them: logs of other
/// implementations may carry some, and the cosignature covers them anyway.
pub fn checkpoint_head(body: &str) -> Result<TreeCheckpoint, TreeCheckpointError> {
    let mut end = 0;
    for _ in 0..3 {
        match body[end..].find('\n') {
            Some(offset) => end += offset + 1,
            None => return TreeCheckpoint::parse_body(body),
        }
    }
    TreeCheckpoint::parse_body(&body[..end])
}

/// Parses a size as the protocol writes it: ASCII decimal, no sign, no
/// leading zeros (`0` itself excepted).
pub fn parse_size(text: &str) -> Option<u64> {
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    text.parse().ok()
}

/// A borrowed signing key, so that [`Note::cosign`] takes a trait object.
struct KeyRef<'a>(&'a (dyn NoteSigningKey + Send + Sync));

impl NoteSigningKey for KeyRef<'_> {
    fn verifying_key(&self) -> VerifyingKey {
        self.0.verifying_key()
    }

    fn sign_message(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign_message(message)
    }
}

/// A witness: its name and key, the logs it serves, its state.
pub struct Witness {
    name: String,
    key: Arc<dyn NoteSigningKey + Send + Sync>,
    vkey: Vkey,
    logs: HashMap<String, Vec<Vkey>>,
    state: Arc<dyn WitnessState>,
    max_proof_lines: usize,
}

impl fmt::Debug for Witness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Witness")
            .field("vkey", &self.vkey.to_string())
            .field("logs", &self.logs.keys().collect::<Vec<_>>())
            .field("state", &self.state)
            .finish()
    }
}

impl Witness {
    /// A witness named `name` (a note key name) cosigning with `key` the
    /// checkpoints of the logs whose verifier keys are `logs` (Ed25519
    /// vkeys, type 0x01, named by the log's origin; several keys of one
    /// origin are all accepted).
    pub fn new(
        name: &str,
        key: Arc<dyn NoteSigningKey + Send + Sync>,
        logs: Vec<Vkey>,
        state: Arc<dyn WitnessState>,
    ) -> Result<Self, ServerError> {
        let vkey =
            Vkey::cosignature(name, &key.verifying_key()).map_err(|error| ServerError::Config {
                detail: format!("witness name {name:?}: {error}"),
            })?;
        let mut by_origin: HashMap<String, Vec<Vkey>> = HashMap::new();
        for log in logs {
            if log.key_type() != KeyType::Ed25519 {
                return Err(ServerError::Config {
                    detail: format!("log key {log} is not an Ed25519 log key (type 0x01)"),
                });
            }
            by_origin
                .entry(log.name().to_owned())
                .or_default()
                .push(log);
        }
        Ok(Self {
            name: name.to_owned(),
            key,
            vkey,
            logs: by_origin,
            state,
            max_proof_lines: MAX_PROOF_LINES,
        })
    }

    /// Accepts at most `limit` consistency proof lines (default and most
    /// useful: [`MAX_PROOF_LINES`]).
    pub fn with_max_proof_lines(mut self, limit: usize) -> Self {
        self.max_proof_lines = limit;
        self
    }

    /// The witness's cosigner vkey (`<name>+<hash>+<base64(0x04 || pk)>`).
    pub fn vkey(&self) -> &Vkey {
        &self.vkey
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The origins of the configured logs.
    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.logs.keys().map(String::as_str)
    }

    /// The state.
    pub fn state(&self) -> &Arc<dyn WitnessState> {
        &self.state
    }

    /// Handles an `add-checkpoint` request body: the cosignature lines on
    /// success (one line, this witness's), or why not.
    pub async fn add_checkpoint(&self, body: &[u8]) -> Result<Vec<NoteSignature>, Refusal> {
        let request = ConsistencyProof::parse(body).map_err(|error| match error {
            ProofFileError::TooManyHashes => Refusal::TooManyProofLines {
                limit: self.max_proof_lines,
            },
            ProofFileError::TooLarge { .. } => Refusal::TooLarge {
                limit: MAX_PROOF_FILE_BYTES,
            },
            other => Refusal::Malformed {
                detail: other.to_string(),
            },
        })?;
        if request.proof.len() > self.max_proof_lines {
            return Err(Refusal::TooManyProofLines {
                limit: self.max_proof_lines,
            });
        }
        let checkpoint =
            checkpoint_head(request.note.body()).map_err(|error| Refusal::Malformed {
                detail: format!("checkpoint: {error}"),
            })?;
        let origin = checkpoint.origin();
        let keys = self
            .logs
            .get(origin)
            .ok_or_else(|| Refusal::UnknownOrigin {
                origin: origin.to_owned(),
            })?;
        request
            .note
            .verify(keys)
            .map_err(|error| Refusal::Forbidden {
                origin: origin.to_owned(),
                detail: error.to_string(),
            })?;
        if request.old_size > checkpoint.size() {
            return Err(Refusal::OldSizeBeyondSize {
                old: request.old_size,
                size: checkpoint.size(),
            });
        }
        if checkpoint.size() > MAX_TREE_SIZE {
            return Err(Refusal::Malformed {
                detail: format!("tree size beyond {MAX_TREE_SIZE}"),
            });
        }
        let new = TreeHead::of(&checkpoint);
        let mut latest = self.state.latest(origin).await?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            if let Err(refusal) = check_request(request.old_size, &request.proof, new, latest) {
                if matches!(
                    refusal,
                    Refusal::Inconsistent { .. } | Refusal::RootConflict { .. }
                ) {
                    // Possible evidence of a misbehaving log: keep the note.
                    tracing::warn!(
                        origin,
                        refusal = %refusal,
                        note = %request.note,
                        "witness refused a validly signed checkpoint"
                    );
                }
                return Err(refusal);
            }
            match self.state.compare_and_swap(origin, latest, new).await? {
                Swap::Stored => break,
                Swap::Conflict { current } if attempts < SWAP_ATTEMPTS => latest = current,
                Swap::Conflict { current } => {
                    return Err(Refusal::Conflict {
                        old: request.old_size,
                        latest_size: current.map_or(0, |head| head.size),
                    });
                }
            }
        }
        self.cosign(request.note.body())
    }

    /// A cosignature line of this witness on `body` at the current time.
    fn cosign(&self, body: &str) -> Result<Vec<NoteSignature>, Refusal> {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let mut note = Note::new(body).map_err(Refusal::Cosign)?;
        note.cosign(&self.name, &KeyRef(self.key.as_ref()), time)
            .map_err(Refusal::Cosign)?;
        Ok(note.signatures().to_vec())
    }
}

/// Checks a request of old size `old_size` with consistency proof `proof`
/// for the head `new` against the latest cosigned head (`None`: never
/// cosigned one for this origin). The old size is already known not to be
/// beyond the new size.
pub fn check_request(
    old_size: u64,
    proof: &[Digest],
    new: TreeHead,
    latest: Option<TreeHead>,
) -> Result<(), Refusal> {
    let latest_size = latest.map_or(0, |head| head.size);
    if old_size != latest_size {
        return Err(Refusal::Conflict {
            old: old_size,
            latest_size,
        });
    }
    let inconsistent = |detail: String| Refusal::Inconsistent { detail };
    match latest {
        None => {
            if !proof.is_empty() {
                return Err(inconsistent(
                    "the proof must be empty from old size 0".into(),
                ));
            }
            if new.size == 0 && new.root != EMPTY_ROOT {
                return Err(inconsistent("the empty tree has another root".into()));
            }
            Ok(())
        }
        Some(latest) if latest.size == new.size => {
            if latest.root != new.root {
                return Err(Refusal::RootConflict { size: new.size });
            }
            if !proof.is_empty() {
                return Err(inconsistent(
                    "the proof must be empty between equal sizes".into(),
                ));
            }
            Ok(())
        }
        Some(latest) => check_consistency(latest.size, &latest.root, new.size, &new.root, proof)
            .map_err(|error| inconsistent(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_head_ignores_extension_lines() {
        let body = "example.org/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nextension\n";
        let checkpoint = checkpoint_head(body).unwrap();
        assert_eq!(checkpoint.size(), 3);
        assert!(checkpoint_head("example.org/log\n3\n").is_err());
    }

    #[test]
    fn statuses_follow_the_specification() {
        let head = TreeHead {
            size: 5,
            root: Digest([1; 32]),
        };
        let other = TreeHead {
            size: 5,
            root: Digest([2; 32]),
        };
        let conflict = check_request(3, &[], head, Some(other)).unwrap_err();
        assert_eq!((conflict.status(), conflict.latest_size()), (409, Some(5)));
        let fork = check_request(5, &[], head, Some(other)).unwrap_err();
        assert!(matches!(fork, Refusal::RootConflict { size: 5 }));
        let proof_from_zero = check_request(0, &[Digest([0; 32])], head, None).unwrap_err();
        assert_eq!(proof_from_zero.status(), 422);
        check_request(5, &[], head, Some(head)).unwrap();
        check_request(0, &[], head, None).unwrap();
    }
}
