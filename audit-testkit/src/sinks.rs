//! Mock and fault-injecting sinks for tests.
//!
//! - [`RecordingSink`]: keeps every appended event; its [`Recording`]
//!   handle has the assertions a test wants (by type, by actor, in order).
//! - Fault wrappers around any sink: [`FailingSink`] (an error on the Nth
//!   call, or with a seeded probability), [`PanickingSink`] (a panic on the
//!   Nth call), [`SlowSink`] (a delay per batch), [`FlakySink`] (fails the
//!   first k calls). Their call counts live in a shared [`CallCounter`] so a
//!   sink factory that rebuilds them continues the same schedule.
//! - [`MemoryChain`]: an in-memory chain store under the real
//!   [`ChainWriter`] policy, sealing real records, so tests can verify what
//!   was written with the real [`Verifier`].
//!
//! ```
//! use audit_testkit::sinks::{CallCounter, FailingSink, RecordingSink};
//! use audit_core::pipeline::AuditPipeline;
//! use audit_core::AuditEvent;
//! use std::time::Duration;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let recording = RecordingSink::new().handle();
//! let calls = CallCounter::new();
//! let factory = {
//!     let (recording, calls) = (recording.clone(), calls.clone());
//!     move || {
//!         let sink = FailingSink::on_call(recording.sink(), 1).sharing(calls.clone());
//!         async move { Ok::<_, audit_core::sink::SinkError>(sink) }
//!     }
//! };
//! let pipeline = AuditPipeline::builder(factory).retry(audit_core::retry::RetryPolicy {
//!     initial: Duration::from_millis(1), max: Duration::from_millis(1), max_retries: 0 }).spawn();
//! pipeline.queue().submit(AuditEvent::new("login", "user:1", serde_json::json!({})).unwrap());
//! assert!(pipeline.drain_pending(Duration::from_secs(5)).await);
//! assert_eq!(recording.events_of_type("login").len(), 1);
//! assert_eq!(calls.get(), 2); // failed once, then succeeded on a rebuilt sink
//! pipeline.shutdown(Duration::from_secs(5)).await;
//! # }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use audit_core::chain::{BatchPlan, SealedBatch, VerifyOptions, VerifyReport};
use audit_core::chain_writer::{ChainSinkOptions, ChainStore, ChainWriter};
use audit_core::dead_letter::DeadLetter;
use audit_core::keys::Keyring;
use audit_core::sink::{AppendOutcome, AuditSink, ErrorClass, Receipt, SinkError};
use audit_core::store::memory::MemoryStore;
use audit_core::{AuditEvent, ChainHead, ChainId, Checkpoint, Record};

#[cfg(doc)]
use audit_core::chain::Verifier;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A shared count of `append_batch` calls, so rebuilt sinks continue one schedule.
#[derive(Debug, Clone, Default)]
pub struct CallCounter(Arc<AtomicU64>);

impl CallCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Counts one call; returns its 1-based number.
    fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

#[derive(Debug, Default)]
struct RecordingState {
    events: Vec<AuditEvent>,
    batch_sizes: Vec<usize>,
}

/// A sink that appends everything and records it; see [`Recording`].
///
/// Receipts carry consecutive seqs (shared by every sink of one recording)
/// and the event hash as the record hash.
#[derive(Debug, Default)]
pub struct RecordingSink {
    recording: Recording,
}

impl RecordingSink {
    /// A sink with a fresh recording.
    pub fn new() -> Self {
        Self::default()
    }

    /// The recording this sink writes to.
    pub fn handle(&self) -> Recording {
        self.recording.clone()
    }
}

#[async_trait]
impl AuditSink for RecordingSink {
    async fn append_batch(
        &mut self,
        events: &[AuditEvent],
    ) -> Result<Vec<AppendOutcome>, SinkError> {
        let mut state = lock(&self.recording.state);
        state.batch_sizes.push(events.len());
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            state.events.push(event.clone());
            outcomes.push(AppendOutcome::Appended(Receipt {
                chain: ChainId::default(),
                seq: state.events.len() as u64,
                record_hash: event.event_hash(),
                already_present: false,
            }));
        }
        Ok(outcomes)
    }

    fn describe(&self) -> String {
        "recording".into()
    }
}

/// The shared log of a [`RecordingSink`], with assertion helpers.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    state: Arc<Mutex<RecordingState>>,
}

impl Recording {
    /// Another sink writing to this recording (for factories).
    pub fn sink(&self) -> RecordingSink {
        RecordingSink {
            recording: self.clone(),
        }
    }

    /// Every appended event, in order.
    pub fn events(&self) -> Vec<AuditEvent> {
        lock(&self.state).events.clone()
    }

    /// Appended events of type `event_type`, in order.
    pub fn events_of_type(&self, event_type: &str) -> Vec<AuditEvent> {
        self.filtered(|event| event.event_type() == event_type)
    }

    /// Appended events by `actor`, in order.
    pub fn by_actor(&self, actor: &str) -> Vec<AuditEvent> {
        self.filtered(|event| event.actor() == actor)
    }

    /// Number of appended events.
    pub fn count(&self) -> usize {
        lock(&self.state).events.len()
    }

    /// Sizes of the batches received, in order.
    pub fn batch_sizes(&self) -> Vec<usize> {
        lock(&self.state).batch_sizes.clone()
    }

    /// Ids of the appended events, in order.
    pub fn ids(&self) -> Vec<String> {
        lock(&self.state)
            .events
            .iter()
            .map(|event| event.id().to_owned())
            .collect()
    }

    /// Asserts that every id in `ids` was appended exactly once, and in
    /// this order (other events may come between).
    ///
    /// # Panics
    /// When an id is missing, repeated or out of order.
    pub fn assert_in_order<S: AsRef<str>>(&self, ids: &[S]) {
        let appended = self.ids();
        let mut position: HashMap<&str, usize> = HashMap::new();
        for (index, id) in appended.iter().enumerate() {
            let repeated = position.insert(id.as_str(), index).is_some();
            let wanted = ids.iter().any(|wanted| wanted.as_ref() == id);
            assert!(
                !(repeated && wanted),
                "event {id} was appended more than once"
            );
        }
        let mut last: Option<(usize, &str)> = None;
        for id in ids {
            let id = id.as_ref();
            let Some(&index) = position.get(id) else {
                panic!(
                    "event {id} was not appended ({} events recorded)",
                    appended.len()
                );
            };
            if let Some((last_index, last_id)) = last {
                assert!(
                    index > last_index,
                    "event {id} (at {index}) was appended before {last_id} (at {last_index})"
                );
            }
            last = Some((index, id));
        }
    }

    fn filtered(&self, keep: impl Fn(&AuditEvent) -> bool) -> Vec<AuditEvent> {
        lock(&self.state)
            .events
            .iter()
            .filter(|event| keep(event))
            .cloned()
            .collect()
    }
}

/// When a [`FailingSink`] fails.
#[derive(Debug, Clone, Copy)]
enum FailWhen {
    NthCall(u64),
    Probability { probability: f64, seed: u64 },
}

/// Wraps a sink and returns an error instead of calling it, on the Nth
/// call or with a seeded probability.
#[derive(Debug)]
pub struct FailingSink<S> {
    inner: S,
    when: FailWhen,
    class: ErrorClass,
    calls: CallCounter,
}

impl<S: AuditSink> FailingSink<S> {
    /// Fails call number `n` (1-based) only.
    pub fn on_call(inner: S, n: u64) -> Self {
        Self {
            inner,
            when: FailWhen::NthCall(n),
            class: ErrorClass::Transient,
            calls: CallCounter::new(),
        }
    }

    /// Fails each call with `probability`, decided by a generator seeded
    /// with `seed` and the call number (deterministic across rebuilds).
    pub fn with_probability(inner: S, probability: f64, seed: u64) -> Self {
        Self {
            inner,
            when: FailWhen::Probability { probability, seed },
            class: ErrorClass::Transient,
            calls: CallCounter::new(),
        }
    }

    /// The class of the injected error (default transient).
    pub fn class(mut self, class: ErrorClass) -> Self {
        self.class = class;
        self
    }

    /// Counts calls in `calls` (shared with rebuilt sinks).
    pub fn sharing(mut self, calls: CallCounter) -> Self {
        self.calls = calls;
        self
    }

    fn fails(&self, call: u64) -> bool {
        match self.when {
            FailWhen::NthCall(n) => call == n,
            FailWhen::Probability { probability, seed } => {
                let draw = splitmix64(seed ^ call.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                (draw >> 11) as f64 / (1u64 << 53) as f64 <= probability
            }
        }
    }
}

/// One step of SplitMix64: a fast, well-mixed deterministic generator.
pub fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[async_trait]
impl<S: AuditSink> AuditSink for FailingSink<S> {
    async fn append_batch(
        &mut self,
        events: &[AuditEvent],
    ) -> Result<Vec<AppendOutcome>, SinkError> {
        let call = self.calls.next();
        if self.fails(call) {
            return Err(SinkError::new(
                self.describe(),
                self.class,
                format!("injected failure on call {call}"),
            ));
        }
        self.inner.append_batch(events).await
    }

    async fn checkpoint(&mut self) -> Result<Option<Checkpoint>, SinkError> {
        self.inner.checkpoint().await
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        self.inner.close().await
    }

    fn race_retries(&self) -> u64 {
        self.inner.race_retries()
    }

    fn describe(&self) -> String {
        format!("failing({})", self.inner.describe())
    }
}

/// Wraps a sink and panics on the Nth call (1-based) instead of calling it.
#[derive(Debug)]
pub struct PanickingSink<S> {
    inner: S,
    on_call: u64,
    calls: CallCounter,
}

impl<S: AuditSink> PanickingSink<S> {
    /// Panics on call number `n` only.
    pub fn on_call(inner: S, n: u64) -> Self {
        Self {
            inner,
            on_call: n,
            calls: CallCounter::new(),
        }
    }

    /// Counts calls in `calls` (shared with rebuilt sinks).
    pub fn sharing(mut self, calls: CallCounter) -> Self {
        self.calls = calls;
        self
    }
}

#[async_trait]
impl<S: AuditSink> AuditSink for PanickingSink<S> {
    async fn append_batch(
        &mut self,
        events: &[AuditEvent],
    ) -> Result<Vec<AppendOutcome>, SinkError> {
        let call = self.calls.next();
        if call == self.on_call {
            panic!("injected panic on call {call}");
        }
        self.inner.append_batch(events).await
    }

    async fn checkpoint(&mut self) -> Result<Option<Checkpoint>, SinkError> {
        self.inner.checkpoint().await
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        self.inner.close().await
    }

    fn race_retries(&self) -> u64 {
        self.inner.race_retries()
    }

    fn describe(&self) -> String {
        format!("panicking({})", self.inner.describe())
    }
}

/// Wraps a sink and sleeps before each batch.
#[derive(Debug)]
pub struct SlowSink<S> {
    inner: S,
    delay: Duration,
}

impl<S: AuditSink> SlowSink<S> {
    /// Sleeps `delay` before passing each batch on.
    pub fn new(inner: S, delay: Duration) -> Self {
        Self { inner, delay }
    }
}

#[async_trait]
impl<S: AuditSink> AuditSink for SlowSink<S> {
    async fn append_batch(
        &mut self,
        events: &[AuditEvent],
    ) -> Result<Vec<AppendOutcome>, SinkError> {
        tokio::time::sleep(self.delay).await;
        self.inner.append_batch(events).await
    }

    async fn checkpoint(&mut self) -> Result<Option<Checkpoint>, SinkError> {
        self.inner.checkpoint().await
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        self.inner.close().await
    }

    fn race_retries(&self) -> u64 {
        self.inner.race_retries()
    }

    fn describe(&self) -> String {
        format!("slow({})", self.inner.describe())
    }
}

/// Wraps a sink and fails the first `k` calls (counted across rebuilds
/// through its [`CallCounter`]), then passes every call on.
#[derive(Debug)]
pub struct FlakySink<S> {
    inner: S,
    failures: u64,
    calls: CallCounter,
}

impl<S: AuditSink> FlakySink<S> {
    /// Fails the first `failures` calls counted by `calls`.
    pub fn new(inner: S, failures: u64, calls: CallCounter) -> Self {
        Self {
            inner,
            failures,
            calls,
        }
    }
}

#[async_trait]
impl<S: AuditSink> AuditSink for FlakySink<S> {
    async fn append_batch(
        &mut self,
        events: &[AuditEvent],
    ) -> Result<Vec<AppendOutcome>, SinkError> {
        let call = self.calls.next();
        if call <= self.failures {
            return Err(SinkError::new(
                self.describe(),
                ErrorClass::Transient,
                format!("flaky: failure {call} of {}", self.failures),
            ));
        }
        self.inner.append_batch(events).await
    }

    async fn checkpoint(&mut self) -> Result<Option<Checkpoint>, SinkError> {
        self.inner.checkpoint().await
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        self.inner.close().await
    }

    fn race_retries(&self) -> u64 {
        self.inner.race_retries()
    }

    fn describe(&self) -> String {
        format!("flaky({})", self.inner.describe())
    }
}

#[derive(Debug, Default)]
struct Faults {
    fail_appends: Vec<ErrorClass>,
    fail_dead_letters: u32,
}

/// An in-memory chain (one chain, `default`) shared by every store made
/// from it: the core's [`MemoryStore`] with failures that can be injected
/// for the next appends or dead-letter writes.
///
/// Its stores are idempotent on event id, like the real sinks, and detect
/// lost races honestly: an append reads the head, seals outside the lock
/// and commits only if the head has not moved (else a
/// [`ErrorClass::Conflict`], which [`ChainWriter`] retries).
///
/// ```
/// use audit_testkit::sinks::MemoryChain;
/// use audit_core::chain_writer::ChainSinkOptions;
/// use audit_core::sink::AuditSink;
/// use audit_core::{AuditEvent, keys::Keyring};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let chain = MemoryChain::new();
/// let mut sink = chain.sink(ChainSinkOptions::unsigned());
/// let event = AuditEvent::new("t", "a", serde_json::json!({"k": 1})).unwrap();
/// sink.append_batch(&[event.clone(), event]).await.unwrap();
/// assert_eq!(chain.len(), 1);
/// assert!(chain.verify(Keyring::new()).is_ok());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MemoryChain {
    store: MemoryStore,
    faults: Arc<Mutex<Faults>>,
}

impl Default for MemoryChain {
    fn default() -> Self {
        Self {
            store: MemoryStore::new("chain"),
            faults: Arc::default(),
        }
    }
}

/// The chain sink over a [`MemoryChainStore`]: the real shared policy.
pub type MemoryChainSink = ChainWriter<MemoryChainStore>;

impl MemoryChain {
    /// An empty chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// The core store underneath (a [`ChainSource`](audit_core::store::ChainSource) too).
    pub fn memory_store(&self) -> &MemoryStore {
        &self.store
    }

    /// A store writing to this chain.
    pub fn store(&self) -> MemoryChainStore {
        MemoryChainStore {
            chain: self.clone(),
        }
    }

    /// A sink (the store under [`ChainWriter`]) writing to this chain.
    pub fn sink(&self, options: ChainSinkOptions) -> MemoryChainSink {
        ChainWriter::new(self.store(), options)
    }

    /// A factory of sinks writing to this chain, for a pipeline.
    pub fn factory(
        &self,
        options: ChainSinkOptions,
    ) -> impl Fn() -> std::future::Ready<Result<MemoryChainSink, SinkError>>
    + Send
    + Sync
    + Clone
    + 'static {
        let chain = self.clone();
        move || std::future::ready(Ok(chain.sink(options.clone())))
    }

    /// The records, in seq order.
    pub fn records(&self) -> Vec<Record> {
        self.store.records(&ChainId::default())
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records().len()
    }

    /// Whether the chain has no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dead letters stored.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.store.stored_dead_letters()
    }

    /// The checkpoints stored.
    pub fn checkpoints(&self) -> Vec<Checkpoint> {
        self.store.stored_checkpoints(&ChainId::default())
    }

    /// The next `count` append attempts fail with an error of `class`
    /// (a permanent error makes [`ChainWriter`] dead-letter the batch).
    pub fn fail_next_appends(&self, count: usize, class: ErrorClass) {
        lock(&self.faults)
            .fail_appends
            .extend(std::iter::repeat_n(class, count));
    }

    /// The next `count` dead-letter writes fail.
    pub fn fail_next_dead_letters(&self, count: u32) {
        lock(&self.faults).fail_dead_letters += count;
    }

    /// Verifies every checkpoint and record with the real verifier.
    pub fn verify(&self, keyring: Keyring) -> VerifyReport {
        self.verify_with(keyring, VerifyOptions::default())
    }

    /// Verifies with explicit options.
    pub fn verify_with(&self, keyring: Keyring, options: VerifyOptions) -> VerifyReport {
        let mut verifier = audit_core::chain::Verifier::new(keyring, options);
        self.checkpoints()
            .iter()
            .for_each(|checkpoint| verifier.checkpoint(checkpoint));
        self.records()
            .iter()
            .for_each(|record| verifier.record(record));
        verifier.finish()
    }
}

/// One writer's [`ChainStore`] on a [`MemoryChain`].
#[derive(Debug, Clone)]
pub struct MemoryChainStore {
    chain: MemoryChain,
}

impl MemoryChainStore {
    /// The chain written.
    pub fn chain(&self) -> &MemoryChain {
        &self.chain
    }

    fn injected(&self) -> Result<(), SinkError> {
        let mut faults = lock(&self.chain.faults);
        if faults.fail_appends.is_empty() {
            return Ok(());
        }
        let class = faults.fail_appends.remove(0);
        Err(SinkError::new(
            self.describe(),
            class,
            "injected append failure",
        ))
    }
}

#[async_trait]
impl ChainStore for MemoryChainStore {
    async fn append_once(&mut self, plan: &BatchPlan) -> Result<SealedBatch, SinkError> {
        self.injected()?;
        self.chain.store.append_once(plan).await
    }

    async fn import(&mut self, records: &[Record]) -> Result<(), SinkError> {
        self.injected()?;
        self.chain.store.import(records).await
    }

    async fn dead_letter(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        {
            let mut faults = lock(&self.chain.faults);
            if faults.fail_dead_letters > 0 {
                faults.fail_dead_letters -= 1;
                return Err(SinkError::new(
                    self.describe(),
                    ErrorClass::Transient,
                    "injected dead-letter failure",
                ));
            }
        }
        self.chain.store.dead_letter(letters).await
    }

    async fn remove_dead_letters(&mut self, keys: &[String]) -> Result<(), SinkError> {
        self.chain.store.remove_dead_letters(keys).await
    }

    async fn write_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), SinkError> {
        self.chain.store.write_checkpoint(checkpoint).await
    }

    async fn write_tree_checkpoint(
        &mut self,
        chain: &ChainId,
        size: u64,
        note: &str,
    ) -> Result<(), SinkError> {
        self.chain
            .store
            .write_tree_checkpoint(chain, size, note)
            .await
    }

    async fn head(&mut self, chain: &ChainId) -> Result<ChainHead, SinkError> {
        self.chain.store.head(chain).await
    }

    async fn tree(
        &mut self,
        chain: &ChainId,
    ) -> Result<audit_core::chain::tree::TreeFrontier, SinkError> {
        self.chain.store.tree(chain).await
    }

    fn describe(&self) -> String {
        "memory://chain".into()
    }
}
