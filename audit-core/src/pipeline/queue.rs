//! The producer side: [`AuditQueue`] and its channel.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::{Backpressure, SubmitError};
use crate::event::AuditEvent;
use crate::journal::{Journal, JournalTicket};
use crate::metrics::PipelineMetrics;
use crate::sink::Receipt;

/// Where the drainer sends the outcome of a `submit_wait` event.
pub(crate) type Reply = oneshot::Sender<Result<Receipt, SubmitError>>;

/// One queued event, with the waiter of `submit_wait` if any, and its
/// journal entry when it was admitted durably.
pub(crate) struct Envelope {
    pub(crate) event: AuditEvent,
    pub(crate) reply: Option<Reply>,
    pub(crate) journaled: Option<Journaled>,
    /// When it was submitted (or recovered from the journal).
    pub(crate) submitted_at: Instant,
}

impl Envelope {
    pub(crate) fn new(event: AuditEvent, reply: Option<Reply>) -> Self {
        Self {
            event,
            reply,
            journaled: None,
            submitted_at: Instant::now(),
        }
    }

    /// Tells the journal the event is settled (appended or dead-lettered),
    /// so its segment can be deleted once all its events are.
    pub(crate) fn release_journal_entry(&mut self) {
        if let Some(Journaled { journal, ticket }) = self.journaled.take() {
            journal.resolve(ticket);
        }
    }
}

/// Where a durably admitted event sits in the journal.
pub(crate) struct Journaled {
    pub(crate) journal: Journal,
    pub(crate) ticket: JournalTicket,
}

/// Why an envelope could not be queued.
enum Refusal {
    Full,
    Closed,
}

#[derive(Clone)]
enum Sender {
    Unbounded(mpsc::UnboundedSender<Envelope>),
    Bounded {
        tx: mpsc::Sender<Envelope>,
        block: bool,
    },
}

/// The drainer's end of the channel.
pub(crate) enum Receiver {
    Unbounded(mpsc::UnboundedReceiver<Envelope>),
    Bounded(mpsc::Receiver<Envelope>),
}

impl Receiver {
    /// Waits for at least one envelope and takes up to `limit`; 0 once the
    /// channel is closed and empty.
    pub(crate) async fn recv_many(&mut self, buffer: &mut Vec<Envelope>, limit: usize) -> usize {
        match self {
            Receiver::Unbounded(rx) => rx.recv_many(buffer, limit).await,
            Receiver::Bounded(rx) => rx.recv_many(buffer, limit).await,
        }
    }

    /// Refuses further sends; what is queued can still be received.
    pub(crate) fn close(&mut self) {
        match self {
            Receiver::Unbounded(rx) => rx.close(),
            Receiver::Bounded(rx) => rx.close(),
        }
    }
}

/// Builds the channel for a backpressure mode.
pub(crate) fn channel(
    backpressure: Backpressure,
    metrics: Arc<PipelineMetrics>,
    journal: Option<Journal>,
) -> (AuditQueue, Receiver) {
    let (sender, receiver) = match backpressure {
        Backpressure::Unbounded => {
            let (tx, rx) = mpsc::unbounded_channel();
            (Sender::Unbounded(tx), Receiver::Unbounded(rx))
        }
        Backpressure::Block { capacity } | Backpressure::Reject { capacity } => {
            let (tx, rx) = mpsc::channel(capacity.max(1));
            let block = matches!(backpressure, Backpressure::Block { .. });
            (Sender::Bounded { tx, block }, Receiver::Bounded(rx))
        }
    };
    (
        AuditQueue {
            sender,
            metrics,
            journal,
        },
        receiver,
    )
}

/// The producer handle of a pipeline: cheap to clone, `Send + Sync`.
///
/// Events submitted through one clone reach the sink in the order they
/// were submitted.
#[derive(Clone)]
pub struct AuditQueue {
    sender: Sender,
    metrics: Arc<PipelineMetrics>,
    journal: Option<Journal>,
}

impl std::fmt::Debug for AuditQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditQueue")
            .field("pipeline", &self.metrics.name())
            .finish_non_exhaustive()
    }
}

impl AuditQueue {
    /// Queues `event` without ever blocking or panicking; `true` when queued.
    ///
    /// When it cannot be queued (a bounded queue is full, the pipeline is
    /// shut down) the event is counted `submitted`, `lost` and a
    /// `send_failure`, and logged at error level with its full content: it
    /// is the last place the event exists. Callers that want the event back
    /// use [`try_submit`](Self::try_submit).
    pub fn submit(&self, event: AuditEvent) -> bool {
        let envelope = Envelope::new(event, None);
        match self.enqueue_now(envelope) {
            Ok(()) => true,
            Err((envelope, refusal)) => {
                self.metrics.lost_at_submit();
                let reason = match refusal {
                    Refusal::Full => "queue full",
                    Refusal::Closed => "pipeline closed",
                };
                tracing::error!(
                    pipeline = self.metrics.name(),
                    event_id = envelope.event.id(),
                    reason,
                    event = envelope.event.canonical_json(),
                    "audit event lost: it could not be queued"
                );
                false
            }
        }
    }

    /// Queues `event` without waiting, or gives it back: [`SubmitError::Full`]
    /// (bounded queue full), [`SubmitError::Closed`] (shut down),
    /// [`SubmitError::Terminal`] (the sink failed past `max_restarts`; the
    /// caller can fail closed). Refusals count as `send_failures`, not
    /// `submitted`.
    pub fn try_submit(&self, event: AuditEvent) -> Result<(), SubmitError> {
        self.refuse_if_terminal(event)
            .and_then(|event| self.enqueue_or_return(Envelope::new(event, None)))
    }

    /// Queues `event`, waiting for room in [`Backpressure::Block`] mode;
    /// otherwise like [`try_submit`](Self::try_submit).
    pub async fn submit_async(&self, event: AuditEvent) -> Result<(), SubmitError> {
        let event = self.refuse_if_terminal(event)?;
        self.enqueue_waiting(Envelope::new(event, None)).await
    }

    /// Queues `event` (waiting for room in `Block` mode) and resolves once
    /// it is durable in the sink, with its receipt; or with
    /// [`SubmitError::DeadLettered`] (in the sink's dead letters or the
    /// fallback file) or [`SubmitError::Lost`]. Unlike `try_submit` it is
    /// not refused in the terminal state: the answer says what became of
    /// the event.
    pub async fn submit_wait(&self, event: AuditEvent) -> Result<Receipt, SubmitError> {
        let (reply, outcome) = oneshot::channel();
        self.enqueue_waiting(Envelope::new(event, Some(reply)))
            .await?;
        outcome.await.unwrap_or_else(|_| {
            Err(SubmitError::Lost {
                reason: "the pipeline's drainer stopped before resolving the event".into(),
            })
        })
    }

    /// Writes `event` to the pipeline's journal and resolves once it is on
    /// disk (one fsync shared by every event admitted at that moment), then
    /// queues it (waiting for room in `Block` mode). From then on the event
    /// survives a crash: it is replayed into the sink when the pipeline is
    /// next built with the same journal. Refusals give the event back:
    /// [`SubmitError::NoJournal`], [`SubmitError::NotJournaled`] (e.g. the
    /// journal is full in [`WhenFull::Reject`](crate::journal::WhenFull)
    /// mode, or the disk is full: fail closed), and those of
    /// [`submit_async`](Self::submit_async).
    pub async fn submit_durable(&self, event: AuditEvent) -> Result<(), SubmitError> {
        let Some(journal) = &self.journal else {
            self.metrics.send_failure();
            return Err(SubmitError::NoJournal { event });
        };
        let event = self.refuse_if_terminal(event)?;
        let ticket = match journal.append(&event).await {
            Ok(ticket) => ticket,
            Err(source) => {
                self.metrics.send_failure();
                return Err(SubmitError::NotJournaled { event, source });
            }
        };
        let mut envelope = Envelope::new(event, None);
        envelope.journaled = Some(Journaled {
            journal: journal.clone(),
            ticket,
        });
        self.enqueue_waiting(envelope).await
    }

    /// The pipeline's metrics.
    pub fn metrics(&self) -> &Arc<PipelineMetrics> {
        &self.metrics
    }

    fn refuse_if_terminal(&self, event: AuditEvent) -> Result<AuditEvent, SubmitError> {
        if self.metrics.is_terminal() {
            self.metrics.send_failure();
            return Err(SubmitError::Terminal { event });
        }
        Ok(event)
    }

    fn enqueue_or_return(&self, envelope: Envelope) -> Result<(), SubmitError> {
        self.enqueue_now(envelope).map_err(|(envelope, refusal)| {
            self.metrics.send_failure();
            let event = envelope.event;
            match refusal {
                Refusal::Full => SubmitError::Full { event },
                Refusal::Closed => SubmitError::Closed { event },
            }
        })
    }

    /// Queues without waiting; counts the event submitted if queued.
    fn enqueue_now(&self, envelope: Envelope) -> Result<(), (Envelope, Refusal)> {
        match &self.sender {
            Sender::Unbounded(tx) => self
                .metrics
                .admit(|| tx.send(envelope))
                .map_err(|error| (error.0, Refusal::Closed)),
            Sender::Bounded { tx, .. } => {
                self.metrics
                    .admit(|| tx.try_send(envelope))
                    .map_err(|error| match error {
                        mpsc::error::TrySendError::Full(envelope) => (envelope, Refusal::Full),
                        mpsc::error::TrySendError::Closed(envelope) => (envelope, Refusal::Closed),
                    })
            }
        }
    }

    /// Queues, waiting for room when the mode is `Block`.
    async fn enqueue_waiting(&self, envelope: Envelope) -> Result<(), SubmitError> {
        match &self.sender {
            Sender::Bounded { tx, block: true } => match tx.reserve().await {
                Ok(permit) => self.metrics.admit(|| {
                    permit.send(envelope);
                    Ok::<(), SubmitError>(())
                }),
                Err(_) => {
                    self.metrics.send_failure();
                    Err(SubmitError::Closed {
                        event: envelope.event,
                    })
                }
            },
            _ => self.enqueue_or_return(envelope),
        }
    }
}
