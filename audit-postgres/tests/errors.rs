//! Every way of pointing the sink at the wrong place gives a clear, typed
//! error, and a database that is not ours is never modified.

mod common;

use std::sync::Arc;

use audit_core::keys::AuditSigner;
use audit_core::sink::{AuditSink, ErrorClass};
use audit_postgres::{PostgresError, PostgresOptions, PostgresStore, open_source};
use audit_testkit::servers::postgres::PostgresServer;
use common::{chain_options, events, server, verify};

async fn connect(url: &str) -> Result<PostgresStore, PostgresError> {
    PostgresStore::connect(url, PostgresOptions::default()).await
}

fn tables(server: &PostgresServer) -> String {
    server
        .psql(
            "audit",
            "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'",
        )
        .unwrap()
}

#[tokio::test]
async fn a_bad_url_is_refused_before_connecting() {
    let error = connect("postgres://alice:secret@127.0.0.1:notaport/audit")
        .await
        .unwrap_err();
    assert!(matches!(error, PostgresError::BadUrl { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("invalid PostgreSQL URL"), "{message}");
    assert!(!message.contains("secret"), "{message}");
    assert_eq!(error.class(), ErrorClass::Permanent);
}

#[cfg(not(feature = "tls"))]
#[tokio::test]
async fn sslmode_require_without_a_connector_says_how_to_add_one() {
    let error = connect("postgres://alice@127.0.0.1:1/audit?sslmode=require")
        .await
        .unwrap_err();
    assert!(
        matches!(error, PostgresError::TlsNotConfigured { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("connect_with_tls"), "{error}");
    assert!(error.to_string().contains("feature `tls`"), "{error}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_transient_error() {
    let port = audit_testkit::servers::free_port().unwrap();
    let error = connect(&format!("postgres://postgres@127.0.0.1:{port}/audit"))
        .await
        .unwrap_err();
    assert!(matches!(error, PostgresError::Connect { .. }), "{error:?}");
    assert_eq!(error.class(), ErrorClass::Transient);
    assert!(error.to_string().contains(&port.to_string()), "{error}");
}

#[tokio::test]
async fn a_wrong_password_is_an_authentication_error() {
    let server = PostgresServer::start_with_auth("scram-sha-256").unwrap();
    let url = format!(
        "postgres://postgres:wrong@127.0.0.1:{}/postgres",
        server.port()
    );
    let error = connect(&url).await.unwrap_err();
    assert!(
        matches!(error, PostgresError::AuthenticationFailed { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("authentication failed for user \"postgres\""),
        "{message}"
    );
    assert!(!message.contains("wrong"), "{message}");
    assert_eq!(error.class(), ErrorClass::Permanent);
    // The right password works.
    let good = format!(
        "postgres://postgres:postgres@127.0.0.1:{}/postgres",
        server.port()
    );
    connect(&good).await.unwrap();
}

#[tokio::test]
async fn a_missing_database_is_named() {
    let (server, _url) = server();
    let error = connect(&server.url_for("nope")).await.unwrap_err();
    assert!(
        matches!(error, PostgresError::MissingDatabase { ref database, .. } if database == "nope"),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("database \"nope\" does not exist"),
        "{error}"
    );
}

#[tokio::test]
async fn another_format_is_refused_and_left_untouched() {
    let (server, url) = server();
    server
        .psql(
            "audit",
            "CREATE TABLE audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); \
             INSERT INTO audit_meta VALUES ('format', '2'), ('schema_version', '1');",
        )
        .unwrap();
    let error = connect(&url).await.unwrap_err();
    assert!(
        matches!(error, PostgresError::UnknownFormat { ref found, .. } if found == "2"),
        "{error:?}"
    );
    assert!(error.to_string().contains("format \"2\""), "{error}");
    assert_eq!(tables(&server), "audit_meta");
    let error = open_source(&url, PostgresOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(error, PostgresError::UnknownFormat { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_reader_never_creates_the_schema() {
    let (server, url) = server();
    let error = open_source(&url, PostgresOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(error, PostgresError::ForeignSchema { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("no audit tables"), "{error}");
    assert_eq!(tables(&server), "");
}

#[tokio::test]
async fn passwords_never_show_in_descriptions_or_errors() {
    let server = PostgresServer::start_with_auth("scram-sha-256").unwrap();
    let good = format!(
        "postgres://postgres:postgres@127.0.0.1:{}/postgres",
        server.port()
    );
    let store = connect(&good).await.unwrap();
    let source = open_source(&good, PostgresOptions::default())
        .await
        .unwrap();
    let descriptions = [
        audit_core::store::ChainStore::describe(&store),
        audit_core::store::ChainSource::describe(&source),
        format!("{store:?} {source:?}"),
    ];
    for description in descriptions {
        assert!(description.contains("postgres@127.0.0.1"), "{description}");
        assert!(!description.contains(":postgres@"), "{description}");
    }
    let bad = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?password=hunter2&sslmode=bogus",
        server.port()
    );
    let error = open_source(&bad, PostgresOptions::default())
        .await
        .unwrap_err();
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

#[tokio::test]
async fn a_foreign_audit_records_table_is_refused_and_left_untouched() {
    let (server, url) = server();
    server
        .psql("audit", "CREATE TABLE audit_records (id INT, body TEXT)")
        .unwrap();
    let error = connect(&url).await.unwrap_err();
    assert!(
        matches!(error, PostgresError::ForeignSchema { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("audit_records exists but audit_meta does not"),
        "{message}"
    );
    assert_eq!(tables(&server), "audit_records");
}

#[tokio::test]
async fn a_newer_schema_version_is_refused() {
    let (server, url) = server();
    connect(&url).await.unwrap();
    server
        .psql(
            "audit",
            "UPDATE audit_meta SET value = '4' WHERE key = 'schema_version'",
        )
        .unwrap();
    let error = connect(&url).await.unwrap_err();
    assert!(
        matches!(error, PostgresError::NewerSchema { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("newer than the supported version 3"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_schema_is_read_as_is_and_migrated_by_a_writer() {
    let (server, url) = server();
    let signer = Arc::new(AuditSigner::generate());
    let mut sink = common::sink(&url, chain_options("main", &signer)).await;
    sink.append_batch(&events(0, 3)).await.unwrap();
    drop(sink);
    // Back to version 1: no authentication columns on dead letters, no tree.
    server
        .psql(
            "audit",
            "ALTER TABLE audit_dead_letters DROP COLUMN key_id, DROP COLUMN signature; \
             DROP TABLE audit_tree_nodes; DROP TABLE audit_tree_checkpoints; \
             ALTER TABLE audit_heads DROP COLUMN tree_size, DROP COLUMN tree_frontier; \
             INSERT INTO audit_dead_letters (chain_id, event_id, event_json, failure_reason, failed_at) \
               VALUES ('main', 'e', '{}', 'old', 't'); \
             UPDATE audit_meta SET value = '1' WHERE key = 'schema_version';",
        )
        .unwrap();
    let source = open_source(&url, PostgresOptions::default()).await.unwrap();
    let letters = audit_core::store::ChainSource::dead_letters(&source, None)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].letter.key_id, None);
    let report = verify(&url, &signer).await;
    assert!(report.is_ok(), "{:?}", report.failures);

    let read_only = PostgresOptions::default().with_create_schema(false);
    let error = PostgresStore::connect(&url, read_only).await.unwrap_err();
    assert!(error.to_string().contains("older than 3"), "{error}");
    connect(&url).await.unwrap();
    assert_eq!(
        server
            .psql(
                "audit",
                "SELECT value FROM audit_meta WHERE key = 'schema_version'"
            )
            .unwrap()
            .trim(),
        "3"
    );
    // The migrating writer grew the chain's tree from its records.
    assert_eq!(
        server
            .psql(
                "audit",
                "SELECT tree_size FROM audit_heads WHERE chain_id = 'main'"
            )
            .unwrap()
            .trim(),
        "3"
    );
    assert_eq!(
        server
            .psql(
                "audit",
                "SELECT count(*) FROM audit_dead_letters WHERE key_id IS NULL"
            )
            .unwrap()
            .trim(),
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_create_privilege_writes_to_an_existing_schema() {
    let (server, url) = server();
    server
        .psql(
            "audit",
            "CREATE ROLE writer LOGIN; REVOKE CREATE ON SCHEMA public FROM PUBLIC;",
        )
        .unwrap();
    let writer_url = format!("postgres://writer@127.0.0.1:{}/audit", server.port());
    // No schema yet, and this user may not create it: a clear error.
    let error = connect(&writer_url).await.unwrap_err();
    assert!(
        matches!(error, PostgresError::CannotCreateSchema { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("permission denied"), "{error}");
    assert_eq!(tables(&server), "");

    // An administrator creates it once and grants the writer DML only.
    connect(&url).await.unwrap();
    server
        .psql(
            "audit",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO writer; \
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO writer;",
        )
        .unwrap();
    let signer = Arc::new(AuditSigner::generate());
    let mut sink = common::sink(&writer_url, chain_options("main", &signer)).await;
    sink.append_batch(&events(0, 20)).await.unwrap();
    let report = verify(&url, &signer).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.records, 20);
}
