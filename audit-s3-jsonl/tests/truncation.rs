//! Truncation caught through checkpoints published off-box: a chain whose
//! checkpoints are also published to another store; its tail segments and
//! its own checkpoints are deleted; verification with the published
//! checkpoints fails and names it (`Truncated`).

mod common;

use std::sync::Arc;

use audit_core::chain::FailureKind;
use audit_core::chain_writer::CheckpointPolicy;
use audit_core::keys::AuditSigner;
use audit_core::sink::AuditSink;
use audit_s3_jsonl::{ArchiveOptions, ObjectStoreCheckpointPublisher, open_sink};
use audit_testkit::servers::s3::MotoServer;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};

#[tokio::test]
async fn deleting_the_tail_and_its_checkpoints_is_caught_by_published_checkpoints() {
    let server = MotoServer::start().unwrap();
    let published: Arc<dyn ObjectStore> = server.store("published");
    let primary: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let prefix = Path::from("db");
    let signer = Arc::new(AuditSigner::generate());
    let options = common::options("ledger", &signer).with_checkpoints(CheckpointPolicy {
        every_records: Some(10),
        every: None,
    });
    let options = options.with_publisher(Arc::new(ObjectStoreCheckpointPublisher::new(
        published.clone(),
        Path::default(),
    )));
    let mut sink = open_sink(
        primary.clone(),
        prefix.clone(),
        options.clone(),
        ArchiveOptions::default(),
    )
    .await
    .unwrap();
    for batch in 0..6 {
        sink.append_batch(&common::events(&format!("w{batch}"), 5))
            .await
            .unwrap();
    }
    sink.checkpoint().await.unwrap();
    let chain = options.chain().clone();
    let external = common::checkpoints(&published, &Path::default(), &chain).await;
    let external_seqs: Vec<u64> = external.iter().map(|checkpoint| checkpoint.seq).collect();
    assert_eq!(external_seqs, [10, 20, 30]);

    // Before tampering, the chain verifies with the published checkpoints.
    let verify = |checkpoints: Vec<audit_core::Checkpoint>| {
        let primary = primary.clone();
        let prefix = prefix.clone();
        let keyring = common::keyring(&signer);
        async move { common::verify_with(&primary, &prefix, keyring, checkpoints).await }
    };
    let report = verify(external.clone()).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, 30);

    // Delete the last two segments (seqs 21-30) and every checkpoint at or
    // beyond 20 from the primary.
    for seq in [21, 26] {
        primary
            .delete(
                &prefix
                    .clone()
                    .join("ledger")
                    .join("records")
                    .join(format!("{seq:020}.jsonl")),
            )
            .await
            .unwrap();
    }
    for seq in [20, 30] {
        primary
            .delete(
                &prefix
                    .clone()
                    .join("ledger")
                    .join("checkpoints")
                    .join(format!("{seq:020}.json")),
            )
            .await
            .unwrap();
        primary
            .delete(
                &prefix
                    .clone()
                    .join("ledger")
                    .join("tree-checkpoints")
                    .join(format!("{seq:020}.note")),
            )
            .await
            .unwrap();
    }

    // On its own, the shortened chain looks fine.
    let report = verify(Vec::new()).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, 20);

    // With the published checkpoints, the truncation is named.
    let report = verify(external).await;
    let failure = report.first_failure().expect("truncation not detected");
    assert_eq!(failure.kind, FailureKind::Truncated, "{failure}");
    assert_eq!(failure.chain, "ledger");
    assert_eq!(failure.seq, 30, "{failure}");
}
