//! The shared test vectors of this workspace (`testdata/vectors/`: chains
//! written by an independent implementation of FORMAT.md), for the tests of
//! every crate that reads chains: the folder, the trusted public key, and
//! what each tampered copy must fail at.

use std::path::PathBuf;

use audit_core::keys::Keyring;
use serde_json::Value;

/// The vectors folder (absolute).
///
/// # Panics
/// When the folder is missing: the tests need the workspace's `testdata/`.
pub fn dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/vectors");
    dir.canonicalize()
        .unwrap_or_else(|error| panic!("test vectors folder {}: {error}", dir.display()))
}

/// A keyring holding `good/public.pem`, the key every good record is signed with.
///
/// # Panics
/// When the key file cannot be loaded.
pub fn keyring() -> Keyring {
    let path = dir().join("good/public.pem");
    let mut keyring = Keyring::new();
    if let Err(error) = keyring.load_file(&path) {
        panic!("test vector key {}: {error}", path.display());
    }
    keyring
}

/// One entry of `tampered/expect.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tampered {
    /// File or folder name under `tampered/`.
    pub file: String,
    /// The chain tampered with.
    pub chain: String,
    /// The seq a verifier must report first (`None`: only detectable with
    /// external checkpoints).
    pub first_bad_seq: Option<u64>,
    /// What was done.
    pub what: String,
}

/// Every entry of `tampered/expect.json`.
///
/// # Panics
/// When the file is missing or not in the expected shape.
pub fn tampered() -> Vec<Tampered> {
    let path = dir().join("tampered/expect.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let entries: Vec<Value> =
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    entries
        .iter()
        .map(|entry| Tampered {
            file: entry["file"].as_str().unwrap_or_default().to_owned(),
            chain: entry["chain"].as_str().unwrap_or_default().to_owned(),
            first_bad_seq: entry["first_bad_seq"].as_u64(),
            what: entry["what"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}
