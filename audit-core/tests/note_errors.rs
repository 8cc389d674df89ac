//! Tampered and malformed notes, vkeys, checkpoints and proof files
//! (FORMAT.md sections 8.2 to 8.4) are refused with typed errors.

use audit_core::Digest;
use audit_core::chain::note::{MAX_SIGNATURES, Note, NoteError, NoteSignature, Vkey};
use audit_core::chain::proof::{ConsistencyProof, InclusionProof, ProofFileError, TrustPolicy};
use audit_core::chain::tree::{ProofError, TreeFrontier, leaf_hash, prove_inclusion};
use audit_core::chain::tree_checkpoint::{TreeCheckpoint, TreeCheckpointError};
use ed25519_dalek::SigningKey;

const ORIGIN: &str = "example.org/log";
const WITNESS: &str = "witness.example/w1";

fn log_key() -> SigningKey {
    SigningKey::from_bytes(&[1; 32])
}

fn witness_key() -> SigningKey {
    SigningKey::from_bytes(&[2; 32])
}

fn log_vkey() -> Vkey {
    Vkey::ed25519(ORIGIN, &log_key().verifying_key()).unwrap()
}

fn witness_vkey() -> Vkey {
    Vkey::cosignature(WITNESS, &witness_key().verifying_key()).unwrap()
}

fn checkpoint() -> TreeCheckpoint {
    TreeCheckpoint::new(ORIGIN, 5, leaf_hash(b"root")).unwrap()
}

fn signed_text() -> String {
    checkpoint().sign(&log_key()).unwrap().to_string()
}

fn verify_text(text: &str) -> Result<TreeCheckpoint, TreeCheckpointError> {
    let note = Note::parse(text.as_bytes())?;
    TreeCheckpoint::verify(&note, &log_vkey())
}

fn invalid_log_signature(result: Result<TreeCheckpoint, TreeCheckpointError>) -> bool {
    matches!(
        result,
        Err(TreeCheckpointError::Note(NoteError::InvalidSignature { ref name, .. })) if name == ORIGIN
    )
}

#[test]
fn untampered_checkpoint_note_verifies() {
    assert_eq!(verify_text(&signed_text()).unwrap(), checkpoint());
}

#[test]
fn flipped_signature_byte_is_an_invalid_signature() {
    let note = Note::parse(signed_text().as_bytes()).unwrap();
    let mut signature = note.signatures()[0].clone();
    signature.payload[10] ^= 0x01;
    let mut tampered = Note::new(note.body()).unwrap();
    tampered.push_signature(signature).unwrap();
    assert!(invalid_log_signature(TreeCheckpoint::verify(
        &tampered,
        &log_vkey()
    )));
}

#[test]
fn changed_size_root_or_origin_in_the_body_is_an_invalid_signature() {
    let text = signed_text();
    let size_changed = text.replacen("\n5\n", "\n6\n", 1);
    assert_ne!(size_changed, text);
    assert!(invalid_log_signature(verify_text(&size_changed)));

    let root_line = text.lines().nth(2).unwrap().to_owned();
    let root_changed = text.replacen(&root_line, &format!("{}=", "A".repeat(43)), 1);
    assert_ne!(root_changed, text);
    assert!(invalid_log_signature(verify_text(&root_changed)));

    let origin_changed = text.replacen("example.org/log\n", "example.org/lag\n", 1);
    assert!(invalid_log_signature(verify_text(&origin_changed)));
}

#[test]
fn missing_final_newline_is_refused() {
    let text = signed_text();
    let cut = text.strip_suffix('\n').unwrap();
    assert_eq!(
        Note::parse(cut.as_bytes()),
        Err(NoteError::SignaturesNotTerminated)
    );
    assert_eq!(Note::new("no newline"), Err(NoteError::BodyNotTerminated));
    assert_eq!(Note::parse(b"body\n"), Err(NoteError::NoSignatureBlock));
}

#[test]
fn wrong_key_hash_leaves_no_log_signature() {
    let note = Note::parse(signed_text().as_bytes()).unwrap();
    let mut signature = note.signatures()[0].clone();
    signature.key_hash ^= 1;
    let mut tampered = Note::new(note.body()).unwrap();
    tampered.push_signature(signature).unwrap();
    assert!(matches!(
        TreeCheckpoint::verify(&tampered, &log_vkey()),
        Err(TreeCheckpointError::LogSignatureMissing { .. })
    ));
}

#[test]
fn unknown_signature_lines_are_ignored_and_a_note_of_only_unknown_keys_is_refused() {
    let mut note = checkpoint().sign(&log_key()).unwrap();
    note.sign("other.example/log", &SigningKey::from_bytes(&[3; 32]))
        .unwrap();
    let parsed = Note::parse(note.to_string().as_bytes()).unwrap();
    assert_eq!(
        TreeCheckpoint::verify(&parsed, &log_vkey()).unwrap(),
        checkpoint()
    );
    assert_eq!(
        parsed.verify(&[witness_vkey()]),
        Err(NoteError::NoKnownSignature)
    );
}

#[test]
fn malformed_signature_lines_are_refused() {
    let body = checkpoint().body();
    let sig_line = signed_text().lines().last().unwrap().to_owned();
    let cases = [
        sig_line.replacen('\u{2014}', "-", 1),
        sig_line.replacen(' ', "", 1),
        sig_line.trim_end_matches('=').to_owned(),
        format!("{sig_line}!"),
        "\u{2014} name AAAA".to_owned(),
        sig_line.replacen(ORIGIN, "a+b", 1),
    ];
    for line in cases {
        let text = format!("{body}\n{line}\n");
        assert!(
            matches!(
                Note::parse(text.as_bytes()),
                Err(NoteError::MalformedSignature { line: 1, .. })
            ),
            "{line:?}"
        );
    }
}

#[test]
fn control_characters_invalid_utf8_and_oversized_notes_are_refused() {
    assert!(matches!(
        Note::parse(b"a\tb\n\n\xe2\x80\x94 n AAAAAA==\n"),
        Err(NoteError::ControlCharacter {
            byte: b'\t',
            offset: 1
        })
    ));
    assert_eq!(Note::parse(b"\xff\n\n"), Err(NoteError::NotUtf8));
    let big = vec![b'a'; audit_core::chain::note::MAX_NOTE_BYTES + 1];
    assert!(matches!(Note::parse(&big), Err(NoteError::TooLarge { .. })));
}

#[test]
fn duplicate_and_too_many_signature_lines_are_refused() {
    let text = signed_text();
    let line = text.lines().last().unwrap();
    let twice = format!("{text}{line}\n");
    assert!(matches!(
        Note::parse(twice.as_bytes()),
        Err(NoteError::DuplicateSignature { .. })
    ));
    let mut note = Note::new("body\n").unwrap();
    for n in 0..MAX_SIGNATURES as u32 {
        note.push_signature(NoteSignature {
            name: "k".into(),
            key_hash: n,
            payload: vec![0; 64],
        })
        .unwrap();
    }
    let extra = NoteSignature {
        name: "k".into(),
        key_hash: 1000,
        payload: vec![0; 64],
    };
    assert_eq!(
        note.push_signature(extra.clone()),
        Err(NoteError::TooManySignatures)
    );
    let text = format!("{note}{extra}\n");
    assert_eq!(
        Note::parse(text.as_bytes()),
        Err(NoteError::TooManySignatures)
    );
}

#[test]
fn invalid_key_names_are_refused() {
    for name in ["", "a b", "a+b", "a\u{00a0}b", "a\u{2003}b"] {
        assert!(
            matches!(
                Vkey::ed25519(name, &log_key().verifying_key()),
                Err(NoteError::InvalidKeyName { .. })
            ),
            "{name:?}"
        );
        assert!(
            matches!(
                TreeCheckpoint::new(name, 1, Digest::ZERO),
                Err(TreeCheckpointError::InvalidOrigin { .. })
            ),
            "{name:?}"
        );
    }
}

#[test]
fn malformed_vkeys_are_refused() {
    let good = log_vkey().to_string();
    let (name, rest) = good.split_once('+').unwrap();
    let (hash, key) = rest.split_once('+').unwrap();
    let wrong_hash = format!(
        "{name}+{:08x}+{key}",
        u32::from_str_radix(hash, 16).unwrap() ^ 1
    );
    let cases = [
        wrong_hash,
        format!("{name}+{hash}"),
        format!("{name}+{}+{key}", &hash[..7]),
        format!("{name}+{hash}+{}", &key[..key.len() - 1]),
        format!("{name}+{hash}+AgAA"),
        format!("{name}+{hash}+AQAA"),
    ];
    for vkey in cases {
        assert!(
            matches!(Vkey::parse(&vkey), Err(NoteError::InvalidVkey { .. })),
            "{vkey:?}"
        );
    }
    assert_eq!(Vkey::parse(&good).unwrap(), log_vkey());
}

#[test]
fn malformed_checkpoint_bodies_are_refused() {
    let root = checkpoint().body().lines().nth(2).unwrap().to_owned();
    type Expect = fn(&TreeCheckpointError) -> bool;
    let cases: [(String, Expect); 6] = [
        (format!("{ORIGIN}\n05\n{root}\n"), |e| {
            matches!(e, TreeCheckpointError::InvalidSize { .. })
        }),
        (format!("{ORIGIN}\n+5\n{root}\n"), |e| {
            matches!(e, TreeCheckpointError::InvalidSize { .. })
        }),
        (format!("{ORIGIN}\n18446744073709551616\n{root}\n"), |e| {
            matches!(e, TreeCheckpointError::InvalidSize { .. })
        }),
        (format!("{ORIGIN}\n5\nAAAA\n"), |e| {
            matches!(e, TreeCheckpointError::InvalidRoot { .. })
        }),
        (format!("{ORIGIN}\n5\n{root}\nextension\n"), |e| {
            matches!(e, TreeCheckpointError::WrongLineCount { lines: 4 })
        }),
        (format!("{ORIGIN}\n5\n{root}"), |e| {
            matches!(e, TreeCheckpointError::WrongLineCount { .. })
        }),
    ];
    for (body, expected) in cases {
        let error = TreeCheckpoint::parse_body(&body).unwrap_err();
        assert!(expected(&error), "{body:?}: {error:?}");
    }
    assert_eq!(
        TreeCheckpoint::parse_body(&format!("{ORIGIN}\n18446744073709551615\n{root}\n"))
            .unwrap()
            .size(),
        u64::MAX
    );
}

#[test]
fn checkpoint_of_another_origin_signed_by_the_log_key_is_refused() {
    let other = TreeCheckpoint::new("example.org/other", 5, Digest::ZERO).unwrap();
    let mut note = Note::new(other.body()).unwrap();
    note.sign(ORIGIN, &log_key()).unwrap();
    assert!(matches!(
        TreeCheckpoint::verify(&note, &log_vkey()),
        Err(TreeCheckpointError::OriginMismatch { .. })
    ));
}

fn proof_fixture() -> (Vec<Digest>, Vec<Digest>, Note) {
    let mut stored = Vec::new();
    let mut leaves = Vec::new();
    let mut frontier = TreeFrontier::new();
    for n in 0..5u8 {
        let leaf = leaf_hash(&[n]);
        leaves.push(leaf);
        stored.extend(frontier.push_stored(leaf));
    }
    let mut note = TreeCheckpoint::new(ORIGIN, 5, frontier.root())
        .unwrap()
        .sign(&log_key())
        .unwrap();
    note.cosign(WITNESS, &witness_key(), 1_764_480_000).unwrap();
    (stored, leaves, note)
}

#[test]
fn witness_quorum_counts_distinct_valid_cosignatures() {
    let (stored, leaves, note) = proof_fixture();
    let file = InclusionProof::new(1, prove_inclusion(5, 1, stored.as_slice()).unwrap(), note);
    let second = Vkey::cosignature(
        "witness.example/w2",
        &SigningKey::from_bytes(&[4; 32]).verifying_key(),
    )
    .unwrap();
    let one = TrustPolicy::new(log_vkey()).with_witnesses(vec![witness_vkey(), second.clone()], 1);
    assert_eq!(file.verify(&leaves[1], &one).unwrap().cosignatures.len(), 1);
    let two = TrustPolicy::new(log_vkey())
        .with_witnesses(vec![witness_vkey(), witness_vkey(), second], 2);
    assert_eq!(
        file.verify(&leaves[1], &two),
        Err(ProofFileError::Quorum {
            valid: 1,
            required: 2
        })
    );
    // A witness's key given as a log-type (0x01) vkey never counts.
    let wrong_type = Vkey::ed25519(WITNESS, &witness_key().verifying_key()).unwrap();
    let policy = TrustPolicy::new(log_vkey()).with_witnesses(vec![wrong_type], 1);
    assert!(matches!(
        file.verify(&leaves[1], &policy),
        Err(ProofFileError::Quorum { valid: 0, .. })
    ));
}

#[test]
fn tampered_cosignature_of_a_configured_witness_rejects_the_note() {
    let (_, _, note) = proof_fixture();
    let mut tampered = Note::new(note.body()).unwrap();
    tampered
        .push_signature(note.signatures()[0].clone())
        .unwrap();
    let mut cosignature = note.signatures()[1].clone();
    cosignature.payload[7] ^= 1; // the time
    tampered.push_signature(cosignature).unwrap();
    let policy = TrustPolicy::new(log_vkey()).with_witnesses(vec![witness_vkey()], 1);
    assert!(matches!(
        policy.verify_note(&tampered),
        Err(ProofFileError::Note(NoteError::InvalidSignature { ref name, .. })) if name == WITNESS
    ));
}

#[test]
fn inclusion_proof_file_for_the_wrong_leaf_or_index_is_refused() {
    let (stored, leaves, note) = proof_fixture();
    let policy = TrustPolicy::new(log_vkey());
    let file = InclusionProof::new(1, prove_inclusion(5, 1, stored.as_slice()).unwrap(), note);
    assert!(matches!(
        file.verify(&leaves[2], &policy),
        Err(ProofFileError::Proof(ProofError::RootMismatch { .. }))
    ));
    let text = file.to_string().replacen("index 1\n", "index 2\n", 1);
    let moved = InclusionProof::parse(text.as_bytes()).unwrap();
    assert!(matches!(
        moved.verify(&leaves[1], &policy),
        Err(ProofFileError::Proof(_))
    ));
    let text = file.to_string().replacen("index 1\n", "index 5\n", 1);
    assert!(matches!(
        InclusionProof::parse(text.as_bytes())
            .unwrap()
            .verify(&leaves[1], &policy),
        Err(ProofFileError::Proof(ProofError::IndexBeyondSize {
            index: 5,
            size: 5
        }))
    ));
}

#[test]
fn malformed_proof_files_are_refused_with_their_line() {
    let (stored, _, note) = proof_fixture();
    let mut file = InclusionProof::new(
        1,
        prove_inclusion(5, 1, stored.as_slice()).unwrap(),
        note.clone(),
    );
    file.extra = Some(b"opaque".to_vec());
    let text = file.to_string();
    assert_eq!(InclusionProof::parse(text.as_bytes()).unwrap(), file);
    let cases = [
        (
            text.replacen("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2", 1),
            1,
        ),
        (text.replacen("extra b3BhcXVl", "extra b3BhcXVl=", 1), 2),
        (text.replacen("index 1", "index 01", 1), 3),
        (text.replacen("index 1", "idx 1", 1), 3),
        (text.replacen("\n\n", "\nAAAA\n\n", 1), 7),
    ];
    for (bad, line) in cases {
        let error = InclusionProof::parse(bad.as_bytes()).unwrap_err();
        assert!(
            matches!(error, ProofFileError::Malformed { line: l, .. } if l == line),
            "{bad:?}: {error:?}"
        );
    }
    let consistency = format!("old 3\nAAAA\n\n{note}");
    assert!(matches!(
        ConsistencyProof::parse(consistency.as_bytes()),
        Err(ProofFileError::Malformed { line: 2, .. })
    ));
    let too_many = format!(
        "old 3\n{}\n{note}",
        format!("{}\n", "A".repeat(43) + "=").repeat(65)
    );
    assert_eq!(
        ConsistencyProof::parse(too_many.as_bytes()),
        Err(ProofFileError::TooManyHashes)
    );
    let no_note = "old 0\n\n";
    assert!(matches!(
        ConsistencyProof::parse(no_note.as_bytes()),
        Err(ProofFileError::Note(NoteError::NoSignatureBlock))
    ));
}
