//! The archive sink passes the testkit's conformance suite on memory, a
//! local folder and moto's S3 server, with everything the suite can use:
//! records, checkpoints and dead letters read back from the store, a
//! permanent failure injected by denying the next segment put, and two
//! writers appending at once.
//!
//! Two factories: [`ArchiveFactory`] (what the pipeline uses: successive
//! sinks share what the writer knows of the chain) and one opening every
//! sink with a state of its own, as separate processes would.

mod common;

use std::sync::Arc;

use audit_core::chain::VerifyOptions;
use audit_core::chain_writer::{ChainSinkOptions, CheckpointPolicy};
use audit_core::keys::AuditSigner;
use audit_core::{ChainId, Record};
use audit_s3_jsonl::dead_letters::read_dead_letters;
use audit_s3_jsonl::layout::ChainLayout;
use audit_s3_jsonl::segment::{list_segments, read_segment};
use audit_s3_jsonl::{ArchiveFactory, ArchiveOptions, ArchiveSink, read_checkpoints};
use audit_testkit::conformance::{self, Capabilities};
use audit_testkit::object_stores::{FailingPuts, PutDenials};
use audit_testkit::servers::s3::MotoServer;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;

/// Signed records, a checkpoint every 10 records.
fn chain_options(chain: &ChainId, signer: &Arc<AuditSigner>) -> ChainSinkOptions {
    ChainSinkOptions {
        chain: chain.clone(),
        signer: Some(signer.clone()),
        checkpoints: CheckpointPolicy {
            every_records: Some(10),
            every: None,
        },
        ..ChainSinkOptions::default()
    }
}

/// Every record of `chain` under `prefix`, in seq order.
async fn all_records(
    store: &dyn ObjectStore,
    prefix: &Path,
    chain: &ChainId,
) -> Result<Vec<Record>, String> {
    let layout = ChainLayout::new(prefix, chain);
    let segments = list_segments(store, &layout.records_dir(), None)
        .await
        .map_err(|error| error.to_string())?;
    let mut records = Vec::new();
    for segment in segments {
        let segment = read_segment(store, &segment.path)
            .await
            .map_err(|error| error.to_string())?;
        records.extend(segment);
    }
    Ok(records)
}

/// What the suite needs, reading from the store itself (not through the
/// sink) and injecting failures through `denials`.
fn capabilities(
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
    chain: &ChainId,
    signer: &AuditSigner,
    denials: &PutDenials,
) -> Capabilities {
    let records = (store.clone(), prefix.clone(), chain.clone());
    let checkpoints = records.clone();
    let letters = records.clone();
    let denials = denials.clone();
    Capabilities::new()
        .read_back(move || {
            let (store, prefix, chain) = records.clone();
            async move { all_records(store.as_ref(), &prefix, &chain).await }
        })
        .read_checkpoints(move || {
            let (store, prefix, chain) = checkpoints.clone();
            async move {
                read_checkpoints(store.as_ref(), &prefix, &chain)
                    .await
                    .map_err(|error| error.to_string())
            }
        })
        .read_dead_letters(move || {
            let (store, prefix, chain) = letters.clone();
            async move {
                read_dead_letters(store.as_ref(), &prefix, &chain)
                    .await
                    .map_err(|error| error.to_string())
            }
        })
        .inject_permanent_failure(move || {
            denials.deny_next(1);
            std::future::ready(())
        })
        .concurrent_writers(true)
        .keyring(common::keyring(signer))
        .verify_options(VerifyOptions {
            require_signed: true,
            ..VerifyOptions::default()
        })
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
    let caps = capabilities(&store, &prefix, &chain, &signer, &denials);
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
                        ArchiveSink::open(store, prefix, options, ArchiveOptions::default())
                            .await
                            .map_err(|error| error.into_sink_error("jsonl archive"))
                    }
                }
            };
            conformance::run(factory, caps).await;
        }
    }
    assert_eq!(denials.remaining(), 0, "the injected failure was not hit");
    let records = all_records(store.as_ref(), &prefix, &chain).await.unwrap();
    assert!(records.len() > 100, "the suite wrote {}", records.len());
    let letters = read_dead_letters(store.as_ref(), &prefix, &chain)
        .await
        .unwrap();
    assert_eq!(
        letters.len(),
        3,
        "one dead letter per event of the failed batch"
    );
    let checkpoints = read_checkpoints(store.as_ref(), &prefix, &chain)
        .await
        .unwrap();
    assert!(!checkpoints.is_empty(), "no checkpoint was written");
    let report = common::verify(store.as_ref(), &prefix, &signer).await;
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
