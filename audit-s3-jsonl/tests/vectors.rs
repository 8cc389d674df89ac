//! The shared test vectors (written by an independent implementation of
//! FORMAT.md): the good JSONL folder verifies through `LocalFileSystem`;
//! each tampered JSONL folder fails at the stated seq, verified against
//! the checkpoints of the good folder.

use audit_core::ChainId;
use audit_core::chain::{VerifyOptions, VerifyReport};
use audit_s3_jsonl::read_checkpoints;
use audit_s3_jsonl::verify::verify_archive;
use audit_testkit::vectors::{dir as vectors, keyring};
use object_store::local::LocalFileSystem;
use object_store::path::Path;

async fn verify_folder(dir: &std::path::Path, external: &[audit_core::Checkpoint]) -> VerifyReport {
    let store = LocalFileSystem::new_with_prefix(dir).unwrap();
    let options = VerifyOptions {
        require_signed: true,
        ..VerifyOptions::default()
    };
    verify_archive(&store, &Path::default(), None, keyring(), options, external)
        .await
        .unwrap()
}

async fn good_checkpoints() -> Vec<audit_core::Checkpoint> {
    let store = LocalFileSystem::new_with_prefix(vectors().join("good/jsonl")).unwrap();
    read_checkpoints(&store, &Path::default(), &ChainId::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_good_jsonl_folder_verifies() {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(vectors().join("good/manifest.json")).unwrap(),
    )
    .unwrap();
    let report = verify_folder(&vectors().join("good/jsonl"), &[]).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, 300);
    assert_eq!(report.checkpoints, 6);
    let chain = &report.chains["default"];
    assert_eq!(chain.signed, 300);
    assert_eq!(chain.head_seq, manifest["head_seq"].as_u64().unwrap());
    assert_eq!(chain.head_hash, manifest["head_hash"].as_str().unwrap());
}

#[tokio::test]
async fn each_tampered_jsonl_folder_fails_at_the_stated_seq() {
    let expectations = audit_testkit::vectors::tampered();
    let checkpoints = good_checkpoints().await;
    assert_eq!(checkpoints.len(), 6);
    let mut checked = 0;
    for expectation in expectations {
        let file = expectation.file.as_str();
        if !file.starts_with("jsonl_") {
            continue;
        }
        let report = verify_folder(&vectors().join("tampered").join(file), &checkpoints).await;
        let failure = report
            .first_failure()
            .unwrap_or_else(|| panic!("{file}: tamper not detected"));
        assert_eq!(failure.chain, expectation.chain.as_str(), "{file}");
        match expectation.first_bad_seq {
            Some(seq) => assert_eq!(failure.seq, seq, "{file}: {failure}"),
            None => assert!(!report.is_ok(), "{file}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 2, "the vectors name two tampered JSONL folders");
}
