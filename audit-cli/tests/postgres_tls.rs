//! The `deferred-audit` binary over TLS to a real PostgreSQL server
//! (`ssl=on`, certificate signed by a throwaway CA): `demo` writes and
//! `verify` reads with `sslmode=require&sslrootcert=CA` (still when the
//! server refuses plain connections); a CA that did not
//! sign the server's certificate is refused (exit 2, named).

use assert_cmd::Command;
use audit_testkit::servers::postgres::{PostgresServer, TestCa};
use predicates::prelude::*;

fn cli() -> Command {
    Command::cargo_bin("deferred-audit").unwrap()
}

fn json_of(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not JSON ({error}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn demo_and_verify_over_tls_with_the_servers_ca() {
    let server = PostgresServer::start_with_tls().unwrap();
    server.create_database("audit").unwrap();
    let ca = server.ca_cert().unwrap().display().to_string();
    let url = format!(
        "{}?sslmode=require&sslrootcert={ca}",
        server.url_for("audit")
    );
    let dir = tempfile::tempdir().unwrap();

    let output = cli()
        .current_dir(dir.path())
        .args(["demo", "--events", "300", "--producers", "2", "--json"])
        .args(["--store", &url])
        .output()
        .unwrap();
    let json = json_of(&output);
    assert_eq!(output.status.code(), Some(0), "{json}");
    assert_eq!(json["appended"], 300, "{json}");

    let pubkey = dir.path().join("demo-data/audit-key.pub.pem");
    let output = cli()
        .current_dir(dir.path())
        .args(["verify", &url, "--json", "--require-signed", "--pubkey"])
        .arg(&pubkey)
        .output()
        .unwrap();
    let json = json_of(&output);
    assert_eq!(output.status.code(), Some(0), "{json}");
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["records"], 300, "{json}");

    // Proof that the CLI's connections are TLS: once the server refuses
    // every plain TCP connection, verify still works over TLS, and fails
    // with sslmode=disable.
    let hba = server.dir().join("data/pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("hostnossl all all all reject\n{rules}")).unwrap();
    server.psql("postgres", "SELECT pg_reload_conf()").unwrap();
    cli()
        .args(["verify", &url, "--pubkey"])
        .arg(&pubkey)
        .assert()
        .code(0);
    let plain = format!("{}?sslmode=disable", server.url_for("audit"));
    cli()
        .args(["verify", &plain, "--pubkey"])
        .arg(&pubkey)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no encryption"));
}

#[test]
fn verify_with_another_ca_is_refused_naming_the_server_and_the_roots() {
    let server = PostgresServer::start_with_tls().unwrap();
    server.create_database("audit").unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let wrong = TestCa::create(elsewhere.path(), "not the server's CA").unwrap();
    let url = format!(
        "postgres://postgres:hunter2@127.0.0.1:{}/audit?sslmode=verify-full&sslrootcert={}",
        server.port(),
        wrong.cert().display()
    );
    cli()
        .args(["verify", &url])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("TLS handshake failed"))
        .stderr(predicate::str::contains(format!(
            "127.0.0.1:{}",
            server.port()
        )))
        .stderr(predicate::str::contains(wrong.cert().display().to_string()))
        .stderr(predicate::str::contains("hunter2").not());
}
