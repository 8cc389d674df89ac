//! `verify` against forged and misplaced tree checkpoints (FORMAT.md
//! section 8.5, items 8 and 10): a root the records do not give, a note
//! signed by a key nobody trusts, a checkpoint beyond the head, a note that
//! is not a note, and a store whose tree a proof cannot trust.

use std::sync::Arc;

use audit_core::AuditEvent;
use audit_core::chain::tree::leaf_hash;
use audit_core::chain::tree_checkpoint::TreeCheckpoint;
use audit_core::chain::{ChainId, FailureKind, VerifyReport};
use audit_core::chain_writer::{ChainSinkOptions, ChainStore, ChainWriter, CheckpointPolicy};
use audit_core::keys::{AuditSigner, Keyring};
use audit_core::proving::{newest_tree_checkpoint, prove_inclusion};
use audit_core::sink::AuditSink;
use audit_core::store::memory::MemoryStore;
use audit_core::verification::{SourceVerifyOptions, verify_source};

struct Chain {
    store: MemoryStore,
    signer: Arc<AuditSigner>,
    origin: String,
}

/// 20 signed records, a checkpoint (and tree checkpoint) every 5.
async fn chain(name: &str) -> Chain {
    let signer = Arc::new(AuditSigner::generate());
    let store = MemoryStore::new(name);
    let options = ChainSinkOptions::signed(signer.clone()).with_checkpoints(CheckpointPolicy {
        every_records: Some(5),
        every: None,
    });
    let origin = options.tree_origin();
    let mut writer = ChainWriter::new(store.clone(), options);
    for n in 0..4 {
        let events: Vec<AuditEvent> = (0..5)
            .map(|m| AuditEvent::new("t", "a", serde_json::json!({ "n": n * 5 + m })).unwrap())
            .collect();
        writer.append_batch(&events).await.unwrap();
    }
    Chain {
        store,
        signer,
        origin,
    }
}

async fn verify(chain: &Chain) -> VerifyReport {
    let mut keyring = Keyring::new();
    keyring.insert(chain.signer.public_key());
    verify_source(&chain.store, &keyring, SourceVerifyOptions::default())
        .await
        .unwrap()
}

fn kinds(report: &VerifyReport) -> Vec<(FailureKind, u64)> {
    report.failures.iter().map(|f| (f.kind, f.seq)).collect()
}

#[tokio::test]
async fn every_stored_tree_checkpoint_is_checked_against_the_records() {
    let chain = chain("tree-ok").await;
    let report = verify(&chain).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.chains["default"].tree_checkpoints, 4);
}

#[tokio::test]
async fn a_signed_root_the_records_do_not_give_is_a_tree_root_mismatch() {
    let chain = chain("tree-forked").await;
    // The log's own key signs another history at size 10: a split view.
    let forged = TreeCheckpoint::new(&chain.origin, 10, leaf_hash(b"another history"))
        .unwrap()
        .sign(chain.signer.as_ref())
        .unwrap();
    let mut store = chain.store.clone();
    // The honest note is stored at 10: the fork is refused at the door...
    let error = store
        .write_tree_checkpoint(&ChainId::default(), 10, &forged.to_string())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("forked"), "{error}");
    // ...and one filed at a size nobody checkpointed is caught by verify.
    let forged = TreeCheckpoint::new(&chain.origin, 12, leaf_hash(b"another history"))
        .unwrap()
        .sign(chain.signer.as_ref())
        .unwrap();
    store
        .write_tree_checkpoint(&ChainId::default(), 12, &forged.to_string())
        .await
        .unwrap();
    let report = verify(&chain).await;
    assert_eq!(kinds(&report), [(FailureKind::TreeRootMismatch, 12)]);
}

#[tokio::test]
async fn a_note_signed_by_an_untrusted_key_is_refused() {
    let chain = chain("tree-untrusted").await;
    let stranger = AuditSigner::generate();
    let root = {
        let mut frontier = audit_core::chain::tree::TreeFrontier::new();
        for record in chain.store.records(&ChainId::default()).iter().take(7) {
            frontier.push(leaf_hash(record.event_json.as_bytes()));
        }
        frontier.root()
    };
    let note = TreeCheckpoint::new(&chain.origin, 7, root)
        .unwrap()
        .sign(&stranger)
        .unwrap();
    let mut store = chain.store.clone();
    store
        .write_tree_checkpoint(&ChainId::default(), 7, &note.to_string())
        .await
        .unwrap();
    let report = verify(&chain).await;
    assert_eq!(
        kinds(&report),
        [(FailureKind::TreeCheckpointBadSignature, 7)]
    );
}

#[tokio::test]
async fn a_tree_checkpoint_beyond_the_head_is_truncation() {
    let chain = chain("tree-truncated").await;
    chain
        .store
        .tamper(&ChainId::default(), |records| records.truncate(12));
    let report = verify(&chain).await;
    let found = kinds(&report);
    assert!(found.contains(&(FailureKind::Truncated, 15)), "{found:?}");
    assert!(found.contains(&(FailureKind::Truncated, 20)), "{found:?}");
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.kind == FailureKind::Truncated && f.detail.contains("tree checkpoint")),
        "{:?}",
        report.failures
    );
}

#[tokio::test]
async fn a_stored_note_that_is_not_a_note_is_malformed() {
    let chain = chain("tree-garbage").await;
    let mut store = chain.store.clone();
    store
        .write_tree_checkpoint(&ChainId::default(), 3, "not a note\n")
        .await
        .unwrap();
    let report = verify(&chain).await;
    assert_eq!(kinds(&report), [(FailureKind::Malformed, 3)]);
}

#[tokio::test]
async fn tree_checkpoints_without_a_key_are_reported_unchecked() {
    let chain = chain("tree-no-key").await;
    let report = verify_source(
        &chain.store,
        &Keyring::new(),
        SourceVerifyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(kinds(&report), [(FailureKind::NoKeyGiven, 1)]);
    assert_eq!(report.chains["default"].tree_checkpoints, 4);

    // Unsigned records, and a signed tree checkpoint: the checkpoint alone
    // is what no key can check.
    let store = MemoryStore::new("tree-no-key-unsigned");
    let mut writer = ChainWriter::new(store.clone(), ChainSinkOptions::unsigned());
    let events: Vec<AuditEvent> = (0..3)
        .map(|n| AuditEvent::new("t", "a", serde_json::json!({ "n": n })).unwrap())
        .collect();
    writer.append_batch(&events).await.unwrap();
    let mut frontier = audit_core::chain::tree::TreeFrontier::new();
    for event in &events {
        frontier.push(leaf_hash(event.canonical_json().as_bytes()));
    }
    let note = TreeCheckpoint::new(&chain.origin, 3, frontier.root())
        .unwrap()
        .sign(chain.signer.as_ref())
        .unwrap();
    let mut writable = store.clone();
    writable
        .write_tree_checkpoint(&ChainId::default(), 3, &note.to_string())
        .await
        .unwrap();
    let report = verify_source(&store, &Keyring::new(), SourceVerifyOptions::default())
        .await
        .unwrap();
    assert_eq!(kinds(&report), [(FailureKind::NoKeyGiven, 3)]);
    assert_eq!(report.chains["default"].tree_checkpoints, 1);
}

#[tokio::test]
async fn a_rewritten_record_makes_proofs_fail_closed() {
    let chain = chain("tree-rewritten").await;
    let id = ChainId::default();
    let note = newest_tree_checkpoint(&chain.store, &id).await.unwrap();
    prove_inclusion(&chain.store, &id, 4, &note).await.unwrap();
    chain.store.tamper(&id, |records| {
        records[3].event_json = records[3].event_json.replace("\"n\":3", "\"n\":33").into();
    });
    let error = prove_inclusion(&chain.store, &id, 4, &note)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("altered"), "{error}");
    let report = verify(&chain).await;
    assert!(
        kinds(&report).contains(&(FailureKind::TreeRootMismatch, 5)),
        "{:?}",
        report.failures
    );
}

#[tokio::test]
async fn a_tree_checkpoint_kept_outside_catches_a_shortened_copy() {
    let chain = chain("tree-outside").await;
    let id = ChainId::default();
    let newest = newest_tree_checkpoint(&chain.store, &id).await.unwrap();
    // A copy of the first 12 records, without any checkpoint.
    let mut copy = MemoryStore::new("tree-outside-copy");
    let records = chain.store.records(&id);
    copy.import(&records[..12]).await.unwrap();
    let mut keyring = Keyring::new();
    keyring.insert(chain.signer.public_key());
    let verify_copy = |notes: Vec<String>| {
        let copy = copy.clone();
        let keyring = keyring.clone();
        async move {
            let options = SourceVerifyOptions::default().with_outside_tree_checkpoints(
                notes.into_iter().map(|n| (ChainId::default(), n)).collect(),
            );
            verify_source(&copy, &keyring, options).await.unwrap()
        }
    };
    assert!(verify_copy(Vec::new()).await.is_ok());
    let report = verify_copy(vec![newest.to_string()]).await;
    assert_eq!(kinds(&report), [(FailureKind::Truncated, 20)]);
    // A note the copy does cover holds.
    let mut frontier = audit_core::chain::tree::TreeFrontier::new();
    for record in &records[..10] {
        frontier.push(leaf_hash(record.event_json.as_bytes()));
    }
    let at_ten = TreeCheckpoint::new(&chain.origin, 10, frontier.root())
        .unwrap()
        .sign(chain.signer.as_ref())
        .unwrap();
    let report = verify_copy(vec![at_ten.to_string()]).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.chains["default"].tree_checkpoints, 1);
}
