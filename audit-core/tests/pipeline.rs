//! The pipeline's scenarios: the original queue's tests, ported, and the
//! supervisor, backpressure, receipts and tee.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use audit_core::AuditEvent;
use audit_core::chain_writer::ChainSinkOptions;
use audit_core::dead_letter::FallbackFile;
use audit_core::keys::Keyring;
use audit_core::pipeline::{AuditPipeline, Backpressure, SubmitError, close_and_flush};
use audit_core::retry::RetryPolicy;
use audit_core::sink::{AppendOutcome, AuditSink, ErrorClass, SinkError};
use audit_core::tee::Tee;
use audit_testkit::sinks::{
    CallCounter, FailingSink, MemoryChain, PanickingSink, Recording, RecordingSink, SlowSink,
};
use tokio::sync::Semaphore;

fn event(n: usize) -> AuditEvent {
    AuditEvent::new(
        "test.event",
        format!("agent:{}", n % 3),
        serde_json::json!({ "n": n }),
    )
    .unwrap()
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(4),
        max_retries: 0,
    }
}

fn recording_factory(
    recording: &Recording,
) -> impl Fn() -> std::future::Ready<Result<RecordingSink, SinkError>> + Send + Sync + 'static {
    let recording = recording.clone();
    move || std::future::ready(Ok(recording.sink()))
}

fn balanced(pipeline: &AuditPipeline) {
    let snapshot = pipeline.metrics().snapshot();
    assert!(snapshot.is_balanced(), "invariant broken: {snapshot:?}");
}

/// A sink whose every batch waits for a permit: lets a test hold the drainer.
struct GatedSink {
    gate: Arc<Semaphore>,
    inner: RecordingSink,
}

#[async_trait]
impl AuditSink for GatedSink {
    async fn append_batch(
        &mut self,
        events: &[AuditEvent],
    ) -> Result<Vec<AppendOutcome>, SinkError> {
        self.gate.acquire().await.unwrap().forget();
        self.inner.append_batch(events).await
    }
    fn describe(&self) -> String {
        "gated".into()
    }
}

fn gated(
    recording: &Recording,
    gate: &Arc<Semaphore>,
) -> impl Fn() -> std::future::Ready<Result<GatedSink, SinkError>> + Send + Sync + 'static {
    let (recording, gate) = (recording.clone(), gate.clone());
    move || {
        std::future::ready(Ok(GatedSink {
            gate: gate.clone(),
            inner: recording.sink(),
        }))
    }
}

#[tokio::test]
async fn submit_with_a_receiver_queues_and_appends() {
    let recording = RecordingSink::new().handle();
    let pipeline = AuditPipeline::builder(recording_factory(&recording)).spawn();
    let queue = pipeline.queue();
    assert!(queue.submit(event(1)));
    assert!(pipeline.drain_pending(Duration::from_secs(5)).await);
    let snapshot = pipeline.metrics().snapshot();
    assert_eq!(
        (
            snapshot.submitted,
            snapshot.appended,
            snapshot.send_failures
        ),
        (1, 1, 0)
    );
    assert_eq!(recording.count(), 1);
    assert!(pipeline.shutdown(Duration::from_secs(5)).await.is_clean());
}

#[tokio::test]
async fn submit_without_a_receiver_returns_false_and_counts_the_loss() {
    let recording = RecordingSink::new().handle();
    let pipeline = AuditPipeline::builder(recording_factory(&recording)).spawn();
    let queue = pipeline.queue();
    let metrics = pipeline.metrics();
    pipeline.shutdown(Duration::from_secs(5)).await;
    assert!(
        !queue.submit(event(1)),
        "submit after shutdown must report not queued"
    );
    let snapshot = metrics.snapshot();
    assert_eq!(
        (snapshot.submitted, snapshot.lost, snapshot.send_failures),
        (1, 1, 1)
    );
    assert!(snapshot.is_balanced());
    match queue.try_submit(event(2)) {
        Err(SubmitError::Closed { event: back }) => assert_eq!(back.event_type(), "test.event"),
        other => panic!("expected Closed, got {other:?}"),
    }
    assert_eq!(
        metrics.snapshot().submitted,
        1,
        "a refused try_submit is not submitted"
    );
    assert_eq!(recording.count(), 0);
}

#[tokio::test]
async fn burst_of_200_into_a_slow_sink_drops_nothing() {
    let recording = RecordingSink::new().handle();
    let factory = {
        let recording = recording.clone();
        move || {
            std::future::ready(Ok::<_, SinkError>(SlowSink::new(
                recording.sink(),
                Duration::from_millis(5),
            )))
        }
    };
    let pipeline = AuditPipeline::builder(factory).max_batch(16).spawn();
    let queue = pipeline.queue();
    let events: Vec<AuditEvent> = (0..200).map(event).collect();
    for event in &events {
        assert!(queue.submit(event.clone()));
    }
    balanced(&pipeline);
    assert!(pipeline.drain_pending(Duration::from_secs(20)).await);
    assert_eq!(recording.count(), 200);
    recording.assert_in_order(&events.iter().map(AuditEvent::id).collect::<Vec<_>>());
    assert!(recording.batch_sizes().iter().all(|size| *size <= 16));
    assert!(
        recording.batch_sizes().len() < 200,
        "a slow sink should receive batches, not single events"
    );
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn drainer_continues_after_an_error() {
    let recording = RecordingSink::new().handle();
    let calls = CallCounter::new();
    let factory = {
        let (recording, calls) = (recording.clone(), calls.clone());
        move || {
            std::future::ready(Ok::<_, SinkError>(
                FailingSink::on_call(recording.sink(), 1).sharing(calls.clone()),
            ))
        }
    };
    let pipeline = AuditPipeline::builder(factory).retry(fast_retry()).spawn();
    let queue = pipeline.queue();
    queue.submit(event(1));
    assert!(pipeline.drain_pending(Duration::from_secs(5)).await);
    queue.submit(event(2));
    assert!(pipeline.drain_pending(Duration::from_secs(5)).await);
    let snapshot = pipeline.metrics().snapshot();
    assert_eq!(
        (
            snapshot.appended,
            snapshot.append_failures,
            snapshot.restarts
        ),
        (2, 1, 1)
    );
    assert!(!snapshot.terminal);
    assert_eq!(recording.count(), 2);
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_sink_dead_letter_is_counted_and_the_drainer_goes_on() {
    let chain = MemoryChain::new();
    let pipeline = AuditPipeline::builder(chain.factory(ChainSinkOptions::unsigned())).spawn();
    let queue = pipeline.queue();
    chain.fail_next_appends(1, ErrorClass::Permanent);
    let refused = queue.submit_wait(event(1)).await;
    assert!(
        matches!(refused, Err(SubmitError::DeadLettered { .. })),
        "{refused:?}"
    );
    let receipt = queue.submit_wait(event(2)).await.unwrap();
    assert_eq!(receipt.seq, 1);
    let snapshot = pipeline.metrics().snapshot();
    assert_eq!(
        (
            snapshot.dlq_landed,
            snapshot.dead_lettered,
            snapshot.appended
        ),
        (1, 1, 1)
    );
    assert!(snapshot.is_balanced());
    assert_eq!(chain.dead_letters().len(), 1);
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_panic_is_recorded_and_recovered_from() {
    let recording = RecordingSink::new().handle();
    let calls = CallCounter::new();
    let factory = {
        let (recording, calls) = (recording.clone(), calls.clone());
        move || {
            std::future::ready(Ok::<_, SinkError>(
                PanickingSink::on_call(recording.sink(), 2).sharing(calls.clone()),
            ))
        }
    };
    let pipeline = AuditPipeline::builder(factory).retry(fast_retry()).spawn();
    let queue = pipeline.queue();
    let events: Vec<AuditEvent> = (0..10).map(event).collect();
    queue.submit(events[0].clone());
    assert!(pipeline.drain_pending(Duration::from_secs(5)).await);
    queue.submit(events[1].clone());
    assert!(pipeline.drain_pending(Duration::from_secs(5)).await);
    for event in &events[2..] {
        queue.submit(event.clone());
    }
    assert!(pipeline.drain_pending(Duration::from_secs(5)).await);
    let snapshot = pipeline.metrics().snapshot();
    assert_eq!(snapshot.drainer_panics, 1);
    assert_eq!(snapshot.restarts, 1);
    assert_eq!(
        snapshot.appended, 10,
        "events after the panic must still be appended"
    );
    recording.assert_in_order(&events.iter().map(AuditEvent::id).collect::<Vec<_>>());
    assert!(pipeline.shutdown(Duration::from_secs(5)).await.is_clean());
}

#[tokio::test]
async fn a_failing_or_panicking_factory_counts_as_a_failure() {
    let recording = RecordingSink::new().handle();
    let builds = Arc::new(AtomicU64::new(0));
    let factory = {
        let (recording, builds) = (recording.clone(), builds.clone());
        move || {
            let build = builds.fetch_add(1, Ordering::SeqCst);
            let recording = recording.clone();
            async move {
                match build {
                    0 => Err(SinkError::new("factory", ErrorClass::Transient, "not yet")),
                    1 => panic!("factory panic"),
                    _ => Ok(recording.sink()),
                }
            }
        }
    };
    let pipeline = AuditPipeline::builder(factory).retry(fast_retry()).spawn();
    let receipt = pipeline.queue().submit_wait(event(1)).await;
    assert!(receipt.is_ok(), "{receipt:?}");
    let snapshot = pipeline.metrics().snapshot();
    assert_eq!(
        (
            snapshot.append_failures,
            snapshot.drainer_panics,
            snapshot.restarts
        ),
        (1, 1, 2)
    );
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn graceful_shutdown_drains_50() {
    let recording = RecordingSink::new().handle();
    let factory = {
        let recording = recording.clone();
        move || {
            std::future::ready(Ok::<_, SinkError>(SlowSink::new(
                recording.sink(),
                Duration::from_millis(2),
            )))
        }
    };
    let pipeline = AuditPipeline::builder(factory).max_batch(4).spawn();
    let queue = pipeline.queue();
    for n in 0..50 {
        assert!(queue.submit(event(n)));
    }
    let report = pipeline.shutdown(Duration::from_secs(10)).await;
    assert!(!report.timed_out);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.metrics.appended, 50);
    assert_eq!(recording.count(), 50);
    assert!(!queue.submit(event(51)), "intake is closed after shutdown");
}

#[tokio::test]
async fn close_and_flush_waits_for_the_drainer() {
    let recording = RecordingSink::new().handle();
    let pipeline = AuditPipeline::builder(recording_factory(&recording)).spawn();
    let queue = pipeline.queue();
    for n in 0..20 {
        queue.submit(event(n));
    }
    let report = close_and_flush(queue, pipeline).await;
    assert_eq!(report.metrics.appended, 20);
    assert_eq!(recording.count(), 20);
}

#[tokio::test]
async fn drain_pending_leaves_the_channel_open() {
    let recording = RecordingSink::new().handle();
    let pipeline = AuditPipeline::builder(recording_factory(&recording)).spawn();
    let queue = pipeline.queue();
    queue.submit(event(1));
    assert!(pipeline.drain_pending(Duration::from_secs(5)).await);
    assert!(
        queue.submit(event(2)),
        "the channel must stay open after drain_pending"
    );
    assert!(pipeline.drain_pending(Duration::from_secs(5)).await);
    assert_eq!(recording.count(), 2);
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn drain_pending_times_out_when_nothing_drains() {
    let recording = RecordingSink::new().handle();
    let gate = Arc::new(Semaphore::new(0));
    let pipeline = AuditPipeline::builder(gated(&recording, &gate)).spawn();
    pipeline.queue().submit(event(1));
    assert!(!pipeline.drain_pending(Duration::from_millis(60)).await);
    assert_eq!(pipeline.metrics().snapshot().in_flight, 1);
    gate.add_permits(1);
    assert!(pipeline.drain_pending(Duration::from_secs(5)).await);
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn drain_pending_returns_at_once_when_drained() {
    let recording = RecordingSink::new().handle();
    let pipeline = AuditPipeline::builder(recording_factory(&recording)).spawn();
    let started = Instant::now();
    assert!(pipeline.drain_pending(Duration::from_secs(30)).await);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "an idle pipeline has nothing to wait for"
    );
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn shutdown_times_out_and_reports_what_is_in_flight() {
    let recording = RecordingSink::new().handle();
    let gate = Arc::new(Semaphore::new(0));
    let pipeline = AuditPipeline::builder(gated(&recording, &gate)).spawn();
    let metrics = pipeline.metrics();
    for n in 0..3 {
        pipeline.queue().submit(event(n));
    }
    let report = pipeline.shutdown(Duration::from_millis(50)).await;
    assert!(report.timed_out);
    assert_eq!(report.metrics.in_flight, 3);
    assert!(!report.is_clean());
    gate.add_permits(10);
    assert!(
        audit_core::pipeline::drain_pending(&metrics, Duration::from_secs(5)).await,
        "the drainer keeps going after a timed-out shutdown"
    );
}

#[tokio::test]
async fn failures_are_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let fallback = dir.path().join("fallback.jsonl");
    let recording = RecordingSink::new().handle();
    let factory = {
        let recording = recording.clone();
        move || {
            std::future::ready(Ok::<_, SinkError>(FailingSink::with_probability(
                recording.sink(),
                1.0,
                7,
            )))
        }
    };
    let pipeline = AuditPipeline::builder(factory)
        .retry(fast_retry())
        .max_restarts(2)
        .fallback_path(&fallback)
        .spawn();
    let queue = pipeline.queue();
    for n in 0..5 {
        queue.submit(event(n));
    }
    assert!(
        pipeline.drain_pending(Duration::from_secs(10)).await,
        "failed events must still be accounted"
    );
    let snapshot = pipeline.metrics().snapshot();
    assert!(snapshot.is_balanced());
    assert_eq!(
        (
            snapshot.appended,
            snapshot.dead_lettered,
            snapshot.lost,
            snapshot.in_flight
        ),
        (0, 5, 0, 0)
    );
    assert!(snapshot.append_failures >= 3);
    assert_eq!(FallbackFile::new(&fallback).read_all().unwrap().len(), 5);
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn max_restarts_sends_the_batch_to_the_fallback_file_and_turns_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let fallback = dir.path().join("dead").join("fallback-dead-letters.jsonl");
    let recording = RecordingSink::new().handle();
    let calls = CallCounter::new();
    let healthy_from = 5;
    let factory = {
        let (recording, calls) = (recording.clone(), calls.clone());
        // Calls 1..=4 fail: the first batch exhausts max_restarts = 3; then the sink recovers.
        move || {
            std::future::ready(Ok::<_, SinkError>(audit_testkit::sinks::FlakySink::new(
                recording.sink(),
                healthy_from - 1,
                calls.clone(),
            )))
        }
    };
    let pipeline = AuditPipeline::builder(factory)
        .retry(fast_retry())
        .max_restarts(3)
        .fallback_path(&fallback)
        .spawn();
    let queue = pipeline.queue();
    let first = event(1);
    let answer = queue.submit_wait(first.clone()).await;
    match answer {
        Err(SubmitError::DeadLettered { reason }) => {
            assert!(reason.contains("fallback"), "{reason}")
        }
        other => panic!("expected DeadLettered, got {other:?}"),
    }
    let letters = FallbackFile::new(&fallback).read_all().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].event().unwrap(),
        first,
        "the fallback file holds the event, replayable"
    );
    assert_eq!(letters[0].attempts, 4);
    let snapshot = pipeline.metrics().snapshot();
    assert!(snapshot.terminal);
    assert_eq!(
        (
            snapshot.restarts,
            snapshot.append_failures,
            snapshot.dead_lettered
        ),
        (3, 4, 1)
    );
    // Terminal: try_submit refuses so callers can fail closed ...
    match queue.try_submit(event(2)) {
        Err(SubmitError::Terminal { event }) => assert_eq!(event.event_type(), "test.event"),
        other => panic!("expected Terminal, got {other:?}"),
    }
    // ... while submit and submit_wait still queue, and a recovered sink takes them.
    let receipt = queue.submit_wait(event(3)).await.unwrap();
    assert_eq!(receipt.seq, 1);
    assert!(
        pipeline.metrics().snapshot().terminal,
        "terminal stays set as an alarm"
    );
    assert_eq!(recording.count(), 1);
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn after_terminal_every_failing_batch_goes_to_the_fallback_file() {
    let dir = tempfile::tempdir().unwrap();
    let fallback = dir.path().join("fallback.jsonl");
    let recording = RecordingSink::new().handle();
    let factory = {
        let recording = recording.clone();
        move || {
            std::future::ready(Ok::<_, SinkError>(FailingSink::with_probability(
                recording.sink(),
                1.0,
                1,
            )))
        }
    };
    let pipeline = AuditPipeline::builder(factory)
        .retry(fast_retry())
        .max_restarts(1)
        .fallback_path(&fallback)
        .spawn();
    let queue = pipeline.queue();
    queue.submit(event(1));
    assert!(pipeline.drain_pending(Duration::from_secs(5)).await);
    let failures_at_terminal = pipeline.metrics().snapshot().append_failures;
    queue.submit(event(2));
    assert!(pipeline.drain_pending(Duration::from_secs(5)).await);
    let snapshot = pipeline.metrics().snapshot();
    assert_eq!(
        snapshot.append_failures,
        failures_at_terminal + 1,
        "one attempt per batch once terminal"
    );
    assert_eq!(FallbackFile::new(&fallback).read_all().unwrap().len(), 2);
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn without_a_fallback_file_failed_events_are_counted_lost() {
    let recording = RecordingSink::new().handle();
    let factory = {
        let recording = recording.clone();
        move || {
            std::future::ready(Ok::<_, SinkError>(FailingSink::with_probability(
                recording.sink(),
                1.0,
                3,
            )))
        }
    };
    let pipeline = AuditPipeline::builder(factory)
        .retry(fast_retry())
        .max_restarts(0)
        .spawn();
    let answer = pipeline.queue().submit_wait(event(1)).await;
    assert!(
        matches!(answer, Err(SubmitError::Lost { .. })),
        "{answer:?}"
    );
    let snapshot = pipeline.metrics().snapshot();
    assert_eq!((snapshot.lost, snapshot.in_flight), (1, 0));
    assert!(snapshot.is_balanced());
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_unwritable_fallback_file_loses_the_batch_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let recording = RecordingSink::new().handle();
    let factory = {
        let recording = recording.clone();
        move || {
            std::future::ready(Ok::<_, SinkError>(FailingSink::with_probability(
                recording.sink(),
                1.0,
                3,
            )))
        }
    };
    let pipeline = AuditPipeline::builder(factory)
        .retry(fast_retry())
        .max_restarts(0)
        .fallback_path(blocker.join("fallback.jsonl"))
        .spawn();
    let answer = pipeline.queue().submit_wait(event(1)).await;
    match answer {
        Err(SubmitError::Lost { reason }) => assert!(reason.contains("not-a-dir"), "{reason}"),
        other => panic!("expected Lost, got {other:?}"),
    }
    assert_eq!(pipeline.metrics().snapshot().lost, 1);
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn block_mode_waits_for_room() {
    let recording = RecordingSink::new().handle();
    let gate = Arc::new(Semaphore::new(0));
    let pipeline = AuditPipeline::builder(gated(&recording, &gate))
        .max_batch(1)
        .backpressure(Backpressure::Block { capacity: 2 })
        .spawn();
    let queue = pipeline.queue();
    queue.submit_async(event(0)).await.unwrap();
    // The drainer holds event 0 at the gate once it has taken it.
    tokio::time::timeout(Duration::from_secs(5), async {
        while pipeline.metrics().snapshot().queue_depth > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap();
    queue.submit_async(event(1)).await.unwrap();
    queue.submit_async(event(2)).await.unwrap();
    assert!(
        !queue.submit(event(99)),
        "submit never blocks: a full Block queue refuses"
    );
    let waiting = tokio::spawn({
        let queue = queue.clone();
        async move { queue.submit_async(event(3)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiting.is_finished(),
        "submit_async must wait while the queue is full"
    );
    gate.add_permits(100);
    waiting.await.unwrap().unwrap();
    assert!(pipeline.drain_pending(Duration::from_secs(5)).await);
    assert_eq!(recording.count(), 4);
    let snapshot = pipeline.metrics().snapshot();
    assert_eq!(
        (snapshot.submitted, snapshot.appended, snapshot.lost),
        (5, 4, 1)
    );
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn reject_mode_gives_the_event_back() {
    let recording = RecordingSink::new().handle();
    let gate = Arc::new(Semaphore::new(0));
    let pipeline = AuditPipeline::builder(gated(&recording, &gate))
        .max_batch(1)
        .backpressure(Backpressure::Reject { capacity: 1 })
        .spawn();
    let queue = pipeline.queue();
    let mut refused = None;
    for n in 0..5 {
        match queue.try_submit(event(n)) {
            Ok(()) => {}
            Err(SubmitError::Full { event }) => {
                refused = Some(event);
                break;
            }
            Err(other) => panic!("expected Full, got {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = refused.expect("a Reject queue of capacity 1 with a stuck drainer must fill up");
    assert_eq!(refused.event_type(), "test.event");
    let snapshot = pipeline.metrics().snapshot();
    assert_eq!(snapshot.send_failures, 1);
    assert!(snapshot.is_balanced());
    assert!(matches!(
        queue.submit_async(event(9)).await,
        Err(SubmitError::Full { .. })
    ));
    gate.add_permits(100);
    assert!(pipeline.drain_pending(Duration::from_secs(5)).await);
    assert_eq!(
        recording.count() as u64,
        pipeline.metrics().snapshot().submitted
    );
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn submit_wait_gives_receipts_that_match_the_chain() {
    let chain = MemoryChain::new();
    let pipeline = AuditPipeline::builder(chain.factory(ChainSinkOptions::unsigned())).spawn();
    let queue = pipeline.queue();
    let mut receipts = Vec::new();
    for n in 0..3 {
        receipts.push(queue.submit_wait(event(n)).await.unwrap());
    }
    let records = chain.records();
    for (receipt, record) in receipts.iter().zip(&records) {
        assert_eq!(
            (receipt.seq, receipt.record_hash),
            (record.seq, record.hash)
        );
        assert!(!receipt.already_present);
    }
    let again = records[0].event_json.clone();
    let replay = queue
        .submit_wait(AuditEvent::from_canonical(&again).unwrap())
        .await
        .unwrap();
    assert!(replay.already_present);
    assert_eq!(replay.seq, 1);
    assert_eq!(chain.len(), 3);
    assert!(chain.verify(Keyring::new()).is_ok());
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn linger_and_max_batch_shape_the_batches() {
    let recording = RecordingSink::new().handle();
    let pipeline = AuditPipeline::builder(recording_factory(&recording))
        .max_batch(8)
        .linger(Duration::from_millis(30))
        .spawn();
    let queue = pipeline.queue();
    for n in 0..20 {
        queue.submit(event(n));
    }
    assert!(pipeline.drain_pending(Duration::from_secs(5)).await);
    let sizes = recording.batch_sizes();
    assert_eq!(sizes.iter().sum::<usize>(), 20);
    assert!(sizes.iter().all(|size| *size <= 8), "{sizes:?}");
    assert_eq!(sizes[0], 8, "lingering fills the first batch: {sizes:?}");
    let snapshot = pipeline.metrics().snapshot();
    assert_eq!(snapshot.max_batch_size, 8);
    assert_eq!(snapshot.batches, sizes.len() as u64);
    assert_eq!(
        snapshot.append_latency_histogram.iter().sum::<u64>(),
        sizes.len() as u64
    );
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn tee_with_a_failing_mirror_keeps_the_primary_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let mirror_fallback = dir.path().join("mirror-fallback.jsonl");
    let chain = MemoryChain::new();
    let mirror_ok = RecordingSink::new().handle();
    let failures = audit_core::tee::MirrorFailures::default();
    let factory = {
        let (chain, mirror_ok, failures, mirror_fallback) = (
            chain.clone(),
            mirror_ok.clone(),
            failures.clone(),
            mirror_fallback.clone(),
        );
        move || {
            let failing = FailingSink::with_probability(RecordingSink::new(), 1.0, 5);
            let panicking = PanickingSink::on_call(RecordingSink::new(), 1);
            let tee = Tee::new(
                Box::new(chain.sink(ChainSinkOptions::unsigned())),
                vec![
                    Box::new(mirror_ok.sink()),
                    Box::new(failing),
                    Box::new(panicking),
                ],
            )
            .with_mirror_fallback(
                audit_core::ChainId::default(),
                FallbackFile::new(&mirror_fallback),
            )
            .with_failure_counter(failures.clone());
            std::future::ready(Ok::<_, SinkError>(tee))
        }
    };
    let pipeline = AuditPipeline::builder(factory).spawn();
    let queue = pipeline.queue();
    for n in 0..3 {
        let receipt = queue.submit_wait(event(n)).await.unwrap();
        assert_eq!(receipt.seq, n as u64 + 1);
    }
    let snapshot = pipeline.metrics().snapshot();
    assert_eq!(
        (
            snapshot.appended,
            snapshot.append_failures,
            snapshot.drainer_panics
        ),
        (3, 0, 0),
        "mirror failures never fail the primary"
    );
    assert_eq!(chain.len(), 3);
    assert_eq!(mirror_ok.count(), 3);
    // The failing mirror missed 3 events; the panicking one missed its first batch of 1.
    assert_eq!(failures.get(), 4);
    assert_eq!(
        FallbackFile::new(&mirror_fallback)
            .read_all()
            .unwrap()
            .len(),
        4
    );
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn shutdown_during_a_linger_loses_nothing() {
    let recording = RecordingSink::new().handle();
    let pipeline = AuditPipeline::builder(recording_factory(&recording))
        .max_batch(100)
        .linger(Duration::from_secs(30))
        .spawn();
    let queue = pipeline.queue();
    for n in 0..3 {
        queue.submit(event(n));
    }
    // Let the drainer take the events and start lingering for more.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let report = pipeline.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.metrics.appended, 3);
    assert_eq!(recording.count(), 3);
}
