//! The async sink contract: what the drainer hands batches to.
//!
//! A sink owns its chain head: for each batch it reads the head, seals the
//! events with [`Sealer`](crate::chain::Sealer) and writes them in one atomic
//! step, and returns one [`AppendOutcome`] per event, in order. An event whose
//! id is already in the chain is not appended again: its outcome is its
//! existing record. A sink returns `Err` only when it could not even
//! dead-letter; the supervisor then rebuilds it from its [`SinkFactory`] and
//! retries the same batch.
//!
//! The trait is object-safe, so `Box<dyn AuditSink>` works:
//!
//! ```
//! use audit_core::sink::{AppendOutcome, AuditSink, SinkError};
//! use audit_core::AuditEvent;
//!
//! struct Discard;
//!
//! #[async_trait::async_trait]
//! impl AuditSink for Discard {
//!     async fn append_batch(&mut self, events: &[AuditEvent]) -> Result<Vec<AppendOutcome>, SinkError> {
//!         Ok(events.iter().map(|_| AppendOutcome::DeadLettered { reason: "discarded".into() }).collect())
//!     }
//!     fn describe(&self) -> String { "discard".into() }
//! }
//! let sink: Box<dyn AuditSink> = Box::new(Discard);
//! # drop(sink);
//! ```

use std::future::Future;

use async_trait::async_trait;

use crate::chain::{ChainId, Checkpoint};
use crate::digest::Digest;
use crate::event::AuditEvent;

/// Proof that an event is durable in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The chain.
    pub chain: ChainId,
    /// The event's seq.
    pub seq: u64,
    /// The record hash at that seq.
    pub record_hash: Digest,
    /// Whether the event was already in the chain (a retry or replay).
    pub already_present: bool,
}

/// What became of one event of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppendOutcome {
    /// In the chain.
    Appended(Receipt),
    /// Kept in the sink's dead-letter store instead, for replay.
    DeadLettered {
        /// Why it could not be appended.
        reason: String,
    },
}

/// How an error should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// May succeed if tried again later (connection lost, timeout, busy).
    Transient,
    /// Another writer took the seq: re-read the head, re-seal, retry.
    Conflict,
    /// Will fail again (bad schema, disk full, refused credentials).
    Permanent,
}

/// A sink's failure, classified for the retry policy.
#[derive(Debug, thiserror::Error)]
#[error("{sink}: {message}")]
pub struct SinkError {
    /// Which sink (its [`AuditSink::describe`]).
    pub sink: String,
    /// What went wrong.
    pub message: String,
    /// How to handle it.
    pub class: ErrorClass,
    /// The underlying error.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl SinkError {
    /// A new error without a source.
    pub fn new(sink: impl Into<String>, class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            sink: sink.into(),
            message: message.into(),
            class,
            source: None,
        }
    }

    /// A backend's error as the error of `sink`: its text is the message
    /// (without a leading `"{sink}: "`, which the sink error prints first
    /// itself, so the sink is not named twice) and it is the source.
    ///
    /// ```
    /// use audit_core::sink::{ErrorClass, SinkError};
    /// let io = std::io::Error::other("db.example: connection reset");
    /// let error = SinkError::from_error("db.example", ErrorClass::Transient, io);
    /// assert_eq!(error.to_string(), "db.example: connection reset");
    /// ```
    pub fn from_error(
        sink: impl Into<String>,
        class: ErrorClass,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        let sink = sink.into();
        let text = error.to_string();
        let message = text
            .strip_prefix(sink.as_str())
            .and_then(|rest| rest.strip_prefix(": "))
            .map_or_else(|| text.clone(), str::to_owned);
        Self::new(sink, class, message).with_source(error)
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Whether trying again may help.
    pub fn is_transient(&self) -> bool {
        self.class != ErrorClass::Permanent
    }
}

/// A destination for audit events.
#[async_trait]
pub trait AuditSink: Send {
    /// Appends `events` in order as one atomic step; one outcome per event.
    async fn append_batch(
        &mut self,
        events: &[AuditEvent],
    ) -> Result<Vec<AppendOutcome>, SinkError>;

    /// Writes (and publishes, if configured) a checkpoint of the current
    /// head when the sink has a key; called at shutdown. `Ok(None)` when the
    /// sink has no key or nothing to checkpoint.
    async fn checkpoint(&mut self) -> Result<Option<Checkpoint>, SinkError> {
        Ok(None)
    }

    /// Flushes and releases resources; called once at shutdown.
    async fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Lost races for a seq retried so far (cumulative); the drainer adds
    /// the growth to `unique_race_retries`.
    fn race_retries(&self) -> u64 {
        0
    }

    /// A short description for logs and errors, e.g. `sqlite:///var/audit.db`.
    fn describe(&self) -> String;
}

#[async_trait]
impl AuditSink for Box<dyn AuditSink> {
    async fn append_batch(
        &mut self,
        events: &[AuditEvent],
    ) -> Result<Vec<AppendOutcome>, SinkError> {
        (**self).append_batch(events).await
    }

    async fn checkpoint(&mut self) -> Result<Option<Checkpoint>, SinkError> {
        (**self).checkpoint().await
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        (**self).close().await
    }

    fn race_retries(&self) -> u64 {
        (**self).race_retries()
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Builds sinks: the supervisor calls it at start and after each failure.
///
/// Any `Fn() -> impl Future<Output = Result<S, SinkError>>` is a factory:
///
/// ```
/// # use audit_core::sink::{SinkFactory, SinkError};
/// # fn takes(_: impl SinkFactory) {}
/// # struct MySink;
/// # #[async_trait::async_trait]
/// # impl audit_core::sink::AuditSink for MySink {
/// #     async fn append_batch(&mut self, _: &[audit_core::AuditEvent]) -> Result<Vec<audit_core::sink::AppendOutcome>, SinkError> { Ok(vec![]) }
/// #     fn describe(&self) -> String { "mine".into() }
/// # }
/// takes(|| async { Ok::<_, SinkError>(MySink) });
/// ```
#[async_trait]
pub trait SinkFactory: Send + Sync + 'static {
    /// Builds a fresh sink.
    async fn create(&self) -> Result<Box<dyn AuditSink>, SinkError>;
}

#[async_trait]
impl<F, Fut, S> SinkFactory for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<S, SinkError>> + Send,
    S: AuditSink + 'static,
{
    async fn create(&self) -> Result<Box<dyn AuditSink>, SinkError> {
        Ok(Box::new(self().await?))
    }
}

/// Publishes checkpoints outside the chain's own store (e.g. an object-store
/// prefix in another trust domain), so that truncating the store and its
/// own checkpoints is still detectable.
#[async_trait]
pub trait CheckpointPublisher: Send + Sync {
    /// Stores `checkpoint` durably; never overwrites an existing one.
    async fn publish(&self, checkpoint: &Checkpoint) -> Result<(), SinkError>;

    /// Stores the signed tree checkpoint `note` of `chain` at tree `size`
    /// (FORMAT.md section 8.2) durably; a note already published at that
    /// size is replaced only by one with the same body.
    async fn publish_tree_checkpoint(
        &self,
        chain: &crate::chain::ChainId,
        size: u64,
        note: &str,
    ) -> Result<(), SinkError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_names_its_sink_once_and_keeps_any_other_text() {
        let error = |text: &str| std::io::Error::other(text.to_owned());
        let named = SinkError::from_error("db", ErrorClass::Transient, error("db: reset"));
        assert_eq!(named.message, "reset");
        assert_eq!(named.to_string(), "db: reset");
        assert!(std::error::Error::source(&named).is_some());
        for other in ["other: text", "db2: text", "db:text", "db"] {
            let kept = SinkError::from_error("db", ErrorClass::Permanent, error(other));
            assert_eq!(kept.message, other);
        }
    }
}
