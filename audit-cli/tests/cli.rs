//! The real `deferred-audit` binary: exit codes, JSON and messages.

use std::os::unix::fs::PermissionsExt;

use assert_cmd::Command;
use audit_testkit::vectors::dir as vectors;
use predicates::prelude::*;

fn cli() -> Command {
    Command::cargo_bin("deferred-audit").unwrap()
}

fn pubkey() -> String {
    vectors().join("good/public.pem").display().to_string()
}

fn json_of(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not JSON ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[test]
fn keygen_writes_both_key_files_with_their_modes_and_prints_the_key_id() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("keys");
    let output = cli().args(["keygen", "--out"]).arg(&out).output().unwrap();
    assert!(output.status.success());
    let secret = out.join("audit-key.pem");
    let public = out.join("audit-key.pub.pem");
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        std::fs::read_to_string(&secret)
            .unwrap()
            .contains("BEGIN PRIVATE KEY")
    );
    let key_id = audit_core::keys::PublicKey::load(&public)
        .unwrap()
        .key_id()
        .to_string();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.starts_with(&format!("key id {key_id}\n")),
        "{stdout}"
    );

    cli()
        .args(["keygen", "--out"])
        .arg(&out)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("audit-key.pem")
                .and(predicate::str::contains("already exists")),
        );
}

#[test]
fn every_good_vector_verifies() {
    let good = vectors().join("good");
    for url in [
        format!("sqlite://{}", good.join("chain.sqlite").display()),
        format!("file://{}", good.join("jsonl").display()),
    ] {
        let output = cli()
            .args([
                "verify",
                &url,
                "--pubkey",
                &pubkey(),
                "--require-signed",
                "--json",
            ])
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{url}: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let json = json_of(&output);
        assert_eq!(json["ok"], true);
        assert_eq!(json["records"], 300);
        assert_eq!(json["failures"], serde_json::json!([]));
        cli()
            .args(["verify", &url, "--pubkey", &pubkey()])
            .assert()
            .code(0)
            .stdout(predicate::str::contains("OK:").and(predicate::str::contains("300 records")));
    }
}

#[test]
fn every_tampered_vector_fails_at_its_first_bad_seq() {
    let expect = audit_testkit::vectors::tampered();
    assert_eq!(expect.len(), 6);
    for case in expect {
        let file = vectors().join("tampered").join(case.file.as_str());
        let url = if file.is_dir() {
            format!("file://{}", file.display())
        } else {
            format!("sqlite://{}", file.display())
        };
        let output = cli()
            .args(["verify", &url, "--pubkey", &pubkey(), "--json"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{url}");
        let json = json_of(&output);
        assert_eq!(json["ok"], false);
        let failures = json["failures"].as_array().unwrap();
        assert_eq!(
            failures[0]["seq"].as_u64(),
            case.first_bad_seq,
            "{url}: {failures:?}"
        );
        assert_eq!(failures[0]["chain"], "default");
        for failure in failures {
            for member in ["chain", "seq", "kind", "detail"] {
                assert!(failure.get(member).is_some(), "{failure}");
            }
        }
        let seqs: Vec<u64> = failures
            .iter()
            .map(|f| f["seq"].as_u64().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|pair| pair[0] <= pair[1]), "{seqs:?}");
        cli()
            .args(["verify", &url, "--pubkey", &pubkey()])
            .assert()
            .code(1)
            .stdout(predicate::str::contains(format!(
                "chain default seq {}",
                case.first_bad_seq.unwrap()
            )));
    }
}

#[test]
fn checkpoints_from_another_store_are_checked() {
    let good = vectors().join("good");
    let checkpoints = format!("file://{}", good.join("jsonl").display());
    let deleted = vectors().join("tampered/row_deleted.sqlite");
    let output = cli()
        .args([
            "verify",
            &format!("sqlite://{}", deleted.display()),
            "--pubkey",
            &pubkey(),
        ])
        .args(["--checkpoints", &checkpoints, "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json_of(&output)["failures"][0]["seq"], 151);
}

#[test]
fn bad_urls_missing_files_and_unserved_stores_exit_2_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    cli()
        .args(["verify", &format!("sqlite://{}", missing.display())])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("missing.db"));
    assert!(!missing.exists(), "verify created the file");
    cli().args(["verify", "audit.db"]).assert().code(2).stderr(
        predicate::str::contains("audit.db").and(predicate::str::contains("sqlite://PATH")),
    );
    let notes = dir.path().join("notes.txt");
    std::fs::write(
        &notes,
        "not a database at all, just some text that is long enough",
    )
    .unwrap();
    cli()
        .args(["verify", &format!("sqlite://{}", notes.display())])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("notes.txt")
                .and(predicate::str::contains("not a SQLite database")),
        );
    cli()
        .args([
            "verify",
            &format!("file://{}", dir.path().join("nofolder").display()),
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nofolder"));
    cli()
        .args([
            "verify",
            &format!("sqlite://{}", vectors().join("good/chain.sqlite").display()),
        ])
        .args(["--pubkey", "/nonexistent/key.pem"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/nonexistent/key.pem"));
}

#[test]
fn export_writes_a_jsonl_folder_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export");
    let source = format!("sqlite://{}", vectors().join("good/chain.sqlite").display());
    cli()
        .args([
            "export",
            &source,
            "--to",
            &format!("file://{}", out.display()),
            "--segment-records",
            "64",
        ])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "exported 300 records and 6 checkpoints",
        ));
    let segments: Vec<String> = std::fs::read_dir(out.join("default/records"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(segments.len(), 5);
    assert!(segments.contains(&"00000000000000000257.jsonl".to_owned()));
    let output = cli()
        .args([
            "verify",
            &format!("file://{}", out.display()),
            "--pubkey",
            &pubkey(),
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let json = json_of(&output);
    assert_eq!(
        (json["records"].as_u64(), json["checkpoints"].as_u64()),
        (Some(300), Some(6))
    );
    // Exporting again continues the chain: nothing new, nothing overwritten.
    cli()
        .args([
            "export",
            &source,
            "--to",
            &format!("file://{}", out.display()),
        ])
        .assert()
        .code(0)
        .stdout(
            predicate::str::contains("exported 0 records")
                .and(predicate::str::contains("(300 records were there already)")),
        );
    // Into an archive holding another history: refused, naming the seq.
    let other = dir.path().join("other");
    let forked = format!("sqlite://{}", dir.path().join("forked.db").display());
    cli()
        .args(["load", "--store", &forked, "--events", "5"])
        .assert()
        .code(0);
    cli()
        .args([
            "export",
            &forked,
            "--to",
            &format!("file://{}", other.display()),
        ])
        .assert()
        .code(0);
    cli()
        .args([
            "export",
            &source,
            "--to",
            &format!("file://{}", other.display()),
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("diverge"));
}

#[test]
fn dead_letters_are_listed_and_replayed() {
    use audit_core::chain_writer::ChainStore;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let keys = dir.path().join("keys");
    cli().args(["keygen", "--out"]).arg(&keys).assert().code(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let signer = audit_core::keys::AuditSigner::load(&keys.join("audit-key.pem")).unwrap();
    let ids: Vec<String> = runtime.block_on(async {
        let mut store = audit_sqlite::SqliteStore::open(&path, Default::default())
            .await
            .unwrap();
        let chain = audit_core::ChainId::default();
        let mut letters: Vec<_> = (0..4)
            .map(|n| {
                let event = audit_core::AuditEvent::new(
                    "governance.refusal",
                    "agent-1",
                    serde_json::json!({"n": n}),
                )
                .unwrap();
                audit_core::dead_letter::DeadLetter::new(&chain, &event, "disk full", 2)
                    .authenticated(&signer)
            })
            .collect();
        // A letter forged by someone with write access to the table: unsigned.
        let forged = audit_core::AuditEvent::new(
            "role.granted",
            "attacker",
            serde_json::json!({"role": "admin"}),
        )
        .unwrap();
        letters[3] = audit_core::dead_letter::DeadLetter::new(&chain, &forged, "disk full", 1);
        store.dead_letter(&letters).await.unwrap();
        letters.into_iter().map(|letter| letter.event_id).collect()
    });
    let url = format!("sqlite://{}", path.display());
    let output = cli()
        .args(["dlq", "list", &url, "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let json = json_of(&output);
    assert_eq!(json["count"], 4);
    assert_eq!(
        json["dead_letters"][0]["event"]["payload"]["n"], 0,
        "the event's content is listed"
    );
    assert_eq!(json["dead_letters"][0]["event_id"], ids[0].as_str());
    assert_eq!(json["dead_letters"][0]["failure_reason"], "disk full");
    cli().args(["dlq", "list", &url]).assert().code(0).stdout(
        predicate::str::contains(ids[2].as_str()).and(predicate::str::contains("4 dead letter(s)")),
    );

    let key = keys.join("audit-key.pem");
    // Without the key, replaying would append unsigned records: refused
    // once the chain is signed; here the chain is empty, so the forged
    // letter is what matters: with the key, it is refused and kept.
    cli()
        .args(["dlq", "replay", &url, "--key"])
        .arg(&key)
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("3 appended")
                .and(predicate::str::contains("not authenticated"))
                .and(predicate::str::contains(ids[3].as_str())),
        );
    cli()
        .args(["dlq", "replay", &url, "--key"])
        .arg(&key)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("0 appended"));
    cli()
        .args(["dlq", "replay", &url])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unsigned records"));
    let output = cli()
        .args(["dlq", "list", &url, "--json"])
        .output()
        .unwrap();
    let left = json_of(&output);
    assert_eq!(left["count"], 1, "only the forged letter is left: {left}");
    assert_eq!(left["dead_letters"][0]["event_id"], ids[3].as_str());
    let public = keys.join("audit-key.pub.pem").display().to_string();
    let output = cli()
        .args([
            "verify",
            &url,
            "--pubkey",
            &public,
            "--require-signed",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let json = json_of(&output);
    assert_eq!(
        (json["records"].as_u64(), json["checkpoints"].as_u64()),
        (Some(3), Some(1))
    );
}

#[test]
fn demo_runs_the_main_job_and_a_second_run_appends_to_the_same_chain() {
    let dir = tempfile::tempdir().unwrap();
    for run in 1..=2u64 {
        let output = cli()
            .current_dir(dir.path())
            .args(["demo", "--events", "2000", "--producers", "3", "--json"])
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let json = json_of(&output);
        assert_eq!(json["events"], 2000);
        assert_eq!(json["appended"], 2000, "{json}");
        assert_eq!(
            (json["dead_lettered"].as_u64(), json["lost"].as_u64()),
            (Some(0), Some(0))
        );
        assert!(json["elapsed_s"].as_f64().unwrap() > 0.0);
        assert!(json["events_per_s"].as_f64().unwrap() > 0.0);
        assert_eq!(json["verify"]["ok"], true, "{json}");
        assert_eq!(json["verify"]["records"], 2000 * run);
        assert_eq!(json["verify"]["head_seq"], 2000 * run);
    }
    let data = dir.path().join("demo-data");
    assert_eq!(
        std::fs::metadata(data.join("audit-key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let output = cli()
        .current_dir(dir.path())
        .args([
            "verify",
            "sqlite://demo-data/audit.db",
            "--pubkey",
            "demo-data/audit-key.pub.pem",
        ])
        .args(["--require-signed", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let json = json_of(&output);
    assert_eq!(json["records"], 4000);
    assert_eq!(json["checkpoints"], 2, "one checkpoint at each shutdown");
}

#[test]
fn demo_text_summary_names_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("chain.db").display());
    cli()
        .args(["demo", "--events", "300", "--store", &store])
        .assert()
        .code(0)
        .stdout(
            predicate::str::contains("events         300")
                .and(predicate::str::contains("appended       300"))
                .and(predicate::str::contains("dead-lettered  0"))
                .and(predicate::str::contains("lost           0"))
                .and(predicate::str::contains("events/s"))
                .and(predicate::str::contains("verify         OK: 300 records")),
        );
    assert!(
        dir.path().join("audit-key.pub.pem").exists(),
        "the key is created beside the database"
    );
    cli()
        .args(["demo", "--store", "ftp://host/chain", "--events", "1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("ftp://host/chain"));
}

#[test]
fn bench_json_reports_every_measure_as_a_positive_number() {
    let output = cli()
        .args(["bench", "--events", "2000", "--json"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json_of(&output);
    for field in [
        "pipeline_events_per_s",
        "baseline_events_per_s",
        "ratio",
        "limit_fraction",
        "submit_ns_median",
        "submit_ns_p99",
        "signs_per_s_one_core",
        "signs_per_s_all_cores",
        "raw_insert_rows_per_s",
        "verify_records_per_s",
        "peak_memory_bytes",
    ] {
        let value = report[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} missing or not a number: {report}"));
        assert!(value > 0.0, "{field} = {value}: {report}");
    }
    assert_eq!(report["pipeline_appended"], 2000, "{report}");
    assert_eq!(report["verify_ok"], true, "{report}");
}

#[test]
fn a_postgres_password_is_never_printed() {
    // Port 1 on loopback refuses at once: every command fails, and says so
    // without the password, whether it is in the userinfo or a parameter.
    for url in [
        "postgres://auditor:hunter2-secret@127.0.0.1:1/audit?connect_timeout=2",
        "postgres://auditor@127.0.0.1:1/audit?password=hunter2-secret&connect_timeout=2",
    ] {
        for args in [
            vec!["verify", url],
            vec!["verify", url, "--json"],
            vec!["dlq", "list", url],
            vec!["tail", url],
        ] {
            let output = cli().args(&args).output().unwrap();
            assert_eq!(output.status.code(), Some(2), "{args:?}");
            let printed = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(
                !printed.contains("hunter2"),
                "{args:?} printed the password: {printed}"
            );
            assert!(
                printed.contains("127.0.0.1"),
                "{args:?} must name the server: {printed}"
            );
        }
    }
}

#[test]
fn show_and_tail_read_records_as_stored() {
    let url = format!("sqlite://{}", vectors().join("good/chain.sqlite").display());
    let output = cli()
        .args(["show", &url, "--seq", "42", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let record = json_of(&output);
    assert_eq!(record["seq"], 42);
    assert_eq!(record["chain"], "default");
    assert!(record["event"]["id"].is_string(), "{record}");
    cli()
        .args(["show", &url, "--seq", "301"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no record at seq 301"));
    let output = cli()
        .args(["tail", &url, "-n", "3", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let seqs: Vec<u64> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [298, 299, 300]);
    cli()
        .args(["tail", &url, "-n", "1"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "seq 300 of chain default (signed by key",
        ));
}

#[test]
fn json_lines_piped_into_a_closed_reader_do_not_panic() {
    use std::io::Read as _;
    use std::process::{Command as Process, Stdio};
    // 300 records as JSON lines are ~200 KB, well past a pipe's buffer, so
    // the writer meets the closed pipe (all commands print through one
    // writer, `verify --json` included).
    let url = format!("sqlite://{}", vectors().join("good/chain.sqlite").display());
    let mut child = Process::new(env!("CARGO_BIN_EXE_deferred-audit"))
        .args(["tail", &url, "-n", "300", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take()); // like `| head -c 16`
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(status.code().is_some(), "killed by a signal: {status:?}");
}

#[test]
fn completions_and_the_manual_page_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        cli().args(["completions", shell]).assert().code(0).stdout(
            predicate::str::contains("deferred-audit").and(predicate::str::contains("verify")),
        );
    }
    cli()
        .arg("man")
        .assert()
        .code(0)
        .stdout(predicate::str::contains(".TH").and(predicate::str::contains("deferred-audit")));
    cli()
        .arg("--help")
        .assert()
        .code(0)
        .stdout(predicate::str::contains("DEFERRED_AUDIT_LOG"));
}
