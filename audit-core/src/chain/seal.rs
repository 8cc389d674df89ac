//! Sealing events onto a chain head: seq, prev, record hash, signature.

use std::sync::Arc;

use super::{ChainHead, ChainId, EventColumns, Record, record_hash};
use crate::event::AuditEvent;
use crate::keys::AuditSigner;

/// Which records carry a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SignMode {
    /// Every record is signed (when a key is set).
    #[default]
    EveryRecord,
    /// Records are unsigned; only checkpoints are signed.
    CheckpointsOnly,
}

/// Batches at least this large are signed on all cores.
const PARALLEL_SIGN_THRESHOLD: usize = 64;

/// Seals events onto a chain. Pure: the caller owns the head and the storage.
#[derive(Debug, Clone)]
pub struct Sealer {
    chain: ChainId,
    signer: Option<Arc<AuditSigner>>,
    mode: SignMode,
}

impl Sealer {
    /// A sealer for `chain`, signing per `mode` when `signer` is set.
    pub fn new(chain: ChainId, signer: Option<Arc<AuditSigner>>, mode: SignMode) -> Self {
        Self {
            chain,
            signer,
            mode,
        }
    }

    /// The chain this sealer writes.
    pub fn chain(&self) -> &ChainId {
        &self.chain
    }

    /// The signing key, if any.
    pub fn signer(&self) -> Option<&Arc<AuditSigner>> {
        self.signer.as_ref()
    }

    /// Whether records are signed.
    pub fn signs_records(&self) -> bool {
        self.signer.is_some() && self.mode == SignMode::EveryRecord
    }

    /// Seals one event after `head`.
    pub fn seal(&self, head: ChainHead, event: &AuditEvent) -> Record {
        let mut record = self.link(head, event);
        if let Some(signer) = self.record_signer() {
            sign_record(&mut record, signer);
        }
        record
    }

    /// Seals `events` in order after `head`. Hashing is sequential (each
    /// record commits to the one before); signing of large batches is spread
    /// over all cores, and gives the same bytes as sequential signing.
    pub fn seal_batch(&self, head: ChainHead, events: &[AuditEvent]) -> Vec<Record> {
        let mut records = Vec::with_capacity(events.len());
        let mut head = head;
        for event in events {
            let record = self.link(head, event);
            head = record.head();
            records.push(record);
        }
        if let Some(signer) = self.record_signer() {
            sign_all(&mut records, signer);
        }
        records
    }

    fn record_signer(&self) -> Option<&AuditSigner> {
        match self.mode {
            SignMode::EveryRecord => self.signer.as_deref(),
            SignMode::CheckpointsOnly => None,
        }
    }

    fn link(&self, head: ChainHead, event: &AuditEvent) -> Record {
        let seq = head.seq.saturating_add(1);
        let event_hash = event.event_hash();
        Record {
            chain: self.chain.clone(),
            seq,
            event_json: event.canonical_json().to_owned(),
            columns: Some(EventColumns {
                id: event.id().to_owned(),
                event_type: event.event_type().to_owned(),
                actor: event.actor().to_owned(),
                time: event.time().to_owned(),
            }),
            hash: record_hash(&self.chain, seq, &head.hash, &event_hash),
            event_hash,
            prev: head.hash,
            key_id: None,
            sig: None,
        }
    }
}

fn sign_record(record: &mut Record, signer: &AuditSigner) {
    record.sig = Some(signer.sign(&record.hash));
    record.key_id = Some(signer.key_id().to_string());
}

fn sign_all(records: &mut [Record], signer: &AuditSigner) {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    if threads < 2 || records.len() < PARALLEL_SIGN_THRESHOLD {
        records
            .iter_mut()
            .for_each(|record| sign_record(record, signer));
        return;
    }
    let chunk = records.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut chunks = records.chunks_mut(chunk);
        let first = chunks.next();
        for part in chunks {
            scope.spawn(move || {
                part.iter_mut()
                    .for_each(|record| sign_record(record, signer))
            });
        }
        if let Some(part) = first {
            part.iter_mut()
                .for_each(|record| sign_record(record, signer));
        }
    });
}
