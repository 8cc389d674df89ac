//! The example `axum_service` runs in CI: a real axum server on a local
//! port answers each request as its policy says, and its audit chain holds
//! exactly the refusals and the privileged changes, signed and verified.

#[path = "../examples/support/axum_service.rs"]
mod axum_service;

use deferred_audit::AuditEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axum_example_audits_refusals_and_privileged_changes() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = axum_service::run(dir.path()).await.unwrap();
    let statuses: Vec<u16> = outcome
        .responses
        .iter()
        .map(|(_, status)| *status)
        .collect();
    assert_eq!(
        statuses,
        vec![200, 403, 204, 403, 204],
        "{:?}",
        outcome.responses
    );
    assert!(outcome.report.is_ok(), "{:?}", outcome.report.failures);
    assert_eq!(
        outcome.report.records, 4,
        "two refusals, one write, one delete"
    );

    let connection = rusqlite::Connection::open(dir.path().join("audit.db")).unwrap();
    let mut statement = connection
        .prepare("SELECT event_json FROM audit_records ORDER BY seq")
        .unwrap();
    let events: Vec<(String, String, String)> = statement
        .query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .map(|text| {
            let event = AuditEvent::from_canonical(&text.unwrap()).unwrap();
            let path = event.payload()["path"].as_str().unwrap().to_owned();
            (
                event.event_type().to_owned(),
                event.actor().to_owned(),
                path,
            )
        })
        .collect();
    let expected = [
        (
            "governance.refusal",
            "agent:planner",
            "secrets/api-keys.env",
        ),
        ("file.written", "agent:coder", "src/main.rs"),
        ("governance.refusal", "agent:coder", "src/lib.rs"),
        ("file.deleted", "admin:root", "tmp/cache"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(kind, actor, path)| (kind.to_string(), actor.to_string(), path.to_string()))
        .collect();
    assert_eq!(events, expected);
}
