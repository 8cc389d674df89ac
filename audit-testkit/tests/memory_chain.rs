//! The testkit's own sinks pass the conformance suite and do what they say.

use std::sync::Arc;

use audit_core::AuditEvent;
use audit_core::chain::SignMode;
use audit_core::chain_writer::ChainSinkOptions;
use audit_core::keys::{AuditSigner, Keyring};
use audit_core::sink::{AuditSink, ErrorClass};
use audit_testkit::conformance::{self, Capabilities};
use audit_testkit::sinks::{
    CallCounter, FailingSink, FlakySink, MemoryChain, PanickingSink, RecordingSink,
};

fn memory_caps(chain: &MemoryChain, keyring: Keyring) -> Capabilities {
    let inject = chain.clone();
    Capabilities::new()
        .source(chain.memory_store().clone())
        .inject_permanent_failure(move || {
            inject.fail_next_appends(1, ErrorClass::Permanent);
            std::future::ready(())
        })
        .concurrent_writers(true)
        .keyring(keyring)
}

#[tokio::test]
async fn memory_chain_passes_conformance_signed() {
    let signer = Arc::new(AuditSigner::generate());
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    let chain = MemoryChain::new();
    let options = ChainSinkOptions::signed(signer).with_sign_mode(SignMode::EveryRecord);
    conformance::run(chain.factory(options), memory_caps(&chain, keyring)).await;
    assert!(chain.len() > 100, "the suite wrote {} records", chain.len());
    assert_eq!(chain.dead_letters().len(), 3);
}

#[tokio::test]
async fn memory_chain_passes_conformance_unsigned() {
    let chain = MemoryChain::new();
    conformance::run(
        chain.factory(ChainSinkOptions::unsigned()),
        memory_caps(&chain, Keyring::new()),
    )
    .await;
}

#[tokio::test]
async fn memory_chain_concurrent_writers_really_race() {
    let chain = MemoryChain::new();
    let mut left = chain.sink(ChainSinkOptions::unsigned());
    let mut right = chain.sink(ChainSinkOptions::unsigned());
    let batch = |name: &str| conformance::events(name, 3);
    for _ in 0..10 {
        let (a, b) = (batch("l"), batch("r"));
        let (x, y) = futures::join!(left.append_batch(&a), right.append_batch(&b));
        x.unwrap();
        y.unwrap();
    }
    assert_eq!(chain.len(), 60);
    assert!(
        left.race_retries() + right.race_retries() > 0,
        "writers interleaved without a single lost race"
    );
    assert!(chain.verify(Keyring::new()).is_ok());
}

#[tokio::test]
async fn a_dead_letter_store_failure_is_an_error() {
    let chain = MemoryChain::new();
    let mut sink = chain.sink(ChainSinkOptions::unsigned());
    chain.fail_next_appends(1, ErrorClass::Permanent);
    chain.fail_next_dead_letters(1);
    assert!(
        sink.append_batch(&conformance::events("x", 2))
            .await
            .is_err()
    );
    assert!(chain.is_empty());
}

#[test]
fn recording_assertions() {
    let sink = RecordingSink::new();
    let recording = sink.handle();
    let mut sink = recording.sink();
    let a = AuditEvent::new("login", "user:1", serde_json::json!({})).unwrap();
    let b = AuditEvent::new("logout", "user:2", serde_json::json!({})).unwrap();
    let c = AuditEvent::new("login", "user:2", serde_json::json!({})).unwrap();
    futures::executor::block_on(sink.append_batch(&[a.clone(), b.clone(), c.clone()])).unwrap();
    assert_eq!(recording.count(), 3);
    assert_eq!(
        recording.events_of_type("login"),
        vec![a.clone(), c.clone()]
    );
    assert_eq!(recording.by_actor("user:2"), vec![b.clone(), c.clone()]);
    recording.assert_in_order(&[a.id(), c.id()]);
    let wrong = std::panic::catch_unwind(|| recording.assert_in_order(&[c.id(), a.id()]));
    assert!(wrong.is_err(), "out-of-order ids must fail the assertion");
    assert_eq!(recording.batch_sizes(), vec![3]);
}

#[tokio::test]
async fn fault_sinks_follow_their_schedule() {
    let recording = RecordingSink::new().handle();
    let event = || conformance::events("f", 1);
    let calls = CallCounter::new();
    let mut failing = FailingSink::on_call(recording.sink(), 2).sharing(calls.clone());
    assert!(failing.append_batch(&event()).await.is_ok());
    assert!(failing.append_batch(&event()).await.is_err());
    assert!(failing.append_batch(&event()).await.is_ok());
    assert_eq!(calls.get(), 3);

    let mut flaky = FlakySink::new(recording.sink(), 2, CallCounter::new());
    assert!(flaky.append_batch(&event()).await.is_err());
    assert!(flaky.append_batch(&event()).await.is_err());
    assert!(flaky.append_batch(&event()).await.is_ok());

    let mut sometimes = FailingSink::with_probability(recording.sink(), 0.5, 42);
    let mut failures = 0;
    for _ in 0..200 {
        failures += usize::from(sometimes.append_batch(&event()).await.is_err());
    }
    assert!(
        (50..150).contains(&failures),
        "{failures} failures of 200 at p = 0.5"
    );

    let mut panicking = PanickingSink::on_call(recording.sink(), 1);
    let panicked = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
        panicking.append_batch(&event()),
    ))
    .await;
    assert!(panicked.is_err());
}

/// The hostile-chain suite on the in-memory store: rows it can hold
/// (seqs of any `u64`, records under any chain) are checked like every
/// backend's.
struct MemoryTamper(audit_core::store::memory::MemoryStore);

#[async_trait::async_trait]
impl audit_testkit::hostile::Tamper for MemoryTamper {
    fn source(&self) -> Arc<dyn audit_core::store::ChainSource> {
        Arc::new(self.0.clone())
    }

    async fn store(&self) -> Box<dyn audit_core::store::ChainStore> {
        Box::new(self.0.clone())
    }

    async fn put_raw(&self, rows: &[audit_testkit::hostile::RawRow]) {
        for row in rows {
            let Ok(chain) = audit_core::ChainId::new(&row.chain) else {
                // The in-memory store has no place for an invalid name.
                continue;
            };
            let mut record = row.record.clone();
            record.chain = chain.clone();
            record.seq = u64::try_from(row.seq).unwrap_or(0);
            self.0.tamper(&chain, |records| records.push(record));
        }
    }

    async fn delete_records(
        &self,
        chain: &audit_core::ChainId,
        seqs: std::ops::RangeInclusive<u64>,
    ) {
        self.0.tamper(chain, |records| {
            records.retain(|record| !seqs.contains(&record.seq))
        });
    }
}

#[tokio::test]
async fn the_memory_store_fails_the_hostile_cases_it_can_hold_like_every_backend() {
    use audit_testkit::hostile::{self, TamperFactory};
    let factory: TamperFactory = Arc::new(|| {
        Box::pin(async {
            Box::new(MemoryTamper(audit_core::store::memory::MemoryStore::new(
                "hostile",
            ))) as Box<dyn audit_testkit::hostile::Tamper>
        })
    });
    hostile::forged_row_outside_range(&factory, 0).await;
    hostile::emptied_chain_with_checkpoint(&factory).await;
    hostile::deleted_record(&factory).await;
    hostile::unsigned_rewrite_with_key(&factory).await;
    hostile::signed_chain_without_key(&factory).await;
    hostile::tampered_vectors(&factory).await;
}
