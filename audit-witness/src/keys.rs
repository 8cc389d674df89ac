//! The witness's Ed25519 key: the same PKCS#8 PEM files as the chain keys
//! (`openssl genpkey -algorithm ed25519`, or [`AuditSigner::save_secret`]
//! of audit-core), loaded as an [`ed25519_dalek::SigningKey`] for
//! cosigning.
//!
//! Use a key of its own for a witness: an Ed25519 cosignature does not
//! commit to the witness's name, so one key must never serve two witnesses
//! (tlog-cosignature).
//!
//! [`AuditSigner::save_secret`]: audit_core::keys::AuditSigner::save_secret

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use audit_core::KeyError;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::DecodePrivateKey;

/// Decodes a PKCS#8 PEM Ed25519 secret key; `origin` names it in errors.
pub fn signing_key_from_pem(pem: &str, origin: &str) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(pem).map_err(|error| KeyError::InvalidSecretKey {
        origin: origin.to_owned(),
        detail: error.to_string(),
    })
}

/// Loads a PKCS#8 PEM secret key file, refusing one that group or others
/// can access (as audit-core does for chain keys).
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
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
    signing_key_from_pem(&pem, &path.display().to_string())
}
