//! Checkpoints (FORMAT.md section 3): signed statements of a chain head.

use super::{ChainHead, ChainId, push_str, sha256};
use crate::digest::Digest;
use crate::keys::AuditSigner;

/// "Chain `chain` had head `head` at `seq` at `time`", signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The chain.
    pub chain: ChainId,
    /// Seq of the head.
    pub seq: u64,
    /// `record_hash` at `seq`.
    pub head: Digest,
    /// When the checkpoint was made, in the event time format.
    pub time: String,
    /// Key id of the signing key.
    pub key_id: String,
    /// Ed25519 signature of the checkpoint hash.
    pub sig: [u8; 64],
}

impl Checkpoint {
    /// Signs `head` of `chain` now.
    pub fn sign(chain: &ChainId, head: ChainHead, signer: &AuditSigner) -> Self {
        Self::sign_at(chain, head, crate::event::now_utc(), signer)
    }

    /// Signs `head` of `chain` with the given time.
    pub fn sign_at(chain: &ChainId, head: ChainHead, time: String, signer: &AuditSigner) -> Self {
        let hash = checkpoint_hash(chain, head.seq, &head.hash, &time);
        Self {
            chain: chain.clone(),
            seq: head.seq,
            head: head.hash,
            time,
            key_id: signer.key_id().to_string(),
            sig: signer.sign(&hash),
        }
    }

    /// The hash this checkpoint's signature covers.
    pub fn hash(&self) -> Digest {
        checkpoint_hash(&self.chain, self.seq, &self.head, &self.time)
    }
}

/// `checkpoint_hash = H("audit-chain/v1/checkpoint" || 0x00 || str(chain) || u64be(seq) || head || str(time))`.
pub fn checkpoint_hash(chain: &ChainId, seq: u64, head: &Digest, time: &str) -> Digest {
    let mut buffer = Vec::with_capacity(128);
    buffer.extend_from_slice(b"audit-chain/v1/checkpoint\0");
    push_str(&mut buffer, chain.as_str());
    buffer.extend_from_slice(&seq.to_be_bytes());
    buffer.extend_from_slice(head.as_bytes());
    push_str(&mut buffer, time);
    sha256(&buffer)
}
