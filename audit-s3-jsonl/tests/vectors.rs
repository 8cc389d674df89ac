//! The shared test vectors (written by an independent implementation of
//! FORMAT.md), read through [`ArchiveSource`] and checked by the core's
//! one verifier: the good JSONL folder verifies; each tampered JSONL
//! folder fails at the stated seq, verified against the checkpoints of the
//! good folder. Both as local folders and copied into moto's S3 server.

mod common;

use std::sync::Arc;

use audit_core::chain::VerifyReport;
use audit_core::{ChainId, Checkpoint};
use audit_testkit::servers::s3::MotoServer;
use audit_testkit::vectors::{dir as vectors, keyring};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};

fn folder(dir: &std::path::Path) -> Arc<dyn ObjectStore> {
    Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap())
}

/// Copies every object of `from` into `to` under `prefix`.
async fn upload(from: &Arc<dyn ObjectStore>, to: &Arc<dyn ObjectStore>, prefix: &Path) {
    for path in common::object_paths(from.as_ref(), &Path::default()).await {
        let body = from
            .get(&Path::from(path.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let target = Path::from(format!("{prefix}/{path}"));
        to.put(&target, body.into()).await.unwrap();
    }
}

async fn good_checkpoints() -> Vec<Checkpoint> {
    let good = folder(&vectors().join("good/jsonl"));
    common::checkpoints(&good, &Path::default(), &ChainId::default()).await
}

fn check_good(report: &VerifyReport) {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(vectors().join("good/manifest.json")).unwrap(),
    )
    .unwrap();
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, 300);
    assert_eq!(report.checkpoints, 6);
    let chain = &report.chains["default"];
    assert_eq!(chain.signed, 300);
    assert_eq!(chain.head_seq, manifest["head_seq"].as_u64().unwrap());
    assert_eq!(chain.head_hash, manifest["head_hash"].as_str().unwrap());
}

/// Verifies each tampered JSONL folder (opened by `open`) and checks the
/// first failure; returns how many were checked.
async fn check_tampered<F, Fut>(open: F) -> usize
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = (Arc<dyn ObjectStore>, Path)>,
{
    let checkpoints = good_checkpoints().await;
    assert_eq!(checkpoints.len(), 6);
    let mut checked = 0;
    for expectation in audit_testkit::vectors::tampered() {
        let file = expectation.file.as_str();
        if !file.starts_with("jsonl_") {
            continue;
        }
        let (store, prefix) = open(file.to_owned()).await;
        let report = common::verify_with(&store, &prefix, keyring(), checkpoints.clone()).await;
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
    checked
}

#[tokio::test]
async fn the_good_jsonl_folder_verifies() {
    let good = folder(&vectors().join("good/jsonl"));
    check_good(&common::verify_with(&good, &Path::default(), keyring(), Vec::new()).await);
}

#[tokio::test]
async fn each_tampered_jsonl_folder_fails_at_the_stated_seq() {
    let checked = check_tampered(|file| async move {
        (
            folder(&vectors().join("tampered").join(file)),
            Path::default(),
        )
    })
    .await;
    assert_eq!(checked, 2, "the vectors name two tampered JSONL folders");
}

#[tokio::test]
async fn the_vectors_copied_into_moto_give_the_same_verdicts() {
    let server = MotoServer::start().unwrap();
    let s3 = server.store("");
    upload(
        &folder(&vectors().join("good/jsonl")),
        &s3,
        &Path::from("good"),
    )
    .await;
    check_good(&common::verify_with(&s3, &Path::from("good"), keyring(), Vec::new()).await);
    let checked = check_tampered(|file| {
        let s3 = s3.clone();
        async move {
            let prefix = Path::from(file.as_str());
            upload(
                &folder(&vectors().join("tampered").join(&file)),
                &s3,
                &prefix,
            )
            .await;
            (s3, prefix)
        }
    })
    .await;
    assert_eq!(checked, 2);
}
