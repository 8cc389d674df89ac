//! Records (links of a chain), chain names and chain heads.

use std::fmt;
use std::sync::Arc;

use super::{push_str, sha256};
use crate::digest::Digest;
use crate::error::ChainIdError;
use crate::shared_str::SharedStr;

/// Maximum byte length of a chain name.
pub const MAX_CHAIN_BYTES: usize = 128;

/// A validated chain name: 1 to 128 bytes of `[A-Za-z0-9._:-]`. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChainId(Arc<str>);

impl ChainId {
    /// Validates a chain name.
    pub fn new(name: impl AsRef<str>) -> Result<Self, ChainIdError> {
        let name = name.as_ref();
        let valid = !name.is_empty()
            && name.len() <= MAX_CHAIN_BYTES
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"._:-".contains(&byte));
        if valid {
            Ok(Self(Arc::from(name)))
        } else {
            Err(ChainIdError {
                value: name.to_owned(),
            })
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ChainId {
    /// The chain named `default`.
    fn default() -> Self {
        Self(Arc::from("default"))
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainId({:?})", &*self.0)
    }
}

/// The head of a chain: the last `seq` and its `record_hash`.
/// An empty chain has seq 0 and hash `ZERO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainHead {
    /// Seq of the last record (0 when empty).
    pub seq: u64,
    /// `record_hash` of the last record (`ZERO` when empty).
    pub hash: Digest,
}

impl ChainHead {
    /// The head of an empty chain.
    pub const EMPTY: ChainHead = ChainHead {
        seq: 0,
        hash: Digest::ZERO,
    };
}

/// The copies of the event's members that SQL storage keeps in columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventColumns {
    /// `event_id`.
    pub id: SharedStr,
    /// `event_type`.
    pub event_type: SharedStr,
    /// `actor`.
    pub actor: SharedStr,
    /// `event_time`.
    pub time: SharedStr,
}

/// One record as stored: what a sink writes and a verifier reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The chain.
    pub chain: ChainId,
    /// Position in the chain, from 1.
    pub seq: u64,
    /// The canonical event bytes `E`, byte for byte (sealed records share
    /// them with their event).
    pub event_json: SharedStr,
    /// Column copies of the event's members (SQL storage), if stored.
    pub columns: Option<EventColumns>,
    /// `H(E)` as stored.
    pub event_hash: Digest,
    /// `record_hash` of the previous record as stored.
    pub prev: Digest,
    /// `record_hash` as stored.
    pub hash: Digest,
    /// Key id of the signing key, when signed.
    pub key_id: Option<SharedStr>,
    /// Ed25519 signature of `hash`, when signed.
    pub sig: Option<[u8; 64]>,
}

impl Record {
    /// The chain head this record makes.
    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.hash,
        }
    }
}

/// `record_hash = H("audit-chain/v1/record" || 0x00 || str(chain) || u64be(seq) || prev || event_hash)`.
pub fn record_hash(chain: &ChainId, seq: u64, prev: &Digest, event_hash: &Digest) -> Digest {
    let mut buffer = Vec::with_capacity(22 + 4 + chain.as_str().len() + 8 + 64);
    buffer.extend_from_slice(b"audit-chain/v1/record\0");
    push_str(&mut buffer, chain.as_str());
    buffer.extend_from_slice(&seq.to_be_bytes());
    buffer.extend_from_slice(prev.as_bytes());
    buffer.extend_from_slice(event_hash.as_bytes());
    sha256(&buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_follow_the_format() {
        assert!(ChainId::new("prod:eu-1.audit_x").is_ok());
        assert!(ChainId::new("a".repeat(128)).is_ok());
        for bad in ["", "with space", "slash/no", "é", &"a".repeat(129)] {
            let error = ChainId::new(bad).unwrap_err();
            assert_eq!(error.value, bad);
        }
    }
}
