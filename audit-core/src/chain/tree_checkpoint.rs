//! Tree checkpoints (FORMAT.md section 8.2): the C2SP `tlog-checkpoint`
//! body `<origin>\n<size>\n<base64 root>\n`, signed as a [`Note`] by the
//! chain's Ed25519 key under the key name `origin`.
//!
//! ```
//! use audit_core::chain::ChainId;
//! use audit_core::chain::tree::EMPTY_ROOT;
//! use audit_core::chain::tree_checkpoint::{TreeCheckpoint, default_origin};
//! use audit_core::keys::KeyId;
//! use ed25519_dalek::SigningKey;
//!
//! let key = SigningKey::from_bytes(&[7; 32]);
//! let origin = default_origin(&KeyId::of(&key.verifying_key()), &ChainId::new("default")?);
//! let checkpoint = TreeCheckpoint::new(&origin, 0, EMPTY_ROOT)?;
//! let note = checkpoint.sign(&key)?;
//! let vkey = checkpoint.log_vkey(&key.verifying_key())?;
//! assert_eq!(TreeCheckpoint::verify(&note, &vkey)?, checkpoint);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::VerifyingKey;

use crate::chain::ChainId;
use crate::chain::note::{KeyType, Note, NoteError, NoteSigningKey, Vkey, check_key_name};
use crate::digest::Digest;
use crate::keys::KeyId;

/// Why a tree checkpoint is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TreeCheckpointError {
    /// The body is not exactly three lines each ending in `\n`.
    #[error("tree checkpoint body must be exactly three lines (origin, size, root), got {lines}")]
    WrongLineCount {
        /// Lines found (counting a last line without newline).
        lines: usize,
    },
    /// The origin is not a valid key name.
    #[error("tree checkpoint origin {origin:?} is not a valid key name")]
    InvalidOrigin {
        /// The offending origin.
        origin: String,
    },
    /// The size is not a decimal `u64` without leading zeros.
    #[error("tree checkpoint size {text:?} is not a decimal u64 without leading zeros")]
    InvalidSize {
        /// The offending line.
        text: String,
    },
    /// The root is not padded standard base64 of 32 bytes.
    #[error("tree checkpoint root {text:?} is not padded standard base64 of 32 bytes")]
    InvalidRoot {
        /// The offending line.
        text: String,
    },
    /// The note is not signed by the log's key.
    #[error("tree checkpoint note lacks a valid signature of the log key {vkey}")]
    LogSignatureMissing {
        /// The log's vkey.
        vkey: String,
    },
    /// The checkpoint's origin is not the log key's name.
    #[error("tree checkpoint origin {origin:?} is not the log key name {key_name:?}")]
    OriginMismatch {
        /// The checkpoint's origin.
        origin: String,
        /// The log key's name.
        key_name: String,
    },
    /// Two notes at one tree size disagree on the body: a fork.
    #[error("a different tree checkpoint is already stored at size {size}: the log forked")]
    DifferentBody {
        /// The tree size.
        size: u64,
    },
    /// The note itself is refused.
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// Merges a tree checkpoint note with the one already stored at its size:
/// the stored note with the new note's signature lines it lacks (a
/// cosignature gathered later). Refuses two different bodies.
pub fn merge_notes(stored: &str, new: &str) -> Result<String, TreeCheckpointError> {
    let mut merged = Note::parse(stored.as_bytes())?;
    let new = Note::parse(new.as_bytes())?;
    if merged.body() != new.body() {
        let size = TreeCheckpoint::parse_body(new.body())
            .map(|checkpoint| checkpoint.size())
            .unwrap_or_default();
        return Err(TreeCheckpointError::DifferentBody { size });
    }
    for signature in new.signatures() {
        let known = merged
            .signatures()
            .iter()
            .any(|s| s.name == signature.name && s.key_hash == signature.key_hash);
        if !known {
            merged.push_signature(signature.clone())?;
        }
    }
    Ok(merged.to_string())
}

/// `deferred-audit/<key_id>/<chain>`, the default origin of a chain's tree.
pub fn default_origin(key_id: &KeyId, chain: &ChainId) -> String {
    format!("deferred-audit/{key_id}/{}", chain.as_str())
}

/// Parses a decimal `u64` without sign or leading zeros.
pub(crate) fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    text.parse().ok()
}

/// Decodes padded standard base64 of exactly 32 bytes.
pub(crate) fn parse_hash(text: &str) -> Option<Digest> {
    let raw = BASE64.decode(text).ok()?;
    Digest::from_slice(&raw).ok()
}

/// A tree head: origin, size and root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeCheckpoint {
    origin: String,
    size: u64,
    root: Digest,
}

impl TreeCheckpoint {
    /// A checkpoint, refusing an origin that is not a valid key name.
    pub fn new(origin: &str, size: u64, root: Digest) -> Result<Self, TreeCheckpointError> {
        check_key_name(origin).map_err(|_| TreeCheckpointError::InvalidOrigin {
            origin: origin.to_owned(),
        })?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }

    /// The origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The tree size (the seq of the last record covered).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root at that size.
    pub fn root(&self) -> Digest {
        self.root
    }

    /// The body `<origin>\n<size>\n<base64 root>\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root.as_bytes())
        )
    }

    /// Parses a body strictly: exactly three lines, no extension lines.
    pub fn parse_body(body: &str) -> Result<Self, TreeCheckpointError> {
        let Some(content) = body.strip_suffix('\n') else {
            return Err(TreeCheckpointError::WrongLineCount {
                lines: body.split('\n').count(),
            });
        };
        let lines: Vec<&str> = content.split('\n').collect();
        let [origin, size, root] = lines.as_slice() else {
            return Err(TreeCheckpointError::WrongLineCount { lines: lines.len() });
        };
        let size = parse_decimal(size).ok_or_else(|| TreeCheckpointError::InvalidSize {
            text: (*size).to_owned(),
        })?;
        let root = parse_hash(root).ok_or_else(|| TreeCheckpointError::InvalidRoot {
            text: (*root).to_owned(),
        })?;
        Self::new(origin, size, root)
    }

    /// The log's vkey for this origin and public key.
    pub fn log_vkey(&self, key: &VerifyingKey) -> Result<Vkey, NoteError> {
        Vkey::ed25519(&self.origin, key)
    }

    /// The checkpoint note signed by the log's key under the key name `origin`.
    pub fn sign(&self, key: &impl NoteSigningKey) -> Result<Note, NoteError> {
        let mut note = Note::new(self.body())?;
        note.sign(&self.origin, key)?;
        Ok(note)
    }

    /// Verifies a checkpoint note: it carries a valid signature of the log
    /// key `log` (an Ed25519 vkey whose name is the origin), no invalid
    /// signature of that key, and a well-formed body. Other signature lines
    /// are ignored here (see [`Note::verify`] for cosignatures).
    pub fn verify(note: &Note, log: &Vkey) -> Result<Self, TreeCheckpointError> {
        let missing = || TreeCheckpointError::LogSignatureMissing {
            vkey: log.to_string(),
        };
        if log.key_type() != KeyType::Ed25519 {
            return Err(missing());
        }
        match note.verify(std::slice::from_ref(log)) {
            Ok(_) => {}
            Err(NoteError::NoKnownSignature) => return Err(missing()),
            Err(error) => return Err(error.into()),
        }
        let checkpoint = Self::parse_body(note.body())?;
        if checkpoint.origin != log.name() {
            return Err(TreeCheckpointError::OriginMismatch {
                origin: checkpoint.origin,
                key_name: log.name().to_owned(),
            });
        }
        Ok(checkpoint)
    }
}
