//! Ending a pipeline: [`AuditPipeline::shutdown`], [`close_and_flush`], and
//! the error logged when a pipeline is dropped without either.

use std::time::Duration;

use super::AuditPipeline;
use super::queue::AuditQueue;
use crate::chain::Checkpoint;
use crate::metrics::MetricsSnapshot;

/// What a shutdown achieved.
#[derive(Debug, Clone)]
pub struct ShutdownReport {
    /// The metrics when the shutdown returned.
    pub metrics: MetricsSnapshot,
    /// Whether the timeout passed before the drainer finished; the drainer
    /// then keeps running in the background and `metrics.in_flight` events
    /// were still unresolved.
    pub timed_out: bool,
    /// The checkpoint the sink wrote at shutdown, if any.
    pub checkpoint: Option<Checkpoint>,
    /// Errors from checkpointing or closing the sink, or from the drainer task.
    pub errors: Vec<String>,
}

impl ShutdownReport {
    /// Whether every submitted event was resolved and the sink closed cleanly.
    pub fn is_clean(&self) -> bool {
        !self.timed_out && self.metrics.in_flight == 0 && self.errors.is_empty()
    }
}

impl AuditPipeline {
    /// Stops intake (later submissions are refused as closed), drains what
    /// is queued within `timeout`, checkpoints and closes the sink.
    pub async fn shutdown(mut self, timeout: Duration) -> ShutdownReport {
        self.finish(Some(timeout)).await
    }

    async fn finish(&mut self, timeout: Option<Duration>) -> ShutdownReport {
        self.queue = None;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let mut report = ShutdownReport {
            metrics: MetricsSnapshot::default(),
            timed_out: false,
            checkpoint: None,
            errors: Vec::new(),
        };
        if let Some(join) = self.join.take() {
            let joined = match timeout {
                Some(timeout) => tokio::time::timeout(timeout, join).await,
                None => Ok(join.await),
            };
            match joined {
                Ok(Ok(exit)) => {
                    report.checkpoint = exit.checkpoint;
                    report.errors = exit.close_errors;
                }
                Ok(Err(join_error)) => report
                    .errors
                    .push(format!("audit drainer task failed: {join_error}")),
                Err(_) => report.timed_out = true,
            }
        }
        if let Some(publisher) = self.publisher.take() {
            publisher.abort();
        }
        self.metrics.publish();
        report.metrics = self.metrics.snapshot();
        if report.timed_out {
            tracing::error!(
                pipeline = self.metrics.name(),
                in_flight = report.metrics.in_flight,
                "audit pipeline shutdown timed out; the drainer keeps running in the background"
            );
        }
        report
    }
}

/// Drops the producer side and waits, without a time limit, for the drainer
/// to append everything queued and close the sink (the original queue's API).
pub async fn close_and_flush(queue: AuditQueue, mut pipeline: AuditPipeline) -> ShutdownReport {
    drop(queue);
    pipeline.finish(None).await
}

impl Drop for AuditPipeline {
    fn drop(&mut self) {
        if let Some(publisher) = self.publisher.take() {
            publisher.abort();
        }
        if self.join.is_some() {
            tracing::error!(
                pipeline = self.metrics.name(),
                in_flight = self.metrics.in_flight(),
                "audit pipeline dropped without shutdown: events still in flight are not guaranteed to reach the sink, and the sink is not checkpointed until every queue is dropped"
            );
        }
    }
}
