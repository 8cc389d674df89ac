//! Durable admission through the pipeline: journaled events survive a
//! pipeline that never delivered them, are replayed first and exactly once,
//! and a journal that cannot keep an event refuses it (fail closed).

use std::time::Duration;

use audit_core::AuditEvent;
use audit_core::chain_writer::ChainSinkOptions;
use audit_core::journal::{JournalConfig, JournalError, WhenFull};
use audit_core::keys::Keyring;
use audit_core::pipeline::{AuditPipeline, SubmitError};
use audit_core::retry::RetryPolicy;
use audit_core::sink::{ErrorClass, SinkError};
use audit_testkit::MemoryChain;

fn event(n: u64) -> AuditEvent {
    AuditEvent::new("journal.pipeline", "agent:j", serde_json::json!({ "n": n })).unwrap()
}

fn journal_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter(|entry| {
                    entry.as_ref().is_ok_and(|entry| {
                        entry
                            .path()
                            .extension()
                            .is_some_and(|extension| extension == "journal")
                    })
                })
                .count()
        })
        .unwrap_or(0)
}

/// Opens the journal once the previous holder has let go of its lock.
async fn open_when_free(
    builder: impl Fn() -> Result<audit_core::pipeline::PipelineBuilder, JournalError>,
) -> audit_core::pipeline::PipelineBuilder {
    for _ in 0..200 {
        match builder() {
            Ok(builder) => return builder,
            Err(JournalError::Locked { .. }) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(error) => panic!("{error}"),
        }
    }
    panic!("the journal stayed locked")
}

#[test]
fn journaled_events_the_sink_never_got_are_replayed_first_and_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig::new(dir.path().join("journal"));
    let events: Vec<AuditEvent> = (0..200).map(event).collect();

    // A service whose sink is down dies (its runtime is torn down) with
    // every event journaled and none delivered.
    let crashed = tokio::runtime::Runtime::new().unwrap();
    crashed.block_on(async {
        let pipeline = AuditPipeline::builder(|| async {
            Err::<audit_testkit::RecordingSink, _>(SinkError::new(
                "down",
                ErrorClass::Transient,
                "unreachable",
            ))
        })
        .retry(RetryPolicy {
            initial: Duration::from_secs(30),
            max: Duration::from_secs(30),
            max_retries: 0,
        })
        .max_restarts(100)
        .journal(config.clone())
        .unwrap()
        .spawn();
        for event in &events {
            pipeline
                .queue()
                .submit_durable(event.clone())
                .await
                .unwrap();
        }
        assert_eq!(pipeline.metrics().snapshot().appended, 0);
        drop(pipeline);
    });
    crashed.shutdown_timeout(Duration::from_secs(1));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(replay_after_crash(config, events));
}

async fn replay_after_crash(config: JournalConfig, events: Vec<AuditEvent>) {
    // Restart with a working sink: the journal replays them before anything new.
    let chain = MemoryChain::new();
    let pipeline = open_when_free(|| {
        AuditPipeline::builder(chain.factory(ChainSinkOptions::unsigned())).journal(config.clone())
    })
    .await
    .spawn();
    let later = event(999);
    pipeline
        .queue()
        .submit_durable(later.clone())
        .await
        .unwrap();
    let report = pipeline.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.metrics.appended, 201);
    assert!(report.metrics.is_balanced());
    let ids: Vec<String> = chain
        .records()
        .iter()
        .map(|record| record.columns.as_ref().unwrap().id.to_string())
        .collect();
    let mut expected: Vec<String> = events.iter().map(|event| event.id().to_owned()).collect();
    expected.push(later.id().to_owned());
    assert_eq!(ids, expected);
    assert!(chain.verify(Keyring::new()).is_ok());

    // Everything is in the sink, and a settled journal keeps no segment:
    // a third start replays nothing.
    let pipeline = AuditPipeline::builder(chain.factory(ChainSinkOptions::unsigned()))
        .journal(config.clone())
        .unwrap()
        .spawn();
    let report = pipeline.shutdown(Duration::from_secs(10)).await;
    assert!(
        report.metrics.submitted == 0,
        "replayed {} events already settled",
        report.metrics.submitted
    );
    assert_eq!(chain.len(), 201, "a replay appended an event twice");
}

#[tokio::test]
async fn settled_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = JournalConfig::new(dir.path().join("journal"));
    config = config.with_segment_bytes(2048);
    let chain = MemoryChain::new();
    let pipeline = AuditPipeline::builder(chain.factory(ChainSinkOptions::unsigned()))
        .journal(config.clone())
        .unwrap()
        .spawn();
    for n in 0..300 {
        pipeline.queue().submit_durable(event(n)).await.unwrap();
    }
    assert!(pipeline.drain_pending(Duration::from_secs(10)).await);
    // Every event is settled: at most the active segment remains.
    assert!(
        journal_files(config.dir()) <= 1,
        "{} segments kept",
        journal_files(config.dir())
    );
    pipeline.shutdown(Duration::from_secs(5)).await;
    assert_eq!(chain.len(), 300);
}

#[tokio::test]
async fn a_full_journal_in_reject_mode_refuses_and_returns_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = JournalConfig::new(dir.path().join("journal"));
    config = config.with_max_bytes(1500);
    config = config.with_when_full(WhenFull::Reject);
    let chain = MemoryChain::new();
    chain.fail_next_appends(1000, ErrorClass::Transient);
    let pipeline = AuditPipeline::builder(chain.factory(ChainSinkOptions::unsigned()))
        .retry(RetryPolicy {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(5),
            max_retries: 0,
        })
        .journal(config)
        .unwrap()
        .spawn();
    let queue = pipeline.queue();
    let mut admitted = 0;
    let refused = loop {
        let candidate = event(admitted);
        match queue.submit_durable(candidate.clone()).await {
            Ok(()) => admitted += 1,
            Err(error) => break (error, candidate),
        }
    };
    let (error, candidate) = refused;
    assert!(
        matches!(
            &error,
            SubmitError::NotJournaled {
                source: JournalError::Full { .. },
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("not admitted"));
    assert_eq!(error.into_event(), Some(candidate));
    assert!(admitted >= 2);
    drop(pipeline);
}

#[tokio::test]
async fn submit_durable_without_a_journal_is_refused() {
    let chain = MemoryChain::new();
    let pipeline = AuditPipeline::builder(chain.factory(ChainSinkOptions::unsigned())).spawn();
    let error = pipeline.queue().submit_durable(event(1)).await.unwrap_err();
    assert!(matches!(error, SubmitError::NoJournal { .. }), "{error:?}");
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_corrupt_journal_stops_the_pipeline_from_being_built() {
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig::new(dir.path().join("journal"));
    std::fs::create_dir_all(config.dir()).unwrap();
    let segment = config.dir().join("00000000000000000001.journal");
    std::fs::write(&segment, b"not a journal segment at all").unwrap();
    let chain = MemoryChain::new();
    let error = AuditPipeline::builder(chain.factory(ChainSinkOptions::unsigned()))
        .journal(config)
        .unwrap_err();
    assert!(
        matches!(error, JournalError::Corrupt { offset: 0, .. }),
        "{error:?}"
    );
    assert_eq!(
        std::fs::read(&segment).unwrap(),
        b"not a journal segment at all"
    );
}
