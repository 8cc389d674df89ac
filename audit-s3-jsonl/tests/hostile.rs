//! Hostile archives, read through [`ArchiveSource`] and checked by the
//! core's one verifier (`verify_source`): every object under the prefix is
//! accounted for, and each tamper fails with the same kind at the same seq
//! on memory, a local folder and moto's S3 server.
//!
//! The base chain: `default`, 12 signed records in four segments (seqs 1,
//! 4, 7, 10), checkpoints at 6 and 12.

mod common;

use std::sync::Arc;

use audit_core::chain::{FailureKind, VerifyReport};
use audit_core::chain_writer::CheckpointPolicy;
use audit_core::jsonl::encode_record;
use audit_core::keys::AuditSigner;
use audit_core::sink::AuditSink;
use audit_core::store::{ChainSource, SourceRecord};
use audit_core::{AuditEvent, ChainId};
use audit_s3_jsonl::{ArchiveOptions, ArchiveSource, open_sink};
use audit_testkit::servers::s3::MotoServer;
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};

/// One tamper: what it does to the archive, and the first failure expected.
struct Case {
    name: &'static str,
    tamper: fn() -> Vec<Change>,
    kind: FailureKind,
    seq: u64,
    detail: &'static str,
}

/// A change to the archive under a prefix.
enum Change {
    /// Copy an object to another path.
    Copy(&'static str, String),
    /// Rewrite an object through a function of its text.
    Edit(&'static str, fn(&str) -> String),
    /// Move an object.
    Rename(&'static str, &'static str),
    /// Delete every object under a folder.
    DeleteAll(&'static str),
    /// Put an object with this text.
    Put(String, String),
}

fn segment(seq: u64) -> String {
    format!("default/records/{seq:020}.jsonl")
}

const CASES: &[Case] = &[
    Case {
        name: "a chain folder named .hidden",
        tamper: || {
            vec![Change::Copy(
                "default/records/00000000000000000001.jsonl",
                ".hidden/records/00000000000000000001.jsonl".into(),
            )]
        },
        kind: FailureKind::Stray,
        seq: 1,
        detail: ".hidden/records/00000000000000000001.jsonl",
    },
    Case {
        name: "a chain folder named `bad name`",
        tamper: || {
            vec![Change::Copy(
                "default/records/00000000000000000001.jsonl",
                "bad name/records/00000000000000000001.jsonl".into(),
            )]
        },
        kind: FailureKind::Stray,
        seq: 1,
        detail: "bad name/records/00000000000000000001.jsonl",
    },
    Case {
        name: "an object outside the layout in a chain folder",
        tamper: || vec![Change::Put("default/notes.txt".into(), "hello".into())],
        kind: FailureKind::Stray,
        seq: 0,
        detail: "default/notes.txt",
    },
    Case {
        name: "a record line with an unknown member",
        tamper: || {
            vec![Change::Edit(
                "default/records/00000000000000000004.jsonl",
                |text| {
                    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
                    lines[1] = lines[1].replacen("{\"v\":1,", "{\"v\":1,\"extra\":true,", 1);
                    lines.join("\n") + "\n"
                },
            )]
        },
        kind: FailureKind::Malformed,
        seq: 5,
        detail: "unknown field `extra`",
    },
    Case {
        name: "a record of chain `other` in chain `default`'s folder",
        tamper: || vec![Change::Put(segment(13), other_chain_line(13))],
        kind: FailureKind::Stray,
        seq: 13,
        detail: "a record of chain other is filed under chain default",
    },
    Case {
        name: "every record deleted, the checkpoints kept",
        tamper: || vec![Change::DeleteAll("default/records")],
        kind: FailureKind::Truncated,
        seq: 6,
        detail: "beyond the chain's head",
    },
    Case {
        name: "a segment without its final newline",
        tamper: || {
            vec![Change::Edit(
                "default/records/00000000000000000010.jsonl",
                |text| text.trim_end_matches('\n').to_owned(),
            )]
        },
        kind: FailureKind::Malformed,
        seq: 12,
        detail: "no final newline",
    },
    Case {
        name: "a segment not named after its first record",
        tamper: || {
            vec![Change::Rename(
                "default/records/00000000000000000007.jsonl",
                "default/records/00000000000000000008.jsonl",
            )]
        },
        kind: FailureKind::Malformed,
        seq: 8,
        detail: "named for seq 8 but its first record has seq 7",
    },
    Case {
        name: "a checkpoint that does not decode",
        tamper: || {
            vec![Change::Put(
                "default/checkpoints/00000000000000000006.json".into(),
                "{\"v\":1}".into(),
            )]
        },
        kind: FailureKind::Malformed,
        seq: 6,
        detail: "checkpoint",
    },
    Case {
        name: "an empty segment",
        tamper: || vec![Change::Put(segment(13), String::new())],
        kind: FailureKind::Malformed,
        seq: 13,
        detail: "empty segment",
    },
];

/// A record line of chain `other` at `seq` (its hashes are its own).
fn other_chain_line(seq: u64) -> String {
    let sealer = audit_core::chain::Sealer::new(
        ChainId::new("other").unwrap(),
        None,
        audit_core::chain::SignMode::EveryRecord,
    );
    let event = AuditEvent::new("t", "intruder", serde_json::json!(seq)).unwrap();
    let head = audit_core::ChainHead {
        seq: seq - 1,
        hash: audit_core::Digest([1; 32]),
    };
    encode_record(&sealer.seal(head, &event))
}

/// Writes the base chain under `prefix`.
async fn base_chain(store: &Arc<dyn ObjectStore>, prefix: &Path, signer: &Arc<AuditSigner>) {
    let options = common::options("default", signer).with_checkpoints(CheckpointPolicy {
        every_records: Some(6),
        every: None,
    });
    let mut sink = open_sink(
        store.clone(),
        prefix.clone(),
        options,
        ArchiveOptions::default(),
    )
    .await
    .unwrap();
    for batch in 0..4 {
        sink.append_batch(&common::events(&format!("b{batch}"), 3))
            .await
            .unwrap();
    }
    let paths = common::object_paths(store.as_ref(), prefix).await;
    // 4 segments, 2 checkpoints and their 2 tree checkpoints.
    assert_eq!(paths.len(), 8, "{paths:?}");
}

async fn read(store: &Arc<dyn ObjectStore>, path: &Path) -> String {
    let body = store.get(path).await.unwrap().bytes().await.unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

async fn apply(store: &Arc<dyn ObjectStore>, prefix: &Path, changes: Vec<Change>) {
    let at = |relative: &str| Path::from(format!("{prefix}/{relative}"));
    for change in changes {
        match change {
            Change::Copy(from, to) => {
                let text = read(store, &at(from)).await;
                store.put(&at(&to), PutPayload::from(text)).await.unwrap();
            }
            Change::Edit(path, edit) => {
                let text = edit(&read(store, &at(path)).await);
                store.put(&at(path), PutPayload::from(text)).await.unwrap();
            }
            Change::Rename(from, to) => store.rename(&at(from), &at(to)).await.unwrap(),
            Change::DeleteAll(folder) => {
                for path in common::object_paths(store.as_ref(), &at(folder)).await {
                    store.delete(&Path::from(path.as_str())).await.unwrap();
                }
            }
            Change::Put(path, text) => {
                store.put(&at(&path), PutPayload::from(text)).await.unwrap();
            }
        }
    }
}

/// Runs every case on `store`, each under its own prefix, and returns the
/// first failure of each as `(kind, seq)`.
async fn run_cases(store: Arc<dyn ObjectStore>) -> Vec<(FailureKind, u64)> {
    let signer = Arc::new(AuditSigner::generate());
    let mut verdicts = Vec::new();
    for (index, case) in CASES.iter().enumerate() {
        let prefix = Path::from(format!("case{index}"));
        base_chain(&store, &prefix, &signer).await;
        let clean = common::verify(&store, &prefix, &signer).await;
        assert!(clean.is_ok(), "{}: {:?}", case.name, clean.failures);
        apply(&store, &prefix, (case.tamper)()).await;
        let report: VerifyReport = common::verify(&store, &prefix, &signer).await;
        let failure = report
            .first_failure()
            .unwrap_or_else(|| panic!("{}: not detected", case.name));
        assert_eq!(
            (failure.kind, failure.seq),
            (case.kind, case.seq),
            "{}: {failure}",
            case.name
        );
        assert!(
            failure.detail.contains(case.detail),
            "{}: {failure}",
            case.name
        );
        verdicts.push((failure.kind, failure.seq));
    }
    verdicts
}

#[tokio::test]
async fn hostile_archives_fail_in_memory() {
    let verdicts = run_cases(Arc::new(InMemory::new())).await;
    assert_eq!(verdicts.len(), CASES.len());
}

#[tokio::test]
async fn hostile_archives_fail_in_a_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    let local = run_cases(Arc::new(store)).await;
    let memory = run_cases(Arc::new(InMemory::new())).await;
    assert_eq!(local, memory);
}

#[tokio::test]
async fn hostile_archives_fail_on_moto() {
    let server = MotoServer::start().unwrap();
    let moto = run_cases(server.store("")).await;
    let memory = run_cases(Arc::new(InMemory::new())).await;
    assert_eq!(moto, memory);
}

#[tokio::test]
async fn records_honour_from_and_report_where_a_line_is_bad() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let prefix = Path::from("from");
    let signer = Arc::new(AuditSigner::generate());
    base_chain(&store, &prefix, &signer).await;
    apply(
        &store,
        &prefix,
        vec![Change::Edit(
            "default/records/00000000000000000010.jsonl",
            |text| text.replacen("{\"v\":1", "not json", 1),
        )],
    )
    .await;
    let source = ArchiveSource::new(store.clone(), prefix.clone());
    let seqs = |from: u64| {
        let source = source.clone();
        async move {
            let rows: Vec<_> = source
                .records(&ChainId::default(), from)
                .await
                .unwrap()
                .collect()
                .await;
            rows.into_iter()
                .map(|row| match row.unwrap() {
                    SourceRecord::Record(record) => (record.seq as i128, None),
                    SourceRecord::Malformed { seq, detail } => (seq, Some(detail)),
                })
                .collect::<Vec<_>>()
        }
    };
    let all = seqs(1).await;
    assert_eq!(
        all.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        (1..=12).collect::<Vec<_>>()
    );
    let detail = all[9].1.as_deref().unwrap();
    assert!(
        detail.contains("from/default/records/00000000000000000010.jsonl, line 1"),
        "{detail}"
    );
    let later = seqs(8).await;
    assert_eq!(
        later.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        (8..=12).collect::<Vec<_>>()
    );

    // The verifier started at 8 trusts record 7 and reports the bad line.
    let report = audit_core::verification::verify_source(
        &source,
        &common::keyring(&signer),
        audit_core::verification::SourceVerifyOptions::default().with_from(Some(8)),
    )
    .await
    .unwrap();
    let failure = report.first_failure().unwrap();
    assert_eq!((failure.kind, failure.seq), (FailureKind::Malformed, 10));
}

#[tokio::test]
async fn unreadable_dead_letters_are_listed_not_skipped() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let prefix = Path::from("letters");
    store
        .put(
            &Path::from("letters/default/dead-letters/2024-01-01T00:00:00.000000Z-0190a0a0-0000-7000-8000-000000000001.json"),
            PutPayload::from("{not a letter"),
        )
        .await
        .unwrap();
    let source = ArchiveSource::new(store.clone(), prefix);
    let letters = source
        .dead_letters(Some(&ChainId::default()))
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0].letter;
    assert_eq!(letter.event_json, "{not a letter");
    assert_eq!(letter.event_id, "");
    assert_eq!(letter.failed_at, "2024-01-01T00:00:00.000000Z");
    assert!(
        letter
            .failure_reason
            .contains("unreadable dead-letter object"),
        "{}",
        letter.failure_reason
    );
    assert!(letters[0].key.ends_with("000000000001.json"));
    assert!(
        letter.event().is_err(),
        "a replay must list it as unreadable"
    );
    let inventory = source.inventory().await.unwrap();
    assert_eq!(inventory.chains, [ChainId::default()]);
    assert!(inventory.strays.is_empty());
}
