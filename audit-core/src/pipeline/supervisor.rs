//! The supervisor task: owns the receiver and the sink, retries failed
//! batches on fresh sinks, falls back to the dead-letter file.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use tokio::sync::oneshot;

use super::drainer::{collect_batch, settle, settle_fallback, settle_lost};
use super::queue::{Envelope, Receiver};
use crate::chain::{ChainId, Checkpoint};
use crate::dead_letter::{DeadLetter, FallbackFile};
use crate::event::AuditEvent;
use crate::metrics::PipelineMetrics;
use crate::retry::RetryPolicy;
use crate::sink::{AppendOutcome, AuditSink, SinkFactory};

/// The supervisor's settings, from the builder.
#[derive(Debug, Clone)]
pub(crate) struct SupervisorConfig {
    pub(crate) max_batch: usize,
    pub(crate) linger: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) max_restarts: u32,
    pub(crate) fallback: Option<FallbackFile>,
    pub(crate) chain: ChainId,
    pub(crate) letter_signer: Option<std::sync::Arc<crate::keys::AuditSigner>>,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            max_batch: 1024,
            linger: Duration::ZERO,
            retry: RetryPolicy::default(),
            max_restarts: 10,
            fallback: None,
            chain: ChainId::default(),
            letter_signer: None,
        }
    }
}

/// How the supervisor ended: what closing the sink gave.
#[derive(Debug, Default)]
pub(crate) struct SupervisorExit {
    pub(crate) checkpoint: Option<Checkpoint>,
    pub(crate) close_errors: Vec<String>,
}

/// One failed attempt, classified for metrics and logs.
enum Failure {
    Error { kind: &'static str, message: String },
    Panic { message: String },
}

impl Failure {
    fn describe(&self) -> String {
        match self {
            Failure::Error { kind, message } => format!("{kind}: {message}"),
            Failure::Panic { message } => format!("panic: {message}"),
        }
    }
}

pub(crate) struct Supervisor {
    factory: Box<dyn SinkFactory>,
    config: SupervisorConfig,
    metrics: Arc<PipelineMetrics>,
    sink: Option<Box<dyn AuditSink>>,
    race_retries_seen: u64,
}

impl Supervisor {
    pub(crate) fn new(
        factory: Box<dyn SinkFactory>,
        config: SupervisorConfig,
        metrics: Arc<PipelineMetrics>,
    ) -> Self {
        Self {
            factory,
            config,
            metrics,
            sink: None,
            race_retries_seen: 0,
        }
    }

    /// Drains until the channel is closed and empty; `stop` closes it.
    /// A dropped `stop` sender (pipeline dropped) does not stop intake:
    /// the queue clones may still be in use.
    pub(crate) async fn run(
        mut self,
        backlog: Vec<Envelope>,
        mut receiver: Receiver,
        stop: oneshot::Receiver<()>,
    ) -> SupervisorExit {
        let mut stop = Some(stop);
        let (max_batch, linger) = (self.config.max_batch, self.config.linger);
        self.deliver_backlog(backlog).await;
        let mut batch = Vec::with_capacity(max_batch.min(4096));
        loop {
            match stop.as_mut() {
                Some(signal) => tokio::select! {
                    biased;
                    result = signal => {
                        stop = None;
                        if result.is_ok() {
                            tracing::debug!(pipeline = self.metrics.name(), "intake closed; draining");
                            receiver.close();
                        }
                        continue;
                    }
                    () = collect_batch(&mut receiver, &mut batch, max_batch, linger) => {}
                },
                None => collect_batch(&mut receiver, &mut batch, max_batch, linger).await,
            }
            if batch.is_empty() {
                break;
            }
            let taken = std::mem::replace(&mut batch, Vec::with_capacity(max_batch.min(4096)));
            self.metrics
                .dequeued(taken.len(), taken.last().map(|last| last.submitted_at));
            self.deliver(taken).await;
            self.metrics.publish();
        }
        let exit = self.close_sink().await;
        self.metrics.publish();
        exit
    }

    /// Delivers events recovered from the journal, in order, before any
    /// new event.
    async fn deliver_backlog(&mut self, backlog: Vec<Envelope>) {
        if backlog.is_empty() {
            return;
        }
        tracing::info!(
            pipeline = self.metrics.name(),
            events = backlog.len(),
            "replaying events recovered from the journal"
        );
        let mut backlog = backlog.into_iter().peekable();
        while backlog.peek().is_some() {
            let batch: Vec<Envelope> = backlog.by_ref().take(self.config.max_batch).collect();
            self.metrics
                .dequeued(batch.len(), batch.last().map(|last| last.submitted_at));
            self.deliver(batch).await;
            self.metrics.publish();
        }
    }

    /// Appends one batch, retrying on fresh sinks, falling back past
    /// `max_restarts`.
    async fn deliver(&mut self, batch: Vec<Envelope>) {
        let events: Vec<AuditEvent> = batch
            .iter()
            .map(|envelope| envelope.event.clone())
            .collect();
        let allowed_failures = if self.metrics.is_terminal() {
            1
        } else {
            self.config.max_restarts.saturating_add(1)
        };
        let mut failures = 0u32;
        loop {
            match self.attempt(&events).await {
                Ok(outcomes) => {
                    let sink = self.describe_sink();
                    self.metrics.batch_accepted(events.len());
                    settle(&self.metrics, &sink, batch, outcomes);
                    return;
                }
                Err(failure) => {
                    failures += 1;
                    let reason = failure.describe();
                    self.log_failure(&events, &reason, failures);
                    if failures >= allowed_failures {
                        self.fall_back(batch, &events, &reason, failures).await;
                        return;
                    }
                    tokio::time::sleep(self.config.retry.delay(failures - 1)).await;
                    self.metrics.restart();
                }
            }
        }
    }

    /// One attempt: builds a sink if there is none, appends inside
    /// `catch_unwind`; any failure drops the sink.
    async fn attempt(&mut self, events: &[AuditEvent]) -> Result<Vec<AppendOutcome>, Failure> {
        let result = self.attempt_on_sink(events).await;
        if let Err(failure) = &result {
            match failure {
                Failure::Panic { .. } => self.metrics.drainer_panic(),
                Failure::Error { .. } => self.metrics.append_failure(),
            }
            self.sink = None;
        }
        result
    }

    async fn attempt_on_sink(
        &mut self,
        events: &[AuditEvent],
    ) -> Result<Vec<AppendOutcome>, Failure> {
        let sink = match self.sink.take() {
            Some(sink) => sink,
            None => self.build_sink().await?,
        };
        let sink = self.sink.insert(sink);
        let started = Instant::now();
        let result = AssertUnwindSafe(sink.append_batch(events))
            .catch_unwind()
            .await;
        self.metrics.append_latency(started.elapsed());
        let retries = sink.race_retries();
        self.metrics
            .add_race_retries(retries.saturating_sub(self.race_retries_seen));
        self.race_retries_seen = retries;
        match result {
            Ok(Ok(outcomes)) if outcomes.len() == events.len() => Ok(outcomes),
            Ok(Ok(outcomes)) => Err(Failure::Error {
                kind: "contract",
                message: format!(
                    "sink returned {} outcomes for {} events",
                    outcomes.len(),
                    events.len()
                ),
            }),
            Ok(Err(error)) => Err(Failure::Error {
                kind: error_kind(error.class),
                message: error.to_string(),
            }),
            Err(panic) => Err(Failure::Panic {
                message: panic_message(panic.as_ref()),
            }),
        }
    }

    async fn build_sink(&mut self) -> Result<Box<dyn AuditSink>, Failure> {
        match AssertUnwindSafe(self.factory.create()).catch_unwind().await {
            Ok(Ok(sink)) => {
                self.race_retries_seen = sink.race_retries();
                tracing::debug!(pipeline = self.metrics.name(), sink = %sink.describe(), "sink built");
                Ok(sink)
            }
            Ok(Err(error)) => Err(Failure::Error {
                kind: "factory",
                message: error.to_string(),
            }),
            Err(panic) => Err(Failure::Panic {
                message: format!("sink factory: {}", panic_message(panic.as_ref())),
            }),
        }
    }

    fn describe_sink(&self) -> String {
        self.sink
            .as_ref()
            .map_or_else(String::new, |sink| sink.describe())
    }

    fn log_failure(&self, events: &[AuditEvent], reason: &str, failures: u32) {
        tracing::warn!(
            pipeline = self.metrics.name(),
            batch = events.len(),
            first_event = events.first().map_or("", |event| event.id()),
            failures,
            max_restarts = self.config.max_restarts,
            error = reason,
            "audit batch failed; the sink will be rebuilt"
        );
    }

    /// Past the restart budget: fallback file, terminal state; lost if the
    /// file is missing or fails.
    async fn fall_back(
        &mut self,
        batch: Vec<Envelope>,
        events: &[AuditEvent],
        reason: &str,
        failures: u32,
    ) {
        if !self.metrics.is_terminal() {
            tracing::error!(
                pipeline = self.metrics.name(),
                failures,
                error = reason,
                "audit sink failed past max_restarts: the pipeline is now terminal"
            );
        }
        self.metrics.enter_terminal();
        let Some(file) = self.config.fallback.clone() else {
            let why = format!(
                "sink failed {failures} times ({reason}) and no fallback file is configured"
            );
            settle_lost(&self.metrics, batch, &why);
            return;
        };
        let letters: Vec<DeadLetter> = events
            .iter()
            .map(|event| {
                let letter = DeadLetter::new(&self.config.chain, event, reason, failures);
                match &self.config.letter_signer {
                    Some(signer) => letter.authenticated(signer),
                    None => letter,
                }
            })
            .collect();
        let path = file.path().display().to_string();
        let written = tokio::task::spawn_blocking(move || file.append(&letters)).await;
        match written {
            Ok(Ok(())) => {
                tracing::error!(pipeline = self.metrics.name(), batch = events.len(), fallback = %path, "audit batch written to the fallback dead-letter file");
                let why = format!(
                    "sink failed {failures} times ({reason}); kept in fallback file {path}"
                );
                settle_fallback(&self.metrics, batch, &why);
            }
            Ok(Err(error)) => {
                let why = format!(
                    "sink failed {failures} times ({reason}) and the fallback file failed: {error}"
                );
                settle_lost(&self.metrics, batch, &why);
            }
            Err(join_error) => {
                let why = format!(
                    "sink failed {failures} times ({reason}) and writing the fallback file {path} panicked: {join_error}"
                );
                settle_lost(&self.metrics, batch, &why);
            }
        }
    }

    /// Checkpoints and closes the current sink, if there is one (none when
    /// nothing was submitted or the last attempt failed).
    async fn close_sink(&mut self) -> SupervisorExit {
        let mut exit = SupervisorExit::default();
        let mut sink = match self.sink.take() {
            Some(sink) => sink,
            None => return exit,
        };
        match AssertUnwindSafe(sink.checkpoint()).catch_unwind().await {
            Ok(Ok(checkpoint)) => exit.checkpoint = checkpoint,
            Ok(Err(error)) => exit.close_errors.push(format!("checkpoint: {error}")),
            Err(panic) => exit.close_errors.push(format!(
                "checkpoint panicked: {}",
                panic_message(panic.as_ref())
            )),
        }
        match AssertUnwindSafe(sink.close()).catch_unwind().await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => exit.close_errors.push(format!("close: {error}")),
            Err(panic) => exit
                .close_errors
                .push(format!("close panicked: {}", panic_message(panic.as_ref()))),
        }
        for error in &exit.close_errors {
            tracing::error!(pipeline = self.metrics.name(), sink = %sink.describe(), error, "closing the audit sink failed");
        }
        exit
    }
}

fn error_kind(class: crate::sink::ErrorClass) -> &'static str {
    match class {
        crate::sink::ErrorClass::Transient => "transient",
        crate::sink::ErrorClass::Conflict => "conflict",
        crate::sink::ErrorClass::Permanent => "permanent",
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
