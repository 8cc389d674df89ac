//! How much memory one queued event holds, measured on its own: events are
//! built and submitted to a pipeline whose sink does not take them until
//! the measurement is over, so every event built is in the queue when the
//! process's resident size is read.
//!
//! It runs first, in a fresh process, so that the allocator has no freed
//! memory of earlier runs to hand out again (which would hide growth).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use audit_core::AuditEvent;
use audit_core::pipeline::AuditPipeline;
use audit_core::sink::{AppendOutcome, AuditSink, SinkError};
use tokio::sync::Semaphore;

use super::measure::proc_status_bytes;
use crate::error::CliError;

/// What the measurement found.
pub struct QueueMemory {
    /// Events in the queue when the resident size was read.
    pub queued: u64,
    /// Resident size grown by building and queueing them.
    pub growth: u64,
}

impl QueueMemory {
    /// Bytes of resident memory per queued event.
    pub fn bytes_per_event(&self) -> f64 {
        if self.queued == 0 {
            return 0.0;
        }
        self.growth as f64 / self.queued as f64
    }
}

/// Builds `events` events with `build` and queues them all behind a held
/// sink, then reads how far the resident size grew.
pub fn measure(
    runtime: &tokio::runtime::Runtime,
    events: u64,
    build: impl Fn(u64) -> Result<AuditEvent, audit_core::EventError>,
) -> Result<QueueMemory, CliError> {
    let gate = Arc::new(Semaphore::new(0));
    let sink_gate = gate.clone();
    let pipeline = {
        let _context = runtime.enter();
        AuditPipeline::builder(move || {
            let gate = sink_gate.clone();
            async move { Ok::<_, SinkError>(HeldSink { gate }) }
        })
        .name("bench-queue-memory")
        .max_batch(1)
        .spawn()
    };
    let queue = pipeline.queue();
    let before = proc_status_bytes("VmRSS");
    for n in 0..events {
        let event = build(n)
            .map_err(|error| CliError::usage(format!("building a bench event: {error}")))?;
        if !queue.submit(event) {
            return Err(CliError::usage(
                "the queue refused an event while measuring its memory".to_string(),
            ));
        }
    }
    // The drainer holds at most one batch of one event outside the queue.
    std::thread::sleep(Duration::from_millis(50));
    let growth = proc_status_bytes("VmRSS").saturating_sub(before);
    let queued = pipeline.metrics().snapshot().queue_depth;
    gate.close();
    drop(queue);
    let _ = runtime.block_on(pipeline.shutdown(Duration::from_secs(60)));
    Ok(QueueMemory { queued, growth })
}

/// A sink that takes nothing until its gate opens (it never does: closing
/// the gate makes every append return at once). It writes nothing, so it
/// says so: every event it is handed is dead-lettered, never counted
/// appended.
struct HeldSink {
    gate: Arc<Semaphore>,
}

#[async_trait]
impl AuditSink for HeldSink {
    async fn append_batch(
        &mut self,
        events: &[AuditEvent],
    ) -> Result<Vec<AppendOutcome>, SinkError> {
        let _ = self.gate.acquire().await;
        Ok(events
            .iter()
            .map(|_| AppendOutcome::DeadLettered {
                reason: "the memory measurement's held sink writes nothing".into(),
            })
            .collect())
    }

    fn describe(&self) -> String {
        "held sink (bench)".into()
    }
}
