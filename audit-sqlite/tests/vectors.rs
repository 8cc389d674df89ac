//! The shared test vectors through the SQLite verifier.

use audit_core::keys::Keyring;
mod common;

use audit_core::verification::SourceVerifyOptions;
use audit_testkit::vectors::{dir as vectors, keyring};
use common::{verify_file, verify_file_with};

#[test]
fn the_good_sqlite_vector_verifies_to_the_manifest_head() {
    let path = vectors().join("good/chain.sqlite");
    let before = std::fs::read(&path).unwrap();
    let report = verify_file(&path, &keyring());
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, 300);
    assert_eq!(report.checkpoints, 6);
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(vectors().join("good/manifest.json")).unwrap(),
    )
    .unwrap();
    let chain = &report.chains["default"];
    assert_eq!(chain.head_seq, manifest["head_seq"].as_u64().unwrap());
    assert_eq!(chain.head_hash, manifest["head_hash"].as_str().unwrap());
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "verification modified the file"
    );
}

#[test]
fn every_tampered_sqlite_vector_fails_at_its_first_bad_seq() {
    let expect = audit_testkit::vectors::tampered();
    let mut checked = 0;
    for case in expect {
        let file = case.file.as_str();
        if !file.ends_with(".sqlite") {
            continue;
        }
        let report = verify_file(&vectors().join("tampered").join(file), &keyring());
        let first = report
            .first_failure()
            .unwrap_or_else(|| panic!("{file} verified"));
        assert_eq!(first.seq, case.first_bad_seq.unwrap(), "{file}: {first}");
        assert_eq!(first.chain, "default");
        checked += 1;
    }
    assert_eq!(checked, 4);
}

#[test]
fn verification_from_a_seq_checks_only_the_rest() {
    let path = vectors().join("tampered/payload_edit.sqlite");
    let options = SourceVerifyOptions::default().with_from(Some(43));
    let report = verify_file_with(&path, &keyring(), options);
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, 300 - 42);
}

#[test]
fn no_key_fails_once_saying_so() {
    let path = vectors().join("good/chain.sqlite");
    let report = verify_file(&path, &Keyring::new());
    let first = report.first_failure().unwrap();
    assert_eq!(
        (first.seq, first.kind),
        (1, audit_core::chain::FailureKind::NoKeyGiven)
    );
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
}
