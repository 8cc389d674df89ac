//! Proof files (FORMAT.md section 8.3) and the trust policy that checks
//! their checkpoint notes (section 8.4).
//!
//! - [`InclusionProof`]: a C2SP `tlog-proof@v1` file proving that one record
//!   is in the tree of a signed checkpoint;
//! - [`ConsistencyProof`]: a C2SP tlog-witness `add-checkpoint` request body
//!   proving that a signed checkpoint's tree extends an older tree.
//!
//! Both end with the checkpoint note; [`TrustPolicy`] says which log key
//! must have signed it and how many of which witnesses must have cosigned it.
//!
//! ```
//! use audit_core::chain::proof::{ConsistencyProof, InclusionProof, TrustPolicy};
//! use audit_core::chain::tree::{leaf_hash, prove_consistency, prove_inclusion, tree_hash, TreeFrontier};
//! use audit_core::chain::tree_checkpoint::TreeCheckpoint;
//! use audit_core::chain::note::Vkey;
//! use audit_core::Digest;
//! use ed25519_dalek::SigningKey;
//!
//! let (log_key, witness_key) = (SigningKey::from_bytes(&[1; 32]), SigningKey::from_bytes(&[2; 32]));
//! let events: Vec<String> = (0..5).map(|n| format!("{{\"n\":{n}}}")).collect();
//! let mut stored: Vec<Digest> = Vec::new();
//! let mut frontier = TreeFrontier::new();
//! for event in &events {
//!     stored.extend(frontier.push_stored(leaf_hash(event.as_bytes())));
//! }
//! let checkpoint = TreeCheckpoint::new("example.org/log", 5, frontier.root())?;
//! let mut note = checkpoint.sign(&log_key)?;
//! note.cosign("witness.example/w1", &witness_key, 1_700_000_000)?;
//!
//! let policy = TrustPolicy::new(Vkey::ed25519("example.org/log", &log_key.verifying_key())?)
//!     .with_witnesses(vec![Vkey::cosignature("witness.example/w1", &witness_key.verifying_key())?], 1);
//!
//! let file = InclusionProof::new(2, prove_inclusion(5, 2, stored.as_slice())?, note.clone()).to_string();
//! let verified = InclusionProof::parse(file.as_bytes())?.verify_event(events[2].as_bytes(), &policy)?;
//! assert_eq!(verified.checkpoint.size(), 5);
//!
//! let old_root = tree_hash(3, stored.as_slice())?;
//! let request = ConsistencyProof::new(3, prove_consistency(3, 5, stored.as_slice())?, note).to_string();
//! ConsistencyProof::parse(request.as_bytes())?.verify(&old_root, &policy)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::chain::note::{KeyType, MAX_NOTE_BYTES, Note, NoteError, VerifiedSignature, Vkey};
use crate::chain::tree::{ProofError, check_consistency, check_inclusion, leaf_hash};
use crate::chain::tree_checkpoint::{
    TreeCheckpoint, TreeCheckpointError, parse_decimal, parse_hash,
};
use crate::digest::Digest;

/// The first line of an inclusion proof file, without its newline.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// The most hashes a proof may hold (the depth of a tree of 2^64 leaves).
pub const MAX_PROOF_HASHES: usize = 64;

/// The largest proof file accepted, in bytes.
pub const MAX_PROOF_FILE_BYTES: usize = MAX_NOTE_BYTES + 8 * 1024;

/// Why a proof file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofFileError {
    /// The file is larger than [`MAX_PROOF_FILE_BYTES`].
    #[error("proof file is {size} bytes, over the limit of {MAX_PROOF_FILE_BYTES}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// A line before the checkpoint note is malformed.
    #[error("proof file line {line}: {detail}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// More than [`MAX_PROOF_HASHES`] hash lines.
    #[error("proof file has more than {MAX_PROOF_HASHES} hashes")]
    TooManyHashes,
    /// The checkpoint note is refused.
    #[error("checkpoint note: {0}")]
    Note(#[from] NoteError),
    /// The checkpoint is refused (log signature, origin, body).
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] TreeCheckpointError),
    /// Fewer valid cosignatures of configured witnesses than the policy asks.
    #[error(
        "checkpoint has {valid} valid cosignatures of configured witnesses, the policy requires {required}"
    )]
    Quorum {
        /// Distinct configured witnesses with a valid cosignature.
        valid: usize,
        /// The policy's k.
        required: usize,
    },
    /// The proof does not verify against the checkpoint.
    #[error("proof: {0}")]
    Proof(#[from] ProofError),
}

/// Which log key must sign a checkpoint, and how many of which witnesses
/// must cosign it ("at least k of these n").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPolicy {
    log: Vkey,
    witnesses: Vec<Vkey>,
    quorum: usize,
}

/// A checkpoint whose note satisfied a [`TrustPolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// The checkpoint.
    pub checkpoint: TreeCheckpoint,
    /// The valid cosignatures of configured witnesses, in note order.
    pub cosignatures: Vec<VerifiedSignature>,
}

impl TrustPolicy {
    /// Trusts checkpoints signed by the log key `log`, with no witness requirement.
    pub fn new(log: Vkey) -> Self {
        Self {
            log,
            witnesses: Vec::new(),
            quorum: 0,
        }
    }

    /// Also requires cosignatures of at least `quorum` distinct witnesses
    /// among `witnesses` (cosignature vkeys, type 0x04; others never count).
    pub fn with_witnesses(mut self, witnesses: Vec<Vkey>, quorum: usize) -> Self {
        self.witnesses = witnesses;
        self.quorum = quorum;
        self
    }

    /// The log key.
    pub fn log(&self) -> &Vkey {
        &self.log
    }

    /// Checks a checkpoint note: the log's signature (see
    /// [`TreeCheckpoint::verify`]), then the cosignatures. Lines of unknown
    /// keys are ignored; a line of a configured witness that does not verify
    /// rejects the note.
    pub fn verify_note(&self, note: &Note) -> Result<VerifiedCheckpoint, ProofFileError> {
        let checkpoint = TreeCheckpoint::verify(note, &self.log)?;
        let witnesses: Vec<Vkey> = self
            .witnesses
            .iter()
            .filter(|vkey| vkey.key_type() == KeyType::Cosignature)
            .cloned()
            .collect();
        let cosignatures = match note.verify(&witnesses) {
            Ok(verified) => verified,
            Err(NoteError::NoKnownSignature) => Vec::new(),
            Err(error) => return Err(error.into()),
        };
        if cosignatures.len() < self.quorum {
            return Err(ProofFileError::Quorum {
                valid: cosignatures.len(),
                required: self.quorum,
            });
        }
        Ok(VerifiedCheckpoint {
            checkpoint,
            cosignatures,
        })
    }
}

/// Reads `\n`-terminated lines of the head of a proof file.
struct Lines<'a> {
    rest: &'a [u8],
    number: usize,
}

impl<'a> Lines<'a> {
    fn next_line(&mut self) -> Result<&'a str, ProofFileError> {
        self.number += 1;
        let end = self
            .rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.malformed("line does not end in a newline"))?;
        let line = std::str::from_utf8(&self.rest[..end])
            .map_err(|_| self.malformed("line is not UTF-8"))?;
        self.rest = &self.rest[end + 1..];
        Ok(line)
    }

    fn malformed(&self, detail: &str) -> ProofFileError {
        ProofFileError::Malformed {
            line: self.number,
            detail: detail.to_owned(),
        }
    }

    /// Hash lines up to the empty line, then the note.
    fn hashes_and_note(mut self) -> Result<(Vec<Digest>, Note), ProofFileError> {
        let mut hashes = Vec::new();
        loop {
            let line = self.next_line()?;
            if line.is_empty() {
                break;
            }
            if hashes.len() == MAX_PROOF_HASHES {
                return Err(ProofFileError::TooManyHashes);
            }
            hashes.push(
                parse_hash(line)
                    .ok_or_else(|| self.malformed("not padded standard base64 of 32 bytes"))?,
            );
        }
        Ok((hashes, Note::parse(self.rest)?))
    }
}

fn check_file_size(text: &[u8]) -> Result<(), ProofFileError> {
    if text.len() > MAX_PROOF_FILE_BYTES {
        return Err(ProofFileError::TooLarge { size: text.len() });
    }
    Ok(())
}

/// An inclusion proof file (`c2sp.org/tlog-proof@v1`, extension `.tlog-proof`).
/// Its [`Display`](fmt::Display) is the file's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// Optional opaque data (`extra <base64>` line).
    pub extra: Option<Vec<u8>>,
    /// The leaf index, `seq - 1`.
    pub index: u64,
    /// The RFC 6962 audit path.
    pub proof: Vec<Digest>,
    /// The checkpoint note the path leads to.
    pub note: Note,
}

/// What a verified inclusion proof establishes.
pub type VerifiedInclusion = VerifiedCheckpoint;

impl InclusionProof {
    /// A proof file without `extra` data.
    pub fn new(index: u64, proof: Vec<Digest>, note: Note) -> Self {
        Self {
            extra: None,
            index,
            proof,
            note,
        }
    }

    /// Parses a proof file strictly.
    pub fn parse(text: &[u8]) -> Result<Self, ProofFileError> {
        check_file_size(text)?;
        let mut lines = Lines {
            rest: text,
            number: 0,
        };
        if lines.next_line()? != TLOG_PROOF_HEADER {
            return Err(lines.malformed(&format!("expected {TLOG_PROOF_HEADER:?}")));
        }
        let mut line = lines.next_line()?;
        let mut extra = None;
        if let Some(data) = line.strip_prefix("extra ") {
            extra = Some(
                BASE64
                    .decode(data)
                    .map_err(|_| lines.malformed("extra is not padded standard base64"))?,
            );
            line = lines.next_line()?;
        }
        let index = line
            .strip_prefix("index ")
            .and_then(parse_decimal)
            .ok_or_else(|| lines.malformed("expected \"index <decimal>\""))?;
        let (proof, note) = lines.hashes_and_note()?;
        Ok(Self {
            extra,
            index,
            proof,
            note,
        })
    }

    /// Verifies the note under `policy` and the proof that the leaf whose
    /// [`leaf_hash`] is `leaf` is at `index` in the checkpoint's tree.
    pub fn verify(
        &self,
        leaf: &Digest,
        policy: &TrustPolicy,
    ) -> Result<VerifiedInclusion, ProofFileError> {
        let verified = policy.verify_note(&self.note)?;
        check_inclusion(
            self.index,
            leaf,
            verified.checkpoint.size(),
            &verified.checkpoint.root(),
            &self.proof,
        )?;
        Ok(verified)
    }

    /// [`verify`](Self::verify) given the leaf data `E` (canonical event bytes).
    pub fn verify_event(
        &self,
        event_json: &[u8],
        policy: &TrustPolicy,
    ) -> Result<VerifiedInclusion, ProofFileError> {
        self.verify(&leaf_hash(event_json), policy)
    }
}

impl fmt::Display for InclusionProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{TLOG_PROOF_HEADER}")?;
        if let Some(extra) = &self.extra {
            writeln!(f, "extra {}", BASE64.encode(extra))?;
        }
        writeln!(f, "index {}", self.index)?;
        for hash in &self.proof {
            writeln!(f, "{}", BASE64.encode(hash.as_bytes()))?;
        }
        writeln!(f)?;
        write!(f, "{}", self.note)
    }
}

/// A consistency proof in the shape of a C2SP tlog-witness `add-checkpoint`
/// request body. Its [`Display`](fmt::Display) is the body's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The old tree size `M`.
    pub old_size: u64,
    /// The RFC 6962 consistency proof from `M` to the checkpoint's size.
    pub proof: Vec<Digest>,
    /// The new checkpoint note.
    pub note: Note,
}

impl ConsistencyProof {
    /// A consistency proof request.
    pub fn new(old_size: u64, proof: Vec<Digest>, note: Note) -> Self {
        Self {
            old_size,
            proof,
            note,
        }
    }

    /// Parses a request body strictly.
    pub fn parse(text: &[u8]) -> Result<Self, ProofFileError> {
        check_file_size(text)?;
        let mut lines = Lines {
            rest: text,
            number: 0,
        };
        let line = lines.next_line()?;
        let old_size = line
            .strip_prefix("old ")
            .and_then(parse_decimal)
            .ok_or_else(|| lines.malformed("expected \"old <decimal>\""))?;
        let (proof, note) = lines.hashes_and_note()?;
        Ok(Self {
            old_size,
            proof,
            note,
        })
    }

    /// Verifies the note under `policy` and that its tree extends the tree
    /// of `old_size` records whose root is `old_root`.
    pub fn verify(
        &self,
        old_root: &Digest,
        policy: &TrustPolicy,
    ) -> Result<VerifiedCheckpoint, ProofFileError> {
        let verified = policy.verify_note(&self.note)?;
        check_consistency(
            self.old_size,
            old_root,
            verified.checkpoint.size(),
            &verified.checkpoint.root(),
            &self.proof,
        )?;
        Ok(verified)
    }
}

impl fmt::Display for ConsistencyProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "old {}", self.old_size)?;
        for hash in &self.proof {
            writeln!(f, "{}", BASE64.encode(hash.as_bytes()))?;
        }
        writeln!(f)?;
        write!(f, "{}", self.note)
    }
}
