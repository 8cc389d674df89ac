//! The store examples run in CI against the real servers: `postgres_store`
//! on a PostgreSQL server started for the test, `s3_archive` on a local
//! S3-compatible server (moto). Each drains 100 refusals, verifies the
//! chain with the public key alone, and hands out an inclusion proof that
//! the key's verifier accepts.

#[path = "../examples/support/audited_store.rs"]
mod audited_store;

use deferred_audit::core::chain::note::Vkey;
use deferred_audit::core::chain::proof::{InclusionProof, TrustPolicy};
use deferred_audit::prelude::*;

fn check(outcome: &audited_store::Outcome, signer: &AuditSigner, origin: &str) {
    assert_eq!(outcome.appended, 100);
    assert!(outcome.report.is_ok(), "{:?}", outcome.report.failures);
    assert_eq!(outcome.report.records, 100);
    let proof = InclusionProof::parse(outcome.proof.as_bytes()).expect("the proof parses");
    let policy = TrustPolicy::new(
        Vkey::ed25519(origin, signer.public_key().verifying_key()).expect("a vkey"),
    );
    let extra = proof.extra.clone().expect("the proof carries the event");
    proof
        .verify_event(&extra, &policy)
        .expect("the inclusion proof verifies under the log's key");
    let event = AuditEvent::from_canonical(std::str::from_utf8(&extra).unwrap()).unwrap();
    assert_eq!(event.event_type(), "governance.refusal");
    assert_eq!(event.payload()["request"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_example_keeps_a_verified_chain_with_proofs() {
    let server = audit_testkit::servers::postgres::PostgresServer::start()
        .expect("PostgreSQL (initdb, pg_ctl) must be installed: scripts/test.sh installs it");
    let url: StoreUrl = server.url().parse().unwrap();
    let signer = audited_store::signer();
    let options = ChainSinkOptions::signed(signer.clone());
    let origin = options.tree_origin();
    let factory = sink_factory(&url, options).unwrap();
    let appended = audited_store::audit_into(factory, 100).await.unwrap();
    let source = open_source(&url).await.unwrap();
    let outcome = audited_store::verify_and_prove(source.as_ref(), &signer, appended)
        .await
        .unwrap();
    check(&outcome, &signer, &origin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_example_keeps_a_verified_archive_with_proofs() {
    use deferred_audit::s3::{ArchiveFactory, ArchiveOptions, ArchiveSource};
    let server = audit_testkit::servers::s3::MotoServer::start()
        .expect("moto must be installed: scripts/test.sh installs it");
    let store = server.store("");
    let prefix = object_store::path::Path::from("example");
    let signer = audited_store::signer();
    let options = ChainSinkOptions::signed(signer.clone());
    let origin = options.tree_origin();
    let factory = ArchiveFactory::new(
        store.clone(),
        prefix.clone(),
        options,
        ArchiveOptions::default(),
    );
    let appended = audited_store::audit_into(factory, 100).await.unwrap();
    let source = ArchiveSource::new(store, prefix);
    let outcome = audited_store::verify_and_prove(&source, &signer, appended)
        .await
        .unwrap();
    check(&outcome, &signer, &origin);
}
