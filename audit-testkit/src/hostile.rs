//! The hostile-chain suite: what an attacker with write access to a store
//! does to a chain, run the same way against every backend, each case
//! expecting the same verdict, failure kind and seq from the core's one
//! verifier.
//!
//! A backend's tests implement [`Tamper`] (write a row verbatim, with any
//! seq and any chain name; delete rows) over a fresh, empty store, and call
//! [`run`]. Each case starts from a fresh store made by the backend's
//! [`TamperFactory`].
//!
//! The cases:
//! - rows forged outside `1..=head` (seq 0, -1, `i64::MIN`), unsigned;
//! - every record deleted while a checkpoint stays;
//! - one record deleted (a gap);
//! - a chain rewritten without signatures, verified with the key;
//! - signed records verified without any key;
//! - rows filed under an invalid chain name;
//! - the shared vector chain with each tamper of `testdata/vectors/tampered`
//!   (payload edited, record deleted, signature flipped, event member
//!   edited, a run of records deleted), written into the backend.

use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use audit_core::chain::{ChainId, FailureKind, Record, VerifyReport};
use audit_core::chain_writer::{ChainSinkOptions, ChainStore, ChainWriter};
use audit_core::keys::{AuditSigner, Keyring};
use audit_core::sink::AuditSink;
use audit_core::store::ChainSource;
use audit_core::verification::{SourceVerifyOptions, verify_source};
use audit_core::{AuditEvent, jsonl};
use futures::future::BoxFuture;

/// A row to write verbatim: `record` stored under `chain` at `seq`,
/// whatever its own members say.
#[derive(Debug, Clone)]
pub struct RawRow {
    /// The chain name to store the row under (may be invalid).
    pub chain: String,
    /// The seq to store (may be zero or negative).
    pub seq: i64,
    /// The record's content.
    pub record: Record,
}

impl RawRow {
    /// `record` as it is.
    pub fn of(record: &Record) -> Self {
        Self {
            chain: record.chain.to_string(),
            seq: i64::try_from(record.seq).unwrap_or(i64::MAX),
            record: record.clone(),
        }
    }
}

/// What an attacker with write access to a backend can do.
#[async_trait]
pub trait Tamper: Send + Sync {
    /// The store's read side.
    fn source(&self) -> Arc<dyn ChainSource>;

    /// A write side of the store for the chain `default`.
    async fn store(&self) -> Box<dyn ChainStore>;

    /// Writes rows verbatim, in order, with no check.
    async fn put_raw(&self, rows: &[RawRow]);

    /// Deletes the records of `chain` at `seqs`.
    async fn delete_records(&self, chain: &ChainId, seqs: RangeInclusive<u64>);
}

/// Makes a fresh, empty store for each case.
pub type TamperFactory = Arc<dyn Fn() -> BoxFuture<'static, Box<dyn Tamper>> + Send + Sync>;

/// The outcome every case expects: a failure, its kind, and the seq of the
/// first failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// The kind of the first failure.
    pub kind: FailureKind,
    /// The seq of the first failure.
    pub seq: u64,
}

/// Runs every case; panics naming the first case that gets another verdict.
pub async fn run(new_store: TamperFactory) {
    for seq in [0, -1, i64::MIN] {
        forged_row_outside_range(&new_store, seq).await;
    }
    emptied_chain_with_checkpoint(&new_store).await;
    deleted_record(&new_store).await;
    unsigned_rewrite_with_key(&new_store).await;
    signed_chain_without_key(&new_store).await;
    invalid_chain_name(&new_store).await;
    tampered_vectors(&new_store).await;
}

fn signer() -> Arc<AuditSigner> {
    Arc::new(AuditSigner::generate())
}

fn keyring_of(signer: &AuditSigner) -> Keyring {
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    keyring
}

/// Appends `count` events through the core writer (signed when `signer`).
async fn write_chain(tamper: &dyn Tamper, signer: Option<Arc<AuditSigner>>, count: usize) {
    let options = match signer {
        Some(signer) => ChainSinkOptions::signed(signer),
        None => ChainSinkOptions::unsigned(),
    };
    let mut writer = ChainWriter::new(tamper.store().await, options);
    let events: Vec<AuditEvent> = crate::conformance::events("hostile", count);
    if let Err(error) = writer.append_batch(&events).await {
        panic!("hostile: writing the chain failed: {error}");
    }
    if let Err(error) = writer.checkpoint().await {
        panic!("hostile: writing the checkpoint failed: {error}");
    }
}

async fn verify(tamper: &dyn Tamper, keyring: &Keyring) -> VerifyReport {
    verify_source(
        tamper.source().as_ref(),
        keyring,
        SourceVerifyOptions::default(),
    )
    .await
    .unwrap_or_else(|error| panic!("hostile: reading the store failed (must be a verification failure, never an I/O error): {error}"))
}

fn expect(case: &str, report: &VerifyReport, expected: Expected) {
    let first = report
        .first_failure()
        .unwrap_or_else(|| panic!("hostile {case}: verified OK, expected {expected:?}"));
    assert_eq!(
        (first.kind, first.seq),
        (expected.kind, expected.seq),
        "hostile {case}: first failure {first}, expected {expected:?}; all: {:?}",
        report.failures
    );
}

/// An unsigned `role.granted` row forged at `seq` (0, -1, `i64::MIN`) in a
/// signed chain fails as out of range at seq 0.
pub async fn forged_row_outside_range(new_store: &TamperFactory, seq: i64) {
    let tamper = new_store().await;
    let signer = signer();
    write_chain(tamper.as_ref(), Some(signer.clone()), 3).await;
    let event = AuditEvent::new(
        "role.granted",
        "attacker",
        serde_json::json!({"role": "admin"}),
    )
    .unwrap_or_else(|error| panic!("hostile: {error}"));
    let chain = ChainId::default();
    let forged = audit_core::chain::Sealer::new(chain.clone(), None, Default::default())
        .seal(audit_core::ChainHead::EMPTY, &event);
    tamper
        .put_raw(&[RawRow {
            chain: chain.to_string(),
            seq,
            record: forged,
        }])
        .await;
    let report = verify(tamper.as_ref(), &keyring_of(&signer)).await;
    expect(
        &format!("forged row at seq {seq}"),
        &report,
        Expected {
            kind: FailureKind::SeqOutOfRange,
            seq: 0,
        },
    );
}

/// Every record deleted, the checkpoint kept: truncated at its seq.
pub async fn emptied_chain_with_checkpoint(new_store: &TamperFactory) {
    let tamper = new_store().await;
    let signer = signer();
    write_chain(tamper.as_ref(), Some(signer.clone()), 5).await;
    tamper.delete_records(&ChainId::default(), 1..=5).await;
    let report = verify(tamper.as_ref(), &keyring_of(&signer)).await;
    expect(
        "every record deleted, checkpoint kept",
        &report,
        Expected {
            kind: FailureKind::Truncated,
            seq: 5,
        },
    );
}

/// One record deleted: a gap reported at the next record.
pub async fn deleted_record(new_store: &TamperFactory) {
    let tamper = new_store().await;
    let signer = signer();
    write_chain(tamper.as_ref(), Some(signer.clone()), 5).await;
    tamper.delete_records(&ChainId::default(), 3..=3).await;
    let report = verify(tamper.as_ref(), &keyring_of(&signer)).await;
    expect(
        "record 3 deleted",
        &report,
        Expected {
            kind: FailureKind::SeqGap,
            seq: 4,
        },
    );
}

/// A chain written without signatures fails when a key is given, and
/// passes with `allow_unsigned`, saying so.
pub async fn unsigned_rewrite_with_key(new_store: &TamperFactory) {
    let tamper = new_store().await;
    write_chain(tamper.as_ref(), None, 3).await;
    let keyring = keyring_of(&signer());
    let report = verify(tamper.as_ref(), &keyring).await;
    expect(
        "unsigned chain verified with a key",
        &report,
        Expected {
            kind: FailureKind::Unsigned,
            seq: 1,
        },
    );
    let allowed = verify_source(
        tamper.source().as_ref(),
        &keyring,
        SourceVerifyOptions::default().with_allow_unsigned(true),
    )
    .await
    .unwrap_or_else(|error| panic!("hostile: {error}"));
    assert!(
        allowed.is_ok(),
        "hostile allow_unsigned: {:?}",
        allowed.failures
    );
    assert!(
        allowed
            .unchecked
            .iter()
            .any(|note| note.contains("unsigned")),
        "hostile allow_unsigned: the report must say unsigned records were accepted: {:?}",
        allowed.unchecked
    );
}

/// Signed records without a key: one `no_key_given` failure, not one per
/// record.
pub async fn signed_chain_without_key(new_store: &TamperFactory) {
    let tamper = new_store().await;
    write_chain(tamper.as_ref(), Some(signer()), 4).await;
    let report = verify(tamper.as_ref(), &Keyring::new()).await;
    expect(
        "signed chain without a key",
        &report,
        Expected {
            kind: FailureKind::NoKeyGiven,
            seq: 1,
        },
    );
    assert_eq!(
        report.failures.len(),
        1,
        "hostile signed chain without a key: one failure, got {:?}",
        report.failures
    );
}

/// Rows under a chain name that is not valid are strays.
pub async fn invalid_chain_name(new_store: &TamperFactory) {
    let tamper = new_store().await;
    let signer = signer();
    write_chain(tamper.as_ref(), Some(signer.clone()), 2).await;
    let event = AuditEvent::new("role.granted", "attacker", serde_json::json!({}))
        .unwrap_or_else(|error| panic!("hostile: {error}"));
    let record = audit_core::chain::Sealer::new(
        ChainId::default(),
        Some(signer.clone()),
        Default::default(),
    )
    .seal(audit_core::ChainHead::EMPTY, &event);
    tamper
        .put_raw(&[RawRow {
            chain: "bad name".into(),
            seq: 1,
            record,
        }])
        .await;
    let report = verify(tamper.as_ref(), &keyring_of(&signer)).await;
    assert!(
        report
            .failures
            .iter()
            .any(|failure| failure.kind == FailureKind::Stray),
        "hostile invalid chain name: expected a stray failure, got {:?}",
        report.failures
    );
}

/// The good vector chain, read from its JSONL copy.
pub fn vector_records() -> Vec<Record> {
    let dir = crate::vectors::dir().join("good/jsonl/default/records");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    names.sort();
    names.iter().flat_map(|path| read_segment(path)).collect()
}

fn read_segment(path: &Path) -> Vec<Record> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    text.lines()
        .map(|line| {
            jsonl::decode_record(line).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        })
        .collect()
}

/// Each tamper of the shared vectors, applied to the good chain and
/// written into the backend, fails at the vectors' `first_bad_seq`.
pub async fn tampered_vectors(new_store: &TamperFactory) {
    let keyring = crate::vectors::keyring();
    type Change = fn(&mut Vec<Record>);
    let cases: [(&str, u64, Change); 5] = [
        ("payload edited", 42, |records| {
            records[41].event_json = records[41].event_json.replacen('}', ",\"x\":1}", 1).into();
        }),
        ("record deleted", 151, |records| {
            records.remove(149);
        }),
        ("signature flipped", 270, |records| {
            if let Some(sig) = records[269].sig.as_mut() {
                sig[10] ^= 0x01;
            }
        }),
        ("actor inside the event edited", 25, |records| {
            records[24].event_json = records[24]
                .event_json
                .replacen("\"actor\":\"", "\"actor\":\"x", 1)
                .into();
        }),
        (
            "records 45 to 52 deleted (a whole segment)",
            53,
            |records| {
                records.drain(44..52);
            },
        ),
    ];
    for (what, first_bad_seq, change) in cases {
        let tamper = new_store().await;
        let mut records = vector_records();
        change(&mut records);
        let rows: Vec<RawRow> = records.iter().map(RawRow::of).collect();
        tamper.put_raw(&rows).await;
        let report = verify(tamper.as_ref(), &keyring).await;
        let first = report
            .first_failure()
            .unwrap_or_else(|| panic!("hostile vectors {what}: verified OK"));
        assert_eq!(
            first.seq, first_bad_seq,
            "hostile vectors {what}: first failure {first}"
        );
    }
    let tamper = new_store().await;
    let rows: Vec<RawRow> = vector_records().iter().map(RawRow::of).collect();
    tamper.put_raw(&rows).await;
    let report = verify(tamper.as_ref(), &keyring).await;
    assert!(
        report.is_ok(),
        "hostile vectors: the good chain must verify: {:?}",
        report.failures
    );
    assert_eq!(report.records, 300);
}
