//! C2SP signed notes (`c2sp.org/signed-note`) with Ed25519 log signatures
//! and Ed25519 witness cosignatures (`c2sp.org/tlog-cosignature`), the
//! envelope of tree checkpoints (FORMAT.md sections 8.2 and 8.4).
//!
//! A note is a UTF-8 body ending in `\n`, an empty line, then one or more
//! signature lines `— <key name> <base64(key_hash || payload)>\n`. A
//! verifier knows keys as *vkeys* (`<name>+<hex key_hash>+<base64(type || public key)>`)
//! and checks the lines whose name and key hash match one of them; lines of
//! unknown keys are ignored, and a line of a known key that does not verify
//! rejects the whole note.
//!
//! ```
//! use audit_core::chain::note::{Note, Vkey};
//! use ed25519_dalek::SigningKey;
//!
//! let log_key = SigningKey::from_bytes(&[7; 32]);
//! let witness_key = SigningKey::from_bytes(&[9; 32]);
//! let mut note = Note::new("example.com/log\n3\nAAAA\n")?;
//! note.sign("example.com/log", &log_key)?;
//! note.cosign("witness.example/w1", &witness_key, 1_700_000_000)?;
//! let text = note.to_string();
//!
//! let log = Vkey::ed25519("example.com/log", &log_key.verifying_key())?;
//! let witness = Vkey::cosignature("witness.example/w1", &witness_key.verifying_key())?;
//! let parsed = Note::parse(text.as_bytes())?;
//! let verified = parsed.verify(&[log.clone(), witness])?;
//! assert_eq!(verified.len(), 2);
//! assert_eq!(verified[1].time, Some(1_700_000_000));
//! assert_eq!(Vkey::parse(&log.to_string())?, log);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

/// The largest note accepted by [`Note::parse`], in bytes.
pub const MAX_NOTE_BYTES: usize = 1 << 20;

/// The most signature lines a note may carry.
pub const MAX_SIGNATURES: usize = 100;

/// The prefix of a signature line: U+2014 EM DASH, then a space.
pub const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Signature type byte of an Ed25519 log signature (signed-note).
pub const ED25519_TYPE: u8 = 0x01;

/// Signature type byte of an Ed25519 witness cosignature (tlog-cosignature).
pub const COSIGNATURE_TYPE: u8 = 0x04;

/// Why a note, a vkey or a signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The note is larger than [`MAX_NOTE_BYTES`].
    #[error("note is {size} bytes, over the limit of {MAX_NOTE_BYTES}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// The note is not valid UTF-8.
    #[error("note is not valid UTF-8")]
    NotUtf8,
    /// The note holds an ASCII control character other than `\n`.
    #[error("note holds control character {byte:#04x} at byte {offset}")]
    ControlCharacter {
        /// The character.
        byte: u8,
        /// Its byte offset.
        offset: usize,
    },
    /// The body is empty or does not end in `\n`.
    #[error("note body must be non-empty and end in a newline")]
    BodyNotTerminated,
    /// No empty line separates the body from the signatures.
    #[error("note has no empty line before its signature lines")]
    NoSignatureBlock,
    /// The note has no signature lines, or its last one lacks its newline.
    #[error("note signature block is empty or does not end in a newline")]
    SignaturesNotTerminated,
    /// A signature line is malformed.
    #[error("note signature line {line}: {detail}")]
    MalformedSignature {
        /// 1-based number among the signature lines.
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// More than [`MAX_SIGNATURES`] signature lines.
    #[error("note has more than {MAX_SIGNATURES} signature lines")]
    TooManySignatures,
    /// Two signature lines of the same key (name and key hash).
    #[error("note has two signatures of key {name}+{key_hash:08x}")]
    DuplicateSignature {
        /// The key name.
        name: String,
        /// The key hash.
        key_hash: u32,
    },
    /// A key name is empty, holds a Unicode space or a `+`.
    #[error("invalid key name {name:?}: must be non-empty, without spaces or '+'")]
    InvalidKeyName {
        /// The offending name.
        name: String,
    },
    /// A vkey is not `<name>+<8 hex digits>+<base64>` of a known key type.
    #[error("invalid verifier key {vkey:?}: {detail}")]
    InvalidVkey {
        /// The offending vkey.
        vkey: String,
        /// What is wrong.
        detail: String,
    },
    /// A signature line of a known key does not verify.
    #[error("signature of {name}+{key_hash:08x} does not verify")]
    InvalidSignature {
        /// The key name.
        name: String,
        /// The key hash.
        key_hash: u32,
    },
    /// No signature line belongs to any of the given keys.
    #[error("note carries no signature of a known key")]
    NoKnownSignature,
}

/// The kind of key behind a vkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyType {
    /// An Ed25519 note signature over the body (type 0x01): a log's key.
    Ed25519,
    /// An Ed25519 timestamped cosignature (type 0x04): a witness's key.
    Cosignature,
}

impl KeyType {
    /// The type byte.
    pub fn byte(self) -> u8 {
        match self {
            KeyType::Ed25519 => ED25519_TYPE,
            KeyType::Cosignature => COSIGNATURE_TYPE,
        }
    }
}

/// Checks a note key name: non-empty, no Unicode white space, no `+`.
pub fn check_key_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(NoteError::InvalidKeyName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// `H(name || 0x0A || type || public key)[0..4]` as a big-endian `u32`.
pub fn key_hash(name: &str, key_type: KeyType, key: &VerifyingKey) -> u32 {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([0x0A, key_type.byte()]);
    hasher.update(key.as_bytes());
    let hash = hasher.finalize();
    u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]])
}

/// The message a witness signs for a cosignature at `time`:
/// `"cosignature/v1\ntime <time>\n" || body`.
pub fn cosignature_message(body: &str, time: u64) -> Vec<u8> {
    let mut message = format!("cosignature/v1\ntime {time}\n").into_bytes();
    message.extend_from_slice(body.as_bytes());
    message
}

/// A key that signs note bodies with Ed25519. Implemented for
/// [`ed25519_dalek::SigningKey`].
pub trait NoteSigningKey {
    /// The public half.
    fn verifying_key(&self) -> VerifyingKey;
    /// `Ed25519-Sign(sk, message)`.
    fn sign_message(&self, message: &[u8]) -> [u8; 64];
}

impl NoteSigningKey for SigningKey {
    fn verifying_key(&self) -> VerifyingKey {
        SigningKey::verifying_key(self)
    }

    fn sign_message(&self, message: &[u8]) -> [u8; 64] {
        self.sign(message).to_bytes()
    }
}

/// A verifier key: a key name, its key hash, its type and Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vkey {
    name: String,
    key_hash: u32,
    key_type: KeyType,
    key: VerifyingKey,
}

impl Vkey {
    /// The vkey of a log's Ed25519 key (type 0x01) under key name `name`.
    pub fn ed25519(name: &str, key: &VerifyingKey) -> Result<Self, NoteError> {
        Self::new(name, KeyType::Ed25519, key)
    }

    /// The vkey of a witness's cosignature key (type 0x04) under key name `name`.
    pub fn cosignature(name: &str, key: &VerifyingKey) -> Result<Self, NoteError> {
        Self::new(name, KeyType::Cosignature, key)
    }

    /// A vkey of the given type.
    pub fn new(name: &str, key_type: KeyType, key: &VerifyingKey) -> Result<Self, NoteError> {
        check_key_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key_hash: key_hash(name, key_type, key),
            key_type,
            key: *key,
        })
    }

    /// Parses `<name>+<8 hex digits>+<base64(type || 32-byte key)>`,
    /// checking the key hash.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let invalid = |detail: &str| NoteError::InvalidVkey {
            vkey: text.to_owned(),
            detail: detail.to_owned(),
        };
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(hash_hex), Some(key64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("expected <name>+<hex key hash>+<base64 key>"));
        };
        check_key_name(name)?;
        if hash_hex.len() != 8 || !hash_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("key hash must be 8 hexadecimal digits"));
        }
        let claimed = u32::from_str_radix(hash_hex, 16)
            .map_err(|_| invalid("key hash is not hexadecimal"))?;
        let raw = BASE64
            .decode(key64)
            .map_err(|_| invalid("key is not padded standard base64"))?;
        let (type_byte, key_bytes) = raw.split_first().ok_or_else(|| invalid("key is empty"))?;
        let key_type = match *type_byte {
            ED25519_TYPE => KeyType::Ed25519,
            COSIGNATURE_TYPE => KeyType::Cosignature,
            other => return Err(invalid(&format!("unknown key type {other:#04x}"))),
        };
        let key_bytes: &[u8; 32] = key_bytes
            .try_into()
            .map_err(|_| invalid("an Ed25519 public key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(key_bytes)
            .map_err(|_| invalid("not a valid Ed25519 public key"))?;
        let vkey = Self::new(name, key_type, &key)?;
        if vkey.key_hash != claimed {
            return Err(invalid(&format!(
                "key hash {claimed:08x} does not match the key's {:08x}",
                vkey.key_hash
            )));
        }
        Ok(vkey)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key hash.
    pub fn key_hash(&self) -> u32 {
        self.key_hash
    }

    /// The key type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The Ed25519 public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Whether a signature line is by this key (same name and key hash).
    pub fn matches(&self, signature: &NoteSignature) -> bool {
        signature.name == self.name && signature.key_hash == self.key_hash
    }

    /// Verifies a signature line of this key over `body`; returns the
    /// cosignature's time for a cosignature key.
    pub fn verify(&self, body: &str, signature: &NoteSignature) -> Result<Option<u64>, NoteError> {
        let invalid = || NoteError::InvalidSignature {
            name: signature.name.clone(),
            key_hash: signature.key_hash,
        };
        if !self.matches(signature) {
            return Err(invalid());
        }
        let (message, sig_bytes, time) = match self.key_type {
            KeyType::Ed25519 => (body.as_bytes().to_vec(), signature.payload.as_slice(), None),
            KeyType::Cosignature => {
                if signature.payload.len() != 8 + 64 {
                    return Err(invalid());
                }
                let (time_bytes, sig_bytes) = signature.payload.split_at(8);
                let mut be = [0u8; 8];
                be.copy_from_slice(time_bytes);
                let time = u64::from_be_bytes(be);
                (cosignature_message(body, time), sig_bytes, Some(time))
            }
        };
        let sig = Signature::from_slice(sig_bytes).map_err(|_| invalid())?;
        self.key
            .verify_strict(&message, &sig)
            .map_err(|_| invalid())?;
        Ok(time)
    }
}

impl fmt::Display for Vkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::with_capacity(33);
        raw.push(self.key_type.byte());
        raw.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.key_hash,
            BASE64.encode(raw)
        )
    }
}

/// One signature line: key name, key hash, and the bytes after the key hash
/// (an Ed25519 signature, or `u64be(time) || signature` for a cosignature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key hash (first 4 bytes of the decoded line, big-endian).
    pub key_hash: u32,
    /// The signature bytes after the key hash.
    pub payload: Vec<u8>,
}

impl NoteSignature {
    fn parse(line: &str, number: usize) -> Result<Self, NoteError> {
        let malformed = |detail: &str| NoteError::MalformedSignature {
            line: number,
            detail: detail.to_owned(),
        };
        let rest = line
            .strip_prefix(SIGNATURE_PREFIX)
            .ok_or_else(|| malformed("must start with U+2014 and a space"))?;
        let (name, sig64) = rest
            .split_once(' ')
            .ok_or_else(|| malformed("expected a key name, a space and base64"))?;
        check_key_name(name).map_err(|_| malformed(&format!("invalid key name {name:?}")))?;
        let raw = BASE64
            .decode(sig64)
            .map_err(|_| malformed("signature is not padded standard base64"))?;
        if raw.len() < 5 {
            return Err(malformed(
                "signature is shorter than a key hash and one byte",
            ));
        }
        let (hash, payload) = raw.split_at(4);
        Ok(Self {
            name: name.to_owned(),
            key_hash: u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]),
            payload: payload.to_vec(),
        })
    }
}

impl fmt::Display for NoteSignature {
    /// The signature line, without its newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::with_capacity(4 + self.payload.len());
        raw.extend_from_slice(&self.key_hash.to_be_bytes());
        raw.extend_from_slice(&self.payload);
        write!(f, "{SIGNATURE_PREFIX}{} {}", self.name, BASE64.encode(raw))
    }
}

/// A signature line that verified under one of the given vkeys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// The key name.
    pub name: String,
    /// The key hash.
    pub key_hash: u32,
    /// The key type.
    pub key_type: KeyType,
    /// The cosignature's time (POSIX seconds), for a cosignature.
    pub time: Option<u64>,
}

/// A signed note: its body and signature lines. Its [`Display`](fmt::Display)
/// is the note text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    body: String,
    signatures: Vec<NoteSignature>,
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if let Some((offset, byte)) = text
        .bytes()
        .enumerate()
        .find(|&(_, byte)| byte < 0x20 && byte != b'\n')
    {
        return Err(NoteError::ControlCharacter { byte, offset });
    }
    Ok(())
}

impl Note {
    /// An unsigned note with this body (non-empty, ending in `\n`, no
    /// control characters but `\n`).
    pub fn new(body: impl Into<String>) -> Result<Self, NoteError> {
        let body = body.into();
        if body.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge { size: body.len() });
        }
        check_text(&body)?;
        if !body.ends_with('\n') {
            return Err(NoteError::BodyNotTerminated);
        }
        Ok(Self {
            body,
            signatures: Vec::new(),
        })
    }

    /// Parses a note strictly: valid UTF-8 without control characters but
    /// `\n`, at most [`MAX_NOTE_BYTES`], a body ending in `\n`, an empty
    /// line, then 1 to [`MAX_SIGNATURES`] well-formed signature lines each
    /// ending in `\n`, no two of the same key. Signatures are not verified:
    /// see [`verify`](Self::verify).
    pub fn parse(text: &[u8]) -> Result<Self, NoteError> {
        if text.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge { size: text.len() });
        }
        let text = std::str::from_utf8(text).map_err(|_| NoteError::NotUtf8)?;
        check_text(text)?;
        let split = text.rfind("\n\n").ok_or(NoteError::NoSignatureBlock)?;
        let (body, signatures) = (&text[..=split], &text[split + 2..]);
        if signatures.is_empty() || !signatures.ends_with('\n') {
            return Err(NoteError::SignaturesNotTerminated);
        }
        let mut note = Self::new(body)?;
        for (number, line) in signatures[..signatures.len() - 1].split('\n').enumerate() {
            note.push_signature(NoteSignature::parse(line, number + 1)?)?;
        }
        Ok(note)
    }

    /// The body.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The signature lines, in order.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Appends a signature line, refusing a second line of the same key or
    /// more than [`MAX_SIGNATURES`] lines.
    pub fn push_signature(&mut self, signature: NoteSignature) -> Result<(), NoteError> {
        check_key_name(&signature.name)?;
        if self
            .signatures
            .iter()
            .any(|s| s.name == signature.name && s.key_hash == signature.key_hash)
        {
            return Err(NoteError::DuplicateSignature {
                name: signature.name,
                key_hash: signature.key_hash,
            });
        }
        if self.signatures.len() >= MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures);
        }
        self.signatures.push(signature);
        Ok(())
    }

    /// Signs the body with a log's Ed25519 key under key name `name` (type 0x01).
    pub fn sign(&mut self, name: &str, key: &impl NoteSigningKey) -> Result<(), NoteError> {
        let vkey = Vkey::ed25519(name, &key.verifying_key())?;
        let signature = key.sign_message(self.body.as_bytes());
        self.push_signature(NoteSignature {
            name: name.to_owned(),
            key_hash: vkey.key_hash,
            payload: signature.to_vec(),
        })
    }

    /// Adds a witness cosignature at `time` (POSIX seconds) under key name
    /// `name` (type 0x04).
    pub fn cosign(
        &mut self,
        name: &str,
        key: &impl NoteSigningKey,
        time: u64,
    ) -> Result<(), NoteError> {
        let vkey = Vkey::cosignature(name, &key.verifying_key())?;
        let signature = key.sign_message(&cosignature_message(&self.body, time));
        let mut payload = Vec::with_capacity(8 + 64);
        payload.extend_from_slice(&time.to_be_bytes());
        payload.extend_from_slice(&signature);
        self.push_signature(NoteSignature {
            name: name.to_owned(),
            key_hash: vkey.key_hash,
            payload,
        })
    }

    /// Verifies every signature line of a key in `verifiers`, ignoring the
    /// lines of other keys. Fails when a known key's line does not verify,
    /// or when no line belongs to a known key; otherwise returns the
    /// verified lines in note order.
    pub fn verify(&self, verifiers: &[Vkey]) -> Result<Vec<VerifiedSignature>, NoteError> {
        let mut verified = Vec::new();
        for signature in &self.signatures {
            let Some(vkey) = verifiers.iter().find(|vkey| vkey.matches(signature)) else {
                continue;
            };
            let time = vkey.verify(&self.body, signature)?;
            verified.push(VerifiedSignature {
                name: signature.name.clone(),
                key_hash: signature.key_hash,
                key_type: vkey.key_type,
                time,
            });
        }
        if verified.is_empty() {
            return Err(NoteError::NoKnownSignature);
        }
        Ok(verified)
    }
}

impl fmt::Display for Note {
    /// The note text: body, empty line, signature lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.body)?;
        f.write_str("\n")?;
        for signature in &self.signatures {
            writeln!(f, "{signature}")?;
        }
        Ok(())
    }
}
