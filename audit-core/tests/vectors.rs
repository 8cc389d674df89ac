//! The shared test vectors: chains written by an independent implementation
//! of FORMAT.md must verify, re-seal and re-sign byte for byte, and every
//! tampered copy must be rejected at the stated seq.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use audit_core::chain::{
    ChainHead, ChainId, Checkpoint, EventColumns, FailureKind, Record, Sealer, SignMode, Verifier,
    VerifyOptions, VerifyReport, checkpoint_hash,
};
use audit_core::keys::{AuditSigner, PublicKey};
use audit_core::{AuditEvent, Digest, jsonl};
use audit_testkit::vectors::{dir as vectors, keyring};

fn blob32(row: &rusqlite::Row<'_>, index: usize) -> Digest {
    Digest::from_slice(&row.get::<_, Vec<u8>>(index).unwrap()).unwrap()
}

fn sqlite_records(path: &Path) -> Vec<Record> {
    let connection =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut statement = connection
        .prepare("SELECT chain_id, seq, event_id, event_type, actor, event_time, event_json, event_hash, prev_hash, record_hash, key_id, signature FROM audit_records ORDER BY chain_id, seq")
        .unwrap();
    statement
        .query_map([], |row| {
            Ok(Record {
                chain: ChainId::new(row.get::<_, String>(0)?).unwrap(),
                seq: row.get::<_, i64>(1)? as u64,
                columns: Some(EventColumns {
                    id: row.get::<_, String>(2)?.into(),
                    event_type: row.get::<_, String>(3)?.into(),
                    actor: row.get::<_, String>(4)?.into(),
                    time: row.get::<_, String>(5)?.into(),
                }),
                event_json: row.get::<_, String>(6)?.into(),
                event_hash: blob32(row, 7),
                prev: blob32(row, 8),
                hash: blob32(row, 9),
                key_id: row.get::<_, Option<String>>(10)?.map(Into::into),
                sig: row
                    .get::<_, Option<Vec<u8>>>(11)?
                    .map(|sig| sig.try_into().unwrap()),
            })
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn sqlite_checkpoints(path: &Path) -> Vec<Checkpoint> {
    let connection = rusqlite::Connection::open(path).unwrap();
    let mut statement = connection.prepare("SELECT chain_id, seq, head_hash, time, key_id, signature FROM audit_checkpoints ORDER BY seq").unwrap();
    statement
        .query_map([], |row| {
            Ok(Checkpoint {
                chain: ChainId::new(row.get::<_, String>(0)?).unwrap(),
                seq: row.get::<_, i64>(1)? as u64,
                head: blob32(row, 2),
                time: row.get(3)?,
                key_id: row.get(4)?,
                sig: row.get::<_, Vec<u8>>(5)?.try_into().unwrap(),
            })
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn jsonl_records(dir: &Path) -> Vec<Record> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir.join("default/records"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    names.sort();
    names
        .iter()
        .flat_map(|path| {
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .map(|line| jsonl::decode_record(line).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn jsonl_checkpoints(dir: &Path) -> Vec<Checkpoint> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir.join("default/checkpoints"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    names.sort();
    names
        .iter()
        .map(|path| jsonl::decode_checkpoint(&std::fs::read_to_string(path).unwrap()).unwrap())
        .collect()
}

fn verify(records: &[Record], checkpoints: &[Checkpoint]) -> VerifyReport {
    let mut verifier = Verifier::new(
        keyring(),
        VerifyOptions::default().with_require_signed(true),
    );
    checkpoints
        .iter()
        .for_each(|checkpoint| verifier.checkpoint(checkpoint));
    records.iter().for_each(|record| verifier.record(record));
    verifier.finish()
}

fn manifest_head() -> ChainHead {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(vectors().join("good/manifest.json")).unwrap(),
    )
    .unwrap();
    ChainHead {
        seq: manifest["head_seq"].as_u64().unwrap(),
        hash: Digest::from_hex(manifest["head_hash"].as_str().unwrap()).unwrap(),
    }
}

#[test]
fn good_sqlite_chain_verifies_with_its_checkpoints() {
    let path = vectors().join("good/chain.sqlite");
    let report = verify(&sqlite_records(&path), &sqlite_checkpoints(&path));
    assert!(report.is_ok(), "{:#?}", report.failures);
    assert_eq!(report.records, 300);
    assert_eq!(report.checkpoints, 6);
    let summary = &report.chains["default"];
    assert_eq!(
        (summary.head_seq, summary.head_hash.clone()),
        (manifest_head().seq, manifest_head().hash.to_hex())
    );
    assert_eq!(summary.signed, 300);
}

#[test]
fn good_jsonl_folder_verifies_and_matches_the_sqlite_copy() {
    let dir = vectors().join("good/jsonl");
    let records = jsonl_records(&dir);
    let report = verify(&records, &jsonl_checkpoints(&dir));
    assert!(report.is_ok(), "{:#?}", report.failures);
    assert_eq!(report.records, 300);
    let from_sqlite = sqlite_records(&vectors().join("good/chain.sqlite"));
    for (line, row) in records.iter().zip(&from_sqlite) {
        assert_eq!(
            (line.seq, &line.event_json, line.hash, line.sig),
            (row.seq, &row.event_json, row.hash, row.sig)
        );
    }
}

#[test]
fn every_good_record_reseals_and_recanonicalises_to_the_stored_bytes() {
    let records = sqlite_records(&vectors().join("good/chain.sqlite"));
    let signer = Arc::new(AuditSigner::load_unchecked_for_test(
        &vectors().join("good/secret.pem"),
    ));
    let sealer = Sealer::new(
        ChainId::new("default").unwrap(),
        Some(signer),
        SignMode::EveryRecord,
    );
    let mut head = ChainHead::EMPTY;
    for stored in &records {
        let event = AuditEvent::from_canonical(&stored.event_json).unwrap();
        assert_eq!(
            event.canonical_json(),
            stored.event_json,
            "seq {}",
            stored.seq
        );
        let value: serde_json::Value = serde_json::from_str(&stored.event_json).unwrap();
        assert_eq!(
            audit_core::canonical::canonicalize(&value).unwrap(),
            stored.event_json
        );
        let sealed = sealer.seal(head, &event);
        assert_eq!(&sealed, stored, "seq {}", stored.seq);
        head = sealed.head();
    }
    assert_eq!(head, manifest_head());
}

#[test]
fn batch_sealing_signs_the_vectors_identically() {
    let records = sqlite_records(&vectors().join("good/chain.sqlite"));
    let signer = Arc::new(AuditSigner::load_unchecked_for_test(
        &vectors().join("good/secret.pem"),
    ));
    let sealer = Sealer::new(
        ChainId::new("default").unwrap(),
        Some(signer),
        SignMode::EveryRecord,
    );
    let events: Vec<AuditEvent> = records
        .iter()
        .map(|record| AuditEvent::from_canonical(&record.event_json).unwrap())
        .collect();
    assert_eq!(sealer.seal_batch(ChainHead::EMPTY, &events), records);
}

#[test]
fn secret_key_signs_the_stored_checkpoints_and_matches_the_public_key() {
    let signer = AuditSigner::load_unchecked_for_test(&vectors().join("good/secret.pem"));
    let public = PublicKey::load(&vectors().join("good/public.pem")).unwrap();
    assert_eq!(signer.key_id(), public.key_id());
    assert_eq!(signer.key_id().to_string(), "1d62f877cd367d73");
    for checkpoint in sqlite_checkpoints(&vectors().join("good/chain.sqlite")) {
        let resigned = Checkpoint::sign_at(
            &checkpoint.chain,
            ChainHead {
                seq: checkpoint.seq,
                hash: checkpoint.head,
            },
            checkpoint.time.clone(),
            &signer,
        );
        assert_eq!(resigned, checkpoint);
        assert_eq!(
            checkpoint.hash(),
            checkpoint_hash(
                &checkpoint.chain,
                checkpoint.seq,
                &checkpoint.head,
                &checkpoint.time
            )
        );
    }
}

#[test]
fn every_tampered_copy_is_rejected_at_the_stated_seq() {
    let expectations = audit_testkit::vectors::tampered();
    assert_eq!(expectations.len(), 6);
    let good_checkpoints = jsonl_checkpoints(&vectors().join("good/jsonl"));
    for expectation in expectations {
        let path = vectors().join("tampered").join(&expectation.file);
        let (records, checkpoints) = if expectation.file.ends_with(".sqlite") {
            (sqlite_records(&path), sqlite_checkpoints(&path))
        } else {
            (jsonl_records(&path), good_checkpoints.clone())
        };
        let report = verify(&records, &checkpoints);
        let first = report
            .first_failure()
            .unwrap_or_else(|| panic!("{} ({}) was accepted", expectation.file, expectation.what));
        assert_eq!(
            Some(first.seq),
            expectation.first_bad_seq,
            "{}: {first}",
            expectation.file
        );
        assert_eq!(first.chain, "default");
    }
}

#[test]
fn tampered_kinds_name_what_was_done() {
    let kind_of = |file: &str| {
        let path = vectors().join("tampered").join(file);
        verify(&sqlite_records(&path), &sqlite_checkpoints(&path))
            .first_failure()
            .unwrap()
            .kind
    };
    assert_eq!(
        kind_of("payload_edit.sqlite"),
        FailureKind::EventHashMismatch
    );
    assert_eq!(
        kind_of("actor_column_edit.sqlite"),
        FailureKind::ColumnMismatch
    );
    assert_eq!(kind_of("row_deleted.sqlite"), FailureKind::SeqGap);
    assert_eq!(
        kind_of("signature_flipped.sqlite"),
        FailureKind::BadSignature
    );
}

#[test]
fn truncated_jsonl_chain_is_caught_by_external_checkpoints() {
    let records = jsonl_records(&vectors().join("good/jsonl"));
    let report = verify(
        &records[..220],
        &jsonl_checkpoints(&vectors().join("good/jsonl")),
    );
    let truncated: Vec<u64> = report
        .failures
        .iter()
        .filter(|failure| failure.kind == FailureKind::Truncated)
        .map(|failure| failure.seq)
        .collect();
    assert_eq!(truncated, [250, 300]);
}

#[test]
fn jsonl_codec_reencodes_every_vector_line_and_checkpoint_byte_for_byte() {
    let dir = vectors().join("good/jsonl/default");
    let mut lines = 0;
    for entry in std::fs::read_dir(dir.join("records")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.split_inclusive('\n') {
            assert_eq!(
                jsonl::encode_record(&jsonl::decode_record(line).unwrap()),
                line
            );
            lines += 1;
        }
    }
    assert_eq!(lines, 300);
    for entry in std::fs::read_dir(dir.join("checkpoints")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let checkpoint = jsonl::decode_checkpoint(&text).unwrap();
        assert_eq!(jsonl::encode_checkpoint(&checkpoint), text.trim_end());
        assert_eq!(
            jsonl::checkpoint_name(checkpoint.seq),
            path.file_name().unwrap().to_str().unwrap()
        );
    }
}

#[test]
fn parallel_batch_sealing_is_byte_identical_to_sequential_sealing_past_the_threshold() {
    let signer = Arc::new(AuditSigner::load_unchecked_for_test(
        &vectors().join("good/secret.pem"),
    ));
    let sealer = Sealer::new(
        ChainId::new("default").unwrap(),
        Some(signer),
        SignMode::EveryRecord,
    );
    let events: Vec<AuditEvent> = (0..3_000u64)
        .map(|n| {
            AuditEvent::new(
                "governance.refusal",
                "agent:alice",
                serde_json::json!({"rule": "R001", "request": n}),
            )
            .unwrap()
        })
        .collect();
    let mut head = ChainHead::EMPTY;
    let sequential: Vec<_> = events
        .iter()
        .map(|event| {
            let record = sealer.seal(head, event);
            head = record.head();
            record
        })
        .collect();
    // Large batches are signed on every core; batches of 1 and 63 stay
    // below the parallel threshold. All must give the same bytes.
    assert_eq!(sealer.seal_batch(ChainHead::EMPTY, &events), sequential);
    let mut pieces = Vec::new();
    let mut head = ChainHead::EMPTY;
    for chunk in [
        &events[..1],
        &events[1..64],
        &events[64..1_000],
        &events[1_000..],
    ] {
        let records = sealer.seal_batch(head, chunk);
        head = records.last().unwrap().head();
        pieces.extend(records);
    }
    assert_eq!(pieces, sequential);
    assert!(sequential.iter().all(|record| record.sig.is_some()));
}
