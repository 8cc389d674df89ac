//! The example `tracing_service` runs in CI: the same service code, its
//! chain verified with the public key and the expected record count.

#[path = "../examples/support/tracing_service.rs"]
mod service;

use deferred_audit::AuditEvent;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tracing_service_example_keeps_a_verified_chain() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = service::run(dir.path()).await.unwrap();

    // Three of the seven requests break a rule; plus the role grant.
    assert_eq!((outcome.served, outcome.refused), (4, 3));
    let expected = outcome.refused as u64 + 1;
    assert_eq!(outcome.counters.submitted(), expected);
    assert_eq!(outcome.counters.refused(), 0);
    assert_eq!(outcome.appended, expected);
    assert!(outcome.verified.is_ok(), "{:?}", outcome.verified.failures);
    assert_eq!(outcome.verified.records, expected);

    // The records are the grant and the refusals, signed, in order.
    let connection = rusqlite::Connection::open(dir.path().join("audit.db")).unwrap();
    let mut statement = connection
        .prepare("SELECT event_json, signature IS NOT NULL FROM audit_records ORDER BY seq")
        .unwrap();
    let rows: Vec<(String, bool)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let events: Vec<(String, String, serde_json::Value)> = rows
        .iter()
        .map(|(text, signed)| {
            assert!(signed, "an unsigned record: {text}");
            let event = AuditEvent::from_canonical(text).unwrap();
            (
                event.event_type().to_owned(),
                event.actor().to_owned(),
                event.payload(),
            )
        })
        .collect();
    let refusal = |actor: &str, rule: &str, action: &str, path: &str| {
        (
            "governance.refusal".to_owned(),
            actor.to_owned(),
            json!({"rule": rule, "action": action, "path": path}),
        )
    };
    assert_eq!(
        events,
        vec![
            (
                "role.granted".to_owned(),
                "admin:root".to_owned(),
                json!({"role": "ops", "grantee": "agent:coder"})
            ),
            refusal("agent:planner", "R001", "write", "secrets/api-keys.env"),
            refusal("agent:coder", "R002", "delete", "src/lib.rs"),
            refusal("agent:intern", "R001", "read", "secrets/prod.pem"),
        ]
    );
}
