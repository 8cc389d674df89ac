//! TLS to a real PostgreSQL server (`ssl=on`, certificate signed by a
//! throwaway CA): `sslmode=require|verify-ca|verify-full` with
//! `sslrootcert=` connect over TLS (proved by `pg_stat_ssl`), a server
//! whose certificate the trusted roots do not vouch for is refused with a
//! permanent error naming them, and `sslmode=disable` stays plain.

mod common;

use std::sync::Arc;

use audit_core::keys::AuditSigner;
use audit_core::sink::{AuditSink, ErrorClass};
use audit_postgres::{
    PostgresError, PostgresOptions, PostgresSink, PostgresSinkExt, PostgresStore, RootCerts,
    TlsMode, open_source, parse_connect_url,
};
use audit_testkit::servers::postgres::{PostgresServer, TestCa};
use common::{chain_options, events, verify};

/// A TLS server with a database `audit`, and its CA file.
fn tls_server() -> (PostgresServer, String) {
    let server = PostgresServer::start_with_tls()
        .unwrap_or_else(|error| panic!("cannot start a TLS PostgreSQL server: {error}"));
    server.create_database("audit").unwrap();
    let ca = server.ca_cert().unwrap().display().to_string();
    (server, ca)
}

/// Options whose `application_name` finds the connection in `pg_stat_ssl`.
fn named(application_name: &str) -> PostgresOptions {
    PostgresOptions::default().with_application_name(application_name)
}

/// Whether the connections named `application_name` use TLS (`t`/`f`, one
/// line per connection).
fn ssl_of(server: &PostgresServer, application_name: &str) -> String {
    server
        .psql(
            "postgres",
            &format!(
                "SELECT string_agg(s.ssl::text, ',') FROM pg_stat_ssl s \
                 JOIN pg_stat_activity a USING (pid) WHERE a.application_name = '{application_name}'"
            ),
        )
        .unwrap()
}

#[tokio::test]
async fn require_with_the_ca_appends_and_reads_back_over_tls() {
    let (server, ca) = tls_server();
    let url = format!(
        "{}?sslmode=require&sslrootcert={ca}",
        server.url_for("audit")
    );
    let signer = Arc::new(AuditSigner::generate());

    let mut sink = PostgresSink::connect(&url, chain_options("tls", &signer), named("tls-writer"))
        .await
        .unwrap();
    sink.append_batch(&events(0, 25)).await.unwrap();
    assert_eq!(ssl_of(&server, "tls-writer"), "true");

    let source = open_source(&url, named("tls-reader")).await.unwrap();
    assert_eq!(ssl_of(&server, "tls-reader"), "true");
    drop(source);
    drop(sink);

    let report = verify(&url, &signer).await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 25);

    // The connection's own view agrees.
    let count = server
        .psql("audit", "SELECT count(*) FROM audit_records")
        .unwrap();
    assert_eq!(count, "25");
}

#[tokio::test]
async fn the_sink_factory_reconnects_over_tls() {
    let (server, ca) = tls_server();
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={ca}",
        server.url_for("audit")
    );
    let signer = Arc::new(AuditSigner::generate());
    let factory = audit_postgres::sink_factory(
        url.clone(),
        chain_options("factory", &signer),
        named("tls-factory"),
    );
    let mut sink = audit_core::sink::SinkFactory::create(&factory)
        .await
        .unwrap();
    sink.append_batch(&events(0, 3)).await.unwrap();
    assert_eq!(ssl_of(&server, "tls-factory"), "true");
    drop(sink);
    assert!(verify(&url, &signer).await.is_ok());
}

#[tokio::test]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let (server, ca) = tls_server();
    let port = server.port();
    // The certificate names localhost and 127.0.0.1: both verify fully.
    for host in ["localhost", "127.0.0.1"] {
        let url =
            format!("postgres://postgres@{host}:{port}/audit?sslmode=verify-full&sslrootcert={ca}");
        PostgresStore::connect(&url, named("tls-full"))
            .await
            .unwrap();
    }
    // Key/value form; the TCP address is right, the name is not.
    let kv = |mode: &str| {
        format!(
            "host=not-the-server.invalid hostaddr=127.0.0.1 port={port} user=postgres \
             dbname=audit sslmode={mode} sslrootcert='{ca}'"
        )
    };
    let error = PostgresStore::connect(&kv("verify-full"), named("tls-wrong-name"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, PostgresError::TlsHandshake { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("not valid for name"), "{error}");
    assert_eq!(error.class(), ErrorClass::Permanent);

    for mode in ["verify-ca", "require"] {
        PostgresStore::connect(&kv(mode), named("tls-ca-only"))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_clearly() {
    let (server, _ca) = tls_server();
    let elsewhere = tempfile::tempdir().unwrap();
    let wrong = TestCa::create(elsewhere.path(), "some other CA").unwrap();
    for mode in ["require", "verify-ca", "verify-full"] {
        let url = format!(
            "postgres://postgres:hunter2@127.0.0.1:{}/audit?sslmode={mode}&sslrootcert={}",
            server.port(),
            wrong.cert().display()
        );
        let error = PostgresStore::connect(&url, PostgresOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(error, PostgresError::TlsHandshake { .. }),
            "{mode}: {error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("TLS handshake failed"), "{message}");
        assert!(message.contains("UnknownIssuer"), "{message}");
        assert!(
            message.contains(&wrong.cert().display().to_string()),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
        assert_eq!(error.class(), ErrorClass::Permanent);

        let error = open_source(&url, PostgresOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(error, PostgresError::TlsHandshake { .. }),
            "{mode}: {error:?}"
        );
    }
}

#[tokio::test]
async fn an_unusable_root_file_is_a_setup_error() {
    let (server, _ca) = tls_server();
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    for (file, expected) in [
        (dir.path().join("missing.pem"), "cannot read"),
        (not_pem, "holds no PEM certificate"),
    ] {
        let url = format!(
            "{}?sslmode=require&sslrootcert={}",
            server.url_for("audit"),
            file.display()
        );
        let error = PostgresStore::connect(&url, PostgresOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(error, PostgresError::TlsConfig { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains(expected), "{error}");
        assert_eq!(error.class(), ErrorClass::Permanent);
    }
}

#[tokio::test]
async fn sslmode_disable_and_the_default_stay_plain() {
    let (server, _ca) = tls_server();
    let signer = Arc::new(AuditSigner::generate());
    let disabled = format!("{}?sslmode=disable", server.url_for("audit"));
    let mut sink = PostgresSink::connect(
        &disabled,
        chain_options("plain", &signer),
        named("plain-writer"),
    )
    .await
    .unwrap();
    sink.append_batch(&events(0, 4)).await.unwrap();
    assert_eq!(ssl_of(&server, "plain-writer"), "false");
    let _default = PostgresStore::connect(&server.url_for("audit"), named("default-writer"))
        .await
        .unwrap();
    assert_eq!(ssl_of(&server, "default-writer"), "false");
    drop(sink);
    assert!(verify(&disabled, &signer).await.is_ok());
}

#[test]
fn tls_parameters_are_parsed_in_both_forms() {
    let settings = parse_connect_url(
        "postgres://u:pw@h:5433/db?application_name=x&sslmode=verify-ca&sslrootcert=%2Ftmp%2Fmy%20ca.pem",
    )
    .unwrap();
    assert_eq!(settings.tls.mode, TlsMode::VerifyCa);
    assert_eq!(
        settings.tls.root_certs,
        RootCerts::File("/tmp/my ca.pem".into())
    );
    assert_eq!(settings.config.get_application_name(), Some("x"));
    assert_eq!(settings.config.get_ports(), &[5433]);

    let settings =
        parse_connect_url("host=h sslrootcert='/tmp/a b.pem' sslmode=verify-full dbname=db")
            .unwrap();
    assert_eq!(settings.tls.mode, TlsMode::VerifyFull);
    assert_eq!(
        settings.tls.root_certs,
        RootCerts::File("/tmp/a b.pem".into())
    );
    assert_eq!(settings.config.get_dbname(), Some("db"));

    let settings = parse_connect_url("postgres://h/db?sslmode=require&sslrootcert=system").unwrap();
    assert_eq!(settings.tls.root_certs, RootCerts::System);

    let error = parse_connect_url("postgres://u:pw@h/db?sslmode=sometimes").unwrap_err();
    assert!(matches!(error, PostgresError::BadUrl { .. }), "{error:?}");
    assert!(error.to_string().contains("sometimes"), "{error}");
    assert!(!error.to_string().contains("pw@"), "{error}");
}
