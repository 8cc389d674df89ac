//! The deferred audit pipeline: a non-blocking queue, a batching drainer
//! and a supervisor that really recovers.
//!
//! ```text
//! producers --submit--> AuditQueue --batches--> drainer --append_batch--> AuditSink
//!                                                  |  (panic / Err: rebuild from the factory, retry)
//!                                                  '--> fallback dead-letter file (past max_restarts)
//! ```
//!
//! - **Submitting**: [`AuditQueue::submit`] never blocks and never panics;
//!   [`AuditQueue::try_submit`] gives a refused event back;
//!   [`AuditQueue::submit_async`] waits for room in [`Backpressure::Block`]
//!   mode; [`AuditQueue::submit_wait`] resolves once the event is durable,
//!   with its [`Receipt`].
//! - **Batching**: the drainer takes every event already waiting, up to
//!   `max_batch`, optionally lingering to collect more; one batch is one
//!   `append_batch` call.
//! - **Supervision**: the channel's receiver never leaves the supervisor
//!   task. The sink is called inside `catch_unwind`; a panic or an `Err`
//!   (including a failing or panicking factory) drops the sink, and after a
//!   capped exponential backoff ([`RetryPolicy::delay`]) a fresh sink from
//!   the factory gets the same batch again. After `max_restarts` restarts
//!   the batch still fails (`max_restarts + 1` consecutive failures), it
//!   goes to the fallback file (fsync'd, counted `dead_lettered`) and the
//!   pipeline enters its **terminal** state (`terminal: true` in the
//!   metrics; it stays set as an alarm).
//! - **After the terminal state** nothing is dropped silently: every later
//!   batch gets one attempt with a fresh sink (so a sink that recovers is
//!   used again) and goes to the fallback file if that attempt fails;
//!   [`AuditQueue::try_submit`] and [`AuditQueue::submit_async`] refuse new
//!   events with [`SubmitError::Terminal`] so callers can fail closed, while
//!   `submit` and `submit_wait` still queue them.
//! - **Lost events**: if the fallback file is not configured or cannot be
//!   written, the events are counted `lost` and each is logged at error
//!   level with its full content (the only place a payload is logged).
//! - **Accounting**: `submitted = appended + dead_lettered + lost + in_flight`
//!   in every snapshot (see [`crate::metrics`]).
//!   [`AuditPipeline::drain_pending`] waits for `in_flight == 0` with the
//!   channel open; [`AuditPipeline::shutdown`] stops intake, drains within
//!   a timeout, checkpoints and closes the sink; [`close_and_flush`] does
//!   the same without a time limit.
//! - **Dropping** an [`AuditPipeline`] without `shutdown` logs an error with
//!   the number of events still in flight; the drainer keeps running until
//!   every queue clone is dropped.
//!
//! ```
//! use audit_core::pipeline::{AuditPipeline, Backpressure};
//! use audit_core::sink::{AppendOutcome, AuditSink, Receipt, SinkError};
//! use audit_core::{AuditEvent, ChainId, Digest};
//! use std::time::Duration;
//!
//! /// Accepts everything, keeps nothing: just for the example.
//! struct Counting(u64);
//!
//! #[async_trait::async_trait]
//! impl AuditSink for Counting {
//!     async fn append_batch(&mut self, events: &[AuditEvent]) -> Result<Vec<AppendOutcome>, SinkError> {
//!         Ok(events.iter().map(|event| {
//!             self.0 += 1;
//!             AppendOutcome::Appended(Receipt { chain: ChainId::default(), seq: self.0, record_hash: event.event_hash(), already_present: false })
//!         }).collect())
//!     }
//!     fn describe(&self) -> String { "counting".into() }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pipeline = AuditPipeline::builder(|| async { Ok::<_, SinkError>(Counting(0)) })
//!     .max_batch(512)
//!     .backpressure(Backpressure::Block { capacity: 10_000 })
//!     .spawn();
//! let queue = pipeline.queue();
//! assert!(queue.submit(AuditEvent::new("login.refused", "user:7", serde_json::json!({"ip": "192.0.2.1"}))?));
//! let receipt = queue.submit_wait(AuditEvent::new("role.granted", "admin:1", serde_json::json!({"role": "ops"}))?).await?;
//! assert_eq!(receipt.seq, 2);
//! let report = pipeline.shutdown(Duration::from_secs(5)).await;
//! assert!(!report.timed_out);
//! assert_eq!(report.metrics.appended, 2);
//! # Ok(()) }
//! ```
//!
//! # Fail-closed mode
//!
//! A service that must not act unless its audit record is kept (delete a
//! record, grant a role) bounds everything and refuses the action on any
//! doubt: a bounded queue in [`Backpressure::Reject`] mode (a full queue
//! answers at once instead of growing), and [`AuditQueue::submit_wait`]
//! (or [`AuditQueue::submit_durable`] with a journal) under
//! [`tokio::time::timeout`]. The action runs only on `Ok`; an `Err`
//! (full, terminal, dead-lettered, lost, not journaled) or the deadline
//! passing refuses it. See `examples/fail_closed.rs` for a whole service.
//!
//! ```
//! use audit_core::pipeline::{AuditPipeline, Backpressure};
//! use audit_core::sink::{AppendOutcome, AuditSink, ErrorClass, SinkError};
//! use audit_core::AuditEvent;
//! use std::time::Duration;
//!
//! /// A sink whose store is down.
//! struct Down;
//!
//! #[async_trait::async_trait]
//! impl AuditSink for Down {
//!     async fn append_batch(&mut self, _: &[AuditEvent]) -> Result<Vec<AppendOutcome>, SinkError> {
//!         Err(SinkError::new("down", ErrorClass::Transient, "connection refused"))
//!     }
//!     fn describe(&self) -> String { "down".into() }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pipeline = AuditPipeline::builder(|| async { Ok::<_, SinkError>(Down) })
//!     .backpressure(Backpressure::Reject { capacity: 1_000 })
//!     .spawn();
//! let queue = pipeline.queue();
//! let record = AuditEvent::new("records.delete", "user:7", serde_json::json!({"record": 42}))?;
//! let allowed = matches!(
//!     tokio::time::timeout(Duration::from_millis(200), queue.submit_wait(record)).await,
//!     Ok(Ok(_receipt))
//! );
//! assert!(!allowed, "the store is down: the deletion is refused");
//! drop(queue);
//! let _ = pipeline.shutdown(Duration::from_millis(100)).await;
//! # Ok(()) }
//! ```

mod drainer;
mod queue;
mod shutdown;
mod supervisor;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use queue::AuditQueue;
use queue::{Envelope, Journaled};
pub use shutdown::{ShutdownReport, close_and_flush};

use crate::chain::ChainId;
use crate::dead_letter::FallbackFile;
use crate::event::AuditEvent;
use crate::journal::{Journal, JournalConfig, JournalError, Recovered};
use crate::metrics::PipelineMetrics;
use crate::retry::RetryPolicy;
#[cfg(doc)]
use crate::sink::Receipt;
use crate::sink::SinkFactory;
use supervisor::{Supervisor, SupervisorConfig, SupervisorExit};

/// What the queue does when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backpressure {
    /// No limit: `submit` always queues (the default, as in the original queue).
    #[default]
    Unbounded,
    /// At most `capacity` waiting events; `submit_async`/`submit_wait` wait
    /// for room, `submit`/`try_submit` do not.
    Block {
        /// Waiting events at most.
        capacity: usize,
    },
    /// At most `capacity` waiting events; a full queue refuses with
    /// [`SubmitError::Full`].
    Reject {
        /// Waiting events at most.
        capacity: usize,
    },
}

/// Why an event was not queued, or what became of it instead of a receipt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The bounded queue is full (`Reject` mode, or `try_submit`); the event is returned.
    #[error("audit queue is full; event {} not queued", event.id())]
    Full {
        /// The refused event.
        event: AuditEvent,
    },
    /// The pipeline is shut down; the event is returned.
    #[error("audit pipeline is closed; event {} not queued", event.id())]
    Closed {
        /// The refused event.
        event: AuditEvent,
    },
    /// The pipeline is in its terminal state (the sink failed past
    /// `max_restarts`); the event is returned so the caller can fail closed.
    #[error("audit pipeline is in its terminal state (sink failing); event {} not queued", event.id())]
    Terminal {
        /// The refused event.
        event: AuditEvent,
    },
    /// The event was dead-lettered (sink dead letters or fallback file).
    #[error("audit event dead-lettered: {reason}")]
    DeadLettered {
        /// Why, and where it is kept.
        reason: String,
    },
    /// `submit_durable` on a pipeline built without a journal; the event is returned.
    #[error("audit pipeline has no journal; event {} not admitted durably", event.id())]
    NoJournal {
        /// The refused event.
        event: AuditEvent,
    },
    /// The journal could not keep the event (full, disk full, broken); the
    /// event is returned so the caller can fail closed.
    #[error("audit event {} not admitted: {source}", event.id())]
    NotJournaled {
        /// The refused event.
        event: AuditEvent,
        /// Why the journal refused it.
        #[source]
        source: JournalError,
    },
    /// The event was neither appended nor dead-lettered (logged at error level).
    #[error("audit event lost: {reason}")]
    Lost {
        /// Why.
        reason: String,
    },
}

impl SubmitError {
    /// The refused event, for `Full`, `Closed`, `Terminal`, `NoJournal` and `NotJournaled`.
    pub fn into_event(self) -> Option<AuditEvent> {
        match self {
            SubmitError::Full { event }
            | SubmitError::Closed { event }
            | SubmitError::Terminal { event }
            | SubmitError::NoJournal { event }
            | SubmitError::NotJournaled { event, .. } => Some(event),
            SubmitError::DeadLettered { .. } | SubmitError::Lost { .. } => None,
        }
    }
}

/// Configures and spawns an [`AuditPipeline`]; from [`AuditPipeline::builder`].
#[must_use]
pub struct PipelineBuilder {
    factory: Box<dyn SinkFactory>,
    config: SupervisorConfig,
    backpressure: Backpressure,
    name: String,
    journal: Option<(Journal, Recovered)>,
    metrics_interval: Duration,
}

/// How often a pipeline publishes its metrics between batches, by default.
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(1);

impl std::fmt::Debug for PipelineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("name", &self.name)
            .field("backpressure", &self.backpressure)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PipelineBuilder {
    /// Largest batch handed to the sink (default 1024, at least 1).
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.config.max_batch = max_batch.max(1);
        self
    }

    /// How long the drainer waits for more events once a batch has started
    /// and is not full (default zero: take what is waiting).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.config.linger = linger;
        self
    }

    /// What a full queue does (default [`Backpressure::Unbounded`]).
    pub fn backpressure(mut self, backpressure: Backpressure) -> Self {
        self.backpressure = backpressure;
        self
    }

    /// Backoff between sink rebuilds (`initial`, `max`; `max_retries` is not
    /// used here, see [`max_restarts`](Self::max_restarts)).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.config.retry = retry;
        self
    }

    /// Rebuilds of the sink allowed for one batch (default 10): after
    /// `max_restarts + 1` consecutive failures the batch goes to the
    /// fallback file and the pipeline becomes terminal. With the default
    /// backoff (10 ms doubling, capped at 2 s) the default rides out about
    /// 6.5 s of outage, enough for a database restart; size it to the
    /// outages your store has.
    pub fn max_restarts(mut self, max_restarts: u32) -> Self {
        self.config.max_restarts = max_restarts;
        self
    }

    /// The fallback dead-letter file (JSON lines, fsync'd). Without one,
    /// batches past `max_restarts` are counted lost and logged in full.
    pub fn fallback_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.fallback = Some(FallbackFile::new(path));
        self
    }

    /// The chain named in fallback dead letters (default `default`).
    pub fn chain(mut self, chain: ChainId) -> Self {
        self.config.chain = chain;
        self
    }

    /// Authenticates the fallback file's dead letters with the chain's key,
    /// so that a replay can tell them from forged lines.
    pub fn dead_letter_signer(mut self, signer: std::sync::Arc<crate::keys::AuditSigner>) -> Self {
        self.config.letter_signer = Some(signer);
        self
    }

    /// The `pipeline` label of exported metrics and logs (default `default`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How often the metrics are published through the `metrics` facade
    /// besides after every batch (default [`DEFAULT_METRICS_INTERVAL`]), so
    /// that gauges such as the oldest queued event's age stay current while
    /// a batch is slow; zero publishes after batches only.
    pub fn metrics_interval(mut self, interval: Duration) -> Self {
        self.metrics_interval = interval;
        self
    }

    /// Opens the durable admission journal now, recovering what it holds:
    /// the events found are delivered to the sink first, before any new
    /// event (idempotently: sinks skip ids already in the chain), and
    /// [`AuditQueue::submit_durable`] admits new ones through it. Fails
    /// when the journal is corrupt (nothing deleted), insecure or unreadable.
    pub fn journal(mut self, config: JournalConfig) -> Result<Self, JournalError> {
        self.journal = Some(Journal::open(config)?);
        Ok(self)
    }

    /// Spawns the supervised drainer on the current tokio runtime.
    ///
    /// # Panics
    /// When called outside a tokio runtime (as `tokio::spawn` does).
    pub fn spawn(self) -> AuditPipeline {
        crate::metrics::describe_metrics();
        let metrics = Arc::new(PipelineMetrics::new(self.name));
        let (journal, recovered) = self.journal.unzip();
        if let Some(journal) = &journal {
            metrics.attach_journal(journal.clone());
        }
        let (queue, receiver) = queue::channel(self.backpressure, metrics.clone(), journal.clone());
        let backlog = recovered_backlog(journal, recovered, &metrics);
        let (stop, stop_signal) = oneshot::channel();
        let supervisor = Supervisor::new(self.factory, self.config, metrics.clone());
        let join = tokio::spawn(supervisor.run(backlog, receiver, stop_signal));
        let publisher = publish_periodically(&metrics, self.metrics_interval);
        AuditPipeline {
            queue: Some(queue),
            metrics,
            stop: Some(stop),
            join: Some(join),
            publisher,
        }
    }
}

/// Publishes `metrics` every `interval` until the pipeline ends (the task is
/// aborted then); none for a zero interval.
fn publish_periodically(
    metrics: &Arc<PipelineMetrics>,
    interval: Duration,
) -> Option<JoinHandle<()>> {
    if interval.is_zero() {
        return None;
    }
    let metrics = Arc::downgrade(metrics);
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            match metrics.upgrade() {
                Some(metrics) => metrics.publish(),
                None => break,
            }
        }
    }))
}

/// The events a journal held at open, admitted (counted submitted and in
/// flight) ahead of everything else.
fn recovered_backlog(
    journal: Option<Journal>,
    recovered: Option<Recovered>,
    metrics: &PipelineMetrics,
) -> Vec<Envelope> {
    let (Some(journal), Some(recovered)) = (journal, recovered) else {
        return Vec::new();
    };
    metrics.admit_recovered(recovered.events.len() as u64);
    recovered
        .events
        .into_iter()
        .map(|(event, ticket)| {
            let mut envelope = Envelope::new(event, None);
            envelope.journaled = Some(Journaled {
                journal: journal.clone(),
                ticket,
            });
            envelope
        })
        .collect()
}

/// A running pipeline: hands out queues, reports metrics, shuts down.
///
/// Shut it down with [`shutdown`](Self::shutdown) or [`close_and_flush`];
/// dropping it without logs an error.
pub struct AuditPipeline {
    queue: Option<AuditQueue>,
    metrics: Arc<PipelineMetrics>,
    stop: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<SupervisorExit>>,
    /// Publishes the metrics between batches.
    publisher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for AuditPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditPipeline")
            .field("pipeline", &self.metrics.name())
            .field("running", &self.join.is_some())
            .finish_non_exhaustive()
    }
}

impl AuditPipeline {
    /// Starts configuring a pipeline over sinks built by `factory`.
    pub fn builder(factory: impl SinkFactory) -> PipelineBuilder {
        PipelineBuilder {
            factory: Box::new(factory),
            config: SupervisorConfig::default(),
            backpressure: Backpressure::default(),
            name: "default".into(),
            journal: None,
            metrics_interval: DEFAULT_METRICS_INTERVAL,
        }
    }

    /// A producer handle (cheap clone).
    ///
    /// # Panics
    /// Never: the queue is only taken by `shutdown`, which consumes `self`.
    pub fn queue(&self) -> AuditQueue {
        match &self.queue {
            Some(queue) => queue.clone(),
            None => unreachable!("the queue is only taken when the pipeline is consumed"),
        }
    }

    /// The live metrics.
    pub fn metrics(&self) -> Arc<PipelineMetrics> {
        self.metrics.clone()
    }

    /// Waits until every submitted event is accounted for (`in_flight == 0`),
    /// polling every 10 ms, without closing the channel; `false` on timeout.
    pub async fn drain_pending(&self, timeout: Duration) -> bool {
        drain_pending(&self.metrics, timeout).await
    }
}

/// Waits until `metrics` shows no event in flight, polling every 10 ms;
/// `false` when `timeout` passes first.
pub async fn drain_pending(metrics: &PipelineMetrics, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now().checked_add(timeout);
    loop {
        if metrics.in_flight() == 0 {
            return true;
        }
        if deadline.is_some_and(|deadline| tokio::time::Instant::now() >= deadline) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
