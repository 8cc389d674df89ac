//! Sealing events onto a chain head: seq, prev, record hash, signature.

use std::collections::BTreeMap;
use std::convert::Infallible;
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
    /// soon as each chunk is signed: one thread per core but one signs,
    /// while the calling thread writes the chunks before them and signs
    /// too whenever nothing is ready to write, so a store's inserts overlap
    /// with the signing of what follows and no more threads are busy than
    /// there are cores. The first error of `write` stops the signing of
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

/// The chunk size of a batch's last `threads` × [`STREAM_CHUNK`] records:
/// small, so that the workers finish together and the last write is short,
/// instead of one worker signing a whole chunk while the others and the
/// writer wait.
const TAIL_CHUNK: usize = 64;

/// Splits `records` into the chunks [`sign_streaming`] hands out:
/// [`STREAM_CHUNK`] records each, then [`TAIL_CHUNK`] records each for the
/// last `threads` × [`STREAM_CHUNK`].
fn stream_chunks(records: &mut [Record], threads: usize) -> Vec<&mut [Record]> {
    let tail = records.len().min(threads.saturating_mul(STREAM_CHUNK));
    let (bulk, tail) = records.split_at_mut(records.len() - tail);
    bulk.chunks_mut(STREAM_CHUNK)
        .chain(tail.chunks_mut(TAIL_CHUNK))
        .collect()
}

/// Signs `records` in the chunks of [`stream_chunks`] and writes each chunk
/// in order once it is signed.
///
/// `threads - 1` workers only sign; this thread writes, and signs the next
/// unsigned chunk itself whenever no signed chunk is ready to write. So
/// `threads` threads are busy, never more, and the writer never falls
/// behind the signers by more than the chunk it is signing: when the last
/// chunk is signed, little is left to write.
fn sign_streaming<E>(
    records: &mut [Record],
    signer: &AuditSigner,
    threads: usize,
    write: &mut impl FnMut(&[Record]) -> Result<(), E>,
) -> Result<(), E> {
    let stop = AtomicBool::new(false);
    let key_id = &key_id_text(signer);
    let unsigned = Mutex::new(stream_chunks(records, threads).into_iter().enumerate());
    let take_unsigned = || match unsigned.lock() {
        Ok(mut chunks) => chunks.next(),
        Err(poisoned) => poisoned.into_inner().next(),
    };
    let sign_chunk = |chunk: &mut [Record]| {
        chunk
            .iter_mut()
            .for_each(|record| sign_record(record, signer, key_id));
    };
    std::thread::scope(|scope| {
        let (signed, done) = mpsc::channel::<(usize, &mut [Record])>();
        for _ in 1..threads {
            let signed = signed.clone();
            let (stop, take_unsigned, sign_chunk) = (&stop, &take_unsigned, &sign_chunk);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some((index, chunk)) = take_unsigned() else {
                        break;
                    };
                    sign_chunk(chunk);
                    if signed.send((index, chunk)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(signed);
        let mut ready = BTreeMap::new();
        let mut next = 0;
        loop {
            ready.extend(done.try_iter());
            while let Some(chunk) = ready.remove(&next) {
                if let Err(error) = write(chunk) {
                    stop.store(true, Ordering::Relaxed);
                    return Err(error);
                }
                next += 1;
            }
            if let Some((index, chunk)) = take_unsigned() {
                sign_chunk(chunk);
                ready.insert(index, chunk);
            } else if let Ok((index, chunk)) = done.recv() {
                ready.insert(index, chunk);
            } else {
                // Every worker has ended and every chunk it signed was
                // received and written above. A worker that panicked with
                // a chunk in hand makes the scope panic on return, so a
                // missing chunk is never a silent success.
                return Ok(());
            }
        }
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

/// Signs every record: in place for small batches or on one core, else
/// with [`sign_streaming`]'s workers and nothing to write.
fn sign_all(records: &mut [Record], signer: &AuditSigner) {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    if threads < 2 || records.len() < PARALLEL_SIGN_THRESHOLD {
        let key_id = &key_id_text(signer);
        records
            .iter_mut()
            .for_each(|record| sign_record(record, signer, key_id));
        return;
    }
    let Ok(()) = sign_streaming(records, signer, threads, &mut |_| Ok::<(), Infallible>(()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(count: usize) -> Vec<AuditEvent> {
        (0..count)
            .map(|n| AuditEvent::new("t", "a", serde_json::json!(n)).unwrap())
            .collect()
    }

    fn unsigned_records(count: usize) -> Vec<Record> {
        let sealer = Sealer::new(ChainId::default(), None, SignMode::EveryRecord);
        sealer.link_all(ChainHead::EMPTY, &events(count))
    }

    #[test]
    fn stream_chunks_cover_every_record_in_order_with_a_fine_tail() {
        let mut records = unsigned_records(4 * STREAM_CHUNK + STREAM_CHUNK / 2);
        let sizes: Vec<usize> = stream_chunks(&mut records, 2)
            .iter()
            .map(|chunk| chunk.len())
            .collect();
        let mut expected = vec![STREAM_CHUNK, STREAM_CHUNK, STREAM_CHUNK / 2];
        expected.extend([TAIL_CHUNK; 2 * STREAM_CHUNK / TAIL_CHUNK]);
        assert_eq!(sizes, expected);
        let seqs: Vec<u64> = stream_chunks(&mut records, 2)
            .iter()
            .flat_map(|chunk| chunk.iter().map(|record| record.seq))
            .collect();
        assert_eq!(seqs, (1..=records.len() as u64).collect::<Vec<_>>());
    }

    #[test]
    fn a_failed_write_stops_the_stream_with_its_error() {
        let signer = Arc::new(AuditSigner::generate());
        let sealer = Sealer::new(ChainId::default(), Some(signer), SignMode::EveryRecord);
        let events = events(3 * STREAM_CHUNK);
        let mut written = Vec::new();
        let result = sealer.seal_batch_streaming(ChainHead::EMPTY, &events, |chunk| {
            if !written.is_empty() {
                return Err("the store is full");
            }
            assert!(chunk.iter().all(|record| record.sig.is_some()));
            written.extend(chunk.iter().map(|record| record.seq));
            Ok(())
        });
        assert_eq!(result, Err("the store is full"));
        assert_eq!(written, (1..=STREAM_CHUNK as u64).collect::<Vec<_>>());
    }

    #[test]
    fn a_batch_smaller_than_the_tail_is_all_fine_chunks() {
        let mut records = unsigned_records(TAIL_CHUNK * 3 + 1);
        let sizes: Vec<usize> = stream_chunks(&mut records, 4)
            .iter()
            .map(|chunk| chunk.len())
            .collect();
        assert_eq!(sizes, vec![TAIL_CHUNK, TAIL_CHUNK, TAIL_CHUNK, 1]);
    }
}
