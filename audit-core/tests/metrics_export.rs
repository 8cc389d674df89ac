//! What a pipeline exports through the `metrics` facade: every name it
//! registers is described, and the gauges of age, lag and journal fill
//! move while the pipeline runs, between batches too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use audit_core::AuditEvent;
use audit_core::chain::ChainId;
use audit_core::journal::JournalConfig;
use audit_core::metrics::{METRICS, describe_metrics};
use audit_core::pipeline::AuditPipeline;
use audit_core::sink::{AppendOutcome, AuditSink, Receipt, SinkError};
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

/// Remembers descriptions, registered names and the last value of gauges.
#[derive(Default)]
struct Capture {
    described: Mutex<BTreeMap<String, (Option<Unit>, String)>>,
    registered: Mutex<BTreeSet<String>>,
    gauges: Arc<Mutex<BTreeMap<String, f64>>>,
}

struct GaugeCell {
    name: String,
    values: Arc<Mutex<BTreeMap<String, f64>>>,
}

impl GaugeFn for GaugeCell {
    fn increment(&self, value: f64) {
        let mut values = self.values.lock().unwrap();
        *values.entry(self.name.clone()).or_default() += value;
    }
    fn decrement(&self, value: f64) {
        self.increment(-value);
    }
    fn set(&self, value: f64) {
        self.values.lock().unwrap().insert(self.name.clone(), value);
    }
}

struct Ignored;
impl CounterFn for Ignored {
    fn increment(&self, _: u64) {}
    fn absolute(&self, _: u64) {}
}
impl HistogramFn for Ignored {
    fn record(&self, _: f64) {}
}

impl Capture {
    fn describe(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.described
            .lock()
            .unwrap()
            .insert(key.as_str().to_owned(), (unit, description.to_string()));
    }
    fn register(&self, key: &Key) {
        self.registered
            .lock()
            .unwrap()
            .insert(key.name().to_owned());
    }
    fn gauge(&self, name: &str) -> Option<f64> {
        self.gauges.lock().unwrap().get(name).copied()
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.register(key);
        Counter::from_arc(Arc::new(Ignored))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.register(key);
        Gauge::from_arc(Arc::new(GaugeCell {
            name: key.name().to_owned(),
            values: self.gauges.clone(),
        }))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.register(key);
        Histogram::from_arc(Arc::new(Ignored))
    }
}

/// Accepts batches, each after `delay`, while `open`; holds them while not.
struct GatedSink {
    open: Arc<AtomicBool>,
    delay: Duration,
}

#[async_trait]
impl AuditSink for GatedSink {
    async fn append_batch(
        &mut self,
        events: &[AuditEvent],
    ) -> Result<Vec<AppendOutcome>, SinkError> {
        while !self.open.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(self.delay).await;
        Ok(events
            .iter()
            .enumerate()
            .map(|(index, _)| {
                AppendOutcome::Appended(Receipt {
                    chain: ChainId::default(),
                    seq: index as u64 + 1,
                    record_hash: audit_core::Digest([0; 32]),
                    already_present: false,
                })
            })
            .collect())
    }

    fn describe(&self) -> String {
        "gated test sink".into()
    }
}

fn event(n: u64) -> AuditEvent {
    AuditEvent::new(
        "governance.refusal",
        "agent:test",
        serde_json::json!({ "n": n }),
    )
    .expect("a valid event")
}

#[test]
fn every_exported_name_is_described_with_a_unit() {
    let capture = Capture::default();
    metrics::with_local_recorder(&capture, describe_metrics);
    let described = capture.described.lock().unwrap();
    assert_eq!(described.len(), METRICS.len(), "one description per metric");
    for metric in METRICS {
        let (unit, help) = &described[metric.name];
        assert_eq!(*unit, Some(metric.unit), "{}", metric.name);
        assert!(!help.is_empty(), "{} has no help text", metric.name);
    }
}

/// Runs a pipeline with a journal under the capturing recorder: a held
/// sink makes events wait, then a slow one makes batches take time.
#[test]
fn gauges_of_age_lag_and_journal_fill_stay_current_between_batches() {
    let capture = Arc::new(Capture::default());
    let recorder = capture.clone();
    let journal_dir = tempfile::tempdir().expect("a temporary folder");
    metrics::with_local_recorder(&*recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let open = Arc::new(AtomicBool::new(false));
            let sink_open = open.clone();
            let pipeline = AuditPipeline::builder(move || {
                let open = sink_open.clone();
                async move {
                    Ok::<_, SinkError>(GatedSink {
                        open,
                        delay: Duration::from_millis(300),
                    })
                }
            })
            .name("gauges")
            .max_batch(1)
            .metrics_interval(Duration::from_millis(20))
            .journal(JournalConfig::new(journal_dir.path().join("journal")))
            .expect("the journal opens")
            .spawn();
            let queue = pipeline.queue();
            for n in 0..3 {
                queue.submit_durable(event(n)).await.expect("journaled");
            }
            // The sink holds the first event; two wait in the queue, and
            // the periodic publisher reports their growing age.
            tokio::time::sleep(Duration::from_millis(250)).await;
            let age = capture
                .gauge("deferred_audit_oldest_queued_age_seconds")
                .expect("the age gauge is published between batches");
            assert!(age >= 0.15, "oldest queued event waited {age} s");
            let fill = capture
                .gauge("deferred_audit_journal_fill_percent")
                .expect("the journal fill is published");
            assert!(fill > 0.0, "the journal holds 3 events: fill {fill}");
            let bytes = capture
                .gauge("deferred_audit_journal_bytes")
                .expect("the journal bytes are published");
            assert!(bytes > 0.0);

            open.store(true, Ordering::SeqCst);
            let report = pipeline.shutdown(Duration::from_secs(10)).await;
            assert!(report.is_clean(), "{report:?}");
            assert_eq!(report.metrics.appended, 3);
            // The last event waited through the hold and two slow batches.
            let lag = capture
                .gauge("deferred_audit_durable_lag_seconds")
                .expect("the lag gauge is published");
            assert!(lag >= 0.5, "submit to durable of the last batch: {lag} s");
            assert_eq!(
                report.metrics.journal_bytes,
                Some(0),
                "settled events leave the journal"
            );
            assert_eq!(
                capture.gauge("deferred_audit_oldest_queued_age_seconds"),
                Some(0.0),
                "nothing waits after shutdown"
            );
        });
    });
    let registered = capture.registered.lock().unwrap();
    let described = capture.described.lock().unwrap();
    for name in registered.iter() {
        assert!(
            described.contains_key(name),
            "{name} is exported but not described"
        );
    }
}
