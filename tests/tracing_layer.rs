//! The `tracing` layer over a real pipeline and the in-memory chain: events
//! of the audit target land in the chain with their type, actor and
//! payload; other targets do not; an event without an actor is refused,
//! counted and handed to the refusal hook.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use audit_testkit::sinks::MemoryChain;
use deferred_audit::AuditEvent;
use deferred_audit::core::chain_writer::ChainSinkOptions;
use deferred_audit::core::keys::Keyring;
use deferred_audit::core::pipeline::AuditPipeline;
use deferred_audit::tracing_layer::{AuditLayer, RefusalReason};
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt as _;

/// Runs `emit` under a subscriber holding `layer`, drains the pipeline
/// into `chain`, verifies it and returns its events in seq order.
async fn drained(
    chain: &MemoryChain,
    pipeline: AuditPipeline,
    layer: AuditLayer,
    emit: impl FnOnce(),
) -> Vec<AuditEvent> {
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), emit);
    let report = pipeline.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report:?}");
    assert!(chain.verify(Keyring::new()).is_ok());
    chain
        .records()
        .iter()
        .map(|record| AuditEvent::from_canonical(&record.event_json).unwrap())
        .collect()
}

fn pipeline(chain: &MemoryChain) -> AuditPipeline {
    AuditPipeline::builder(chain.factory(ChainSinkOptions::unsigned())).spawn()
}

#[tokio::test]
async fn events_of_the_target_land_in_the_chain() {
    let chain = MemoryChain::new();
    let pipeline = pipeline(&chain);
    let layer = AuditLayer::new(pipeline.queue());
    let counters = layer.counters();
    let events = drained(&chain, pipeline, layer, || {
        tracing::info!(
            target: "audit",
            actor = "agent:alice",
            event_type = "governance.refusal",
            rule = "R001",
            attempt = 3u64,
            delta = -7i64,
            ratio = 0.25,
            allowed = false,
            big = 9_007_199_254_740_993u64,
            small = -9_007_199_254_740_992i64,
            debugged = ?vec![1, 2],
            shown = %"display text",
        );
        // The message is the type when there is no `event_type` field.
        tracing::warn!(target: "audit", actor = "admin:root", role = "ops", "role.granted");
        // With both, the message goes into the payload.
        tracing::info!(target: "audit", actor = "admin:root", event_type = "key.rotated", "rotated at {}", "noon");
        // A child target matches.
        tracing::info!(target: "audit::billing", actor = "svc:billing", event_type = "invoice.voided", id = 42);
    })
    .await;

    assert_eq!(events.len(), 4);
    assert_eq!(events[0].event_type(), "governance.refusal");
    assert_eq!(events[0].actor(), "agent:alice");
    assert_eq!(
        events[0].payload(),
        json!({
            "rule": "R001",
            "attempt": 3,
            "delta": -7,
            "ratio": 0.25,
            "allowed": false,
            "big": "9007199254740993",
            "small": -9_007_199_254_740_992i64,
            "debugged": "[1, 2]",
            "shown": "display text",
        })
    );
    assert_eq!(
        (events[1].event_type(), events[1].actor()),
        ("role.granted", "admin:root")
    );
    assert_eq!(events[1].payload(), json!({"role": "ops"}));
    assert_eq!(events[2].event_type(), "key.rotated");
    assert_eq!(events[2].payload(), json!({"message": "rotated at noon"}));
    assert_eq!(
        (events[3].event_type(), events[3].actor()),
        ("invoice.voided", "svc:billing")
    );
    assert_eq!(events[3].payload(), json!({"id": 42}));
    assert_eq!(
        (
            counters.submitted(),
            counters.refused(),
            counters.not_queued()
        ),
        (4, 0, 0)
    );
}

#[tokio::test]
async fn other_targets_are_left_alone() {
    let chain = MemoryChain::new();
    let pipeline = pipeline(&chain);
    let layer = AuditLayer::new(pipeline.queue()).target("security");
    let counters = layer.counters();
    let events = drained(&chain, pipeline, layer, || {
        tracing::info!(target: "audit", actor = "agent:alice", event_type = "not.this.target");
        tracing::info!(target: "securityish", actor = "agent:alice", event_type = "not.a.child");
        tracing::info!(actor = "agent:alice", event_type = "the.module.target");
        tracing::error!(target: "security", actor = "agent:bob", event_type = "login.refused", ip = "10.0.0.1");
    })
    .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type(), "login.refused");
    assert_eq!(events[0].actor(), "agent:bob");
    assert_eq!(events[0].payload(), json!({"ip": "10.0.0.1"}));
    assert_eq!((counters.submitted(), counters.refused()), (1, 0));
}

/// What the refusal hook saw of one event.
type Seen = (bool, String, String, serde_json::Value);

#[tokio::test]
async fn an_event_without_actor_is_refused_and_counted() {
    let chain = MemoryChain::new();
    let pipeline = pipeline(&chain);
    let refused: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let layer = AuditLayer::new(pipeline.queue()).on_refused({
        let refused = refused.clone();
        move |event| {
            refused.lock().unwrap().push((
                matches!(event.reason(), RefusalReason::MissingActor),
                event.target().to_owned(),
                event.event_type().to_owned(),
                serde_json::Value::Object(event.payload().clone()),
            ))
        }
    });
    let counters = layer.counters();
    let events = drained(&chain, pipeline, layer, || {
        tracing::info!(target: "audit", event_type = "governance.refusal", rule = "R001");
        tracing::info!(target: "audit", actor = "", event_type = "governance.refusal", rule = "R002");
        tracing::info!(target: "audit", actor = "agent:alice", event_type = "governance.refusal", rule = "R003");
    })
    .await;

    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload(), json!({"rule": "R003"}));
    assert_eq!((counters.submitted(), counters.refused()), (1, 2));
    let seen = |rule: &str| -> Seen {
        (
            true,
            "audit".to_owned(),
            "governance.refusal".to_owned(),
            json!({ "rule": rule }),
        )
    };
    assert_eq!(*refused.lock().unwrap(), vec![seen("R001"), seen("R002")]);
}

#[tokio::test]
async fn an_event_that_is_not_a_valid_audit_event_is_refused() {
    let chain = MemoryChain::new();
    let pipeline = pipeline(&chain);
    let reasons: Arc<Mutex<Vec<String>>> = Arc::default();
    let layer = AuditLayer::new(pipeline.queue()).on_refused({
        let reasons = reasons.clone();
        move |event| reasons.lock().unwrap().push(event.reason().to_string())
    });
    let counters = layer.counters();
    let long_type = "t".repeat(300);
    let events = drained(&chain, pipeline, layer, || {
        // Neither a type field nor a message.
        tracing::info!(target: "audit", actor = "agent:alice", rule = "R001");
        // A type longer than the format allows.
        tracing::info!(target: "audit", actor = "agent:alice", event_type = long_type.as_str());
    })
    .await;
    assert!(events.is_empty());
    assert_eq!((counters.submitted(), counters.refused()), (0, 2));
    let reasons = reasons.lock().unwrap();
    assert!(
        reasons[0].contains("no `event_type` field and no message"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("not a valid audit event"),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn an_event_after_shutdown_is_counted_not_queued() {
    let chain = MemoryChain::new();
    let pipeline = pipeline(&chain);
    let layer = AuditLayer::new(pipeline.queue());
    let counters = layer.counters();
    let metrics = pipeline.queue().metrics().clone();
    let report = pipeline.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report:?}");
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info!(target: "audit", actor = "agent:late", event_type = "too.late");
    });
    assert_eq!(
        (
            counters.submitted(),
            counters.refused(),
            counters.not_queued()
        ),
        (0, 0, 1)
    );
    assert_eq!(metrics.snapshot().lost, 1);
    assert!(chain.is_empty());
}
