//! FORMAT.md section 5: key files interoperate with OpenSSL, both ways,
//! checked with the `openssl` binary on real files.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use audit_core::Digest;
use audit_core::keys::AuditSigner;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;

fn openssl(args: &[&str]) -> Output {
    let output = Command::new("openssl").args(args).output().unwrap_or_else(|error| {
        panic!(
            "this test needs the `openssl` binary (OpenSSL 3) on PATH: {error}; install it, e.g. `apt-get install -y openssl`"
        )
    });
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn our_secret_key_is_what_openssl_genpkey_writes() {
    let dir = tempfile::tempdir().unwrap();
    let signer = AuditSigner::generate();
    let (secret, public) = signer.write_key_files(dir.path()).unwrap();
    let pem = std::fs::read_to_string(&secret).unwrap();
    let body: Vec<&str> = pem.lines().collect();
    assert_eq!(body.first(), Some(&"-----BEGIN PRIVATE KEY-----"), "{pem}");
    assert_eq!(body.last(), Some(&"-----END PRIVATE KEY-----"), "{pem}");
    // 48 bytes of DER are 64 base64 characters: PKCS#8 v1 (version 0),
    // OID 1.3.101.112, the 32-byte seed, no public key attribute.
    assert_eq!(body.len(), 3, "{pem}");
    assert_eq!(body[1].len(), 64, "{pem}");
    assert!(body[1].starts_with("MC4CAQAwBQYDK2VwBCIEI"), "{pem}");

    openssl(&["pkey", "-in", path(&secret), "-noout"]);
    let derived = openssl(&["pkey", "-in", path(&secret), "-pubout"]);
    assert_eq!(
        String::from_utf8(derived.stdout).unwrap(),
        std::fs::read_to_string(&public).unwrap(),
        "openssl derives our public key file from our secret key file"
    );

    // OpenSSL's own key has the same bytes layout as ours.
    let theirs = dir.path().join("openssl.pem");
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", path(&theirs)]);
    let their_pem = std::fs::read_to_string(&theirs).unwrap();
    assert_eq!(their_pem.len(), pem.len());
    assert_eq!(&their_pem[..49], &pem[..49]);
}

#[test]
fn a_key_made_by_openssl_loads_and_its_signatures_verify_in_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("openssl.pem");
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", path(&theirs)]);
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o600)).unwrap();
    let signer = AuditSigner::load(&theirs).unwrap();

    let public = dir.path().join("ours.pub.pem");
    signer.public_key().save(&public).unwrap();
    let derived = openssl(&["pkey", "-in", path(&theirs), "-pubout"]);
    assert_eq!(
        String::from_utf8(derived.stdout).unwrap(),
        std::fs::read_to_string(&public).unwrap()
    );

    let message = Digest([7u8; 32]);
    let signature = signer.sign(&message);
    let message_file = dir.path().join("message.bin");
    let signature_file = dir.path().join("signature.bin");
    std::fs::write(&message_file, message.as_bytes()).unwrap();
    std::fs::write(&signature_file, signature).unwrap();
    let verified = openssl(&[
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        path(&public),
        "-rawin",
        "-in",
        path(&message_file),
        "-sigfile",
        path(&signature_file),
    ]);
    assert!(
        String::from_utf8_lossy(&verified.stdout).contains("Signature Verified Successfully"),
        "{verified:?}"
    );
}

#[test]
fn secret_keys_with_the_public_key_attribute_still_load() {
    let key = SigningKey::generate(&mut rand_core::UnwrapErr(getrandom::SysRng));
    let v2 = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    assert!(
        v2.len() > 130,
        "PKCS#8 v2 carries the public key: {}",
        v2.len()
    );
    let signer = AuditSigner::from_pkcs8_pem(&v2, "v2").unwrap();
    assert_eq!(signer.public_key().verifying_key(), &key.verifying_key());
    let v1 = signer.to_pkcs8_pem().unwrap();
    let again = AuditSigner::from_pkcs8_pem(&v1, "v1").unwrap();
    assert_eq!(again.key_id(), signer.key_id());
}
