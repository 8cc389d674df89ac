//! `deferred-audit keygen --out DIR`: a new Ed25519 signing key.

use std::path::Path;
use std::process::ExitCode;

use audit_core::keys::AuditSigner;

use crate::error::{CliError, OK};

/// Writes `DIR/audit-key.pem` (0600) and `DIR/audit-key.pub.pem`, prints
/// the key id.
pub fn run(out: &Path) -> Result<ExitCode, CliError> {
    let signer = AuditSigner::generate();
    let (secret, public) = signer.write_key_files(out)?;
    println!("key id {}", signer.key_id());
    println!(
        "secret key {} (mode 0600: keep it secret)",
        secret.display()
    );
    println!("public key {} (give it to verifiers)", public.display());
    Ok(OK)
}
