//! Against implementations that are not ours: a Python witness client and
//! a Python witness server written from the C2SP texts with the
//! `cryptography` package (tests/python/), run with the Python of the moto
//! venv (`$AUDIT_MOTO_VENV`, default `~/.cache/deferred-audit/moto-venv`,
//! made by `scripts/install-moto.sh`). A missing venv fails the test.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use audit_core::chain::note::Vkey;
use audit_testkit::servers::s3::moto_venv;
use audit_witness::{OutcomeKind, WitnessClient, WitnessError, WitnessOptions, Witnesses};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::common::*;

fn python() -> PathBuf {
    let python = moto_venv().join("bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/install-moto.sh (it makes the venv with `cryptography`)",
        python.display()
    );
    python
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

#[tokio::test]
async fn a_python_client_gets_cosignatures_from_our_server() {
    // The Python log's key is derived from this seed on both sides.
    let log = TestLog::new("example.test/python-log", 0x33);
    let witness = memory_witness(vec![log.vkey()]).await;
    let output = Command::new(python())
        .arg(script("witness_client.py"))
        .args([
            &witness.url(),
            &witness.vkey().to_string(),
            &log.origin,
            &hex(&[0x33; 32]),
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("the Python client must finish")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The Python side computed the same log vkey as ours.
    assert!(
        stdout.contains(&format!("log-vkey {}", log.vkey())),
        "{stdout}"
    );
    assert!(stdout.contains("ok"), "{stdout}");
    stop(witness).await;
}

#[tokio::test]
async fn our_client_gets_cosignatures_from_a_python_witness() {
    let mut log = TestLog::new("example.test/log", 1);
    let mut child = Command::new(python())
        .arg(script("witness_server.py"))
        .args([
            "witness.test/py",
            &hex(&[0x61; 32]),
            &log.vkey().to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (mut url, mut vkey) = (None, None);
    while url.is_none() || vkey.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
            .await
            .expect("the Python witness must start")
            .unwrap()
            .expect("the Python witness exited");
        if let Some(rest) = line.strip_prefix("listening ") {
            url = Some(rest.to_owned());
        } else if let Some(rest) = line.strip_prefix("vkey ") {
            vkey = Some(Vkey::parse(rest).unwrap());
        }
    }
    let (url, vkey) = (url.unwrap(), vkey.unwrap());
    // Its vkey is the one we compute for that key and name.
    let ours = Vkey::cosignature("witness.test/py", &witness_key(0x61).verifying_key()).unwrap();
    assert_eq!(vkey, ours);
    let client = WitnessClient::new(&url, vkey.clone())
        .unwrap()
        .with_timeout(Duration::from_secs(5));

    log.append(6);
    let lines = client.add_checkpoint(0, &[], &log.note()).await.unwrap();
    let mut note = log.note();
    note.push_signature(lines[0].clone()).unwrap();
    note.verify(std::slice::from_ref(&vkey)).unwrap();

    // Its refusals map to our errors.
    log.append(5);
    let error = client
        .add_checkpoint(2, &log.proof(2), &log.note())
        .await
        .unwrap_err();
    assert!(
        matches!(error, WitnessError::Conflict { latest_size: 6 }),
        "{error}"
    );
    let mut bad = log.proof(6);
    bad.reverse();
    let error = client
        .add_checkpoint(6, &bad, &log.note())
        .await
        .unwrap_err();
    assert!(
        matches!(error, WitnessError::InconsistentProof { .. }),
        "{error}"
    );
    let error = client
        .add_checkpoint(12, &[], &log.note())
        .await
        .unwrap_err();
    assert!(matches!(error, WitnessError::BadRequest { .. }), "{error}");
    let mut impostor = log.clone();
    impostor.key = witness_key(0x77);
    let error = client
        .add_checkpoint(6, &log.proof(6), &impostor.note())
        .await
        .unwrap_err();
    assert!(matches!(error, WitnessError::Forbidden { .. }), "{error}");
    let mut stranger = TestLog::new("example.test/other", 2);
    stranger.append(1);
    let error = client
        .add_checkpoint(0, &[], &stranger.note())
        .await
        .unwrap_err();
    assert!(
        matches!(error, WitnessError::UnknownOrigin { .. }),
        "{error}"
    );

    // A witness set against it: learns 6 from the 409, proves from there.
    let witnesses = Witnesses::new(vec![client], 1)
        .unwrap()
        .with_options(WitnessOptions::default().with_min_interval(Duration::ZERO));
    let cosigned = witnesses.cosign(&log.note(), &log.source()).await;
    assert!(
        matches!(
            cosigned.outcomes[0].kind,
            OutcomeKind::Cosigned { old_size: 6, .. }
        ),
        "{:?}",
        cosigned.outcomes[0].kind
    );
    assert!(cosigned.quorum_met());
    child.kill().await.unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
