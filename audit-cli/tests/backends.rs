//! The `deferred-audit` binary against every backend: a real PostgreSQL
//! server, moto's S3 server, local JSONL folders; published checkpoints and
//! mirrors.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use audit_testkit::servers::postgres::PostgresServer;
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

/// Runs the demo in `dir` with `args`; asserts every event was appended
/// and verified; returns the summary.
fn demo(dir: &Path, events: u64, args: &[&str]) -> serde_json::Value {
    let output = cli()
        .current_dir(dir)
        .args([
            "demo",
            "--events",
            &events.to_string(),
            "--producers",
            "2",
            "--json",
        ])
        .args(args)
        .output()
        .unwrap();
    let json = json_of(&output);
    assert_eq!(output.status.code(), Some(0), "{json}");
    assert_eq!(json["appended"], events, "{json}");
    assert_eq!(json["verify"]["ok"], true, "{json}");
    json
}

/// `verify URL --json ARGS` in `dir`: the exit code and the report.
fn verify(dir: &Path, url: &str, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let output = cli()
        .current_dir(dir)
        .args(["verify", url, "--json"])
        .args(args)
        .output()
        .unwrap();
    (output.status.code(), json_of(&output))
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

fn demo_pubkey(dir: &Path) -> PathBuf {
    dir.join("demo-data/audit-key.pub.pem")
}

#[test]
fn postgres_demo_verifies_exports_and_a_tampered_actor_fails_at_its_seq() {
    let server = PostgresServer::start().unwrap();
    server.create_database("audit").unwrap();
    let url = server.url_for("audit");
    let dir = tempfile::tempdir().unwrap();

    // Reading never creates the schema: an empty database is refused, named.
    cli()
        .args(["dlq", "list", &url, "--json"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("127.0.0.1"));

    demo(dir.path(), 600, &["--store", &url]);
    let output = cli()
        .args(["dlq", "list", &url, "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(json_of(&output)["count"], 0, "no dead letters");
    let pubkey = demo_pubkey(dir.path()).display().to_string();
    let (code, json) = verify(dir.path(), &url, &["--pubkey", &pubkey, "--require-signed"]);
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(
        (json["records"].as_u64(), json["checkpoints"].as_u64()),
        (Some(600), Some(1))
    );

    let export = dir.path().join("export");
    cli()
        .args([
            "export",
            &url,
            "--to",
            &file_url(&export),
            "--segment-records",
            "250",
        ])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "exported 600 records and 1 checkpoints",
        ));
    let (code, json) = verify(dir.path(), &file_url(&export), &["--pubkey", &pubkey]);
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["records"], 600);

    cli()
        .args(["dlq", "replay", &url])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unsigned records"));
    cli()
        .args(["dlq", "replay", &url, "--key"])
        .arg(dir.path().join("demo-data/audit-key.pem"))
        .assert()
        .code(0)
        .stdout(predicate::str::contains("0 appended"));

    server
        .psql(
            "audit",
            "UPDATE audit_records SET actor = 'agent:mallory' WHERE seq = 123",
        )
        .unwrap();
    let (code, json) = verify(dir.path(), &url, &["--pubkey", &pubkey]);
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json["ok"], false);
    assert_eq!(json["failures"][0]["seq"], 123, "{json}");
    assert_eq!(json["failures"][0]["chain"], "default");
}

#[test]
fn a_postgres_url_without_a_server_exits_2_naming_it() {
    let port = audit_testkit::servers::free_port().unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{port}/audit");
    for args in [vec!["verify", &url], vec!["dlq", "list", &url]] {
        cli()
            .args(&args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!("127.0.0.1:{port}")));
    }
}

/// The demo into moto's S3 through `s3://`, then verify, dlq list and an
/// export from SQLite into the same bucket.
#[test]
fn s3_urls_serve_demo_verify_dlq_and_export() {
    let server = audit_testkit::servers::s3::MotoServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s3 = |args: &[&str]| {
        let mut command = cli();
        command
            .current_dir(dir.path())
            .env("AWS_ENDPOINT_URL", server.endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_ALLOW_HTTP", "true")
            .args(args);
        command.output().unwrap()
    };
    let chain = format!("s3://{}/demo", server.bucket());
    let output = s3(&[
        "demo",
        "--store",
        &chain,
        "--events",
        "400",
        "--producers",
        "2",
        "--json",
    ]);
    let json = json_of(&output);
    assert_eq!(output.status.code(), Some(0), "{json}");
    assert_eq!(
        (json["appended"].as_u64(), json["verify"]["ok"].as_bool()),
        (Some(400), Some(true))
    );

    let pubkey = demo_pubkey(dir.path()).display().to_string();
    let output = s3(&[
        "verify",
        &chain,
        "--pubkey",
        &pubkey,
        "--require-signed",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(json_of(&output)["records"], 400);

    let output = s3(&["dlq", "list", &chain, "--json"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(json_of(&output)["count"], 0);

    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/vectors/good");
    let export = format!("s3://{}/export", server.bucket());
    let sqlite = format!("sqlite://{}", vectors.join("chain.sqlite").display());
    let output = s3(&["export", &sqlite, "--to", &export]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let good_key = vectors.join("public.pem").display().to_string();
    let output = s3(&["verify", &export, "--pubkey", &good_key, "--json"]);
    assert_eq!(output.status.code(), Some(0));
    let json = json_of(&output);
    assert_eq!(
        (json["records"].as_u64(), json["checkpoints"].as_u64()),
        (Some(300), Some(6))
    );
}

#[test]
fn file_urls_serve_demo_and_dlq_list() {
    let dir = tempfile::tempdir().unwrap();
    let archive = file_url(&dir.path().join("archive"));
    demo(dir.path(), 300, &["--store", &archive]);
    let pubkey = demo_pubkey(dir.path()).display().to_string();
    let (code, json) = verify(
        dir.path(),
        &archive,
        &["--pubkey", &pubkey, "--require-signed"],
    );
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["records"], 300);
    cli()
        .args(["dlq", "list", &archive])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("0 dead letter(s)"));
    cli()
        .args(["dlq", "replay", &archive])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unsigned records"));
    cli()
        .args(["dlq", "replay", &archive, "--key"])
        .arg(dir.path().join("demo-data/audit-key.pem"))
        .assert()
        .code(0)
        .stdout(predicate::str::contains("0 appended"));
}

/// Issue 6: the tail of a SQLite chain and its own checkpoints deleted are
/// still caught through the checkpoints published off-box.
#[test]
fn truncation_with_its_checkpoints_deleted_is_caught_by_published_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let sqlite = format!("sqlite://{}", db.display());
    let published = file_url(&dir.path().join("published"));
    demo(
        dir.path(),
        500,
        &["--store", &sqlite, "--publish-checkpoints", &published],
    );
    let checkpoint_files: Vec<_> =
        std::fs::read_dir(dir.path().join("published/default/checkpoints"))
            .unwrap()
            .collect();
    assert_eq!(checkpoint_files.len(), 1, "one checkpoint at shutdown");

    let connection = rusqlite::Connection::open(&db).unwrap();
    let deleted = connection
        .execute("DELETE FROM audit_records WHERE seq > 400", [])
        .unwrap();
    assert_eq!(deleted, 100);
    connection
        .execute("DELETE FROM audit_checkpoints", [])
        .unwrap();
    let pubkey = dir.path().join("audit-key.pub.pem").display().to_string();
    // The tree checkpoint kept in the file still names size 500.
    let (code, json) = verify(dir.path(), &sqlite, &["--pubkey", &pubkey]);
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json["failures"][0]["kind"], "truncated", "{json}");
    assert_eq!(json["failures"][0]["seq"], 500, "{json}");
    // An attacker deletes those too.
    connection
        .execute("DELETE FROM audit_tree_checkpoints", [])
        .unwrap();
    drop(connection);

    let (code, json) = verify(dir.path(), &sqlite, &["--pubkey", &pubkey]);
    assert_eq!(
        code,
        Some(0),
        "without published checkpoints the truncation is invisible: {json}"
    );
    assert_eq!(json["records"], 400);

    let (code, json) = verify(
        dir.path(),
        &sqlite,
        &["--pubkey", &pubkey, "--checkpoints", &published],
    );
    assert_eq!(code, Some(1), "{json}");
    let kinds: Vec<&str> = json["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|failure| failure["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"truncated"), "{json}");
    let output = cli()
        .args(["verify", &sqlite, "--pubkey", &pubkey])
        .args(["--checkpoints", &published])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("truncated"));
}

#[test]
fn a_mirror_holds_and_verifies_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("audit.db").display());
    let mirror = file_url(&dir.path().join("mirror"));
    let json = demo(dir.path(), 700, &["--store", &sqlite, "--mirror", &mirror]);
    assert_eq!(json["mirror"], mirror.as_str());
    assert_eq!(json["mirror_failures"], 0, "{json}");
    let pubkey = dir.path().join("audit-key.pub.pem").display().to_string();
    let (code, primary) = verify(
        dir.path(),
        &sqlite,
        &["--pubkey", &pubkey, "--require-signed"],
    );
    assert_eq!(code, Some(0), "{primary}");
    let (code, mirrored) = verify(
        dir.path(),
        &mirror,
        &["--pubkey", &pubkey, "--require-signed"],
    );
    assert_eq!(code, Some(0), "{mirrored}");
    assert_eq!(primary["records"], 700);
    assert_eq!(mirrored["records"], 700);
}
