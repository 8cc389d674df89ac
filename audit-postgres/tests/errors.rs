//! Every way of pointing the sink at the wrong place gives a clear, typed
//! error, and a database that is not ours is never modified.

mod common;

use std::sync::Arc;

use audit_core::keys::AuditSigner;
use audit_core::sink::{AuditSink, ErrorClass};
use audit_postgres::{PostgresError, PostgresOptions, PostgresReader, PostgresStore};
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
    let error = PostgresReader::connect(&url, PostgresOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(error, PostgresError::UnknownFormat { .. }),
        "{error:?}"
    );
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
            "UPDATE audit_meta SET value = '2' WHERE key = 'schema_version'",
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
            .contains("newer than the supported version 1"),
        "{error}"
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
