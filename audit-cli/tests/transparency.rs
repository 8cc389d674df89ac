//! The transparency-log commands on every backend, checked by an
//! implementation that is not ours: `demo` writes a signed chain into
//! SQLite, PostgreSQL and the JSONL archive; `checkpoint` and `prove` print
//! the tree checkpoint and proofs; Go's reference packages
//! `golang.org/x/mod/sumdb/note` and `sumdb/tlog`
//! ([`audit_testkit::go_checker`]) accept them and reject tampered copies (leaf,
//! proof hash, index, size, signature), and so does `verify-proof`.

use std::path::Path;

use assert_cmd::Command;
use audit_core::chain::ChainId;
use audit_core::chain::note::Vkey;
use audit_core::keys::PublicKey;
use audit_core::store::SourceRecord;
use audit_testkit::servers::postgres::PostgresServer;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::StreamExt;

const EVENTS: u64 = 300;

fn cli() -> Command {
    Command::cargo_bin("deferred-audit").unwrap()
}

/// Runs `deferred-audit ARGS`, asserting exit 0; returns stdout.
fn run(dir: &Path, args: &[&str]) -> String {
    let output = cli().current_dir(dir).args(args).output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "deferred-audit {args:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `verify-proof` on `file`: its exit code and output.
fn verify_proof(dir: &Path, file: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let pubkey = dir.join("demo-data/audit-key.pub.pem");
    let output = cli()
        .current_dir(dir)
        .arg("verify-proof")
        .arg("--pubkey")
        .arg(&pubkey)
        .arg(file)
        .args(extra)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

/// The canonical event bytes of every record, in seq order.
fn leaves(url: &str) -> Vec<Vec<u8>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let source = deferred_audit::open_source(&url.parse().unwrap())
            .await
            .unwrap();
        let mut rows = source.records(&ChainId::default(), 1).await.unwrap();
        let mut leaves = Vec::new();
        while let Some(row) = rows.next().await {
            match row.unwrap() {
                SourceRecord::Record(record) => leaves.push(record.event_json.as_bytes().to_vec()),
                SourceRecord::Malformed { seq, detail } => panic!("row {seq}: {detail}"),
            }
        }
        leaves
    })
}

/// Replaces the `n`th base64 hash line (0-based) of a proof's hash block.
fn flip_hash(proof: &str, n: usize) -> String {
    let (head, note) = proof.split_once("\n\n").unwrap();
    let mut lines: Vec<String> = head.lines().map(str::to_owned).collect();
    let first_hash = lines
        .iter()
        .position(|line| !line.contains(' ') && !line.starts_with("c2sp.org"))
        .unwrap();
    let line = &mut lines[first_hash + n];
    let mut bytes = BASE64.decode(line.as_bytes()).unwrap();
    bytes[0] ^= 1;
    *line = BASE64.encode(bytes);
    format!("{}\n\n{note}", lines.join("\n"))
}

/// Demo into `url`, then the CLI's artefacts through Go and `verify-proof`.
fn cli_artefacts_verify_independently(dir: &Path, url: &str) {
    audit_testkit::go_checker::go();
    run(
        dir,
        &[
            "demo",
            "--store",
            url,
            "--events",
            &EVENTS.to_string(),
            "--producers",
            "2",
            "--no-journal",
            "--json",
            "--origin",
            "example.com/audit/test-log",
        ],
    );
    let pubkey_path = dir.join("demo-data/audit-key.pub.pem");
    let pubkey = pubkey_path.display().to_string();

    // verify checks the stored tree checkpoint (items 8 and 10).
    let report: serde_json::Value =
        serde_json::from_str(&run(dir, &["verify", url, "--pubkey", &pubkey, "--json"])).unwrap();
    assert_eq!(
        report["chains"]["default"]["tree_checkpoints"], 1,
        "{report}"
    );

    let out = dir.join("artefacts");
    std::fs::create_dir(&out).unwrap();
    let note = run(dir, &["checkpoint", url]);
    assert!(
        note.starts_with(&format!("example.com/audit/test-log\n{EVENTS}\n")),
        "{note}"
    );
    std::fs::write(out.join("checkpoint.note"), &note).unwrap();
    // The note, kept outside, is checked against the store.
    let kept = out.join("checkpoint.note");
    let report: serde_json::Value = serde_json::from_str(&run(
        dir,
        &[
            "verify",
            url,
            "--pubkey",
            &pubkey,
            "--json",
            "--tree-checkpoint",
            kept.to_str().unwrap(),
        ],
    ))
    .unwrap();
    assert_eq!(
        report["chains"]["default"]["tree_checkpoints"], 2,
        "{report}"
    );
    let key = PublicKey::load(&pubkey_path).unwrap();
    let vkey = Vkey::ed25519("example.com/audit/test-log", key.verifying_key()).unwrap();
    std::fs::write(out.join("log.vkey"), vkey.to_string()).unwrap();
    let leaves = leaves(url);
    assert_eq!(leaves.len() as u64, EVENTS);
    let lines: String = leaves.iter().map(|l| BASE64.encode(l) + "\n").collect();
    std::fs::write(out.join("leaves.txt"), lines).unwrap();

    let mut good = Vec::new();
    for seq in [1u64, 2, 151, 256, EVENTS] {
        let proof = run(dir, &["prove", url, "--seq", &seq.to_string()]);
        let path = out.join(format!("record-{seq}.tlog-proof"));
        std::fs::write(&path, &proof).unwrap();
        good.push(path);
    }
    for old in [1u64, 7, 128, 255, EVENTS] {
        let proof = run(dir, &["prove", url, "--consistency-from", &old.to_string()]);
        std::fs::write(out.join(format!("from-{old}.consistency")), &proof).unwrap();
    }

    // Tampered copies: a leaf, a proof hash, the index, the size, the signature.
    let proof = std::fs::read_to_string(out.join("record-151.tlog-proof")).unwrap();
    let other_leaf = format!("extra {}", BASE64.encode(&leaves[151]));
    let bad = [
        (
            "bad-leaf",
            proof.replacen(
                &format!("extra {}", BASE64.encode(&leaves[150])),
                &other_leaf,
                1,
            ),
        ),
        ("bad-hash", flip_hash(&proof, 3)),
        ("bad-index", proof.replacen("index 150\n", "index 149\n", 1)),
        (
            "bad-size",
            proof.replacen(&format!("\n{EVENTS}\n"), &format!("\n{}\n", EVENTS + 1), 1),
        ),
        ("bad-signature", {
            let (body, signature) = proof.rsplit_once(' ').unwrap();
            let mut raw = BASE64.decode(signature.trim_end()).unwrap();
            raw[10] ^= 1;
            format!("{body} {}\n", BASE64.encode(raw))
        }),
    ];
    for (name, text) in &bad {
        assert_ne!(text, &proof, "{name} changed nothing");
        let path = out.join(format!("{name}.tlog-proof"));
        std::fs::write(&path, text).unwrap();
        let (code, output) = verify_proof(dir, &path, &[]);
        assert_eq!(code, Some(1), "verify-proof accepted {name}: {output}");
    }
    let consistency = std::fs::read_to_string(out.join("from-128.consistency")).unwrap();
    std::fs::write(out.join("bad-hash.consistency"), flip_hash(&consistency, 1)).unwrap();

    for path in &good {
        let (code, output) = verify_proof(dir, path, &[]);
        assert_eq!(code, Some(0), "{}: {output}", path.display());
        assert!(output.starts_with("OK: record"), "{output}");
    }
    // With the event given, and a wrong one.
    let event = dir.join("event.json");
    std::fs::write(&event, &leaves[150]).unwrap();
    let record_151 = out.join("record-151.tlog-proof");
    let (code, output) = verify_proof(dir, &record_151, &["--event", event.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{output}");
    std::fs::write(&event, &leaves[0]).unwrap();
    let (code, output) = verify_proof(dir, &record_151, &["--event", event.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{output}");
    // A consistency proof from 0 needs no old checkpoint.
    let from_zero = out.join("zero.consistency-proof");
    std::fs::write(
        &from_zero,
        run(dir, &["prove", url, "--consistency-from", "0"]),
    )
    .unwrap();
    let (code, output) = verify_proof(dir, &from_zero, &[]);
    assert_eq!(code, Some(0), "{output}");

    let output = audit_testkit::go_checker::check(&out, &dir.join("gocache"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "Go's reference checker refused the CLI's artefacts of {url}:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("ok checkpoint.note"), "{stdout}");
    assert!(stdout.contains("equals the checkpoint's"), "{stdout}");
    assert!(stdout.contains("checked 16 proof files"), "{stdout}");
    assert_eq!(stdout.matches(": rejected (").count(), 6, "{stdout}");
}

#[test]
fn sqlite_checkpoints_and_proofs_verify_under_go_and_tampering_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}",
        dir.path().join("demo-data/audit.db").display()
    );
    cli_artefacts_verify_independently(dir.path(), &url);
}

#[test]
fn postgres_checkpoints_and_proofs_verify_under_go_and_tampering_is_caught() {
    let server = PostgresServer::start().unwrap();
    server.create_database("transparency").unwrap();
    let dir = tempfile::tempdir().unwrap();
    cli_artefacts_verify_independently(dir.path(), &server.url_for("transparency"));
}

#[test]
fn jsonl_archive_checkpoints_and_proofs_verify_under_go_and_tampering_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("archive").display());
    cli_artefacts_verify_independently(dir.path(), &url);
}
