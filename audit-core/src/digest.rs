//! The 32-byte SHA-256 digest used for event, record and checkpoint hashes.

use std::fmt;

/// A SHA-256 digest (`H(x)` of FORMAT.md), shown as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// `ZERO`: the `prev` of seq 1.
    pub const ZERO: Digest = Digest([0; 32]);

    /// Lowercase hexadecimal, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hexadecimal characters.
    pub fn from_hex(text: &str) -> Result<Self, DigestError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| DigestError {
            detail: format!("expected 64 hex characters, got {text:?}"),
        })?;
        Ok(Digest(bytes))
    }

    /// Takes exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, DigestError> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| DigestError {
            detail: format!("expected 32 bytes, got {}", bytes.len()),
        })?;
        Ok(Digest(array))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A digest of the wrong length or encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest: {detail}")]
pub struct DigestError {
    /// What is wrong.
    pub detail: String,
}
