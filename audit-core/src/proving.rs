//! Proofs from any store (FORMAT.md section 8.3): the newest tree
//! checkpoint of a chain, inclusion proofs of its records and consistency
//! proofs between two of its sizes, read through [`ChainSource`].
//!
//! A store that keeps tree rows ([`ChainSource::tree_rows`]) answers a
//! proof with a few row reads (`O(log n)`); one that keeps none (the JSONL
//! archive) has its tree recomputed from the records. Every proof is
//! checked against the signed root before it is returned, so a store whose
//! tree rows were damaged yields an error, never a proof that fails later
//! in someone else's hands.
//!
//! ```
//! use std::sync::Arc;
//! use audit_core::chain::proof::TrustPolicy;
//! use audit_core::chain_writer::{ChainSinkOptions, ChainWriter};
//! use audit_core::keys::AuditSigner;
//! use audit_core::proving::{newest_tree_checkpoint, prove_inclusion};
//! use audit_core::sink::AuditSink;
//! use audit_core::store::memory::MemoryStore;
//! use audit_core::AuditEvent;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let signer = Arc::new(AuditSigner::generate());
//! let store = MemoryStore::new("proving-doc");
//! let options = ChainSinkOptions::signed(signer.clone());
//! let origin = options.tree_origin();
//! let mut writer = ChainWriter::new(store.clone(), options);
//! let events: Vec<AuditEvent> = (0..5)
//!     .map(|n| AuditEvent::new("t", "a", serde_json::json!(n)))
//!     .collect::<Result<_, _>>()?;
//! writer.append_batch(&events).await?;
//! writer.checkpoint().await?;
//!
//! let chain = writer.options().chain().clone();
//! let note = newest_tree_checkpoint(&store, &chain).await?;
//! let proof = prove_inclusion(&store, &chain, 3, &note).await?;
//! let policy = TrustPolicy::new(audit_core::chain::note::Vkey::ed25519(
//!     &origin,
//!     signer.public_key().verifying_key(),
//! )?);
//! proof.verify_event(events[2].canonical_json().as_bytes(), &policy)?;
//! # Ok(()) }
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt as _;

use crate::chain::note::Note;
use crate::chain::proof::{ConsistencyProof, InclusionProof};
use crate::chain::tree::{
    self, HashIndexOutOfRange, HashReader, TreeError, TreeFrontier, check_consistency,
    check_inclusion, leaf_hash, split_stored_hash_index, stored_hash_record,
};
use crate::chain::tree_checkpoint::TreeCheckpoint;
use crate::chain::tree_rows::TreeRow;
use crate::chain::{ChainId, Record};
use crate::digest::Digest;
use crate::sink::Receipt;
use crate::store::{ChainSource, SourceError, SourceRecord};

/// Why a proof could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProveError {
    /// The store could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The chain has no tree checkpoint to prove against.
    #[error(
        "chain {chain} has no tree checkpoint yet: run `checkpoint` on a writer with a key, or wait for the next one"
    )]
    NoTreeCheckpoint {
        /// The chain.
        chain: String,
    },
    /// A stored tree checkpoint cannot be read.
    #[error("the tree checkpoint stored at size {size} is unreadable: {detail}")]
    BadCheckpoint {
        /// The size it is stored under.
        size: i128,
        /// What is wrong.
        detail: String,
    },
    /// The record is not covered by the checkpoint.
    #[error("seq {seq} is not in the checkpoint's tree of {size} records (seqs 1..={size})")]
    SeqOutOfRange {
        /// The seq asked for.
        seq: u64,
        /// The checkpoint's tree size.
        size: u64,
    },
    /// The old size is beyond the checkpoint.
    #[error("old size {old_size} is beyond the checkpoint's tree of {size} records")]
    OldSizeBeyond {
        /// The old size asked for.
        old_size: u64,
        /// The checkpoint's tree size.
        size: u64,
    },
    /// The store's records or tree rows are missing or damaged.
    #[error("chain {chain}: {detail}")]
    Damaged {
        /// The chain.
        chain: String,
        /// What is missing or damaged.
        detail: String,
    },
    /// No tree checkpoint covered the record in time.
    #[error("no tree checkpoint of chain {chain} covered seq {seq} within {waited:?}")]
    Timeout {
        /// The chain.
        chain: String,
        /// The seq waited for.
        seq: u64,
        /// How long it waited.
        waited: Duration,
    },
}

fn damaged(chain: &ChainId, detail: impl Into<String>) -> ProveError {
    ProveError::Damaged {
        chain: chain.as_str().to_owned(),
        detail: detail.into(),
    }
}

/// Every stored tree checkpoint of `chain`, parsed, in size order; an
/// unreadable one is an error.
pub async fn tree_checkpoints(
    source: &(impl ChainSource + ?Sized),
    chain: &ChainId,
) -> Result<Vec<(TreeCheckpoint, Note)>, ProveError> {
    let mut parsed = Vec::new();
    for stored in source.tree_checkpoints(chain).await? {
        let stored = stored.map_err(|(size, detail)| ProveError::BadCheckpoint { size, detail })?;
        let bad = |detail: String| ProveError::BadCheckpoint {
            size: i128::from(stored.size),
            detail,
        };
        let note = Note::parse(stored.note.as_bytes()).map_err(|e| bad(e.to_string()))?;
        let checkpoint = TreeCheckpoint::parse_body(note.body()).map_err(|e| bad(e.to_string()))?;
        if checkpoint.size() != stored.size {
            return Err(bad(format!("its body says size {}", checkpoint.size())));
        }
        parsed.push((checkpoint, note));
    }
    Ok(parsed)
}

/// The newest (largest) stored tree checkpoint note of `chain`, with any
/// cosignatures.
pub async fn newest_tree_checkpoint(
    source: &(impl ChainSource + ?Sized),
    chain: &ChainId,
) -> Result<Note, ProveError> {
    tree_checkpoints(source, chain)
        .await?
        .into_iter()
        .max_by_key(|(checkpoint, _)| checkpoint.size())
        .map(|(_, note)| note)
        .ok_or_else(|| ProveError::NoTreeCheckpoint {
            chain: chain.as_str().to_owned(),
        })
}

fn checkpoint_of(note: &Note) -> Result<TreeCheckpoint, ProveError> {
    TreeCheckpoint::parse_body(note.body()).map_err(|error| ProveError::BadCheckpoint {
        size: -1,
        detail: error.to_string(),
    })
}

/// The inclusion proof of the record at `seq` against the tree checkpoint
/// `note`, as a `c2sp.org/tlog-proof@v1` file whose `extra` line carries
/// the record's canonical event bytes `E`, so the file proves on its own
/// which event the log holds.
pub async fn prove_inclusion(
    source: &(impl ChainSource + ?Sized),
    chain: &ChainId,
    seq: u64,
    note: &Note,
) -> Result<InclusionProof, ProveError> {
    let checkpoint = checkpoint_of(note)?;
    let size = checkpoint.size();
    if seq == 0 || seq > size {
        return Err(ProveError::SeqOutOfRange { seq, size });
    }
    let index = seq - 1;
    let (proof, mut records) = with_stored_hashes(source, chain, size, &[seq], |reader| {
        tree::prove_inclusion(size, index, reader)
    })
    .await?;
    let record = records
        .remove(&seq)
        .ok_or_else(|| damaged(chain, format!("record {seq} is missing")))?;
    let leaf = leaf_hash(record.event_json.as_bytes());
    check_inclusion(index, &leaf, size, &checkpoint.root(), &proof).map_err(|error| {
        damaged(
            chain,
            format!("the stored tree does not lead record {seq} to the signed root ({error}): records or tree rows were altered"),
        )
    })?;
    let mut file = InclusionProof::new(index, proof, note.clone());
    file.extra = Some(record.event_json.as_bytes().to_vec());
    Ok(file)
}

/// The consistency proof from tree size `old_size` to the tree checkpoint
/// `note`, in the shape of a tlog-witness `add-checkpoint` request.
pub async fn prove_consistency(
    source: &(impl ChainSource + ?Sized),
    chain: &ChainId,
    old_size: u64,
    note: &Note,
) -> Result<ConsistencyProof, ProveError> {
    let checkpoint = checkpoint_of(note)?;
    let size = checkpoint.size();
    if old_size > size {
        return Err(ProveError::OldSizeBeyond { old_size, size });
    }
    let ((proof, old_root), _) = with_stored_hashes(source, chain, size, &[], |reader| {
        let proof = tree::prove_consistency(old_size, size, reader)?;
        let old_root = tree::tree_hash(old_size, reader)?;
        Ok((proof, old_root))
    })
    .await?;
    check_consistency(old_size, &old_root, size, &checkpoint.root(), &proof).map_err(|error| {
        damaged(
            chain,
            format!("the stored tree does not lead size {old_size} to the signed root ({error}): records or tree rows were altered"),
        )
    })?;
    Ok(ConsistencyProof::new(old_size, proof, note.clone()))
}

/// The RFC 6962 consistency proof from the tree of `old_size` records of
/// `chain` to the tree of `new_size` records, from the store (what a
/// witness asks for; [`prove_consistency`] wraps it with a checkpoint).
pub async fn consistency_hashes(
    source: &(impl ChainSource + ?Sized),
    chain: &ChainId,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Digest>, ProveError> {
    if old_size > new_size {
        return Err(ProveError::OldSizeBeyond {
            old_size,
            size: new_size,
        });
    }
    with_stored_hashes(source, chain, new_size, &[], |reader| {
        tree::prove_consistency(old_size, new_size, reader)
    })
    .await
    .map(|(proof, _)| proof)
}

/// The root of the tree of `chain`'s first `size` records, from the store.
pub async fn tree_root(
    source: &(impl ChainSource + ?Sized),
    chain: &ChainId,
    size: u64,
) -> Result<Digest, ProveError> {
    with_stored_hashes(source, chain, size, &[], |reader| {
        tree::tree_hash(size, reader)
    })
    .await
    .map(|(root, _)| root)
}

/// Waits until a stored tree checkpoint covers the receipt's record, then
/// proves its inclusion: what a service hands its caller as an
/// offline-verifiable receipt. Polls the store every `poll`; gives up after
/// `timeout`.
pub async fn await_inclusion(
    source: &(impl ChainSource + ?Sized),
    receipt: &Receipt,
    poll: Duration,
    timeout: Duration,
) -> Result<InclusionProof, ProveError> {
    let started = Instant::now();
    loop {
        let covering = tree_checkpoints(source, &receipt.chain)
            .await?
            .into_iter()
            .filter(|(checkpoint, _)| checkpoint.size() >= receipt.seq)
            .max_by_key(|(checkpoint, _)| checkpoint.size());
        if let Some((_, note)) = covering {
            return prove_inclusion(source, &receipt.chain, receipt.seq, &note).await;
        }
        if started.elapsed() >= timeout {
            return Err(ProveError::Timeout {
                chain: receipt.chain.as_str().to_owned(),
                seq: receipt.seq,
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(poll).await;
    }
}

/// The stored hashes of a tree computation, in two passes: the first
/// records the indexes the computation asks for (answering zeros); once
/// those are fetched, the second answers from them.
#[derive(Default)]
struct TwoPassReader {
    asked: RefCell<Vec<u64>>,
    fetched: Option<HashMap<u64, Digest>>,
}

impl HashReader for TwoPassReader {
    type Error = HashIndexOutOfRange;

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Digest>, Self::Error> {
        let Some(fetched) = &self.fetched else {
            self.asked.borrow_mut().extend_from_slice(indexes);
            return Ok(vec![Digest::ZERO; indexes.len()]);
        };
        indexes
            .iter()
            .map(|&index| {
                fetched.get(&index).copied().ok_or(HashIndexOutOfRange {
                    index,
                    stored: fetched.len() as u64,
                })
            })
            .collect()
    }
}

/// Runs the tree computation `compute` over the stored hashes of the tree
/// of `chain`'s first `size` records, and reads the records at `wanted`
/// with the leaves. Which hashes a computation reads depends on sizes
/// only, never on hash values, so a first run records the indexes, they
/// are fetched at once, and a second run computes.
async fn with_stored_hashes<T>(
    source: &(impl ChainSource + ?Sized),
    chain: &ChainId,
    size: u64,
    wanted: &[u64],
    compute: impl Fn(&TwoPassReader) -> Result<T, TreeError<HashIndexOutOfRange>>,
) -> Result<(T, HashMap<u64, Record>), ProveError> {
    let mut reader = TwoPassReader::default();
    compute(&reader).map_err(|error| damaged(chain, error.to_string()))?;
    let indexes = reader.asked.take();
    let (fetched, records) = fetch_hashes(source, chain, size, &indexes, wanted).await?;
    reader.fetched = Some(fetched);
    let value = compute(&reader).map_err(|error| damaged(chain, error.to_string()))?;
    Ok((value, records))
}

async fn fetch_hashes(
    source: &(impl ChainSource + ?Sized),
    chain: &ChainId,
    size: u64,
    indexes: &[u64],
    wanted: &[u64],
) -> Result<(HashMap<u64, Digest>, HashMap<u64, Record>), ProveError> {
    let mut leaves: Vec<(u64, u64)> = Vec::new();
    let mut interior: Vec<(u64, u64, usize)> = Vec::new();
    for &index in indexes {
        let (level, n) = split_stored_hash_index(index);
        let seq = stored_hash_record(level, n).saturating_add(1);
        if seq > size {
            return Err(damaged(
                chain,
                format!("stored hash {index} belongs to record {seq}, beyond the tree of {size}"),
            ));
        }
        match level {
            0 => leaves.push((index, seq)),
            _ => interior.push((index, seq, level as usize - 1)),
        }
    }
    let mut seqs: Vec<u64> = interior.iter().map(|&(_, seq, _)| seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let Some(rows) = source.tree_rows(chain, &seqs).await? else {
        let hashes = all_hashes_from_records(source, chain, size).await?;
        return Ok((hashes, read_records(source, chain, wanted).await?));
    };
    let mut rows_by_seq = HashMap::with_capacity(rows.len());
    for (seq, bytes) in rows {
        let row =
            TreeRow::decode(seq, &bytes).map_err(|error| damaged(chain, error.to_string()))?;
        rows_by_seq.insert(seq, row);
    }
    if let Some((_, seq, _)) = interior
        .iter()
        .find(|(_, seq, _)| !rows_by_seq.contains_key(seq))
    {
        // A tree behind its records (a writer of an earlier version
        // appended since): recompute, and say so.
        tracing::warn!(%chain, seq, "a tree row is missing; recomputing the tree from the records");
        let hashes = all_hashes_from_records(source, chain, size).await?;
        return Ok((hashes, read_records(source, chain, wanted).await?));
    }
    let mut hashes = HashMap::with_capacity(indexes.len());
    for (index, seq, position) in interior {
        let hash = rows_by_seq
            .get(&seq)
            .and_then(|row| row.hashes.get(position))
            .ok_or_else(|| damaged(chain, format!("the tree row of record {seq} is missing")))?;
        hashes.insert(index, *hash);
    }
    let mut seqs: Vec<u64> = leaves
        .iter()
        .map(|&(_, seq)| seq)
        .chain(wanted.iter().copied())
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    let records = read_records(source, chain, &seqs).await?;
    for (index, seq) in leaves {
        let record = records
            .get(&seq)
            .ok_or_else(|| damaged(chain, format!("record {seq} is missing")))?;
        hashes.insert(index, leaf_hash(record.event_json.as_bytes()));
    }
    Ok((hashes, records))
}

/// The records at `seqs`, each of which must be stored and readable.
async fn read_records(
    source: &(impl ChainSource + ?Sized),
    chain: &ChainId,
    seqs: &[u64],
) -> Result<HashMap<u64, Record>, ProveError> {
    let mut found = HashMap::with_capacity(seqs.len());
    for row in source.records_at(chain, seqs).await? {
        match row {
            SourceRecord::Record(record) => {
                found.insert(record.seq, record);
            }
            SourceRecord::Malformed { seq, detail } => {
                return Err(damaged(
                    chain,
                    format!("record {seq} is unreadable: {detail}"),
                ));
            }
        }
    }
    if let Some(missing) = seqs.iter().find(|seq| !found.contains_key(seq)) {
        return Err(damaged(chain, format!("record {missing} is missing")));
    }
    Ok(found)
}

/// Every stored hash of the tree of the first `size` records, recomputed
/// from the records (for stores that keep no tree rows).
async fn all_hashes_from_records(
    source: &(impl ChainSource + ?Sized),
    chain: &ChainId,
    size: u64,
) -> Result<HashMap<u64, Digest>, ProveError> {
    let mut frontier = TreeFrontier::new();
    let mut hashes = HashMap::new();
    let mut index = 0u64;
    let mut records = source.records(chain, 1).await?;
    while frontier.size() < size {
        let expected = frontier.size() + 1;
        let record = match records.next().await.transpose()? {
            Some(SourceRecord::Record(record)) if record.seq == expected => record,
            Some(SourceRecord::Record(record)) => {
                return Err(damaged(
                    chain,
                    format!("record {expected} is missing (found {} next)", record.seq),
                ));
            }
            Some(SourceRecord::Malformed { seq, detail }) => {
                return Err(damaged(chain, format!("row {seq} is unreadable: {detail}")));
            }
            None => return Err(damaged(chain, format!("record {expected} is missing"))),
        };
        for hash in frontier.push_stored(leaf_hash(record.event_json.as_bytes())) {
            hashes.insert(index, hash);
            index += 1;
        }
    }
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::tree::stored_hash_count;

    #[test]
    fn recorded_indexes_match_the_hashes_a_proof_reads() {
        let mut frontier = TreeFrontier::new();
        let mut all = Vec::new();
        for n in 0..37u64 {
            all.extend(frontier.push_stored(leaf_hash(&n.to_be_bytes())));
        }
        assert_eq!(all.len() as u64, stored_hash_count(37));
        let mut reader = TwoPassReader::default();
        tree::prove_inclusion(37, 11, &reader).unwrap();
        let indexes = reader.asked.take();
        reader.fetched = Some(
            indexes
                .iter()
                .map(|&index| (index, all[index as usize]))
                .collect(),
        );
        let from_fetched = tree::prove_inclusion(37, 11, &reader).unwrap();
        let from_all = tree::prove_inclusion(37, 11, all.as_slice()).unwrap();
        assert_eq!(from_fetched, from_all);
    }
}
