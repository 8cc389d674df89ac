//! The archive as a mirror: a pipeline writes through the core `Tee` to a
//! primary (the testkit's in-memory chain) and to an archive in moto's S3
//! server. A healthy mirror holds the primary's chain, event for event; a
//! mirror whose puts are denied never costs the primary an event, and every
//! event it missed is counted and kept (in its own dead letters, or in the
//! tee's fallback file when it cannot even dead-letter).

mod common;

use std::sync::Arc;
use std::time::Duration;

use audit_core::chain::VerifyOptions;
use audit_core::dead_letter::FallbackFile;
use audit_core::keys::AuditSigner;
use audit_core::pipeline::{AuditPipeline, ShutdownReport};
use audit_core::sink::SinkError;
use audit_core::tee::{MirrorFailures, Tee};
use audit_core::{AuditEvent, ChainId};
use audit_s3_jsonl::{ArchiveFactory, ArchiveOptions};
use audit_testkit::object_stores::FailingPuts;
use audit_testkit::servers::s3::MotoServer;
use audit_testkit::sinks::MemoryChain;
use object_store::ObjectStore;
use object_store::path::Path;

const PRODUCERS: usize = 3;
const PER_PRODUCER: usize = 100;

/// What one run through the tee left behind.
struct TeeRun {
    primary: MemoryChain,
    mirror_failures: MirrorFailures,
    report: ShutdownReport,
    /// Every submitted event, producer by producer.
    submitted: Vec<AuditEvent>,
}

/// Runs `PRODUCERS` producers through a pipeline whose sink is a tee of a
/// fresh in-memory primary and an archive on `mirror_store` under `mirror`,
/// and shuts it down.
async fn run_through_tee(
    mirror_store: Arc<dyn ObjectStore>,
    mirror: &Path,
    signer: &Arc<AuditSigner>,
    mirror_fallback: Option<FallbackFile>,
) -> TeeRun {
    let primary = MemoryChain::new();
    let mirror_failures = MirrorFailures::default();
    let options = common::options("default", signer);
    let archive = ArchiveFactory::new(
        mirror_store,
        mirror.clone(),
        options.clone(),
        ArchiveOptions::default(),
    );
    let factory = {
        let (primary, failures) = (primary.clone(), mirror_failures.clone());
        move || {
            let (primary, failures, archive, options, fallback) = (
                primary.clone(),
                failures.clone(),
                archive.clone(),
                options.clone(),
                mirror_fallback.clone(),
            );
            async move {
                let mirror = archive
                    .open()
                    .await
                    .map_err(|error| error.into_sink_error("mirror"))?;
                let tee = Tee::new(Box::new(primary.sink(options)), vec![Box::new(mirror)])
                    .with_failure_counter(failures);
                Ok::<_, SinkError>(match fallback {
                    Some(file) => tee.with_mirror_fallback(ChainId::default(), file),
                    None => tee,
                })
            }
        }
    };
    let pipeline = AuditPipeline::builder(factory).max_batch(16).spawn();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let queue = pipeline.queue();
            tokio::spawn(async move {
                let events = common::events(&format!("p{producer}"), PER_PRODUCER);
                for (n, event) in events.iter().enumerate() {
                    if n % 25 == 24 {
                        queue.submit_wait(event.clone()).await.unwrap();
                    } else {
                        assert!(queue.submit(event.clone()));
                    }
                }
                events
            })
        })
        .collect();
    let mut submitted = Vec::new();
    for producer in producers {
        submitted.extend(producer.await.unwrap());
    }
    let report = pipeline.shutdown(Duration::from_secs(30)).await;
    TeeRun {
        primary,
        mirror_failures,
        report,
        submitted,
    }
}

impl TeeRun {
    /// The primary holds every submitted event once, verifies, and the
    /// pipeline lost and dead-lettered nothing.
    fn assert_primary_has_everything(&self, signer: &AuditSigner) {
        let metrics = &self.report.metrics;
        assert!(self.report.is_clean(), "{:?}", self.report.errors);
        assert!(metrics.is_balanced(), "{metrics:?}");
        assert_eq!(metrics.submitted, (PRODUCERS * PER_PRODUCER) as u64);
        assert_eq!(metrics.appended, metrics.submitted);
        assert_eq!((metrics.lost, metrics.dead_lettered), (0, 0));
        let verified = self.primary.verify_with(
            common::keyring(signer),
            VerifyOptions::default().with_require_signed(true),
        );
        assert!(verified.is_ok(), "{:?}", verified.failures);
        let mut stored: Vec<String> = self
            .primary
            .records()
            .iter()
            .map(|record| record.event_json.to_string())
            .collect();
        let mut expected: Vec<String> = self
            .submitted
            .iter()
            .map(|event| event.canonical_json().to_owned())
            .collect();
        stored.sort();
        expected.sort();
        assert_eq!(stored, expected);
    }
}

fn moto() -> MotoServer {
    MotoServer::start().unwrap_or_else(|error| panic!("{error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moto_mirror_holds_the_primarys_chain_event_for_event() {
    let server = moto();
    let store = server.store("");
    let mirror = Path::from("mirror");
    let signer = Arc::new(AuditSigner::generate());
    let run = run_through_tee(store.clone(), &mirror, &signer, None).await;
    run.assert_primary_has_everything(&signer);
    assert_eq!(run.mirror_failures.get(), 0);

    let verified = common::verify(&store, &mirror, &signer).await;
    assert!(verified.is_ok(), "{:?}", verified.failures);
    assert_eq!(verified.records, run.primary.len() as u64);
    // The mirror got the same batches in the same order: same seqs, same
    // events.
    let primary: Vec<(u64, String)> = run
        .primary
        .records()
        .into_iter()
        .map(|record| (record.seq, record.event_json.to_string()))
        .collect();
    let mirrored: Vec<(u64, String)> = common::records(&store, &mirror, &ChainId::default())
        .await
        .into_iter()
        .map(|record| (record.seq, record.event_json.to_string()))
        .collect();
    assert_eq!(mirrored, primary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_refused_its_segments_dead_letters_them_and_the_primary_gets_everything() {
    let server = moto();
    let mirror = Path::from("mirror");
    let signer = Arc::new(AuditSigner::generate());
    let (denying, denials) = FailingPuts::armed(server.store(""), "/records/");
    denials.deny_all();
    let denying: Arc<dyn ObjectStore> = Arc::new(denying);
    let run = run_through_tee(denying.clone(), &mirror, &signer, None).await;
    run.assert_primary_has_everything(&signer);
    assert_eq!(run.mirror_failures.get(), run.submitted.len() as u64);

    // Nothing reached the mirror's chain; its dead letters hold every event.
    let records_dir = mirror.clone().join("default").join("records");
    assert!(
        common::object_paths(denying.as_ref(), &records_dir)
            .await
            .is_empty()
    );
    let letters = common::dead_letters(&denying, &mirror, &ChainId::default()).await;
    let mut kept: Vec<&str> = letters
        .iter()
        .map(|letter| letter.event_json.as_str())
        .collect();
    let mut expected: Vec<&str> = run
        .submitted
        .iter()
        .map(|event| event.canonical_json())
        .collect();
    kept.sort_unstable();
    expected.sort_unstable();
    assert_eq!(kept, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_refused_every_put_fails_alone_into_the_tee_fallback_file() {
    let server = moto();
    let mirror = Path::from("mirror");
    let signer = Arc::new(AuditSigner::generate());
    // Records and dead letters of the mirror's chain are refused (the probe,
    // outside the chain's folder, still passes).
    let denying: Arc<dyn ObjectStore> =
        Arc::new(FailingPuts::new(server.store(""), "mirror/default/"));
    let dir = tempfile::tempdir().unwrap();
    let fallback = FallbackFile::new(dir.path().join("mirror-fallback.jsonl"));
    let run = run_through_tee(denying, &mirror, &signer, Some(fallback.clone())).await;
    run.assert_primary_has_everything(&signer);
    assert_eq!(run.mirror_failures.get(), run.submitted.len() as u64);

    let letters = fallback.read_all().unwrap();
    let mut kept: Vec<&str> = letters
        .iter()
        .map(|letter| letter.event_json.as_str())
        .collect();
    let mut expected: Vec<&str> = run
        .submitted
        .iter()
        .map(|event| event.canonical_json())
        .collect();
    kept.sort_unstable();
    expected.sort_unstable();
    assert_eq!(kept, expected);
    assert!(
        letters
            .iter()
            .all(|letter| letter.failure_reason.contains("mirror")
                && letter.failure_reason.contains("denied")),
        "{:?}",
        letters.first().map(|letter| &letter.failure_reason)
    );
}
