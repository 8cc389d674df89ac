//! The archive sink passes the testkit's conformance suite on memory, a
//! local folder and moto's S3 server, with everything the suite can use:
//! records, dead letters and verification read back through the archive's
//! own read side ([`ArchiveSource`](audit_s3_jsonl::ArchiveSource)), a
//! permanent failure injected by denying the next segment put, and two
//! writers appending at once.
//!
//! Two factories: [`ArchiveFactory`] (what the pipeline uses: successive
//! sinks share what the writer knows of the chain) and one opening every
//! sink with a state of its own, as separate processes would.

mod common;

use std::sync::Arc;

use audit_core::ChainId;
use audit_core::chain::VerifyOptions;
use audit_core::chain_writer::{ChainSinkOptions, CheckpointPolicy};
use audit_core::keys::AuditSigner;
use audit_s3_jsonl::{ArchiveFactory, ArchiveOptions, open_sink};
use audit_testkit::conformance::{self, Capabilities};
use audit_testkit::object_stores::{FailingPuts, PutDenials};
use audit_testkit::servers::s3::MotoServer;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;

/// Signed records, a checkpoint every 10 records.
fn chain_options(chain: &ChainId, signer: &Arc<AuditSigner>) -> ChainSinkOptions {
    ChainSinkOptions::signed(signer.clone())
        .for_chain(chain.clone())
        .with_checkpoints(CheckpointPolicy {
            every_records: Some(10),
            every: None,
        })
}

/// What the suite needs: the archive's read side over the store itself
/// (not through the sink), and failures injected through `denials`.
fn capabilities(
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
    signer: &AuditSigner,
    denials: &PutDenials,
) -> Capabilities {
    let denials = denials.clone();
    Capabilities::new()
        .source(common::source(store, prefix))
        .inject_permanent_failure(move || {
            denials.deny_next(1);
            std::future::ready(())
        })
        .concurrent_writers(true)
        .keyring(common::keyring(signer))
        .verify_options(VerifyOptions::default().with_require_signed(true))
}

/// Which factory the suite gets.
#[derive(Debug, Clone, Copy)]
enum Writers {
    /// One [`ArchiveFactory`]: sinks share the writer's state.
    SharedState,
    /// Every sink opened with a state of its own (separate processes).
    Independent,
}

/// Runs the suite on `inner` (wrapped so that segment puts can be denied)
/// and checks what it left in the store.
async fn run_suite(inner: Arc<dyn ObjectStore>, writers: Writers) {
    let (failing, denials) = FailingPuts::armed(inner, "/records/");
    let store: Arc<dyn ObjectStore> = Arc::new(failing);
    let prefix = Path::from("conformance");
    let chain = ChainId::new("suite").unwrap();
    let signer = Arc::new(AuditSigner::generate());
    let caps = capabilities(&store, &prefix, &signer, &denials);
    let options = chain_options(&chain, &signer);
    match writers {
        Writers::SharedState => {
            let factory = ArchiveFactory::new(
                store.clone(),
                prefix.clone(),
                options,
                ArchiveOptions::default(),
            );
            conformance::run(factory, caps).await;
        }
        Writers::Independent => {
            let factory = {
                let (store, prefix) = (store.clone(), prefix.clone());
                move || {
                    let (store, prefix, options) = (store.clone(), prefix.clone(), options.clone());
                    async move {
                        open_sink(store, prefix, options, ArchiveOptions::default())
                            .await
                            .map_err(|error| error.into_sink_error("jsonl archive"))
                    }
                }
            };
            conformance::run(factory, caps).await;
        }
    }
    assert_eq!(denials.remaining(), 0, "the injected failure was not hit");
    let records = common::records(&store, &prefix, &chain).await;
    assert!(records.len() > 100, "the suite wrote {}", records.len());
    let letters = common::dead_letters(&store, &prefix, &chain).await;
    assert_eq!(
        letters.len(),
        3,
        "one dead letter per event of the failed batch"
    );
    let checkpoints = common::checkpoints(&store, &prefix, &chain).await;
    assert!(!checkpoints.is_empty(), "no checkpoint was written");
    let report = common::verify(&store, &prefix, &signer).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, records.len() as u64);
}

fn moto() -> MotoServer {
    MotoServer::start().unwrap_or_else(|error| panic!("{error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_passes_conformance() {
    run_suite(Arc::new(InMemory::new()), Writers::SharedState).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_passes_conformance_with_independent_writers() {
    run_suite(Arc::new(InMemory::new()), Writers::Independent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_folder_passes_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    run_suite(Arc::new(store), Writers::SharedState).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_folder_passes_conformance_with_independent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    run_suite(Arc::new(store), Writers::Independent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_passes_conformance() {
    let server = moto();
    run_suite(server.store(""), Writers::SharedState).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_passes_conformance_with_independent_writers() {
    let server = moto();
    run_suite(server.store(""), Writers::Independent).await;
}
