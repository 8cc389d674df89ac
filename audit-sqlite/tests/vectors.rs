//! The shared test vectors through the SQLite verifier.

use audit_core::keys::Keyring;
use audit_sqlite::{SqliteVerifyOptions, verify_sqlite};
use audit_testkit::vectors::{dir as vectors, keyring};

#[test]
fn the_good_sqlite_vector_verifies_to_the_manifest_head() {
    let path = vectors().join("good/chain.sqlite");
    let before = std::fs::read(&path).unwrap();
    let options = SqliteVerifyOptions {
        verify: audit_core::chain::VerifyOptions {
            require_signed: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let report = verify_sqlite(&path, &keyring(), options, &[]).unwrap();
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
        let report = verify_sqlite(
            &vectors().join("tampered").join(file),
            &keyring(),
            SqliteVerifyOptions::default(),
            &[],
        )
        .unwrap();
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
    let options = SqliteVerifyOptions {
        from_seq: Some(43),
        ..Default::default()
    };
    let report = verify_sqlite(&path, &keyring(), options, &[]).unwrap();
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, 300 - 42);
}

#[test]
fn an_unknown_key_fails_every_signed_record() {
    let path = vectors().join("good/chain.sqlite");
    let report =
        verify_sqlite(&path, &Keyring::new(), SqliteVerifyOptions::default(), &[]).unwrap();
    assert_eq!(report.first_failure().unwrap().seq, 1);
    assert!(!report.is_ok());
}
