//! Fail-closed admission: a guarded action runs only once its audit record
//! is kept. With the sink down it is refused; with the sink up it runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use audit_core::AuditEvent;
use audit_core::chain_writer::ChainSinkOptions;
use audit_core::pipeline::{AuditPipeline, AuditQueue, Backpressure, SubmitError};
use audit_core::retry::RetryPolicy;
use audit_core::sink::SinkError;
use audit_testkit::{FailingSink, MemoryChain};

/// Why the guarded action was refused.
#[derive(Debug)]
enum Refused {
    /// The pipeline answered that the record was not kept in the chain.
    NotKept(SubmitError),
    /// No answer within the deadline.
    TimedOut,
}

/// Runs `action` only when the audit record of it is in the chain within
/// `deadline`.
async fn guarded<T>(
    queue: &AuditQueue,
    record: AuditEvent,
    deadline: Duration,
    action: impl FnOnce() -> T,
) -> Result<T, Refused> {
    match tokio::time::timeout(deadline, queue.submit_wait(record)).await {
        Ok(Ok(_receipt)) => Ok(action()),
        Ok(Err(error)) => Err(Refused::NotKept(error)),
        Err(_elapsed) => Err(Refused::TimedOut),
    }
}

fn fail_closed_pipeline(chain: &MemoryChain, sink_down: bool) -> AuditPipeline {
    let chain = chain.clone();
    let factory = move || {
        let sink = chain.sink(ChainSinkOptions::unsigned());
        // Probability 1: every append fails, as with a store that is down.
        let probability = if sink_down { 1.0 } else { 0.0 };
        std::future::ready(Ok::<_, SinkError>(FailingSink::with_probability(
            sink,
            probability,
            7,
        )))
    };
    AuditPipeline::builder(factory)
        .backpressure(Backpressure::Reject { capacity: 64 })
        .max_restarts(2)
        .retry(RetryPolicy {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(20),
            max_retries: 2,
        })
        .spawn()
}

fn deletion(n: u64) -> AuditEvent {
    AuditEvent::new("records.delete", "user:7", serde_json::json!({"record": n})).unwrap()
}

#[tokio::test]
async fn with_the_sink_down_the_guarded_action_is_refused() {
    let chain = MemoryChain::new();
    let pipeline = fail_closed_pipeline(&chain, true);
    let queue = pipeline.queue();
    let performed = AtomicU64::new(0);
    for n in 0..3 {
        let outcome = guarded(&queue, deletion(n), Duration::from_secs(5), || {
            performed.fetch_add(1, Ordering::SeqCst)
        })
        .await;
        assert!(
            matches!(
                outcome,
                Err(Refused::NotKept(
                    SubmitError::Lost { .. } | SubmitError::DeadLettered { .. }
                ))
            ),
            "{outcome:?}"
        );
    }
    // A deadline shorter than the sink's retries refuses as well.
    let pipeline_slow = fail_closed_pipeline(&chain, true);
    let outcome = guarded(
        &pipeline_slow.queue(),
        deletion(9),
        Duration::from_millis(1),
        || performed.fetch_add(1, Ordering::SeqCst),
    )
    .await;
    assert!(matches!(outcome, Err(Refused::TimedOut)), "{outcome:?}");
    assert_eq!(performed.load(Ordering::SeqCst), 0, "a guarded action ran");
    assert!(chain.is_empty());
    drop(queue);
    pipeline.shutdown(Duration::from_secs(5)).await;
    pipeline_slow.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_full_bounded_queue_refuses_at_once_so_the_action_is_refused() {
    let chain = MemoryChain::new();
    let pipeline = fail_closed_pipeline(&chain, true);
    let queue = pipeline.queue();
    // Fill the queue faster than the failing sink drains it.
    let mut refused = None;
    for n in 0..10_000 {
        if let Err(error) = queue.try_submit(deletion(n)) {
            refused = Some(error);
            break;
        }
    }
    assert!(
        matches!(
            refused,
            Some(SubmitError::Full { .. } | SubmitError::Terminal { .. })
        ),
        "{refused:?}"
    );
    drop(queue);
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn with_the_sink_up_the_guarded_action_is_allowed_and_audited() {
    let chain = MemoryChain::new();
    let pipeline = fail_closed_pipeline(&chain, false);
    let queue = pipeline.queue();
    let performed = AtomicU64::new(0);
    for n in 0..3 {
        let outcome = guarded(&queue, deletion(n), Duration::from_secs(5), || {
            performed.fetch_add(1, Ordering::SeqCst)
        })
        .await;
        assert!(outcome.is_ok(), "{outcome:?}");
    }
    assert_eq!(performed.load(Ordering::SeqCst), 3);
    assert_eq!(chain.len(), 3);
    drop(queue);
    pipeline.shutdown(Duration::from_secs(5)).await;
}
