//! Every refusal of key loading and saving, checked for what it says.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use audit_core::KeyError;
use audit_core::keys::{AuditSigner, Keyring, PublicKey};
use ed25519_dalek::pkcs8::EncodePublicKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;

#[test]
fn secret_key_files_are_written_0600_and_public_ones_0644() {
    let dir = tempfile::tempdir().unwrap();
    let signer = AuditSigner::generate();
    let (secret, public) = signer.write_key_files(dir.path()).unwrap();
    assert_eq!(
        fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(&public).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert!(
        fs::read_to_string(&secret)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    assert!(
        fs::read_to_string(&public)
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    assert_eq!(PublicKey::load(&public).unwrap().key_id(), signer.key_id());
}

#[test]
fn group_or_world_readable_secret_keys_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, _) = AuditSigner::generate().write_key_files(dir.path()).unwrap();
    for mode in [0o640, 0o604, 0o660] {
        fs::set_permissions(&secret, fs::Permissions::from_mode(mode)).unwrap();
        let error = AuditSigner::load(&secret).unwrap_err();
        assert!(
            matches!(error, KeyError::InsecurePermissions { mode: m, .. } if m == mode),
            "{error:?}"
        );
        assert!(error.to_string().contains("chmod 600"));
    }
}

#[test]
fn missing_key_files_name_the_path() {
    let error = AuditSigner::load(std::path::Path::new("/nonexistent/key.pem")).unwrap_err();
    assert!(matches!(error, KeyError::Io { .. }));
    assert!(error.to_string().contains("/nonexistent/key.pem"));
    let error = PublicKey::load(std::path::Path::new("/nonexistent/key.pub.pem")).unwrap_err();
    assert!(error.to_string().contains("/nonexistent/key.pub.pem"));
}

#[test]
fn garbage_and_swapped_pem_files_are_refused_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = AuditSigner::generate().write_key_files(dir.path()).unwrap();
    let public_pem = fs::read_to_string(&public).unwrap();
    let secret_pem = fs::read_to_string(&secret).unwrap();

    let error = AuditSigner::from_pkcs8_pem(&public_pem, "swapped.pem").unwrap_err();
    assert!(
        matches!(error, KeyError::InvalidSecretKey { ref origin, .. } if origin == "swapped.pem"),
        "{error:?}"
    );
    let error = AuditSigner::from_pkcs8_pem("hello", "garbage.pem").unwrap_err();
    assert!(matches!(error, KeyError::InvalidSecretKey { .. }));
    assert!(error.to_string().contains("BEGIN PRIVATE KEY"));

    let error = PublicKey::from_spki_pem(&secret_pem, "swapped.pub.pem").unwrap_err();
    assert!(
        matches!(error, KeyError::InvalidPublicKey { ref origin, .. } if origin == "swapped.pub.pem"),
        "{error:?}"
    );
    let garbage = dir.path().join("garbage.pub.pem");
    fs::write(&garbage, "not a key").unwrap();
    let error = Keyring::new().load_file(&garbage).unwrap_err();
    assert!(matches!(error, KeyError::InvalidPublicKey { .. }));
    assert!(error.to_string().contains("garbage.pub.pem"));
}

#[test]
fn weak_public_keys_are_refused() {
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = ed25519_dalek::VerifyingKey::from_bytes(&identity).unwrap();
    let pem = weak.to_public_key_pem(LineEnding::LF).unwrap();
    let error = PublicKey::from_spki_pem(&pem, "weak.pem").unwrap_err();
    assert!(
        matches!(error, KeyError::WeakPublicKey { ref origin } if origin == "weak.pem"),
        "{error:?}"
    );
}

#[test]
fn existing_key_files_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let first = AuditSigner::generate();
    let (secret, _) = first.write_key_files(dir.path()).unwrap();
    let before = fs::read(&secret).unwrap();
    let error = AuditSigner::generate()
        .write_key_files(dir.path())
        .unwrap_err();
    assert!(
        matches!(error, KeyError::AlreadyExists { ref path } if *path == secret),
        "{error:?}"
    );
    assert_eq!(fs::read(&secret).unwrap(), before);
}

#[test]
fn debug_never_prints_secret_material() {
    let signer = AuditSigner::generate();
    let pem = signer.to_pkcs8_pem().unwrap();
    let shown = format!("{signer:?}");
    let body: String = pem.lines().nth(1).unwrap().to_owned();
    assert!(!shown.contains(&body));
    assert!(shown.contains("redacted"));
    assert!(shown.contains(&signer.key_id().to_string()));
}

#[test]
fn keys_made_by_openssl_load_and_sign() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("openssl.pem");
    let public = dir.path().join("openssl.pub.pem");
    let status = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&secret)
        .status()
        .expect(
            "the openssl command is needed for this interoperability test: apt-get install openssl",
        );
    assert!(status.success());
    let status = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&secret)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap();
    assert!(status.success());
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let signer = AuditSigner::load(&secret).unwrap();
    assert_eq!(PublicKey::load(&public).unwrap().key_id(), signer.key_id());
}
