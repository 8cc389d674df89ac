//! The layer's refusal log under a global default subscriber (the way a
//! service installs it; one per process, hence this test binary of its
//! own): a refused event is logged at error level with its reason and
//! fields, and the log line does not feed back into the layer even when
//! the audit target is a prefix of the layer's own target.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use audit_testkit::sinks::MemoryChain;
use deferred_audit::core::chain_writer::ChainSinkOptions;
use deferred_audit::core::pipeline::AuditPipeline;
use deferred_audit::tracing_layer::AuditLayer;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

/// One captured event: target, level and its fields as `name=value`.
type Line = (String, Level, String);

/// A layer keeping every event it sees.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Line>>>);

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let mut text = Text(String::new());
        event.record(&mut text);
        self.0.lock().unwrap().push((
            event.metadata().target().to_owned(),
            *event.metadata().level(),
            text.0,
        ));
    }
}

#[tokio::test]
async fn a_refusal_is_logged_and_the_log_is_not_audited() {
    let chain = MemoryChain::new();
    let pipeline = AuditPipeline::builder(chain.factory(ChainSinkOptions::unsigned())).spawn();
    // The layer's own log target, `deferred_audit::tracing_layer`, is a
    // child of the audit target: without the guard, logging a refusal
    // would be audited, refused and logged again, forever.
    let layer = AuditLayer::new(pipeline.queue()).target("deferred_audit");
    let counters = layer.counters();
    let capture = Capture::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(layer)
            .with(capture.clone()),
    )
    .unwrap();

    tracing::info!(target: "deferred_audit", event_type = "governance.refusal", rule = "R001");
    tracing::info!(target: "deferred_audit", actor = "agent:alice", event_type = "governance.refusal", rule = "R002");

    assert_eq!((counters.submitted(), counters.refused()), (1, 1));
    let lines = capture.0.lock().unwrap().clone();
    let logged: Vec<&Line> = lines
        .iter()
        .filter(|(target, _, _)| target == "deferred_audit::tracing_layer")
        .collect();
    assert_eq!(logged.len(), 1, "{lines:#?}");
    let (_, level, text) = logged[0];
    assert_eq!(*level, Level::ERROR);
    assert!(text.contains("reason=no `actor` field"), "{text}");
    assert!(text.contains(r#"fields={"rule":"R001"}"#), "{text}");
    assert!(text.contains("event_type=governance.refusal"), "{text}");

    let report = pipeline.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(chain.len(), 1);
}
