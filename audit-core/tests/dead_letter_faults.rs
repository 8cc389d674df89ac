//! Issue 12 on real files: the fallback dead-letter file after a full disk
//! and with damaged lines, and authenticated dead letters.

mod support;

use std::fs;
use std::io::Write;

use audit_core::AuditEvent;
use audit_core::chain::ChainId;
use audit_core::chain_writer::ChainSinkOptions;
use audit_core::dead_letter::{DeadLetter, DeadLetterAuthError, FallbackFile, ReplayOptions};
use audit_core::keys::{AuditSigner, Keyring};
use audit_testkit::sinks::MemoryChain;

fn letter(n: usize, payload_bytes: usize) -> DeadLetter {
    let event = AuditEvent::new(
        "dlq.fault",
        "agent:dlq",
        serde_json::json!({ "n": n, "pad": "x".repeat(payload_bytes) }),
    )
    .unwrap();
    DeadLetter::new(&ChainId::default(), &event, "sink down", 3)
}

#[test]
fn a_full_disk_leaves_no_torn_line_that_glues_onto_the_next_letter() {
    let tmpfs = support::Tmpfs::mount(64 * 1024);
    let file = FallbackFile::new(tmpfs.path().join("dlq").join("fallback.jsonl"));
    let first = letter(1, 10);
    file.append(std::slice::from_ref(&first)).unwrap();
    let filler = tmpfs.fill();
    // Larger than what is left of the file's page: a short write, then ENOSPC.
    let error = file.append(&[letter(2, 8192)]).unwrap_err();
    assert!(error.to_string().contains("No space left"), "{error}");
    fs::remove_file(&filler).unwrap();
    let third = letter(3, 10);
    file.append(std::slice::from_ref(&third)).unwrap();
    let contents = file.read().unwrap();
    assert_eq!(contents.letters, vec![first, third]);
    assert!(contents.skipped.is_empty(), "{:?}", contents.skipped);
    println!(
        "fallback disk-full (tmpfs): {} lines read, {} letters, {} skipped",
        contents.lines_read,
        contents.letters.len(),
        contents.skipped.len()
    );
}

#[test]
fn a_torn_line_is_terminated_skipped_with_its_number_and_later_lines_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fallback.jsonl");
    let file = FallbackFile::new(&path);
    let first = letter(1, 10);
    file.append(std::slice::from_ref(&first)).unwrap();
    // A crash in the middle of a line: half a letter, no newline.
    let whole = serde_json::to_string(&letter(2, 10)).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&whole.as_bytes()[..whole.len() / 2])
        .unwrap();
    let torn = file.read().unwrap();
    assert_eq!(torn.letters, vec![first.clone()]);
    assert_eq!(torn.skipped.len(), 1);
    assert_eq!(torn.skipped[0].line, 2);
    assert!(
        torn.skipped[0].reason.contains("torn last line"),
        "{:?}",
        torn.skipped
    );

    let third = letter(3, 10);
    file.append(std::slice::from_ref(&third)).unwrap();
    // A damaged line in the middle too.
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"not\": \"a letter\"}\n")
        .unwrap();
    let fourth = letter(4, 10);
    file.append(std::slice::from_ref(&fourth)).unwrap();
    let contents = file.read().unwrap();
    assert_eq!(contents.letters, vec![first, third, fourth]);
    assert_eq!(contents.lines_read, 5);
    let lines: Vec<usize> = contents
        .skipped
        .iter()
        .map(|skipped| skipped.line)
        .collect();
    assert_eq!(lines, vec![2, 4], "{:?}", contents.skipped);
}

#[tokio::test]
async fn replay_skips_bad_lines_and_refuses_unauthenticated_letters_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fallback.jsonl");
    let file = FallbackFile::new(&path);
    let signer = AuditSigner::generate();
    let signed = letter(1, 10).authenticated(&signer);
    let unsigned = letter(2, 10);
    let mut forged = letter(3, 10).authenticated(&signer);
    forged.event_json = letter(4, 10).event_json; // another event, same signature
    file.append(&[signed.clone(), unsigned, forged]).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"garbage\n")
        .unwrap();
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    let memory = MemoryChain::new();
    let mut sink = memory.sink(ChainSinkOptions::unsigned());
    let options = ReplayOptions::default().with_require_authenticated(Some(keyring));
    let report = file
        .replay_with(&mut sink, &ChainId::default(), &options)
        .await
        .unwrap();
    assert_eq!(report.appended, 1);
    assert_eq!(
        report.unauthenticated.len(),
        2,
        "{:?}",
        report.unauthenticated
    );
    assert!(matches!(
        report.unauthenticated[0].1,
        DeadLetterAuthError::Unsigned { .. }
    ));
    assert!(matches!(
        report.unauthenticated[1].1,
        DeadLetterAuthError::BadSignature { .. }
    ));
    assert_eq!(report.skipped_lines.len(), 1);
    assert_eq!(report.skipped_lines[0].line, 4);
    assert!(!report.is_complete());
    assert_eq!(memory.len(), 1);
}

#[test]
fn dead_letters_are_authenticated_by_the_writer_key() {
    let signer = AuditSigner::generate();
    let other = AuditSigner::generate();
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());

    let plain = letter(1, 10);
    assert!(matches!(
        plain.verify(&keyring),
        Err(DeadLetterAuthError::Unsigned { .. })
    ));
    let signed = plain.clone().authenticated(&signer);
    assert_eq!(
        signed.key_id.as_deref(),
        Some(signer.key_id().to_string().as_str())
    );
    assert_eq!(signed.verify(&keyring), Ok(()));
    let by_other = plain.clone().authenticated(&other);
    assert!(matches!(
        by_other.verify(&keyring),
        Err(DeadLetterAuthError::UnknownKey { .. })
    ));
    let mut half = signed.clone();
    half.sig = None;
    assert!(matches!(
        half.verify(&keyring),
        Err(DeadLetterAuthError::HalfSigned { .. })
    ));
    // Every field is covered.
    let changes: [fn(&mut DeadLetter); 6] = [
        |letter| letter.chain_id.push('x'),
        |letter| letter.event_id.push('x'),
        |letter| letter.event_json.push(' '),
        |letter| letter.failure_reason.push('x'),
        |letter| letter.failed_at.push('x'),
        |letter| letter.attempts += 1,
    ];
    for change in changes {
        let mut changed = signed.clone();
        change(&mut changed);
        assert!(
            matches!(
                changed.verify(&keyring),
                Err(DeadLetterAuthError::BadSignature { .. })
            ),
            "{changed:?}"
        );
    }
    // The hash is the documented one.
    let mut expected = b"audit-chain/v1/dead-letter\0".to_vec();
    for text in [&signed.chain_id, &signed.event_id] {
        expected.extend_from_slice(&(text.len() as u32).to_be_bytes());
        expected.extend_from_slice(text.as_bytes());
    }
    use sha2::Digest as _;
    expected.extend_from_slice(&sha2::Sha256::digest(signed.event_json.as_bytes()));
    for text in [&signed.failure_reason, &signed.failed_at] {
        expected.extend_from_slice(&(text.len() as u32).to_be_bytes());
        expected.extend_from_slice(text.as_bytes());
    }
    expected.extend_from_slice(&signed.attempts.to_be_bytes());
    assert_eq!(
        signed.authentication_hash().as_bytes(),
        sha2::Sha256::digest(&expected).as_slice()
    );

    // The JSON line format stays readable both ways.
    let old_line = r#"{"chain_id":"default","event_id":"e","event_json":"{}","failure_reason":"r","failed_at":"t","attempts":1}"#;
    let old: DeadLetter = serde_json::from_str(old_line).unwrap();
    assert!(!old.is_signed());
    assert_eq!(serde_json::to_string(&old).unwrap(), old_line);
    let line = serde_json::to_string(&signed).unwrap();
    assert_eq!(serde_json::from_str::<DeadLetter>(&line).unwrap(), signed);
}
