//! The PostgreSQL state on a real server (audit-testkit's throwaway
//! PostgreSQL; `scripts/install-postgres.sh` installs it). A machine
//! without PostgreSQL fails this test with the install hint: never a skip.

use std::sync::Arc;

use audit_testkit::servers::postgres::PostgresServer;
use audit_witness::state::{PostgresState, WitnessState};
use audit_witness::{WitnessLimits, open_state};

use crate::common::*;
use crate::racing::check_linearizable;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_state_is_linearizable_and_serves_a_witness() {
    let server = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .unwrap()
        .unwrap_or_else(|error| panic!("PostgreSQL test server: {error}"));
    server.create_database("witness").unwrap();
    let url = server.url_for("witness");
    let state: Arc<dyn WitnessState> = Arc::new(PostgresState::connect(&url).await.unwrap());
    check_linearizable(state.clone(), "example.test/log").await;

    let mut log = TestLog::new("example.test/pg-log", 1);
    let witness = start_witness(
        "witness.test/w1",
        0x51,
        vec![log.vkey()],
        state.clone(),
        WitnessLimits::default(),
    )
    .await;
    let client = client_of(&witness);
    log.append(9);
    client.add_checkpoint(0, &[], &log.note()).await.unwrap();
    log.append(4);
    client
        .add_checkpoint(9, &log.proof(9), &log.note())
        .await
        .unwrap();
    stop(witness).await;

    // Opened again by URL, as the CLI would: the head is there.
    let reopened = open_state(&url).await.unwrap();
    let head = reopened
        .latest("example.test/pg-log")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((head.size, head.root), (13, log.root_at(13)));
    assert!(reopened.describe().starts_with("postgres://"));
}
