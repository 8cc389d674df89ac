//! Sealing events onto a chain head: seq, prev, record hash, signature.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use super::{ChainHead, ChainId, EventColumns, Record, record_hash};
use crate::event::AuditEvent;
use crate::keys::AuditSigner;
use crate::shared_str::{EventPart, SharedStr};

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
            sign_record(&mut record, signer, &key_id_text(signer));
        }
        record
    }

    /// Seals `events` in order after `head`. Hashing is sequential (each
    /// record commits to the one before); signing of large batches is spread
    /// over all cores, and gives the same bytes as sequential signing.
    pub fn seal_batch(&self, head: ChainHead, events: &[AuditEvent]) -> Vec<Record> {
        let mut records = self.link_all(head, events);
        if let Some(signer) = self.record_signer() {
            sign_all(&mut records, signer);
        }
        records
    }

    /// Seals `events` onto `head` like [`seal_batch`](Self::seal_batch),
    /// handing the records to `write` in seq order, a chunk at a time, as
    /// soon as each chunk is signed: signing runs on one thread per core
    /// while the calling thread writes the chunks before it, so a store's
    /// inserts overlap with the signing of what follows instead of waiting
    /// for all of it. The first error of `write` stops the signing of
    /// chunks not yet started and is returned.
    ///
    /// ```
    /// use audit_core::chain::{ChainHead, ChainId, Sealer, SignMode};
    /// use audit_core::keys::AuditSigner;
    /// use audit_core::AuditEvent;
    /// let sealer = Sealer::new(ChainId::default(), Some(AuditSigner::generate().into()), SignMode::EveryRecord);
    /// let events: Vec<AuditEvent> = (0..2_000)
    ///     .map(|n| AuditEvent::new("t", "a", serde_json::json!(n)))
    ///     .collect::<Result<_, _>>()?;
    /// let mut written = Vec::new();
    /// let records = sealer.seal_batch_streaming(ChainHead::EMPTY, &events, |chunk| {
    ///     written.extend(chunk.iter().map(|record| record.seq));
    ///     Ok::<_, std::convert::Infallible>(())
    /// })?;
    /// assert_eq!(written, (1..=2_000).collect::<Vec<u64>>());
    /// assert_eq!(records, sealer.seal_batch(ChainHead::EMPTY, &events));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seal_batch_streaming<E>(
        &self,
        head: ChainHead,
        events: &[AuditEvent],
        mut write: impl FnMut(&[Record]) -> Result<(), E>,
    ) -> Result<Vec<Record>, E> {
        let mut records = self.link_all(head, events);
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        match self.record_signer() {
            Some(signer) if threads >= 2 && records.len() >= 2 * STREAM_CHUNK => {
                sign_streaming(&mut records, signer, threads, &mut write)?;
            }
            Some(signer) => {
                sign_all(&mut records, signer);
                write(&records)?;
            }
            None => write(&records)?,
        }
        Ok(records)
    }

    /// Links `events` in order after `head`, unsigned: seq, prev and
    /// record hash (sequential: each record commits to the one before).
    fn link_all(&self, head: ChainHead, events: &[AuditEvent]) -> Vec<Record> {
        let mut records = Vec::with_capacity(events.len());
        let mut next = head;
        for event in events {
            let record = self.link(next, event);
            next = record.head();
            records.push(record);
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
            event_json: SharedStr::of_event(event, EventPart::Canonical),
            columns: Some(EventColumns {
                id: SharedStr::of_event(event, EventPart::Id),
                event_type: SharedStr::of_event(event, EventPart::Type),
                actor: SharedStr::of_event(event, EventPart::Actor),
                time: SharedStr::of_event(event, EventPart::Time),
            }),
            hash: record_hash(&self.chain, seq, &head.hash, &event_hash),
            event_hash,
            prev: head.hash,
            key_id: None,
            sig: None,
        }
    }
}

/// Records signed and written together by
/// [`Sealer::seal_batch_streaming`]: small enough that the first chunk is
/// ready soon, large enough that a store's multi-row inserts stay full.
const STREAM_CHUNK: usize = 512;

/// Signs `records` in chunks of [`STREAM_CHUNK`] on `threads` workers, and
/// writes each chunk in order on this thread once it is signed.
fn sign_streaming<E>(
    records: &mut [Record],
    signer: &AuditSigner,
    threads: usize,
    write: &mut impl FnMut(&[Record]) -> Result<(), E>,
) -> Result<(), E> {
    let stop = AtomicBool::new(false);
    let key_id = &key_id_text(signer);
    let chunks = Mutex::new(records.chunks_mut(STREAM_CHUNK).enumerate());
    std::thread::scope(|scope| {
        let (signed, done) = mpsc::channel::<(usize, &mut [Record])>();
        for _ in 0..threads {
            let signed = signed.clone();
            let (chunks, stop) = (&chunks, &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let next = match chunks.lock() {
                        Ok(mut chunks) => chunks.next(),
                        Err(poisoned) => poisoned.into_inner().next(),
                    };
                    let Some((index, chunk)) = next else { break };
                    chunk
                        .iter_mut()
                        .for_each(|record| sign_record(record, signer, key_id));
                    if signed.send((index, chunk)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(signed);
        let mut waiting = BTreeMap::new();
        let mut next = 0;
        for (index, chunk) in done {
            waiting.insert(index, chunk);
            while let Some(chunk) = waiting.remove(&next) {
                if let Err(error) = write(chunk) {
                    stop.store(true, Ordering::Relaxed);
                    return Err(error);
                }
                next += 1;
            }
        }
        Ok(())
    })
}

/// Signs `record` with `signer`, whose key id (made once per batch, then
/// shared) is `key_id`.
fn sign_record(record: &mut Record, signer: &AuditSigner, key_id: &SharedStr) {
    record.sig = Some(signer.sign(&record.hash));
    record.key_id = Some(key_id.clone());
}

/// The key id of `signer`, to share among the records of a batch.
fn key_id_text(signer: &AuditSigner) -> SharedStr {
    SharedStr::from(signer.key_id().to_string())
}

fn sign_all(records: &mut [Record], signer: &AuditSigner) {
    let key_id = &key_id_text(signer);
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    if threads < 2 || records.len() < PARALLEL_SIGN_THRESHOLD {
        records
            .iter_mut()
            .for_each(|record| sign_record(record, signer, key_id));
        return;
    }
    let chunk = records.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut chunks = records.chunks_mut(chunk);
        let first = chunks.next();
        for part in chunks {
            scope.spawn(move || {
                part.iter_mut()
                    .for_each(|record| sign_record(record, signer, key_id))
            });
        }
        if let Some(part) = first {
            part.iter_mut()
                .for_each(|record| sign_record(record, signer, key_id));
        }
    });
}
