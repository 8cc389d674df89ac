//! Pipeline metrics: counters, gauges and an append-latency histogram, read
//! as a cheap [`MetricsSnapshot`] and exported through the `metrics` crate.
//!
//! ## The accounting invariant
//!
//! `submitted = appended + dead_lettered + lost + in_flight` holds in every
//! snapshot, with no lock on the submit path: `in_flight` is not stored but
//! derived, `submitted - (appended + dead_lettered + lost)`. An event is
//! counted `submitted` *before* it is handed to the channel (and a refused
//! hand-over is subtracted again), so the drainer can never resolve an event
//! that is not yet counted; [`PipelineMetrics::snapshot`] reads the three
//! outcome counters first and `submitted` last (all sequentially consistent),
//! so every outcome it sees belongs to a submission it also sees, and
//! `in_flight` is never negative. An event whose hand-over is being refused
//! may show as in flight for an instant. Every counter is a plain atomic, and
//! every derived figure uses saturating arithmetic, so no interleaving can
//! make one wrap around.
//!
//! ## Queue depth
//!
//! The depth is counted up *before* an event is handed to the channel (and
//! down again if the hand-over is refused), and down when the drainer takes
//! events off the channel, so the count can never fall below zero: an
//! event's increment happens before its send, which happens before its
//! receipt. The counter is signed all the same and read clamped to
//! `0..=in_flight`, so that a snapshot never shows more events waiting than
//! are in flight, nor a wrapped value. The deepest queue seen,
//! [`MetricsSnapshot::peak_queue_depth`], is kept with `fetch_max` of the
//! depth each admission produced (never negative), so it cannot wrap
//! either; it may count for an instant an event whose hand-over is then
//! refused.
//!
//! `dead_lettered` counts both the sink's own dead letters (`dlq_landed`) and
//! the events written to the pipeline's fallback file. Events refused before
//! they were queued by [`try_submit`](crate::pipeline::AuditQueue::try_submit)
//! or [`submit_async`](crate::pipeline::AuditQueue::submit_async) are not
//! `submitted`: they count in `send_failures` and the caller gets them back.
//! An event refused by the fire-and-forget
//! [`submit`](crate::pipeline::AuditQueue::submit) is both `submitted` and
//! `lost` (and a `send_failure`), because nobody else holds it any more.
//!
//! ## Exported names (`metrics` crate facade)
//!
//! Every name carries the label `pipeline` (the builder's
//! [`name`](crate::pipeline::PipelineBuilder::name), `default` unless set).
//! The drainer publishes after every batch and at shutdown, and the
//! pipeline publishes every
//! [`metrics_interval`](crate::pipeline::PipelineBuilder::metrics_interval)
//! (1 s by default) in between, so that gauges stay current while a batch
//! is slow or the queue is idle; call [`PipelineMetrics::publish`] to
//! publish at other times. [`describe_metrics`] gives every name its unit
//! and description (the pipeline calls it once when it starts).
//!
//! ## Ages
//!
//! Every queued event carries the instant it was submitted. The age of the
//! oldest waiting event is measured from the later of two instants: when
//! the queue last became non-empty, and when the event the drainer took
//! last was submitted (the next one waiting was submitted after it, as
//! the channel is first in, first out). It is therefore an upper bound
//! (give or take the instant between two producers' `submit` calls, whose
//! envelopes may enter the channel in the other order): the oldest waiting
//! event is at most that old, and exactly that old when it arrived in an
//! empty queue.
//!
//! | name | kind | meaning |
//! |---|---|---|
//! | `deferred_audit_submitted_total` | counter | events accepted into the queue (plus events lost at submit) |
//! | `deferred_audit_appended_total` | counter | events durable in the chain |
//! | `deferred_audit_dead_lettered_total` | counter | events in the sink's dead letters or the fallback file |
//! | `deferred_audit_lost_total` | counter | events neither appended nor dead-lettered (logged at error level) |
//! | `deferred_audit_send_failures_total` | counter | submissions refused (full, closed, terminal) |
//! | `deferred_audit_append_failures_total` | counter | sink or factory errors (each failed attempt) |
//! | `deferred_audit_dlq_landed_total` | counter | events the sink dead-lettered itself |
//! | `deferred_audit_unique_race_retries_total` | counter | lost seq races the sink retried |
//! | `deferred_audit_drainer_panics_total` | counter | sink or factory panics caught |
//! | `deferred_audit_restarts_total` | counter | sink rebuilds after a failure |
//! | `deferred_audit_batches_total` | counter | batches the sink accepted |
//! | `deferred_audit_in_flight` | gauge | submitted but not yet resolved |
//! | `deferred_audit_queue_depth` | gauge | waiting in the channel |
//! | `deferred_audit_last_batch_size` | gauge | events in the last batch |
//! | `deferred_audit_terminal` | gauge | 1 once a batch went to the fallback file |
//! | `deferred_audit_oldest_queued_age_seconds` | gauge | how long the oldest waiting event has waited (0 when none waits) |
//! | `deferred_audit_durable_lag_seconds` | gauge | submit to durable, for the oldest event of the last batch the sink accepted |
//! | `deferred_audit_journal_bytes` | gauge | bytes the admission journal holds (absent without a journal) |
//! | `deferred_audit_journal_fill_percent` | gauge | those bytes in percent of the journal's `max_bytes` |
//! | `deferred_audit_batch_size` | histogram | events per batch |
//! | `deferred_audit_append_latency_seconds` | histogram | duration of each `append_batch` call |
//!
//! ```
//! use audit_core::metrics::PipelineMetrics;
//! let metrics = PipelineMetrics::new("example");
//! let snapshot = metrics.snapshot();
//! assert!(snapshot.is_balanced());
//! assert_eq!(snapshot.submitted, 0);
//! ```

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::journal::Journal;

/// Upper bounds (inclusive, microseconds) of the append-latency buckets;
/// the last bucket of [`MetricsSnapshot::append_latency_histogram`] holds
/// everything slower.
pub const LATENCY_BUCKETS_US: [u64; 7] = [
    100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 60_000_000,
];

/// Number of buckets of the latency histogram (the bounds plus one overflow bucket).
pub const LATENCY_BUCKET_COUNT: usize = LATENCY_BUCKETS_US.len() + 1;

/// What kind of value a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricKind {
    /// Only grows.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution of observations.
    Histogram,
}

/// One exported metric: its name, kind, unit and meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDescription {
    /// The exported name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Its unit.
    pub unit: metrics::Unit,
    /// What it counts or measures.
    pub help: &'static str,
}

const fn describe(
    name: &'static str,
    kind: MetricKind,
    unit: metrics::Unit,
    help: &'static str,
) -> MetricDescription {
    MetricDescription {
        name,
        kind,
        unit,
        help,
    }
}

/// Every metric a pipeline exports (the table of the module docs).
pub const METRICS: &[MetricDescription] = {
    use MetricKind::{Counter, Gauge, Histogram};
    use metrics::Unit::{Bytes, Count, Percent, Seconds};
    &[
        describe(
            "deferred_audit_submitted_total",
            Counter,
            Count,
            "audit events accepted into the queue, plus events lost at submit",
        ),
        describe(
            "deferred_audit_appended_total",
            Counter,
            Count,
            "audit events durable in the chain",
        ),
        describe(
            "deferred_audit_dead_lettered_total",
            Counter,
            Count,
            "audit events in the sink's dead letters or the fallback file",
        ),
        describe(
            "deferred_audit_lost_total",
            Counter,
            Count,
            "audit events neither appended nor dead-lettered (each logged at error level)",
        ),
        describe(
            "deferred_audit_send_failures_total",
            Counter,
            Count,
            "submissions refused (queue full, closed or terminal)",
        ),
        describe(
            "deferred_audit_append_failures_total",
            Counter,
            Count,
            "failed sink or factory attempts",
        ),
        describe(
            "deferred_audit_dlq_landed_total",
            Counter,
            Count,
            "audit events the sink dead-lettered itself",
        ),
        describe(
            "deferred_audit_unique_race_retries_total",
            Counter,
            Count,
            "lost seq races the sink retried",
        ),
        describe(
            "deferred_audit_drainer_panics_total",
            Counter,
            Count,
            "sink or factory panics caught by the supervisor",
        ),
        describe(
            "deferred_audit_restarts_total",
            Counter,
            Count,
            "sink rebuilds after a failure",
        ),
        describe(
            "deferred_audit_batches_total",
            Counter,
            Count,
            "batches the sink accepted",
        ),
        describe(
            "deferred_audit_in_flight",
            Gauge,
            Count,
            "audit events submitted and not yet resolved",
        ),
        describe(
            "deferred_audit_queue_depth",
            Gauge,
            Count,
            "audit events waiting in the queue",
        ),
        describe(
            "deferred_audit_last_batch_size",
            Gauge,
            Count,
            "audit events in the last batch the sink accepted",
        ),
        describe(
            "deferred_audit_terminal",
            Gauge,
            Count,
            "1 once a batch went to the fallback file: the sink needs attention",
        ),
        describe(
            "deferred_audit_oldest_queued_age_seconds",
            Gauge,
            Seconds,
            "how long the oldest waiting audit event has waited (0 when none waits)",
        ),
        describe(
            "deferred_audit_durable_lag_seconds",
            Gauge,
            Seconds,
            "submit to durable, for the oldest event of the last batch the sink accepted",
        ),
        describe(
            "deferred_audit_journal_bytes",
            Gauge,
            Bytes,
            "bytes the admission journal holds",
        ),
        describe(
            "deferred_audit_journal_fill_percent",
            Gauge,
            Percent,
            "bytes the admission journal holds, in percent of its max_bytes",
        ),
        describe(
            "deferred_audit_batch_size",
            Histogram,
            Count,
            "audit events per batch",
        ),
        describe(
            "deferred_audit_append_latency_seconds",
            Histogram,
            Seconds,
            "duration of each append_batch call of the sink",
        ),
    ]
};

/// Describes every metric of [`METRICS`] to the installed `metrics`
/// recorder (unit and help text, as Prometheus `# HELP` lines show them).
/// Pipelines call it when they start; calling it again is harmless.
pub fn describe_metrics() {
    for metric in METRICS {
        match metric.kind {
            MetricKind::Counter => {
                metrics::describe_counter!(metric.name, metric.unit, metric.help)
            }
            MetricKind::Gauge => metrics::describe_gauge!(metric.name, metric.unit, metric.help),
            MetricKind::Histogram => {
                metrics::describe_histogram!(metric.name, metric.unit, metric.help)
            }
        }
    }
}

/// The counters the accounting invariant is about (`in_flight` is derived).
#[derive(Debug, Default)]
struct Ledger {
    submitted: AtomicU64,
    appended: AtomicU64,
    dead_lettered: AtomicU64,
    lost: AtomicU64,
}

/// The ledger's ordering: sequentially consistent, see the module docs.
const LEDGER: Ordering = Ordering::SeqCst;

impl Ledger {
    /// `(submitted, appended, dead_lettered, lost, in_flight)`, outcomes
    /// read before `submitted` so that `in_flight` is never negative.
    fn read(&self) -> (u64, u64, u64, u64, u64) {
        let appended = self.appended.load(LEDGER);
        let dead_lettered = self.dead_lettered.load(LEDGER);
        let lost = self.lost.load(LEDGER);
        let submitted = self.submitted.load(LEDGER);
        let resolved = appended.saturating_add(dead_lettered).saturating_add(lost);
        let in_flight = submitted.saturating_sub(resolved);
        (submitted, appended, dead_lettered, lost, in_flight)
    }
}

/// The live metrics of one pipeline, shared by its queue and drainer.
#[derive(Debug)]
pub struct PipelineMetrics {
    name: String,
    ledger: Ledger,
    send_failures: AtomicU64,
    append_failures: AtomicU64,
    dlq_landed: AtomicU64,
    unique_race_retries: AtomicU64,
    drainer_panics: AtomicU64,
    restarts: AtomicU64,
    /// Signed so that no interleaving can wrap it; see the module docs.
    queue_depth: AtomicI64,
    peak_queue_depth: AtomicU64,
    batches: AtomicU64,
    last_batch_size: AtomicU64,
    max_batch_size: AtomicU64,
    append_latency_us_last: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKET_COUNT],
    terminal: AtomicBool,
    /// The origin of the nanosecond instants below.
    epoch: Instant,
    /// When the queue last went from empty to non-empty.
    nonempty_since_ns: AtomicU64,
    /// When the event the drainer took last was submitted.
    last_taken_submitted_ns: AtomicU64,
    /// Submit to durable of the oldest event of the last accepted batch.
    durable_lag_us_last: AtomicU64,
    /// The admission journal, when the pipeline has one.
    journal: OnceLock<Journal>,
}

/// A consistent copy of the metrics at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Events accepted into the queue, plus events lost at submit.
    pub submitted: u64,
    /// Events durable in the chain.
    pub appended: u64,
    /// Events dead-lettered by the sink or written to the fallback file.
    pub dead_lettered: u64,
    /// Events neither appended nor dead-lettered (each logged at error level).
    pub lost: u64,
    /// Events submitted and not yet resolved.
    pub in_flight: u64,
    /// Submissions refused (full, closed, terminal).
    pub send_failures: u64,
    /// Failed attempts: sink errors, factory errors, wrong outcome counts.
    pub append_failures: u64,
    /// Events the sink dead-lettered itself.
    pub dlq_landed: u64,
    /// Lost seq races the sink retried.
    pub unique_race_retries: u64,
    /// Panics of the sink or its factory, caught by the supervisor.
    pub drainer_panics: u64,
    /// Sink rebuilds after a failure.
    pub restarts: u64,
    /// Events waiting in the channel (never more than `in_flight`).
    pub queue_depth: u64,
    /// The deepest the channel has been since the pipeline started.
    pub peak_queue_depth: u64,
    /// Batches the sink accepted.
    pub batches: u64,
    /// Size of the last batch the sink accepted.
    pub last_batch_size: u64,
    /// Largest batch the sink accepted.
    pub max_batch_size: u64,
    /// Duration of the last `append_batch` call, in microseconds.
    pub append_latency_us_last: u64,
    /// Count of `append_batch` calls per latency bucket ([`LATENCY_BUCKETS_US`]).
    pub append_latency_histogram: [u64; LATENCY_BUCKET_COUNT],
    /// Whether a batch went to the fallback file after `max_restarts`
    /// failures: the sink needs attention. Stays set.
    pub terminal: bool,
    /// How long the oldest waiting event has waited, in microseconds (0
    /// when none waits; see the module docs for how it is measured).
    pub oldest_queued_age_us: u64,
    /// Submit to durable of the oldest event of the last batch the sink
    /// accepted, in microseconds.
    pub durable_lag_us_last: u64,
    /// Bytes the admission journal holds, when there is one.
    pub journal_bytes: Option<u64>,
    /// The journal's `max_bytes`, when there is one.
    pub journal_max_bytes: Option<u64>,
}

impl MetricsSnapshot {
    /// Whether `submitted = appended + dead_lettered + lost + in_flight`
    /// (a sum that overflows `u64` is not balanced).
    pub fn is_balanced(&self) -> bool {
        self.appended
            .checked_add(self.dead_lettered)
            .and_then(|sum| sum.checked_add(self.lost))
            .and_then(|sum| sum.checked_add(self.in_flight))
            == Some(self.submitted)
    }

    /// Events resolved so far: appended, dead-lettered or lost (saturating).
    pub fn resolved(&self) -> u64 {
        self.appended
            .saturating_add(self.dead_lettered)
            .saturating_add(self.lost)
    }
}

impl PipelineMetrics {
    /// Fresh metrics, exported with the label `pipeline = name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ledger: Ledger::default(),
            send_failures: AtomicU64::new(0),
            append_failures: AtomicU64::new(0),
            dlq_landed: AtomicU64::new(0),
            unique_race_retries: AtomicU64::new(0),
            drainer_panics: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            queue_depth: AtomicI64::new(0),
            peak_queue_depth: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            last_batch_size: AtomicU64::new(0),
            max_batch_size: AtomicU64::new(0),
            append_latency_us_last: AtomicU64::new(0),
            latency_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            terminal: AtomicBool::new(false),
            epoch: Instant::now(),
            nonempty_since_ns: AtomicU64::new(0),
            last_taken_submitted_ns: AtomicU64::new(0),
            durable_lag_us_last: AtomicU64::new(0),
            journal: OnceLock::new(),
        }
    }

    /// Reports the journal's fill with the other gauges.
    pub(crate) fn attach_journal(&self, journal: Journal) {
        let _ = self.journal.set(journal);
    }

    /// Nanoseconds from the metrics' epoch to `instant` (0 before it).
    fn nanos(&self, instant: Instant) -> u64 {
        u64::try_from(instant.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// How long the oldest waiting event has waited, in microseconds.
    fn oldest_queued_age_us(&self, queue_depth: u64) -> u64 {
        if queue_depth == 0 {
            return 0;
        }
        let since = self
            .nonempty_since_ns
            .load(Ordering::Relaxed)
            .max(self.last_taken_submitted_ns.load(Ordering::Relaxed));
        self.nanos(Instant::now()).saturating_sub(since) / 1_000
    }

    /// The pipeline name used as the `pipeline` label.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A copy of every value; the ledger's invariant holds in it.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let (submitted, appended, dead_lettered, lost, in_flight) = self.ledger.read();
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        MetricsSnapshot {
            submitted,
            appended,
            dead_lettered,
            lost,
            in_flight,
            send_failures: load(&self.send_failures),
            append_failures: load(&self.append_failures),
            dlq_landed: load(&self.dlq_landed),
            unique_race_retries: load(&self.unique_race_retries),
            drainer_panics: load(&self.drainer_panics),
            restarts: load(&self.restarts),
            queue_depth: self.depth().min(in_flight),
            peak_queue_depth: load(&self.peak_queue_depth),
            batches: load(&self.batches),
            last_batch_size: load(&self.last_batch_size),
            max_batch_size: load(&self.max_batch_size),
            append_latency_us_last: load(&self.append_latency_us_last),
            append_latency_histogram: std::array::from_fn(|index| {
                load(&self.latency_buckets[index])
            }),
            terminal: self.terminal.load(Ordering::Relaxed),
            oldest_queued_age_us: self.oldest_queued_age_us(self.depth().min(in_flight)),
            durable_lag_us_last: load(&self.durable_lag_us_last),
            journal_bytes: self.journal.get().map(|journal| journal.usage().0),
            journal_max_bytes: self.journal.get().map(Journal::max_bytes),
        }
    }

    /// Events submitted and not yet resolved.
    pub fn in_flight(&self) -> u64 {
        self.ledger.read().4
    }

    /// Events waiting in the channel, never negative.
    fn depth(&self) -> u64 {
        u64::try_from(self.queue_depth.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// The deepest the channel has been since the pipeline started.
    pub fn peak_queue_depth(&self) -> u64 {
        self.peak_queue_depth.load(Ordering::Relaxed)
    }

    /// Counts `count` events as waiting and raises the peak to the depth
    /// this makes.
    fn enqueued(&self, count: u64) {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        let before = self.queue_depth.fetch_add(count, Ordering::Relaxed);
        if before <= 0 {
            self.nonempty_since_ns
                .fetch_max(self.nanos(Instant::now()), Ordering::Relaxed);
        }
        let depth = before.saturating_add(count);
        self.peak_queue_depth
            .fetch_max(u64::try_from(depth).unwrap_or(0), Ordering::Relaxed);
    }

    /// Whether the pipeline is in its terminal state.
    pub fn is_terminal(&self) -> bool {
        self.terminal.load(Ordering::Relaxed)
    }

    /// Publishes every value through the `metrics` crate facade (names in
    /// the module docs).
    pub fn publish(&self) {
        let snapshot = self.snapshot();
        let label = self.name.clone();
        let counters = [
            ("deferred_audit_submitted_total", snapshot.submitted),
            ("deferred_audit_appended_total", snapshot.appended),
            ("deferred_audit_dead_lettered_total", snapshot.dead_lettered),
            ("deferred_audit_lost_total", snapshot.lost),
            ("deferred_audit_send_failures_total", snapshot.send_failures),
            (
                "deferred_audit_append_failures_total",
                snapshot.append_failures,
            ),
            ("deferred_audit_dlq_landed_total", snapshot.dlq_landed),
            (
                "deferred_audit_unique_race_retries_total",
                snapshot.unique_race_retries,
            ),
            (
                "deferred_audit_drainer_panics_total",
                snapshot.drainer_panics,
            ),
            ("deferred_audit_restarts_total", snapshot.restarts),
            ("deferred_audit_batches_total", snapshot.batches),
        ];
        for (name, value) in counters {
            metrics::counter!(name, "pipeline" => label.clone()).absolute(value);
        }
        let gauges = [
            ("deferred_audit_in_flight", snapshot.in_flight),
            ("deferred_audit_queue_depth", snapshot.queue_depth),
            ("deferred_audit_last_batch_size", snapshot.last_batch_size),
            ("deferred_audit_terminal", u64::from(snapshot.terminal)),
        ];
        for (name, value) in gauges {
            metrics::gauge!(name, "pipeline" => label.clone()).set(value as f64);
        }
        let seconds = [
            (
                "deferred_audit_oldest_queued_age_seconds",
                snapshot.oldest_queued_age_us,
            ),
            (
                "deferred_audit_durable_lag_seconds",
                snapshot.durable_lag_us_last,
            ),
        ];
        for (name, micros) in seconds {
            metrics::gauge!(name, "pipeline" => label.clone()).set(micros as f64 / 1e6);
        }
        if let (Some(bytes), Some(max)) = (snapshot.journal_bytes, snapshot.journal_max_bytes) {
            metrics::gauge!("deferred_audit_journal_bytes", "pipeline" => label.clone())
                .set(bytes as f64);
            let fill = if max == 0 {
                100.0
            } else {
                bytes as f64 * 100.0 / max as f64
            };
            metrics::gauge!("deferred_audit_journal_fill_percent", "pipeline" => label).set(fill);
        }
    }

    /// Counts one event submitted (so in flight), then runs `send`; if the
    /// send fails the count is taken back, otherwise the event is queued.
    pub(crate) fn admit<T>(&self, send: impl FnOnce() -> Result<(), T>) -> Result<(), T> {
        self.ledger.submitted.fetch_add(1, LEDGER);
        self.enqueued(1);
        if let Err(error) = send() {
            self.queue_depth.fetch_sub(1, Ordering::Relaxed);
            self.ledger.submitted.fetch_sub(1, LEDGER);
            return Err(error);
        }
        Ok(())
    }

    /// Counts `count` events recovered from the journal as submitted and
    /// waiting, before the drainer takes them.
    pub(crate) fn admit_recovered(&self, count: u64) {
        self.ledger.submitted.fetch_add(count, LEDGER);
        self.enqueued(count);
    }

    /// Counts an event refused by `submit`: submitted and lost at once.
    pub(crate) fn lost_at_submit(&self) {
        self.ledger.submitted.fetch_add(1, LEDGER);
        self.ledger.lost.fetch_add(1, LEDGER);
        self.send_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a submission refused before queueing (caller got the event back).
    pub(crate) fn send_failure(&self) {
        self.send_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The drainer took `count` events off the channel, the last of them
    /// submitted at `last_submitted`.
    pub(crate) fn dequeued(&self, count: usize, last_submitted: Option<Instant>) {
        if let Some(submitted) = last_submitted {
            self.last_taken_submitted_ns
                .fetch_max(self.nanos(submitted), Ordering::Relaxed);
        }
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        self.queue_depth.fetch_sub(count, Ordering::Relaxed);
    }

    /// A batch whose oldest event was submitted at `oldest` became durable
    /// (appended or dead-lettered) now.
    pub(crate) fn durable(&self, oldest: Instant) {
        let micros = u64::try_from(oldest.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.durable_lag_us_last.store(micros, Ordering::Relaxed);
    }

    /// Counts resolved events (they leave the derived `in_flight`).
    pub(crate) fn resolve(&self, appended: u64, dead_lettered: u64, lost: u64) {
        self.ledger.appended.fetch_add(appended, LEDGER);
        self.ledger.dead_lettered.fetch_add(dead_lettered, LEDGER);
        self.ledger.lost.fetch_add(lost, LEDGER);
    }

    pub(crate) fn add_dlq_landed(&self, count: u64) {
        self.dlq_landed.fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn add_race_retries(&self, count: u64) {
        self.unique_race_retries.fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn append_failure(&self) {
        self.append_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn drainer_panic(&self) {
        self.drainer_panics.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn enter_terminal(&self) {
        self.terminal.store(true, Ordering::Relaxed);
    }

    /// Records a batch the sink accepted.
    pub(crate) fn batch_accepted(&self, size: usize) {
        let size = size as u64;
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.last_batch_size.store(size, Ordering::Relaxed);
        self.max_batch_size.fetch_max(size, Ordering::Relaxed);
        metrics::histogram!("deferred_audit_batch_size", "pipeline" => self.name.clone())
            .record(size as f64);
    }

    /// Records the duration of one `append_batch` call.
    pub(crate) fn append_latency(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.append_latency_us_last.store(micros, Ordering::Relaxed);
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|bound| micros <= *bound)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        metrics::histogram!("deferred_audit_append_latency_seconds", "pipeline" => self.name.clone())
            .record(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_stays_balanced_through_every_step() {
        let metrics = PipelineMetrics::new("t");
        metrics.admit(|| Ok::<(), ()>(())).unwrap();
        metrics.admit(|| Ok::<(), ()>(())).unwrap();
        assert!(metrics.admit(|| Err(())).is_err());
        metrics.lost_at_submit();
        let snapshot = metrics.snapshot();
        assert_eq!(
            (snapshot.submitted, snapshot.in_flight, snapshot.lost),
            (3, 2, 1)
        );
        assert!(snapshot.is_balanced());
        metrics.dequeued(2, None);
        metrics.resolve(1, 1, 0);
        let snapshot = metrics.snapshot();
        assert!(snapshot.is_balanced());
        assert_eq!(
            (
                snapshot.in_flight,
                snapshot.queue_depth,
                snapshot.send_failures
            ),
            (0, 0, 1)
        );
    }

    #[test]
    fn concurrent_snapshots_never_see_an_outcome_before_its_submission() {
        let metrics = PipelineMetrics::new("t");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|scope| {
            let metrics = &metrics;
            scope.spawn(move || {
                for _ in 0..20_000 {
                    metrics.admit(|| tx.send(()).map_err(drop)).unwrap();
                }
                drop(tx);
            });
            scope.spawn(move || {
                while rx.recv().is_ok() {
                    metrics.resolve(1, 0, 0);
                }
            });
            scope.spawn(move || {
                for _ in 0..20_000 {
                    let snapshot = metrics.snapshot();
                    assert!(snapshot.submitted >= snapshot.resolved(), "{snapshot:?}");
                    assert!(snapshot.is_balanced(), "{snapshot:?}");
                }
            });
        });
        let snapshot = metrics.snapshot();
        assert_eq!((snapshot.appended, snapshot.in_flight), (20_000, 0));
    }

    /// Producers admit (some hand-overs refused, some events lost at submit)
    /// into a small channel, resolvers take and resolve every event as
    /// appended, dead-lettered or lost, while observers take snapshots.
    #[test]
    fn hammered_ledger_never_underflows_and_balances_once_quiescent() {
        use std::sync::mpsc::{TrySendError, sync_channel};
        use std::sync::{Arc, Mutex};

        const PRODUCERS: u64 = 4;
        const PER_PRODUCER: u64 = 25_000;
        const CAPACITY: usize = 64;
        let metrics = PipelineMetrics::new("hammer");
        let (tx, rx) = sync_channel::<u64>(CAPACITY);
        let rx = Arc::new(Mutex::new(rx));
        let producing = AtomicU64::new(PRODUCERS);
        let snapshots_taken = AtomicU64::new(0);
        std::thread::scope(|scope| {
            let metrics = &metrics;
            let producing = &producing;
            let snapshots_taken = &snapshots_taken;
            for producer in 0..PRODUCERS {
                let tx = tx.clone();
                scope.spawn(move || {
                    for n in 0..PER_PRODUCER {
                        if n % 97 == 0 {
                            metrics.lost_at_submit();
                            continue;
                        }
                        let event = producer * PER_PRODUCER + n;
                        loop {
                            match metrics.admit(|| tx.try_send(event)) {
                                Ok(()) => break,
                                Err(TrySendError::Full(_)) => {
                                    metrics.send_failure();
                                    std::thread::yield_now();
                                }
                                Err(TrySendError::Disconnected(_)) => return,
                            }
                        }
                    }
                    producing.fetch_sub(1, Ordering::SeqCst);
                });
            }
            drop(tx);
            for _ in 0..2 {
                let rx = Arc::clone(&rx);
                scope.spawn(move || {
                    loop {
                        let received = rx.lock().map(|rx| rx.recv());
                        let Ok(Ok(event)) = received else { break };
                        metrics.dequeued(1, None);
                        match event % 3 {
                            0 => metrics.resolve(1, 0, 0),
                            1 => metrics.resolve(0, 1, 0),
                            _ => metrics.resolve(0, 0, 1),
                        }
                    }
                });
            }
            for _ in 0..3 {
                scope.spawn(move || {
                    let mut rounds = 0;
                    while rounds < 2_000 || producing.load(Ordering::SeqCst) > 0 {
                        rounds += 1;
                        let snapshot = metrics.snapshot();
                        snapshots_taken.fetch_add(1, Ordering::Relaxed);
                        assert!(snapshot.in_flight <= snapshot.submitted, "{snapshot:?}");
                        assert!(snapshot.resolved() <= snapshot.submitted, "{snapshot:?}");
                        assert!(snapshot.is_balanced(), "{snapshot:?}");
                        assert!(snapshot.queue_depth <= snapshot.in_flight, "{snapshot:?}");
                        // A wrapped counter would be near 2^64.
                        let bound = PRODUCERS * PER_PRODUCER;
                        assert!(snapshot.submitted <= bound, "{snapshot:?}");
                        assert!(snapshot.peak_queue_depth <= bound, "{snapshot:?}");
                        assert!(metrics.in_flight() <= bound);
                    }
                });
            }
        });
        let snapshot = metrics.snapshot();
        let lost_at_submit = PRODUCERS * PER_PRODUCER.div_ceil(97);
        assert_eq!(snapshot.submitted, PRODUCERS * PER_PRODUCER, "{snapshot:?}");
        assert_eq!(
            (snapshot.in_flight, snapshot.queue_depth),
            (0, 0),
            "{snapshot:?}"
        );
        assert!(snapshot.is_balanced(), "{snapshot:?}");
        assert_eq!(snapshot.resolved(), snapshot.submitted);
        assert!(snapshot.lost >= lost_at_submit, "{snapshot:?}");
        assert_eq!(metrics.queue_depth.load(Ordering::SeqCst), 0);
        // The channel holds CAPACITY; each producer may count one more for
        // the instant of a refused hand-over.
        assert!(snapshot.peak_queue_depth >= 1, "{snapshot:?}");
        assert!(
            snapshot.peak_queue_depth <= CAPACITY as u64 + PRODUCERS + 2,
            "{snapshot:?}"
        );
        assert!(snapshots_taken.load(Ordering::Relaxed) >= 6_000);
    }

    #[test]
    fn a_dequeue_before_its_count_shows_depth_zero_not_a_wrapped_value() {
        let metrics = PipelineMetrics::new("t");
        metrics.dequeued(3, None);
        let snapshot = metrics.snapshot();
        assert_eq!((snapshot.queue_depth, snapshot.peak_queue_depth), (0, 0));
        metrics.admit_recovered(5);
        let snapshot = metrics.snapshot();
        assert_eq!(snapshot.queue_depth, 2);
        assert_eq!(metrics.peak_queue_depth(), 2);
    }

    #[test]
    fn peak_depth_is_the_deepest_queue_seen() {
        let metrics = PipelineMetrics::new("t");
        for _ in 0..5 {
            metrics.admit(|| Ok::<(), ()>(())).unwrap();
        }
        metrics.dequeued(4, None);
        metrics.admit(|| Ok::<(), ()>(())).unwrap();
        assert!(metrics.admit(|| Err(())).is_err());
        let snapshot = metrics.snapshot();
        assert_eq!((snapshot.queue_depth, snapshot.peak_queue_depth), (2, 5));
    }

    #[test]
    fn latency_lands_in_its_bucket() {
        let metrics = PipelineMetrics::new("t");
        metrics.append_latency(Duration::from_micros(50));
        metrics.append_latency(Duration::from_millis(5));
        metrics.append_latency(Duration::from_secs(100));
        let snapshot = metrics.snapshot();
        assert_eq!(snapshot.append_latency_histogram, [1, 0, 1, 0, 0, 0, 0, 1]);
        assert_eq!(snapshot.append_latency_us_last, 100_000_000);
    }
}
