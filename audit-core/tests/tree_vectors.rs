//! The transparency-log view of the good vector chain (FORMAT.md section 8),
//! against `good/tree.json` and the checkpoint notes made with Go's
//! reference sumdb/tlog and sumdb/note: every root, proof, vkey and note is
//! reproduced byte for byte.

use std::path::Path;

use audit_core::Digest;
use audit_core::chain::ChainId;
use audit_core::chain::note::{KeyType, Note, Vkey};
use audit_core::chain::proof::{ConsistencyProof, InclusionProof, TrustPolicy};
use audit_core::chain::tree::{
    TreeFrontier, check_consistency, check_inclusion, leaf_hash, prove_consistency,
    prove_inclusion, stored_hash_count, tree_hash,
};
use audit_core::chain::tree_checkpoint::{TreeCheckpoint, default_origin};
use audit_core::keys::PublicKey;
use audit_testkit::vectors::dir as vectors;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use serde_json::Value;

fn good(name: &str) -> std::path::PathBuf {
    vectors().join("good").join(name)
}

fn tree_json() -> Value {
    serde_json::from_str(&std::fs::read_to_string(good("tree.json")).unwrap()).unwrap()
}

/// The leaf data `E` of every record of the good chain, in seq order.
fn leaves() -> Vec<Vec<u8>> {
    let connection = rusqlite::Connection::open_with_flags(
        good("chain.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut statement = connection
        .prepare(
            "SELECT seq, event_json FROM audit_records WHERE chain_id = 'default' ORDER BY seq",
        )
        .unwrap();
    let rows: Vec<(i64, String)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (i, (seq, _)) in rows.iter().enumerate() {
        assert_eq!(*seq, i as i64 + 1, "the good chain has no gap");
    }
    rows.into_iter().map(|(_, e)| e.into_bytes()).collect()
}

/// Every stored hash of the good chain's tree.
fn stored() -> Vec<Digest> {
    let mut stored = Vec::new();
    let mut frontier = TreeFrontier::new();
    for leaf in leaves() {
        stored.extend(frontier.push_stored(leaf_hash(&leaf)));
    }
    stored
}

fn hash(value: &Value) -> Digest {
    Digest::from_slice(&BASE64.decode(value.as_str().unwrap()).unwrap()).unwrap()
}

fn hashes(value: &Value) -> Vec<Digest> {
    value.as_array().unwrap().iter().map(hash).collect()
}

fn secret(name: &str) -> SigningKey {
    SigningKey::from_pkcs8_pem(&std::fs::read_to_string(good(name)).unwrap()).unwrap()
}

fn public(name: &str) -> PublicKey {
    PublicKey::load(Path::new(&good(name))).unwrap()
}

fn read_note(name: &str) -> Vec<u8> {
    std::fs::read(good(name)).unwrap()
}

#[test]
fn roots_at_every_vector_size_match_tree_json() {
    let vector = tree_json();
    let stored = stored();
    let leaves = leaves();
    let roots = vector["roots"].as_object().unwrap();
    assert!(roots.len() >= 10);
    for (size, root) in roots {
        let size: u64 = size.parse().unwrap();
        assert_eq!(
            tree_hash(size, stored.as_slice()).unwrap(),
            hash(root),
            "root at {size}"
        );
        let mut frontier = TreeFrontier::new();
        leaves[..size as usize]
            .iter()
            .for_each(|leaf| frontier.push(leaf_hash(leaf)));
        assert_eq!(frontier.root(), hash(root), "frontier root at {size}");
        let rebuilt = TreeFrontier::from_reader(size, stored.as_slice()).unwrap();
        assert_eq!(
            rebuilt, frontier,
            "frontier rebuilt from stored hashes at {size}"
        );
    }
}

#[test]
fn inclusion_proofs_match_tree_json_and_verify() {
    let vector = tree_json();
    let stored = stored();
    let leaves = leaves();
    let cases = vector["inclusion"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let (size, index) = (
            case["size"].as_u64().unwrap(),
            case["index"].as_u64().unwrap(),
        );
        assert_eq!(case["seq"].as_u64().unwrap(), index + 1);
        let proof = prove_inclusion(size, index, stored.as_slice()).unwrap();
        assert_eq!(
            proof,
            hashes(&case["proof"]),
            "inclusion of {index} in {size}"
        );
        let root = tree_hash(size, stored.as_slice()).unwrap();
        check_inclusion(
            index,
            &leaf_hash(&leaves[index as usize]),
            size,
            &root,
            &proof,
        )
        .unwrap();
    }
}

#[test]
fn consistency_proofs_match_tree_json_and_verify() {
    let vector = tree_json();
    let stored = stored();
    let cases = vector["consistency"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let (new, old) = (
            case["size"].as_u64().unwrap(),
            case["old"].as_u64().unwrap(),
        );
        let proof = prove_consistency(old, new, stored.as_slice()).unwrap();
        assert_eq!(proof, hashes(&case["proof"]), "consistency {old} -> {new}");
        let old_root = tree_hash(old, stored.as_slice()).unwrap();
        let new_root = tree_hash(new, stored.as_slice()).unwrap();
        check_consistency(old, &old_root, new, &new_root, &proof).unwrap();
    }
}

#[test]
fn origin_and_vkeys_match_tree_json() {
    let vector = tree_json();
    let key = public("public.pem");
    let origin = default_origin(&key.key_id(), &ChainId::new("default").unwrap());
    assert_eq!(origin, vector["origin"].as_str().unwrap());
    let vkey = Vkey::ed25519(&origin, key.verifying_key()).unwrap();
    assert_eq!(vkey.to_string(), vector["vkey"].as_str().unwrap());
    assert_eq!(Vkey::parse(vector["vkey"].as_str().unwrap()).unwrap(), vkey);

    let witness = &vector["witness"];
    let witness_key = public("witness-public.pem");
    let witness_vkey = Vkey::cosignature(
        witness["name"].as_str().unwrap(),
        witness_key.verifying_key(),
    )
    .unwrap();
    assert_eq!(witness_vkey.to_string(), witness["vkey"].as_str().unwrap());
    let parsed = Vkey::parse(witness["vkey"].as_str().unwrap()).unwrap();
    assert_eq!(parsed.key_type(), KeyType::Cosignature);
    assert_eq!(parsed, witness_vkey);
}

#[test]
fn checkpoint_signed_with_secret_pem_is_the_vector_note_byte_for_byte() {
    let vector = tree_json();
    let stored = stored();
    let origin = vector["origin"].as_str().unwrap();
    let checkpoint =
        TreeCheckpoint::new(origin, 300, tree_hash(300, stored.as_slice()).unwrap()).unwrap();
    let note = checkpoint.sign(&secret("secret.pem")).unwrap();
    let expected = read_note(vector["checkpoint_note"].as_str().unwrap());
    assert_eq!(note.to_string().as_bytes(), expected.as_slice());

    let parsed = Note::parse(&expected).unwrap();
    assert_eq!(parsed, note);
    let vkey = Vkey::parse(vector["vkey"].as_str().unwrap()).unwrap();
    assert_eq!(TreeCheckpoint::verify(&parsed, &vkey).unwrap(), checkpoint);
}

#[test]
fn cosigned_note_verifies_with_witness_public_pem_and_is_reproduced_at_its_time() {
    let vector = tree_json();
    let witness = &vector["witness"];
    let time = witness["time"].as_u64().unwrap();
    let expected = read_note(witness["cosigned_note"].as_str().unwrap());

    let log = Vkey::parse(vector["vkey"].as_str().unwrap()).unwrap();
    let witness_vkey = Vkey::cosignature(
        witness["name"].as_str().unwrap(),
        public("witness-public.pem").verifying_key(),
    )
    .unwrap();
    let parsed = Note::parse(&expected).unwrap();
    let verified = parsed.verify(&[log.clone(), witness_vkey.clone()]).unwrap();
    assert_eq!(verified.len(), 2);
    assert_eq!(verified[1].name, witness["name"].as_str().unwrap());
    assert_eq!(verified[1].time, Some(time));

    let mut note = Note::parse(&read_note("tree-checkpoint-300.note")).unwrap();
    note.cosign(
        witness["name"].as_str().unwrap(),
        &secret("witness-secret.pem"),
        time,
    )
    .unwrap();
    assert_eq!(note.to_string().as_bytes(), expected.as_slice());

    let policy = TrustPolicy::new(log).with_witnesses(vec![witness_vkey], 1);
    let checked = policy.verify_note(&parsed).unwrap();
    assert_eq!(checked.checkpoint.size(), 300);
    assert_eq!(checked.cosignatures.len(), 1);
}

#[test]
fn proof_files_around_the_cosigned_vector_note_verify_under_a_one_witness_policy() {
    let vector = tree_json();
    let stored = stored();
    let leaves = leaves();
    let note = Note::parse(&read_note("tree-checkpoint-300.cosigned.note")).unwrap();
    let witness = &vector["witness"];
    let policy = TrustPolicy::new(Vkey::parse(vector["vkey"].as_str().unwrap()).unwrap())
        .with_witnesses(
            vec![Vkey::parse(witness["vkey"].as_str().unwrap()).unwrap()],
            1,
        );

    for index in [0u64, 149, 299] {
        let file = InclusionProof::new(
            index,
            prove_inclusion(300, index, stored.as_slice()).unwrap(),
            note.clone(),
        );
        let parsed = InclusionProof::parse(file.to_string().as_bytes()).unwrap();
        assert_eq!(parsed, file);
        let verified = parsed
            .verify_event(&leaves[index as usize], &policy)
            .unwrap();
        assert_eq!(verified.checkpoint.size(), 300);
    }
    for old in [0u64, 1, 150, 256, 299, 300] {
        let file = ConsistencyProof::new(
            old,
            prove_consistency(old, 300, stored.as_slice()).unwrap(),
            note.clone(),
        );
        let parsed = ConsistencyProof::parse(file.to_string().as_bytes()).unwrap();
        assert_eq!(parsed, file);
        parsed
            .verify(&tree_hash(old, stored.as_slice()).unwrap(), &policy)
            .unwrap();
    }
}

#[test]
fn stored_tree_data_of_the_good_chain_is_within_80_bytes_a_record() {
    let stored = stored();
    assert_eq!(stored.len() as u64, stored_hash_count(300));
    let bytes_per_record = stored.len() * 32 / 300;
    assert!(bytes_per_record <= 80, "{bytes_per_record} bytes a record");
}
