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
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode};

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

/// The test server behaves as S3 does for racing creates: of eight
/// create-only puts of one name sent at once, exactly one wins and the
/// others get `AlreadyExists`. (moto on its own checks `If-None-Match` and
/// writes in two steps, so two could win; the conformance suite's racing
/// writers then forked the chain about one run in three under load.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_lets_exactly_one_of_racing_creates_win() {
    let server = MotoServer::start().unwrap();
    let store = server.store("");
    for round in 0..100 {
        let path = Path::from(format!("race/{round}"));
        let puts = (0..8).map(|writer| {
            let (store, path) = (store.clone(), path.clone());
            async move {
                store
                    .put_opts(
                        &path,
                        format!("writer {writer}").into(),
                        PutMode::Create.into(),
                    )
                    .await
            }
        });
        let results = futures::future::join_all(puts).await;
        let won = results.iter().filter(|result| result.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {results:?}");
        assert!(
            results.iter().all(|result| matches!(
                result,
                Ok(_) | Err(object_store::Error::AlreadyExists { .. })
            )),
            "round {round}: {results:?}"
        );
    }
}
