//! Witnesses end to end, with real processes: two `deferred-audit witness
//! serve` servers cosign the tree checkpoints a `demo` and a `load` write
//! into SQLite (quorum 2); `checkpoint`, `prove`, `verify` and
//! `verify-proof` carry and check the cosignatures; and a fork of the
//! chain (a copy that diverges after seq 100) is refused by both
//! witnesses, so `verify` under the quorum fails on it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};

use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin;
use audit_core::chain::note::Vkey;
use audit_core::keys::PublicKey;

const ORIGIN: &str = "example.com/audit/witnessed";

fn cli() -> Command {
    Command::cargo_bin("deferred-audit").unwrap()
}

fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let output = cli().current_dir(dir).args(args).output().unwrap();
    (
        output.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn keygen(dir: &Path, name: &str) -> std::path::PathBuf {
    let out = dir.join(name);
    let (code, output) = run(dir, &["keygen", "--out", out.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{output}");
    out
}

/// A witness server process, killed on drop.
struct WitnessProcess {
    child: Child,
    url: String,
    vkey: String,
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_witness(dir: &Path, name: &str, log_vkey: &str) -> WitnessProcess {
    let keys = keygen(dir, name);
    let mut child = Process::new(cargo_bin("deferred-audit"))
        .args(["witness", "serve", "--listen", "127.0.0.1:0", "--key"])
        .arg(keys.join("audit-key.pem"))
        .args(["--name", &format!("witness.example/{name}"), "--state"])
        .arg(format!("sqlite://{}", keys.join("state.db").display()))
        .args(["--log", log_vkey, "--prefix", &format!("/{name}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let vkey = lines.next().unwrap().unwrap();
    let url = lines.next().unwrap().unwrap();
    assert!(url.ends_with(&format!("/{name}")), "{url}");
    WitnessProcess {
        child,
        vkey: vkey.strip_prefix("vkey ").unwrap().to_owned(),
        url: url.strip_prefix("listening on ").unwrap().to_owned(),
    }
}

#[test]
fn two_witnesses_cosign_every_checkpoint_and_refuse_a_fork() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let log_keys = keygen(dir, "log");
    let key = log_keys.join("audit-key.pem");
    let key = key.to_str().unwrap();
    let pubkey = log_keys.join("audit-key.pub.pem");
    let log_vkey = Vkey::ed25519(ORIGIN, PublicKey::load(&pubkey).unwrap().verifying_key())
        .unwrap()
        .to_string();
    let pubkey = pubkey.to_str().unwrap();
    let (code, printed) = run(dir, &["vkey", "--pubkey", pubkey, "--origin", ORIGIN]);
    assert_eq!((code, printed.trim()), (Some(0), log_vkey.as_str()));
    let w1 = start_witness(dir, "w1", &log_vkey);
    let w2 = start_witness(dir, "w2", &log_vkey);
    let witness_args = |quorum: &str| -> Vec<String> {
        vec![
            "--witness".into(),
            format!("{},{}", w1.url, w1.vkey),
            "--witness".into(),
            format!("{},{}", w2.url, w2.vkey),
            "--witness-quorum".into(),
            quorum.into(),
        ]
    };
    let policy = [
        "--witness",
        w1.vkey.as_str(),
        "--witness",
        w2.vkey.as_str(),
        "--witness-quorum",
        "2",
    ];

    let original = format!("sqlite://{}", dir.join("a/audit.db").display());
    let mut demo = vec![
        "demo",
        "--store",
        &original,
        "--key",
        key,
        "--origin",
        ORIGIN,
        "--events",
        "100",
        "--producers",
        "2",
        "--no-journal",
        "--json",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<String>>();
    demo.extend(witness_args("2"));
    let demo: Vec<&str> = demo.iter().map(String::as_str).collect();
    let (code, output) = run(dir, &demo);
    assert_eq!(code, Some(0), "{output}");

    // The stored checkpoint carries the log's signature and both cosignatures.
    let (code, note) = run(dir, &["checkpoint", &original]);
    assert_eq!(code, Some(0), "{note}");
    assert!(note.starts_with(&format!("{ORIGIN}\n100\n")), "{note}");
    assert_eq!(note.matches("\n\u{2014} ").count(), 3, "{note}");
    let mut verify = vec!["verify", original.as_str(), "--pubkey", pubkey];
    verify.extend(policy);
    let (code, output) = run(dir, &verify);
    assert_eq!(code, Some(0), "{output}");

    // A proof carries the cosignatures; verify-proof holds it to the quorum.
    let (code, proof) = run(dir, &["prove", &original, "--seq", "42"]);
    assert_eq!(code, Some(0), "{proof}");
    let proof_file = dir.join("r42.tlog-proof");
    std::fs::write(&proof_file, &proof).unwrap();
    let mut verify_proof = vec![
        "verify-proof",
        "--pubkey",
        pubkey,
        proof_file.to_str().unwrap(),
    ];
    verify_proof.extend(policy);
    let (code, output) = run(dir, &verify_proof);
    assert_eq!(code, Some(0), "{output}");
    let stranger = Vkey::cosignature(
        "witness.example/stranger",
        &ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key(),
    )
    .unwrap()
    .to_string();
    let (code, output) = run(
        dir,
        &[
            "verify-proof",
            "--pubkey",
            pubkey,
            proof_file.to_str().unwrap(),
            "--witness",
            &stranger,
        ],
    );
    assert_eq!(code, Some(1), "a quorum of unknown witnesses: {output}");

    // A fork: a copy of the chain at seq 100, then different records on each.
    std::fs::create_dir(dir.join("b")).unwrap();
    std::fs::copy(dir.join("a/audit.db"), dir.join("b/audit.db")).unwrap();
    let fork = format!("sqlite://{}", dir.join("b/audit.db").display());
    for (store, events) in [(&original, "50"), (&fork, "60")] {
        let mut load = vec![
            "load".to_owned(),
            "--store".into(),
            store.clone(),
            "--events".into(),
            events.into(),
            "--key".into(),
            key.into(),
            "--origin".into(),
            ORIGIN.into(),
        ];
        load.extend(witness_args("2"));
        let load: Vec<&str> = load.iter().map(String::as_str).collect();
        let (code, output) = run(dir, &load);
        assert_eq!(code, Some(0), "{output}");
    }
    // The original grew to 150 with both cosignatures; the witnesses,
    // holding its head, refused the fork's 160.
    let (_, note) = run(dir, &["checkpoint", &original]);
    assert!(note.starts_with(&format!("{ORIGIN}\n150\n")), "{note}");
    assert_eq!(note.matches("\n\u{2014} ").count(), 3, "{note}");
    let (_, note) = run(dir, &["checkpoint", &fork]);
    assert!(note.starts_with(&format!("{ORIGIN}\n160\n")), "{note}");
    assert_eq!(note.matches("\n\u{2014} ").count(), 1, "{note}");
    let mut verify = vec!["verify", original.as_str(), "--pubkey", pubkey];
    verify.extend(policy);
    let (code, output) = run(dir, &verify);
    assert_eq!(code, Some(0), "{output}");
    let mut verify = vec!["verify", fork.as_str(), "--pubkey", pubkey, "--json"];
    verify.extend(policy);
    let (code, output) = run(dir, &verify);
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("witness_quorum"), "{output}");
}
