//! The conformance suite every [`AuditSink`] implementation must pass.
//!
//! A backend's tests call [`run`] with a factory of its sinks (all writing
//! one chain) and the [`Capabilities`] it has: its read side (a
//! [`ChainSource`], through which records, dead letters and verification are
//! checked with the core's one verifier), how to make its next append fail,
//! whether several writers may append at once. Each check is also a public function, for a backend that wants to
//! run one on its own. The checks panic with a message naming what broke.
//! They tolerate records already in the chain, so one store can serve the
//! whole suite.
//!
//! ```
//! use audit_testkit::conformance::{self, Capabilities};
//! use audit_testkit::sinks::MemoryChain;
//! use audit_core::chain_writer::ChainSinkOptions;
//! use audit_core::sink::ErrorClass;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let chain = MemoryChain::new();
//! let caps = Capabilities::new()
//!     .source(chain.memory_store().clone())
//!     .inject_permanent_failure({ let chain = chain.clone(); move || { let chain = chain.clone(); async move { chain.fail_next_appends(1, ErrorClass::Permanent) } } })
//!     .concurrent_writers(true);
//! conformance::run(chain.factory(ChainSinkOptions::unsigned()), caps).await;
//! # }
//! ```

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use futures::FutureExt as _;
use futures::future::BoxFuture;

use audit_core::chain::VerifyOptions;
use audit_core::keys::Keyring;
use audit_core::sink::{AppendOutcome, AuditSink, Receipt, SinkFactory};
use audit_core::store::ChainSource;
use audit_core::verification::{SourceVerifyOptions, verify_source};
use audit_core::{AuditEvent, Record};

/// An action on the backend (e.g. inject a failure).
pub type Hook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// What a sink under test can do, and how the suite reaches its storage.
#[derive(Clone, Default)]
pub struct Capabilities {
    /// The store's read side (enables the read-back, dead-letter and
    /// verification checks, all through the core's one verifier).
    pub source: Option<Arc<dyn ChainSource>>,
    /// Makes the next append attempt fail with a permanent error, so the
    /// sink dead-letters the batch (enables the dead-letter check).
    pub inject_permanent_failure: Option<Hook>,
    /// Whether two sinks from the factory may append at the same time.
    pub concurrent_writers: bool,
    /// The keys records and checkpoints are signed with.
    pub keyring: Keyring,
    /// Verification options (e.g. `require_signed`).
    pub verify_options: VerifyOptions,
}

impl std::fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capabilities")
            .field(
                "source",
                &self.source.as_ref().map(|source| source.describe()),
            )
            .field(
                "inject_permanent_failure",
                &self.inject_permanent_failure.is_some(),
            )
            .field("concurrent_writers", &self.concurrent_writers)
            .field("keys", &self.keyring.len())
            .finish()
    }
}

impl Capabilities {
    /// No capabilities: only the checks that need none run.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the store's read side.
    pub fn source(mut self, source: impl ChainSource + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Sets how to make the next append attempt fail permanently.
    pub fn inject_permanent_failure<F, Fut>(mut self, inject: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.inject_permanent_failure = Some(Arc::new(move || inject().boxed()));
        self
    }

    /// Declares whether concurrent writers are supported.
    pub fn concurrent_writers(mut self, supported: bool) -> Self {
        self.concurrent_writers = supported;
        self
    }

    /// Sets the keyring used to verify.
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = keyring;
        self
    }

    /// Sets the verification options.
    pub fn verify_options(mut self, options: VerifyOptions) -> Self {
        self.verify_options = options;
        self
    }
}

/// Runs every check the capabilities allow, in order.
///
/// # Panics
/// When a check fails, with a message naming it.
pub async fn run<F: SinkFactory>(factory: F, caps: Capabilities) {
    ordering_within_and_across_batches(&factory, &caps).await;
    one_outcome_per_event(&factory).await;
    idempotent_event_ids(&factory, &caps).await;
    if caps.inject_permanent_failure.is_some() {
        dead_letters_on_permanent_failure(&factory, &caps).await;
    }
    if caps.concurrent_writers {
        concurrent_writers(&factory, &caps).await;
    }
    if caps.source.is_some() {
        what_was_written_verifies(&caps).await;
    }
}

/// Fresh events for a check, with recognisable types.
pub fn events(check: &str, count: usize) -> Vec<AuditEvent> {
    (0..count)
        .map(|index| {
            AuditEvent::new(
                format!("conformance.{check}"),
                format!("conformance:{index}"),
                serde_json::json!({ "index": index, "text": "é€𝄞" }),
            )
        })
        .collect::<Result<_, _>>()
        .unwrap_or_else(|error| panic!("conformance events must be valid: {error}"))
}

async fn new_sink<F: SinkFactory>(factory: &F, check: &str) -> Box<dyn AuditSink> {
    factory
        .create()
        .await
        .unwrap_or_else(|error| panic!("conformance {check}: the factory failed: {error}"))
}

async fn append(
    sink: &mut dyn AuditSink,
    check: &str,
    events: &[AuditEvent],
) -> Vec<AppendOutcome> {
    let outcomes = sink
        .append_batch(events)
        .await
        .unwrap_or_else(|error| panic!("conformance {check}: append_batch failed: {error}"));
    assert_eq!(
        outcomes.len(),
        events.len(),
        "conformance {check}: one outcome per event"
    );
    outcomes
}

fn receipts(check: &str, outcomes: &[AppendOutcome]) -> Vec<Receipt> {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            AppendOutcome::Appended(receipt) => receipt.clone(),
            AppendOutcome::DeadLettered { reason } => {
                panic!(
                    "conformance {check}: an event was dead-lettered on a healthy sink: {reason}"
                )
            }
            other => panic!("conformance {check}: an outcome this suite does not know: {other:?}"),
        })
        .collect()
}

async fn read_records(caps: &Capabilities, check: &str) -> Option<Vec<Record>> {
    let source = caps.source.as_ref()?;
    Some(
        crate::read_all_records(source.as_ref())
            .await
            .unwrap_or_else(|error| {
                panic!("conformance {check}: reading records back failed: {error}")
            }),
    )
}

/// The records holding `events`, by event id.
fn records_by_event_id(records: &[Record]) -> HashMap<String, Vec<&Record>> {
    let mut by_id: HashMap<String, Vec<&Record>> = HashMap::new();
    for record in records {
        let id = AuditEvent::from_canonical(&record.event_json)
            .map(|event| event.id().to_owned())
            .unwrap_or_default();
        by_id.entry(id).or_default().push(record);
    }
    by_id
}

/// Appends two batches: seqs are consecutive and increasing within and
/// across batches, every event is new, and (with read-back) each record
/// holds its event at its receipt's seq and hash.
pub async fn ordering_within_and_across_batches<F: SinkFactory>(factory: &F, caps: &Capabilities) {
    let check = "ordering";
    let mut sink = new_sink(factory, check).await;
    let first = events(check, 5);
    let second = events(check, 3);
    let mut all = receipts(check, &append(sink.as_mut(), check, &first).await);
    all.extend(receipts(
        check,
        &append(sink.as_mut(), check, &second).await,
    ));
    for receipt in &all {
        assert!(
            !receipt.already_present,
            "conformance {check}: a new event was reported already present"
        );
    }
    for pair in all.windows(2) {
        assert_eq!(
            pair[1].seq,
            pair[0].seq + 1,
            "conformance {check}: seqs must be consecutive across batches (one writer)"
        );
        assert_eq!(
            pair[1].chain, pair[0].chain,
            "conformance {check}: one chain"
        );
    }
    let Some(records) = read_records(caps, check).await else {
        return;
    };
    let by_id = records_by_event_id(&records);
    for (event, receipt) in first.iter().chain(&second).zip(&all) {
        let stored = by_id.get(event.id()).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            stored.len(),
            1,
            "conformance {check}: event {} must be stored exactly once",
            event.id()
        );
        assert_eq!(
            stored[0].seq, receipt.seq,
            "conformance {check}: stored seq differs from the receipt"
        );
        assert_eq!(
            stored[0].hash, receipt.record_hash,
            "conformance {check}: stored record hash differs from the receipt"
        );
        assert_eq!(
            stored[0].event_json,
            event.canonical_json(),
            "conformance {check}: stored event bytes differ"
        );
    }
}

/// Batches of 1 and 17 events get exactly one outcome each, in order.
pub async fn one_outcome_per_event<F: SinkFactory>(factory: &F) {
    let check = "one outcome per event";
    let mut sink = new_sink(factory, check).await;
    for size in [1, 17] {
        let batch = events("outcomes", size);
        let receipts = receipts(check, &append(sink.as_mut(), check, &batch).await);
        let seqs: HashSet<u64> = receipts.iter().map(|receipt| receipt.seq).collect();
        assert_eq!(
            seqs.len(),
            size,
            "conformance {check}: distinct events need distinct seqs"
        );
    }
}

/// The same event twice (in one batch, and again later, on a fresh sink)
/// is stored once; the repeats report `already_present` with the same seq
/// and record hash.
pub async fn idempotent_event_ids<F: SinkFactory>(factory: &F, caps: &Capabilities) {
    let check = "idempotent ids";
    let mut sink = new_sink(factory, check).await;
    let batch = events(check, 2);
    let doubled = [batch[0].clone(), batch[0].clone(), batch[1].clone()];
    let first = receipts(check, &append(sink.as_mut(), check, &doubled).await);
    assert!(
        !first[0].already_present,
        "conformance {check}: the first copy is new"
    );
    assert!(
        first[1].already_present,
        "conformance {check}: a repeat in one batch must be already_present"
    );
    assert_eq!(
        (first[1].seq, first[1].record_hash),
        (first[0].seq, first[0].record_hash),
        "conformance {check}: a repeat must point at the original record"
    );
    drop(sink);
    let mut sink = new_sink(factory, check).await;
    let fresh = events(check, 1);
    let again = [batch[1].clone(), fresh[0].clone()];
    let second = receipts(check, &append(sink.as_mut(), check, &again).await);
    assert!(
        second[0].already_present,
        "conformance {check}: a replayed event must be already_present"
    );
    assert_eq!(
        (second[0].seq, second[0].record_hash),
        (first[2].seq, first[2].record_hash),
        "conformance {check}: a replay must point at the original record"
    );
    assert!(
        !second[1].already_present,
        "conformance {check}: a new event after a replay is new"
    );
    if let Some(records) = read_records(caps, check).await {
        let by_id = records_by_event_id(&records);
        for event in batch.iter().chain(&fresh) {
            let count = by_id.get(event.id()).map_or(0, Vec::len);
            assert_eq!(
                count,
                1,
                "conformance {check}: event {} must be stored exactly once",
                event.id()
            );
        }
    }
}

/// With a permanent failure injected, the batch is dead-lettered (one
/// `DeadLettered` outcome per event), nothing of it is in the chain, the
/// dead letters hold it (when readable), and the next batch appends.
pub async fn dead_letters_on_permanent_failure<F: SinkFactory>(factory: &F, caps: &Capabilities) {
    let check = "dead letters";
    let Some(inject) = caps.inject_permanent_failure.as_ref() else {
        return;
    };
    let mut sink = new_sink(factory, check).await;
    let batch = events(check, 3);
    inject().await;
    let outcomes = append(sink.as_mut(), check, &batch).await;
    for outcome in &outcomes {
        assert!(
            matches!(outcome, AppendOutcome::DeadLettered { .. }),
            "conformance {check}: expected DeadLettered, got {outcome:?}"
        );
    }
    if let Some(records) = read_records(caps, check).await {
        let by_id = records_by_event_id(&records);
        for event in &batch {
            assert!(
                !by_id.contains_key(event.id()),
                "conformance {check}: dead-lettered event {} is in the chain",
                event.id()
            );
        }
    }
    if let Some(source) = caps.source.as_ref() {
        let letters = source.dead_letters(None).await.unwrap_or_else(|error| {
            panic!("conformance {check}: reading dead letters failed: {error}")
        });
        for event in &batch {
            let letter = letters
                .iter()
                .map(|stored| &stored.letter)
                .find(|letter| letter.event_id == event.id());
            let letter = letter.unwrap_or_else(|| {
                panic!(
                    "conformance {check}: no dead letter for event {}",
                    event.id()
                )
            });
            assert_eq!(
                letter.event_json,
                event.canonical_json(),
                "conformance {check}: dead letter holds other bytes"
            );
        }
    }
    let after = events(check, 1);
    receipts(check, &append(sink.as_mut(), check, &after).await);
}

/// Two sinks from the factory append 20 batches each at the same time:
/// every event is appended once, no two share a seq.
pub async fn concurrent_writers<F: SinkFactory>(factory: &F, caps: &Capabilities) {
    let check = "concurrent writers";
    let mut left = new_sink(factory, check).await;
    let mut right = new_sink(factory, check).await;
    let (left_receipts, right_receipts) = futures::join!(
        write_batches(left.as_mut(), check, "left"),
        write_batches(right.as_mut(), check, "right")
    );
    let mut seqs = HashSet::new();
    for receipt in left_receipts.iter().chain(&right_receipts) {
        assert!(
            !receipt.already_present,
            "conformance {check}: fresh events reported already present"
        );
        assert!(
            seqs.insert(receipt.seq),
            "conformance {check}: seq {} given to two events",
            receipt.seq
        );
    }
    if caps.source.is_some() {
        what_was_written_verifies(caps).await;
    }
}

async fn write_batches(sink: &mut dyn AuditSink, check: &str, name: &str) -> Vec<Receipt> {
    let mut all = Vec::new();
    for _ in 0..20 {
        let batch = events(name, 4);
        let outcomes = append(sink, check, &batch).await;
        all.extend(receipts(check, &outcomes));
        tokio::task::yield_now().await;
    }
    all
}

/// Everything in the store verifies with the core's one verifier, and
/// every record read back was checked.
pub async fn what_was_written_verifies(caps: &Capabilities) {
    let check = "verification";
    let Some(source) = caps.source.as_ref() else {
        return;
    };
    let Some(records) = read_records(caps, check).await else {
        return;
    };
    let options = SourceVerifyOptions::default().with_verify(caps.verify_options.clone());
    let report = verify_source(source.as_ref(), &caps.keyring, options)
        .await
        .unwrap_or_else(|error| panic!("conformance {check}: reading the store failed: {error}"));
    assert!(
        report.is_ok(),
        "conformance {check}: the chain does not verify: {:?}",
        report.first_failure()
    );
    assert_eq!(
        report.records,
        records.len() as u64,
        "conformance {check}: every record verified"
    );
}
