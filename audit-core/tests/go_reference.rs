//! Independent implementation check of FORMAT.md section 8: Go's reference
//! packages `golang.org/x/mod/sumdb/note` and `sumdb/tlog` verify the
//! artefacts we produce (a checkpoint note we sign and a witness cosigns,
//! our stored-hash layout, inclusion and consistency proof files), and
//! reject tampered copies. The checker is audit-testkit's `go/checker.go`
//! ([`audit_testkit::go_checker`]), run in GOPATH mode, offline, against
//! the Debian packages golang-go and golang-golang-x-mod-dev
//! (`scripts/install-go.sh` installs them).

use std::path::Path;

use audit_core::Digest;
use audit_core::chain::note::Vkey;
use audit_core::chain::proof::{ConsistencyProof, InclusionProof};
use audit_core::chain::tree::{
    TreeFrontier, leaf_hash, prove_consistency, prove_inclusion, tree_hash,
};
use audit_core::chain::tree_checkpoint::TreeCheckpoint;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::SigningKey;

fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn b64(hash: &Digest) -> String {
    BASE64.encode(hash.as_bytes())
}

#[test]
fn go_sumdb_note_and_tlog_accept_our_checkpoint_stored_hashes_and_proofs() {
    audit_testkit::go_checker::go();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("artefacts");
    std::fs::create_dir(&out).unwrap();

    // 137 leaves: an odd size with several perfect subtrees on its right edge.
    let size = 137u64;
    let leaves: Vec<Vec<u8>> = (0..size)
        .map(|n| format!("{{\"actor\":\"agent:{n}\",\"payload\":{{\"n\":{n}}}}}").into_bytes())
        .collect();
    let mut stored = Vec::new();
    let mut frontier = TreeFrontier::new();
    for leaf in &leaves {
        stored.extend(frontier.push_stored(leaf_hash(leaf)));
    }

    let log_key = SigningKey::from_bytes(&[0x11; 32]);
    let witness_key = SigningKey::from_bytes(&[0x22; 32]);
    let origin = "deferred-audit/0123456789abcdef/go-check";
    let checkpoint = TreeCheckpoint::new(origin, size, frontier.root()).unwrap();
    let mut note = checkpoint.sign(&log_key).unwrap();
    note.cosign("witness.example/go", &witness_key, 1_764_480_000)
        .unwrap();

    write(
        &out,
        "log.vkey",
        checkpoint
            .log_vkey(&log_key.verifying_key())
            .unwrap()
            .to_string(),
    );
    write(
        &out,
        "witness.vkey",
        Vkey::cosignature("witness.example/go", &witness_key.verifying_key())
            .unwrap()
            .to_string(),
    );
    write(&out, "checkpoint.note", note.to_string());
    let leaf_lines: String = leaves.iter().map(|l| BASE64.encode(l) + "\n").collect();
    write(&out, "leaves.txt", leaf_lines);
    let stored_lines: String = stored.iter().map(|h| b64(h) + "\n").collect();
    write(&out, "stored.txt", stored_lines);

    let mut expected_files = 0;
    for index in [0u64, 1, 63, 64, 100, 135, 136] {
        let proof = prove_inclusion(size, index, stored.as_slice()).unwrap();
        let file = InclusionProof::new(index, proof, note.clone());
        write(
            &out,
            &format!("record-{index}.tlog-proof"),
            file.to_string(),
        );
        expected_files += 1;
    }
    for old in [1u64, 2, 7, 64, 100, 136, 137] {
        let proof = prove_consistency(old, size, stored.as_slice()).unwrap();
        let file = ConsistencyProof::new(old, proof, note.clone());
        write(&out, &format!("from-{old}.consistency"), file.to_string());
        write(
            &out,
            &format!("from-{old}.old-root"),
            b64(&tree_hash(old, stored.as_slice()).unwrap()),
        );
        expected_files += 1;
    }
    // Negative controls: Go must reject these, or the check proves nothing.
    let proof = prove_inclusion(size, 100, stored.as_slice()).unwrap();
    let moved = InclusionProof::new(101, proof.clone(), note.clone());
    write(&out, "bad-moved-index.tlog-proof", moved.to_string());
    let mut altered = proof;
    altered[2].0[0] ^= 1;
    write(
        &out,
        "bad-altered-hash.tlog-proof",
        InclusionProof::new(100, altered, note.clone()).to_string(),
    );
    let proof = prove_consistency(64, size, stored.as_slice()).unwrap();
    write(
        &out,
        "bad-wrong-old-root.consistency",
        ConsistencyProof::new(64, proof, note.clone()).to_string(),
    );
    write(
        &out,
        "bad-wrong-old-root.old-root",
        b64(&tree_hash(63, stored.as_slice()).unwrap()),
    );
    let resized = note.to_string().replacen("\n137\n", "\n138\n", 1);
    write(
        &out,
        "bad-resized-note.tlog-proof",
        format!(
            "c2sp.org/tlog-proof@v1\nindex 0\n{}\n{resized}",
            prove_inclusion(size, 0, stored.as_slice())
                .unwrap()
                .iter()
                .map(|h| b64(h) + "\n")
                .collect::<String>()
        ),
    );
    expected_files += 4;

    let output = audit_testkit::go_checker::check(&out, &dir.path().join("gocache"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "Go's reference checker refused our artefacts:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ok checkpoint.note"), "{stdout}");
    assert!(stdout.contains("stored hashes equal tlog's"), "{stdout}");
    assert!(
        stdout.contains(&format!("checked {expected_files} proof files")),
        "{stdout}"
    );
    assert_eq!(stdout.matches(": rejected (").count(), 4, "{stdout}");
}
