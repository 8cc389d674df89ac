//! Error types of the core: each says what is wrong and where.

use std::path::PathBuf;

/// Why an event could not be built or parsed (FORMAT.md section 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// `type` is empty or longer than 256 bytes.
    #[error("event member `type` must be 1 to {max} bytes, got {len} bytes")]
    TypeLength {
        /// Byte length of the offending value.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `actor` is longer than 1024 bytes.
    #[error("event member `actor` must be at most {max} bytes, got {len} bytes")]
    ActorLength {
        /// Byte length of the offending value.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `id` is not a lowercase hyphenated UUID.
    #[error("event member `id` must be a lowercase hyphenated UUID, got {value:?}")]
    InvalidId {
        /// The offending value.
        value: String,
    },
    /// `time` is not `YYYY-MM-DDTHH:MM:SS.ffffffZ` or not a real instant.
    #[error("event member `time` must be UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ`, got {value:?}")]
    InvalidTime {
        /// The offending value.
        value: String,
    },
    /// An integer outside ±2^53, which a double cannot hold exactly.
    #[error(
        "number {number} at {path} is an integer beyond ±2^53 and cannot be represented exactly"
    )]
    UnsafeInteger {
        /// JSONPath of the number, e.g. `$.payload.count`.
        path: String,
        /// The number as written.
        number: String,
    },
    /// The canonical bytes exceed the configured limit.
    #[error("canonical event is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Canonical size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Stored event bytes are not JSON at all.
    #[error("event is not valid JSON: {detail}")]
    NotJson {
        /// The parser's message.
        detail: String,
    },
    /// The event is not an object with exactly the five members.
    #[error(
        "event must be a JSON object with exactly the members id, type, actor, time, payload: {detail}"
    )]
    WrongShape {
        /// What is missing, extra or of the wrong type.
        detail: String,
    },
    /// Stored event bytes are valid but not in canonical form.
    #[error("event bytes are not RFC 8785 canonical")]
    NotCanonical,
    /// The JSON value could not be serialised.
    #[error("event cannot be serialised: {detail}")]
    NotSerializable {
        /// The serialiser's message.
        detail: String,
    },
}

/// Why a chain name is refused (FORMAT.md section 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("chain name must be 1 to 128 bytes of [A-Za-z0-9._:-], got {value:?}")]
pub struct ChainIdError {
    /// The offending value.
    pub value: String,
}

/// Why a key could not be generated, loaded or saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A secret key file that others may read.
    #[error(
        "secret key file {path} has mode {mode:04o}: group or others can read it; run `chmod 600 {path}`"
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The text is not a PKCS#8 Ed25519 secret key in PEM.
    #[error(
        "{origin}: not an Ed25519 PKCS#8 PEM secret key (`-----BEGIN PRIVATE KEY-----`): {detail}"
    )]
    InvalidSecretKey {
        /// The file or source the key came from.
        origin: String,
        /// The decoder's message.
        detail: String,
    },
    /// The text is not an SPKI Ed25519 public key in PEM.
    #[error(
        "{origin}: not an Ed25519 SubjectPublicKeyInfo PEM public key (`-----BEGIN PUBLIC KEY-----`): {detail}"
    )]
    InvalidPublicKey {
        /// The file or source the key came from.
        origin: String,
        /// The decoder's message.
        detail: String,
    },
    /// A public key of small order, which cannot be trusted.
    #[error("{origin}: weak Ed25519 public key (small order) refused")]
    WeakPublicKey {
        /// The file or source the key came from.
        origin: String,
    },
    /// Refused to overwrite an existing key file.
    #[error("key file {path} already exists; move it away or choose another directory")]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
}

/// Why a JSONL line or checkpoint object could not be decoded (FORMAT.md section 7).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct JsonlError {
    /// Which object (e.g. `record line`, `checkpoint`).
    pub what: &'static str,
    /// What is wrong with it.
    pub detail: String,
}
