//! [`Tee`]: one sink that writes every batch to a primary and to mirrors.
//!
//! The primary's outcome is the event's outcome; the primary's error is the
//! batch's error (the supervisor retries it). A mirror never fails the
//! primary:
//!
//! - a mirror that dead-letters an event itself (outcome `DeadLettered`)
//!   has done what it can; the event counts as a mirror failure;
//! - a mirror that returns `Err` or panics counts each event of the batch as
//!   a mirror failure, and the batch is written to the tee's fallback file
//!   when one is set ([`Tee::with_mirror_fallback`]), naming the mirror in
//!   the reason; without one, the event ids are logged at error level.
//!   The mirror is kept and gets the next batch (a panicked mirror is
//!   called again: it must stay usable, as the supervisor would otherwise
//!   rebuild it).
//!
//! **Concurrency**: the primary and every mirror are called at the same
//! time (joined), so the batch takes as long as the slowest of them; a
//! slow mirror delays the batch but its failure never changes an outcome.
//! Keep mirrors that may be slow behind their own pipeline instead.
//!
//! Mirror failures are counted in [`Tee::mirror_failures`], readable after
//! the tee moved into a pipeline through [`Tee::mirror_failure_counter`].
//!
//! ```
//! use audit_core::tee::Tee;
//! use audit_core::sink::{AppendOutcome, AuditSink, SinkError, ErrorClass};
//! use audit_core::AuditEvent;
//!
//! struct Down;
//! #[async_trait::async_trait]
//! impl AuditSink for Down {
//!     async fn append_batch(&mut self, _: &[AuditEvent]) -> Result<Vec<AppendOutcome>, SinkError> {
//!         Err(SinkError::new("down", ErrorClass::Transient, "unreachable"))
//!     }
//!     fn describe(&self) -> String { "down".into() }
//! }
//! struct Refuse;
//! #[async_trait::async_trait]
//! impl AuditSink for Refuse {
//!     async fn append_batch(&mut self, events: &[AuditEvent]) -> Result<Vec<AppendOutcome>, SinkError> {
//!         Ok(events.iter().map(|_| AppendOutcome::DeadLettered { reason: "full".into() }).collect())
//!     }
//!     fn describe(&self) -> String { "refuse".into() }
//! }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut tee = Tee::new(Box::new(Refuse), vec![Box::new(Down)]);
//! let event = AuditEvent::new("t", "a", serde_json::json!(1)).unwrap();
//! let outcomes = tee.append_batch(&[event]).await.unwrap();
//! assert!(matches!(outcomes[0], AppendOutcome::DeadLettered { .. }));
//! assert_eq!(tee.mirror_failures(), 1);
//! # }
//! ```

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::FutureExt as _;

use crate::chain::{ChainId, Checkpoint};
use crate::dead_letter::{DeadLetter, FallbackFile};
use crate::event::AuditEvent;
use crate::sink::{AppendOutcome, AuditSink, SinkError};

/// A shared count of events a mirror failed to take.
#[derive(Debug, Clone, Default)]
pub struct MirrorFailures(Arc<AtomicU64>);

impl MirrorFailures {
    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, count: u64) {
        self.0.fetch_add(count, Ordering::Relaxed);
    }
}

/// A sink writing to a primary and to mirrors; see the module docs.
pub struct Tee {
    primary: Box<dyn AuditSink>,
    mirrors: Vec<Box<dyn AuditSink>>,
    failures: MirrorFailures,
    fallback: Option<(ChainId, FallbackFile)>,
}

impl Tee {
    /// A tee whose outcomes are `primary`'s, also writing to `mirrors`.
    pub fn new(primary: Box<dyn AuditSink>, mirrors: Vec<Box<dyn AuditSink>>) -> Self {
        Self {
            primary,
            mirrors,
            failures: MirrorFailures::default(),
            fallback: None,
        }
    }

    /// Writes batches a mirror failed (Err or panic) to `file` as dead
    /// letters of `chain`, for replay into that mirror.
    pub fn with_mirror_fallback(mut self, chain: ChainId, file: FallbackFile) -> Self {
        self.fallback = Some((chain, file));
        self
    }

    /// Counts into `counter` instead of a fresh one (to share one count
    /// across the tees a factory builds).
    pub fn with_failure_counter(mut self, counter: MirrorFailures) -> Self {
        self.failures = counter;
        self
    }

    /// Events a mirror failed to take (dead-lettered by it, or lost to its
    /// error or panic), summed over mirrors.
    pub fn mirror_failures(&self) -> u64 {
        self.failures.get()
    }

    /// A handle on the mirror-failure count that outlives moving the tee.
    pub fn mirror_failure_counter(&self) -> MirrorFailures {
        self.failures.clone()
    }
}

/// What the tee needs to account for a mirror's result (kept apart from the
/// sinks, which need not be `Sync`).
struct MirrorAccounting<'a> {
    failures: &'a MirrorFailures,
    fallback: Option<&'a (ChainId, FallbackFile)>,
}

impl MirrorAccounting<'_> {
    /// Counts and keeps what one mirror failed to take.
    async fn account_mirror(
        &self,
        mirror: &str,
        events: &[AuditEvent],
        result: Result<Result<Vec<AppendOutcome>, SinkError>, String>,
    ) {
        let reason = match result {
            Ok(Ok(outcomes)) if outcomes.len() == events.len() => {
                let dead = outcomes
                    .iter()
                    .filter(|outcome| matches!(outcome, AppendOutcome::DeadLettered { .. }))
                    .count();
                self.failures.add(dead as u64);
                return;
            }
            Ok(Ok(outcomes)) => format!(
                "mirror {mirror} returned {} outcomes for {} events",
                outcomes.len(),
                events.len()
            ),
            Ok(Err(error)) => format!("mirror {mirror} failed: {error}"),
            Err(panic) => format!("mirror {mirror} panicked: {panic}"),
        };
        self.failures.add(events.len() as u64);
        self.keep_for_mirror(&reason, events).await;
    }

    async fn keep_for_mirror(&self, reason: &str, events: &[AuditEvent]) {
        let Some((chain, file)) = self.fallback.cloned() else {
            let ids: Vec<&str> = events.iter().map(AuditEvent::id).collect();
            tracing::error!(reason, event_ids = ?ids, "mirror missed these audit events and no mirror fallback file is set");
            return;
        };
        let letters: Vec<DeadLetter> = events
            .iter()
            .map(|event| DeadLetter::new(&chain, event, reason, 1))
            .collect();
        let path = file.path().display().to_string();
        match tokio::task::spawn_blocking(move || file.append(&letters)).await {
            Ok(Ok(())) => {
                tracing::warn!(reason, batch = events.len(), fallback = %path, "mirror batch kept in the fallback file")
            }
            Ok(Err(error)) => tracing::error!(reason, %error, "mirror fallback file failed"),
            Err(error) => tracing::error!(reason, %error, "mirror fallback file write panicked"),
        }
    }
}

#[async_trait]
impl AuditSink for Tee {
    async fn append_batch(
        &mut self,
        events: &[AuditEvent],
    ) -> Result<Vec<AppendOutcome>, SinkError> {
        let primary = self.primary.append_batch(events);
        let mirrors = futures::future::join_all(self.mirrors.iter_mut().map(|mirror| {
            let name = mirror.describe();
            let call = AssertUnwindSafe(mirror.append_batch(events)).catch_unwind();
            async move { (name, call.await.map_err(|panic| panic_text(&*panic))) }
        }));
        let (primary, mirrors) = futures::join!(primary, mirrors);
        let accounting = MirrorAccounting {
            failures: &self.failures,
            fallback: self.fallback.as_ref(),
        };
        for (name, result) in mirrors {
            accounting.account_mirror(&name, events, result).await;
        }
        primary
    }

    async fn checkpoint(&mut self) -> Result<Option<Checkpoint>, SinkError> {
        for mirror in &mut self.mirrors {
            if let Err(error) = mirror.checkpoint().await {
                tracing::warn!(mirror = %mirror.describe(), %error, "mirror checkpoint failed");
            }
        }
        self.primary.checkpoint().await
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        for mirror in &mut self.mirrors {
            if let Err(error) = mirror.close().await {
                tracing::warn!(mirror = %mirror.describe(), %error, "closing a mirror failed");
            }
        }
        self.primary.close().await
    }

    fn race_retries(&self) -> u64 {
        self.primary.race_retries()
    }

    fn describe(&self) -> String {
        let mirrors: Vec<String> = self
            .mirrors
            .iter()
            .map(|mirror| mirror.describe())
            .collect();
        format!(
            "tee({} -> [{}])",
            self.primary.describe(),
            mirrors.join(", ")
        )
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send + 'static)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}
