//! The index of every event id in a chain: id to the seq of its record.
//!
//! Event ids are the idempotency key: an event whose id is anywhere in the
//! chain is answered with its existing record instead of being appended
//! again (a supervisor retry after a lost acknowledgement, a journal
//! replayed after a crash). An object store has no unique index, so the
//! archive builds one in memory when it first opens a chain, from every
//! segment of the chain, and keeps it up to date with every segment it
//! writes or reads while catching up.
//!
//! # Design and cost
//!
//! An entry is 16 bytes: a 64-bit fingerprint of the id (SipHash with a
//! key drawn at random per index, so ids cannot be chosen to collide) and
//! the 64-bit seq of its record. Entries live in one sorted vector, plus a
//! small ordered set of the most recent ones that is merged into the
//! vector (in place, from the back) once it holds an eighth of it. A
//! lookup is a binary search; it yields *candidate* seqs, which the archive
//! confirms by reading the record back from its segment and comparing the
//! full id (that read also gives the record hash a receipt needs, so the
//! hash is not kept in memory). Two ids with one fingerprint are both kept
//! (the vector is a multimap); a fingerprint that matches a stored entry
//! by chance (probability n / 2^64 per lookup) costs one extra read and is
//! rejected by the confirmation.
//!
//! Memory: 16 bytes per record, plus 8 bytes per segment for the
//! segments' first seqs ([`crate::write`](mod@crate::write)). At 100 million records that is
//! 1.6 GB (a `HashMap<u128, u64>` of the ids would take 3.7 to 7.5 GB; one
//! keeping the 32-byte hash as well, 6.4 GB and more). While the chain is
//! read at open the entries are collected in a growing vector that is then
//! shrunk to fit, so the peak is briefly up to three times that.
//!
//! Time: building it means reading every segment once at open (eight at a
//! time), then sorting. Measured on the 2-core machine of DESIGN.md, in an
//! optimised build, from an in-memory store: 1 million records (1,000 per
//! segment) indexed in 1.3 s, 16.0 bytes per record; so about 2 to 3
//! minutes of CPU at 100 million, plus the time to fetch the archive
//! (about 350 to 500 bytes per record: 35 to 50 GB at 100 million). The
//! sort runs on tokio's blocking pool. A lookup that hits reads one segment
//! (a few milliseconds for 1,000 records). A sink rebuilt by the supervisor
//! from an [`ArchiveFactory`](crate::ArchiveFactory) shares the index and
//! does not read the chain again; a new process does.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};

/// The recent set is merged into the sorted vector when it holds more than
/// this many entries and more than an eighth of the vector.
const MERGE_AT_LEAST: usize = 4096;

/// One indexed record: the fingerprint of its event id and its seq.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    fingerprint: u64,
    seq: u64,
}

/// Computes the fingerprints of one [`IdIndex`]; cheap to clone, so ids
/// can be fingerprinted without holding the index.
#[derive(Debug, Clone)]
pub struct Fingerprinter(RandomState);

impl Fingerprinter {
    fn entry(&self, id: &str, seq: u64) -> Entry {
        Entry {
            fingerprint: self.0.hash_one(id),
            seq,
        }
    }
}

/// Ids fingerprinted outside the index, to add in one step.
#[derive(Debug, Default)]
pub struct IdBatch(Vec<Entry>);

impl IdBatch {
    /// An empty batch with room for `capacity` ids.
    pub fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    /// Adds the id of the record at `seq`.
    pub fn push(&mut self, fingerprinter: &Fingerprinter, id: &str, seq: u64) {
        self.0.push(fingerprinter.entry(id, seq));
    }

    /// How many ids it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Every event id of a chain, as fingerprint to seq (see the module docs).
#[derive(Debug, Clone)]
pub struct IdIndex {
    fingerprinter: Fingerprinter,
    sorted: Vec<Entry>,
    recent: BTreeSet<Entry>,
}

impl Default for IdIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl IdIndex {
    /// An empty index with a fresh random key.
    pub fn new() -> Self {
        Self {
            fingerprinter: Fingerprinter(RandomState::new()),
            sorted: Vec::new(),
            recent: BTreeSet::new(),
        }
    }

    /// The fingerprinter of this index.
    pub fn fingerprinter(&self) -> &Fingerprinter {
        &self.fingerprinter
    }

    /// Reserves room for `additional` more ids (before a bulk load).
    pub fn reserve(&mut self, additional: usize) {
        self.sorted.reserve_exact(additional);
    }

    /// Adds one id.
    pub fn insert(&mut self, id: &str, seq: u64) {
        self.recent.insert(self.fingerprinter.entry(id, seq));
        self.merge_if_due();
    }

    /// Adds a batch fingerprinted by [`IdIndex::fingerprinter`]: a large
    /// one (a chain read at open) is sorted in with the vector, a small one
    /// goes to the recent set.
    pub fn absorb(&mut self, batch: IdBatch) {
        let IdBatch(mut entries) = batch;
        if entries.len() > self.merge_threshold() {
            if self.sorted.is_empty() {
                self.sorted = entries;
            } else {
                self.sorted.append(&mut entries);
            }
            self.sorted.extend(std::mem::take(&mut self.recent));
            self.sorted.sort_unstable();
            self.sorted.dedup();
            self.sorted.shrink_to_fit();
        } else {
            self.recent.extend(entries);
            self.merge_if_due();
        }
    }

    /// The seqs whose id may be `id` (confirm each by reading the record).
    pub fn candidates(&self, id: &str) -> Vec<u64> {
        let fingerprint = self.fingerprinter.entry(id, 0).fingerprint;
        let start = self.sorted.partition_point(|e| e.fingerprint < fingerprint);
        let end = self
            .sorted
            .partition_point(|e| e.fingerprint <= fingerprint);
        let low = Entry {
            fingerprint,
            seq: 0,
        };
        let high = Entry {
            fingerprint,
            seq: u64::MAX,
        };
        self.sorted[start..end]
            .iter()
            .chain(self.recent.range(low..=high))
            .map(|entry| entry.seq)
            .collect()
    }

    /// How many ids are indexed.
    pub fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    /// Whether no id is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of memory held (the sorted vector's capacity and an estimate
    /// of 48 bytes per entry of the recent set).
    pub fn memory_bytes(&self) -> usize {
        self.sorted.capacity() * std::mem::size_of::<Entry>() + self.recent.len() * 48
    }

    fn merge_threshold(&self) -> usize {
        MERGE_AT_LEAST.max(self.sorted.len() / 8)
    }

    /// Merges the recent set into the vector once it is large enough,
    /// in place: the vector grows by the set's size and is filled from the
    /// back with the larger of the two tails.
    fn merge_if_due(&mut self) {
        if self.recent.len() <= self.merge_threshold() {
            return;
        }
        let recent = std::mem::take(&mut self.recent);
        let mut read = self.sorted.len();
        self.sorted.reserve_exact(recent.len());
        self.sorted.resize(read + recent.len(), Entry::default());
        let mut write = self.sorted.len();
        let mut incoming = recent.into_iter().rev().peekable();
        while let Some(&next) = incoming.peek() {
            write -= 1;
            if read > 0 && self.sorted[read - 1] > next {
                read -= 1;
                self.sorted[write] = self.sorted[read];
            } else {
                self.sorted[write] = next;
                incoming.next();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> String {
        format!("00000000-0000-7000-8000-{n:012}")
    }

    #[test]
    fn every_id_is_found_after_merges_and_bulk_loads() {
        let mut index = IdIndex::new();
        let mut batch = IdBatch::with_capacity(10_000);
        for n in 1..=10_000 {
            batch.push(index.fingerprinter(), &id(n), n);
        }
        index.absorb(batch);
        for n in 10_001..=30_000 {
            index.insert(&id(n), n);
        }
        assert_eq!(index.len(), 30_000);
        assert!(index.recent.len() <= index.merge_threshold());
        assert!(index.sorted.windows(2).all(|pair| pair[0] <= pair[1]));
        for n in (1..=30_000).step_by(7) {
            assert!(index.candidates(&id(n)).contains(&n), "{n}");
        }
        assert!(index.candidates(&id(40_000)).is_empty());
        assert!(index.memory_bytes() >= 16 * index.len());
    }

    #[test]
    fn one_id_at_two_seqs_yields_both_candidates() {
        let mut index = IdIndex::new();
        index.insert(&id(1), 3);
        index.insert(&id(1), 9);
        let mut seqs = index.candidates(&id(1));
        seqs.sort_unstable();
        assert_eq!(seqs, [3, 9]);
    }
}
