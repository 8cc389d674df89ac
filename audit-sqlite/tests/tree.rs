//! The chain's tree in a SQLite file, against the vectors made by Go's
//! reference sumdb/tlog and sumdb/note (`good/tree.json`): a file written
//! before the tree existed is migrated, its tree grown from the records,
//! and the writer's tree checkpoint and the proofs read back from the file
//! are the vectors' byte for byte.

use std::path::PathBuf;

use audit_core::chain::ChainId;
use audit_core::chain::tree_checkpoint::TreeCheckpoint;
use audit_core::chain_writer::{ChainSinkOptions, ChainWriter};
use audit_core::keys::{AuditSigner, Keyring};
use audit_core::proving::{newest_tree_checkpoint, prove_consistency, prove_inclusion};
use audit_core::sink::AuditSink;
use audit_core::verification::{SourceVerifyOptions, verify_source};
use audit_core::{AuditEvent, Digest};
use audit_sqlite::{SqliteOptions, SqliteSource, SqliteStore};
use audit_testkit::vectors::dir as vectors;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

fn good(name: &str) -> PathBuf {
    vectors().join("good").join(name)
}

fn b64(hashes: &[Digest]) -> Vec<String> {
    hashes.iter().map(|h| BASE64.encode(h.as_bytes())).collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_migrated_vector_file_signs_and_proves_what_go_made_byte_for_byte() {
    let tree: Value =
        serde_json::from_str(&std::fs::read_to_string(good("tree.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain.sqlite");
    std::fs::copy(good("chain.sqlite"), &path).unwrap();
    let signer = std::sync::Arc::new(AuditSigner::load_unchecked_for_test(&good("secret.pem")));
    let chain = ChainId::default();

    // Opening as a writer migrates the file and grows the tree; the
    // checkpoint signs it.
    let store = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .unwrap();
    let options = ChainSinkOptions::signed(signer.clone());
    assert_eq!(options.tree_origin(), tree["origin"].as_str().unwrap());
    let mut writer = ChainWriter::new(store, options);
    writer.checkpoint().await.unwrap();
    drop(writer);

    let source = SqliteSource::open(&path).unwrap();
    let note = newest_tree_checkpoint(&source, &chain).await.unwrap();
    let expected = std::fs::read_to_string(good("tree-checkpoint-300.note")).unwrap();
    assert_eq!(note.to_string(), expected);

    let note_at = |size: u64| {
        let root = tree["roots"][size.to_string()].as_str().unwrap();
        let root = Digest::from_slice(&BASE64.decode(root).unwrap()).unwrap();
        TreeCheckpoint::new(tree["origin"].as_str().unwrap(), size, root)
            .unwrap()
            .sign(signer.as_ref())
            .unwrap()
    };
    for case in tree["inclusion"].as_array().unwrap() {
        let (size, seq) = (
            case["size"].as_u64().unwrap(),
            case["seq"].as_u64().unwrap(),
        );
        let proof = prove_inclusion(&source, &chain, seq, &note_at(size))
            .await
            .unwrap();
        assert_eq!(proof.index, case["index"].as_u64().unwrap());
        assert_eq!(
            b64(&proof.proof),
            strings(&case["proof"]),
            "seq {seq} of {size}"
        );
    }
    for case in tree["consistency"].as_array().unwrap() {
        let (size, old) = (
            case["size"].as_u64().unwrap(),
            case["old"].as_u64().unwrap(),
        );
        let proof = prove_consistency(&source, &chain, old, &note_at(size))
            .await
            .unwrap();
        assert_eq!(
            b64(&proof.proof),
            strings(&case["proof"]),
            "{old} to {size}"
        );
    }

    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    let report = verify_source(&source, &keyring, SourceVerifyOptions::default())
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.chains["default"].tree_checkpoints, 1);
}

#[tokio::test]
async fn a_tree_left_behind_by_raw_inserts_catches_up_in_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let signer = std::sync::Arc::new(AuditSigner::generate());
    let events: Vec<AuditEvent> = (0..40)
        .map(|n| AuditEvent::new("t", "a", serde_json::json!({ "n": n })).unwrap())
        .collect();
    let mut store = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .unwrap();
    // Records written without the tree (as `bench` does), then an append.
    let sealer = ChainSinkOptions::signed(signer.clone()).sealer();
    let records = sealer.seal_batch(audit_core::ChainHead::EMPTY, &events[..25]);
    audit_sqlite::store::insert_sealed_blocking(&mut store, &records).unwrap();
    let mut writer = ChainWriter::new(store, ChainSinkOptions::signed(signer.clone()));
    writer.append_batch(&events[25..]).await.unwrap();
    writer.checkpoint().await.unwrap();
    drop(writer);

    let source = SqliteSource::open(&path).unwrap();
    let chain = ChainId::default();
    let note = newest_tree_checkpoint(&source, &chain).await.unwrap();
    assert!(note.body().contains("\n40\n"), "{}", note.body());
    for seq in [1, 17, 25, 26, 40] {
        let proof = prove_inclusion(&source, &chain, seq, &note).await.unwrap();
        assert_eq!(
            proof.extra.as_deref(),
            Some(events[seq as usize - 1].canonical_json().as_bytes())
        );
    }
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    let report = verify_source(&source, &keyring, SourceVerifyOptions::default())
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.failures);
}

#[tokio::test]
async fn a_damaged_tree_row_yields_an_error_or_a_recomputed_proof_never_a_wrong_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let signer = std::sync::Arc::new(AuditSigner::generate());
    let events: Vec<AuditEvent> = (0..64)
        .map(|n| AuditEvent::new("t", "a", serde_json::json!({ "n": n })).unwrap())
        .collect();
    let store = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .unwrap();
    let mut writer = ChainWriter::new(store, ChainSinkOptions::signed(signer.clone()));
    writer.append_batch(&events).await.unwrap();
    writer.checkpoint().await.unwrap();
    drop(writer);
    let chain = ChainId::default();
    let source = SqliteSource::open(&path).unwrap();
    let note = newest_tree_checkpoint(&source, &chain).await.unwrap();

    // A flipped bit in a stored subtree root: the proof would not lead to
    // the signed root, so none is handed out.
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute(
                "UPDATE audit_tree_nodes SET hashes = zeroblob(length(hashes)) WHERE seq = 32",
                [],
            )
            .unwrap();
    }
    let error = prove_inclusion(&source, &chain, 1, &note)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("altered"), "{error}");

    // A deleted tree row: the proof is recomputed from the records, and holds.
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute("DELETE FROM audit_tree_nodes WHERE seq = 32", [])
            .unwrap();
    }
    let proof = prove_inclusion(&source, &chain, 1, &note).await.unwrap();
    let policy = audit_core::chain::proof::TrustPolicy::new(
        audit_core::chain::note::Vkey::ed25519(
            &ChainSinkOptions::signed(signer.clone()).tree_origin(),
            signer.public_key().verifying_key(),
        )
        .unwrap(),
    );
    proof
        .verify_event(events[0].canonical_json().as_bytes(), &policy)
        .unwrap();
}
