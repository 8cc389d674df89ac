//! The create-only probe: stores that enforce `PutMode::Create` pass, one
//! that turns it into an overwrite is refused unless the operator says the
//! prefix has a single writer.

mod common;

use std::sync::Arc;

use audit_core::keys::AuditSigner;
use audit_core::sink::AuditSink;
use audit_s3_jsonl::probe::probe_create_only;
use audit_s3_jsonl::{ArchiveError, ArchiveOptions, open_sink};
use audit_testkit::object_stores::IgnoresCreateOnly;
use audit_testkit::servers::s3::MotoServer;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;

#[tokio::test]
async fn stores_that_enforce_create_only_pass_the_probe() {
    let prefix = Path::from("p");
    probe_create_only(&InMemory::new(), &prefix).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    probe_create_only(&local, &prefix).await.unwrap();
    let server = MotoServer::start().unwrap();
    probe_create_only(server.store("").as_ref(), &prefix)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_store_that_ignores_if_none_match_is_refused() {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store: Arc<dyn ObjectStore> = Arc::new(IgnoresCreateOnly::new(inner.clone()));
    let signer = Arc::new(AuditSigner::generate());
    let refused = open_sink(
        store.clone(),
        Path::from("p"),
        common::options("default", &signer),
        ArchiveOptions::default(),
    )
    .await;
    let Err(error) = refused else {
        panic!("the probe accepted a store that overwrites");
    };
    assert!(
        matches!(error, ArchiveError::NotCreateOnly { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("does not enforce create-only puts"),
        "{message}"
    );
    assert!(message.contains("IgnoresCreateOnly"), "{message}");
    assert!(message.contains("assume_single_writer"), "{message}");
    // Nothing was written under the chain.
    assert!(
        common::object_paths(inner.as_ref(), &Path::from("p/default"))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn assume_single_writer_overrides_the_probe() {
    let store: Arc<dyn ObjectStore> = Arc::new(IgnoresCreateOnly::new(Arc::new(InMemory::new())));
    let signer = Arc::new(AuditSigner::generate());
    let options = ArchiveOptions::default().with_assume_single_writer(true);
    let mut sink = open_sink(
        store.clone(),
        Path::from("p"),
        common::options("default", &signer),
        options,
    )
    .await
    .unwrap();
    sink.append_batch(&common::events("a", 3)).await.unwrap();
    let report = common::verify(&store, &Path::from("p"), &signer).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, 3);
}
