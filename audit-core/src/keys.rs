//! Ed25519 keys (FORMAT.md section 5): generation, PEM files, key ids, keyrings.
//!
//! Secret keys are PKCS#8 PEM files written with mode 0600 and refused when
//! group or others may read them; public keys are SubjectPublicKeyInfo PEM.
//! Both interoperate with `openssl genpkey -algorithm ed25519`. The secret
//! key is zeroized on drop and never shown by `Debug`.
//!
//! ```
//! use audit_core::keys::{AuditSigner, Keyring, PublicKey};
//! let dir = tempfile::tempdir().unwrap();
//! let signer = AuditSigner::generate();
//! let (secret_path, public_path) = signer.write_key_files(dir.path()).unwrap();
//! let loaded = AuditSigner::load(&secret_path).unwrap();
//! assert_eq!(loaded.key_id(), signer.key_id());
//! let mut keyring = Keyring::new();
//! keyring.insert(PublicKey::load(&public_path).unwrap());
//! assert!(keyring.get(&signer.key_id().to_string()).is_some());
//! assert!(!format!("{signer:?}").contains("PRIVATE"));
//! ```

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::asn1::OctetStringRef;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{self, DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use pkcs8::spki::der::pem::PemLabel;
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::KeyError;

/// File name of the secret key written by [`AuditSigner::write_key_files`].
pub const SECRET_KEY_FILE: &str = "audit-key.pem";
/// File name of the public key written by [`AuditSigner::write_key_files`].
pub const PUBLIC_KEY_FILE: &str = "audit-key.pub.pem";

/// `key_id = hex(H(raw public key)[0..8])`, shown as 16 hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The key id of a public key.
    pub fn of(key: &VerifyingKey) -> Self {
        let hash = Sha256::digest(key.as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&hash[..8]);
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// An Ed25519 secret key that signs records and checkpoints.
pub struct AuditSigner {
    key: SigningKey,
    key_id: KeyId,
}

impl AuditSigner {
    /// Generates a key from the operating system's random source.
    ///
    /// # Panics
    ///
    /// When the operating system's random source fails (`getrandom`), as
    /// no key can then be made.
    pub fn generate() -> Self {
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        Self::from_signing_key(SigningKey::generate(&mut rng))
    }

    /// Wraps an ed25519-dalek signing key.
    pub fn from_signing_key(key: SigningKey) -> Self {
        let key_id = KeyId::of(&key.verifying_key());
        Self { key, key_id }
    }

    /// Decodes a PKCS#8 PEM secret key; `origin` names it in errors.
    pub fn from_pkcs8_pem(pem: &str, origin: &str) -> Result<Self, KeyError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(Self::from_signing_key)
            .map_err(|error| KeyError::InvalidSecretKey {
                origin: origin.to_owned(),
                detail: error.to_string(),
            })
    }

    /// Loads a secret key file, refusing one that group or others can access.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let io_error = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let mode = fs::metadata(path).map_err(io_error)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::InsecurePermissions {
                path: path.to_owned(),
                mode,
            });
        }
        let pem = zeroize::Zeroizing::new(fs::read_to_string(path).map_err(io_error)?);
        Self::from_pkcs8_pem(&pem, &path.display().to_string())
    }

    /// Loads a secret key file without the permission check: for published
    /// test keys kept in a repository, whose file mode git does not keep.
    #[doc(hidden)]
    pub fn load_unchecked_for_test(path: &Path) -> Self {
        let pem = fs::read_to_string(path).unwrap_or_default();
        match Self::from_pkcs8_pem(&pem, &path.display().to_string()) {
            Ok(signer) => signer,
            Err(error) => panic!("test key {}: {error}", path.display()),
        }
    }

    /// The PKCS#8 PEM text of the secret key (zeroized on drop), exactly
    /// what `openssl genpkey -algorithm ed25519` writes: a PKCS#8 v1
    /// `PrivateKeyInfo` (RFC 5958 version 0, RFC 8410 algorithm
    /// 1.3.101.112, the 32-byte seed as an OCTET STRING inside the
    /// privateKey OCTET STRING, no public key attribute): 48 bytes of DER.
    /// [`AuditSigner::from_pkcs8_pem`] reads these and also v2 files that
    /// carry the public key.
    pub fn to_pkcs8_pem(&self) -> Result<zeroize::Zeroizing<String>, KeyError> {
        let encoding_error = |detail: String| KeyError::InvalidSecretKey {
            origin: "encoding".into(),
            detail,
        };
        let mut private_key = zeroize::Zeroizing::new([0u8; 34]);
        private_key[0] = 0x04; // OCTET STRING
        private_key[1] = 0x20; // of 32 bytes: the seed
        private_key[2..].copy_from_slice(self.key.as_bytes());
        let octets = OctetStringRef::new(&private_key[..])
            .map_err(|error| encoding_error(error.to_string()))?;
        let info = pkcs8::PrivateKeyInfoRef::new(ed25519_dalek::pkcs8::ALGORITHM_ID, octets);
        let document = pkcs8::SecretDocument::try_from(info)
            .map_err(|error| encoding_error(error.to_string()))?;
        document
            .to_pem(pkcs8::PrivateKeyInfoRef::PEM_LABEL, LineEnding::LF)
            .map_err(|error| encoding_error(error.to_string()))
    }

    /// Writes the secret key to a new file with mode 0600; never overwrites.
    pub fn save_secret(&self, path: &Path) -> Result<(), KeyError> {
        write_new_file(path, self.to_pkcs8_pem()?.as_bytes(), 0o600)
    }

    /// Writes `DIR/audit-key.pem` (0600) and `DIR/audit-key.pub.pem` (0644),
    /// creating `DIR` when missing; returns both paths.
    pub fn write_key_files(&self, dir: &Path) -> Result<(PathBuf, PathBuf), KeyError> {
        fs::create_dir_all(dir).map_err(|source| KeyError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let secret = dir.join(SECRET_KEY_FILE);
        let public = dir.join(PUBLIC_KEY_FILE);
        for path in [&secret, &public] {
            if path.exists() {
                return Err(KeyError::AlreadyExists { path: path.clone() });
            }
        }
        self.save_secret(&secret)?;
        self.public_key().save(&public)?;
        Ok((secret, public))
    }

    /// The key id of this key's public half.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key: self.key.verifying_key(),
            key_id: self.key_id,
        }
    }

    /// Signs a 32-byte hash (a record hash or checkpoint hash).
    pub fn sign(&self, message: &Digest) -> [u8; 64] {
        self.key.sign(message.as_bytes()).to_bytes()
    }
}

/// The chain's key signs tree checkpoint notes (FORMAT.md section 8.2).
impl crate::chain::note::NoteSigningKey for AuditSigner {
    fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    fn sign_message(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

impl fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSigner")
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// An Ed25519 public key with its key id.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    key_id: KeyId,
}

impl PublicKey {
    /// Wraps a verifying key, refusing a weak one: of small order, or with
    /// a torsion component (mixed order), or not canonically encoded. An
    /// honestly generated key `A = [a]B` is none of these; strict signature
    /// verification (FORMAT.md section 4) rests on it.
    pub fn from_verifying_key(key: VerifyingKey, origin: &str) -> Result<Self, KeyError> {
        let encoded = key.to_bytes();
        let strict = curve25519_dalek::edwards::CompressedEdwardsY(encoded)
            .decompress()
            .is_some_and(|point| {
                point.compress().to_bytes() == encoded
                    && !point.is_small_order()
                    && point.is_torsion_free()
            });
        if key.is_weak() || !strict {
            return Err(KeyError::WeakPublicKey {
                origin: origin.to_owned(),
            });
        }
        Ok(Self {
            key_id: KeyId::of(&key),
            key,
        })
    }

    /// Decodes an SPKI PEM public key; `origin` names it in errors.
    pub fn from_spki_pem(pem: &str, origin: &str) -> Result<Self, KeyError> {
        let key =
            VerifyingKey::from_public_key_pem(pem).map_err(|error| KeyError::InvalidPublicKey {
                origin: origin.to_owned(),
                detail: error.to_string(),
            })?;
        Self::from_verifying_key(key, origin)
    }

    /// Loads an SPKI PEM public key file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let pem = fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_spki_pem(&pem, &path.display().to_string())
    }

    /// The SPKI PEM text.
    pub fn to_spki_pem(&self) -> Result<String, KeyError> {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|error| KeyError::InvalidPublicKey {
                origin: "encoding".into(),
                detail: error.to_string(),
            })
    }

    /// Writes the SPKI PEM to a new file with mode 0644; never overwrites.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        write_new_file(path, self.to_spki_pem()?.as_bytes(), 0o644)
    }

    /// The key id.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The ed25519-dalek verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Whether `signature` is a signature of `digest` under this key by
    /// strict Ed25519 verification, as the verifier checks record
    /// signatures (FORMAT.md section 4).
    ///
    /// ```
    /// use audit_core::keys::AuditSigner;
    /// use audit_core::Digest;
    /// let signer = AuditSigner::generate();
    /// let digest = Digest([1; 32]);
    /// let signature = signer.sign(&digest);
    /// assert!(signer.public_key().verifies(&digest, &signature));
    /// assert!(!signer.public_key().verifies(&Digest([2; 32]), &signature));
    /// ```
    pub fn verifies(&self, digest: &Digest, signature: &[u8; 64]) -> bool {
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        self.key
            .verify_strict(digest.as_bytes(), &signature)
            .is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id)
    }
}

/// The public keys a verifier trusts, matched by key id.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: HashMap<String, PublicKey>,
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key; returns its key id.
    pub fn insert(&mut self, key: PublicKey) -> KeyId {
        let key_id = key.key_id();
        self.keys.insert(key_id.to_string(), key);
        key_id
    }

    /// Loads and adds an SPKI PEM file.
    pub fn load_file(&mut self, path: &Path) -> Result<KeyId, KeyError> {
        Ok(self.insert(PublicKey::load(path)?))
    }

    /// The key whose key id (16 hex characters) is `key_id`.
    pub fn get(&self, key_id: &str) -> Option<&PublicKey> {
        self.keys.get(key_id)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the keyring has no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &PublicKey> + '_ {
        self.keys.values()
    }
}

fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyError> {
    let io_error = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::AlreadyExists {
                path: path.to_owned(),
            }
        } else {
            KeyError::Io {
                path: path.to_owned(),
                source,
            }
        }
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_error)?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_error)?;
    file.write_all(contents).map_err(io_error)?;
    file.sync_all().map_err(io_error)
}
