//! The drainer's two ends of a batch: collecting it from the channel, and
//! settling its outcomes (metrics, receipts, logs).

use std::time::Duration;

use super::SubmitError;
use super::queue::{Envelope, Receiver};
use crate::metrics::PipelineMetrics;
use crate::sink::AppendOutcome;

/// Fills `batch` with the next batch: waits for one event, takes everything
/// already waiting up to `max_batch`, then lingers up to `linger` for more.
/// Leaves `batch` empty once the channel is closed and empty.
///
/// Cancel-safe: the events live in the caller's `batch`, so a collection
/// interrupted (by the stop signal) loses nothing; a `batch` that is not
/// empty on entry is returned as it is.
pub(crate) async fn collect_batch(
    receiver: &mut Receiver,
    batch: &mut Vec<Envelope>,
    max_batch: usize,
    linger: Duration,
) {
    if !batch.is_empty() {
        return;
    }
    if receiver.recv_many(batch, max_batch).await == 0 || linger.is_zero() {
        return;
    }
    let deadline = tokio::time::Instant::now() + linger;
    while batch.len() < max_batch {
        let room = max_batch - batch.len();
        match tokio::time::timeout_at(deadline, receiver.recv_many(batch, room)).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Settles a batch the sink accepted: counts each outcome, answers the
/// waiters, logs the seq range.
pub(crate) fn settle(
    metrics: &PipelineMetrics,
    sink: &str,
    batch: Vec<Envelope>,
    outcomes: Vec<AppendOutcome>,
) {
    let mut appended = 0u64;
    let mut dead_lettered = 0u64;
    let mut seq_range: Option<(u64, u64)> = None;
    let mut chain = None;
    let mut replies = Vec::new();
    if let Some(oldest) = batch.iter().map(|envelope| envelope.submitted_at).min() {
        metrics.durable(oldest);
    }
    for (mut envelope, outcome) in batch.into_iter().zip(outcomes) {
        envelope.release_journal_entry();
        let answer = match outcome {
            AppendOutcome::Appended(receipt) => {
                appended += 1;
                let (first, _) = seq_range.unwrap_or((receipt.seq, receipt.seq));
                seq_range = Some((first.min(receipt.seq), receipt.seq));
                chain.get_or_insert_with(|| receipt.chain.clone());
                Ok(receipt)
            }
            AppendOutcome::DeadLettered { reason } => {
                dead_lettered += 1;
                tracing::warn!(sink, event_id = envelope.event.id(), %reason, "sink dead-lettered an audit event");
                Err(SubmitError::DeadLettered { reason })
            }
        };
        if let Some(reply) = envelope.reply {
            replies.push((reply, answer));
        }
    }
    metrics.add_dlq_landed(dead_lettered);
    metrics.resolve(appended, dead_lettered, 0);
    let (first_seq, last_seq) = seq_range.unwrap_or_default();
    tracing::debug!(
        sink,
        chain = chain.as_ref().map(|chain| chain.as_str()).unwrap_or(""),
        first_seq,
        last_seq,
        appended,
        dead_lettered,
        "batch settled"
    );
    for (reply, answer) in replies {
        let _ = reply.send(answer);
    }
}

/// Settles a batch that was neither appended nor dead-lettered: counts it
/// lost and logs every event in full at error level. Journaled events stay
/// in the journal, to be replayed at the next start.
pub(crate) fn settle_lost(metrics: &PipelineMetrics, batch: Vec<Envelope>, reason: &str) {
    metrics.resolve(0, 0, batch.len() as u64);
    for envelope in batch {
        tracing::error!(
            pipeline = metrics.name(),
            event_id = envelope.event.id(),
            reason,
            event = envelope.event.canonical_json(),
            "audit event lost"
        );
        if let Some(reply) = envelope.reply {
            let _ = reply.send(Err(SubmitError::Lost {
                reason: reason.to_owned(),
            }));
        }
    }
}

/// Settles a batch written to the fallback file.
pub(crate) fn settle_fallback(metrics: &PipelineMetrics, batch: Vec<Envelope>, reason: &str) {
    if let Some(oldest) = batch.iter().map(|envelope| envelope.submitted_at).min() {
        metrics.durable(oldest);
    }
    metrics.resolve(0, batch.len() as u64, 0);
    for mut envelope in batch {
        envelope.release_journal_entry();
        if let Some(reply) = envelope.reply {
            let _ = reply.send(Err(SubmitError::DeadLettered {
                reason: reason.to_owned(),
            }));
        }
    }
}
