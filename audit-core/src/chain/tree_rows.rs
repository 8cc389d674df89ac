//! How a store keeps a chain's tree beside its records (FORMAT.md
//! section 8.1), so that appends cost `O(log n)` and proofs read a few rows.
//!
//! The tree's stored hashes follow the layout of Go's `sumdb/tlog`
//! ([`stored_hash_index`](crate::chain::tree::stored_hash_index)): appending record `seq` stores its leaf
//! hash and the root of every perfect subtree it completes. A store keeps
//! only the second part, as one [`TreeRow`] per record that completes a
//! subtree (every second record, 32 bytes per record on average): leaf
//! hashes are `H(0x00 || E)` of the records themselves, so storing them
//! again would double the tree's size for nothing. Beside the rows, a
//! store keeps the chain's [`TreeFrontier`] (encoded by
//! [`encode_frontier`]) so that a writer continues the tree without
//! reading it. Rows and frontier are written in the same transaction as
//! the records they cover.
//!
//! ```
//! use audit_core::chain::tree::TreeFrontier;
//! use audit_core::chain::tree_rows::{TreeGrowth, decode_frontier, encode_frontier};
//!
//! let mut growth = TreeGrowth::new(TreeFrontier::new());
//! for seq in 1..=4u64 {
//!     growth.push(seq, format!("{{\"n\":{seq}}}").as_bytes());
//! }
//! let (rows, frontier) = growth.finish();
//! assert_eq!(rows.iter().map(|row| row.seq).collect::<Vec<_>>(), [2, 4]);
//! assert_eq!(rows[1].hashes.len(), 2); // seq 4 completes subtrees of 2 and 4 leaves
//! let stored = encode_frontier(&frontier);
//! assert_eq!(decode_frontier(4, &stored)?, frontier);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::chain::Record;
use crate::chain::tree::{TreeFrontier, leaf_hash};
use crate::digest::Digest;

/// The interior hashes stored for one record: the roots of the perfect
/// subtrees that appending record `seq` completes, smallest first (levels
/// 1, 2, …; [`stored_hash_index`](crate::chain::tree::stored_hash_index) offsets 1, 2, … from the record's
/// leaf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeRow {
    /// The record whose append completed these subtrees.
    pub seq: u64,
    /// The subtree roots, level 1 first.
    pub hashes: Vec<Digest>,
}

/// A stored tree row or frontier that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored tree data at seq {seq}: {detail}")]
pub struct TreeRowError {
    /// The record (or tree size, for a frontier) the data belongs to.
    pub seq: u64,
    /// What is wrong.
    pub detail: String,
}

impl TreeRow {
    /// The number of hashes record `seq` stores: the trailing ones of its
    /// leaf index `seq - 1`.
    pub fn len_for(seq: u64) -> usize {
        seq.saturating_sub(1).trailing_ones() as usize
    }

    /// The hashes concatenated, as a store keeps them.
    pub fn encode(&self) -> Vec<u8> {
        concat(&self.hashes)
    }

    /// Decodes a stored row of record `seq`, checking its length.
    pub fn decode(seq: u64, bytes: &[u8]) -> Result<Self, TreeRowError> {
        let expected = Self::len_for(seq);
        let hashes = split(seq, bytes)?;
        if hashes.len() != expected {
            return Err(TreeRowError {
                seq,
                detail: format!(
                    "{} hashes stored, record {seq} completes {expected}",
                    hashes.len()
                ),
            });
        }
        Ok(Self { seq, hashes })
    }
}

/// The frontier's hashes concatenated, as a store keeps them beside its size.
pub fn encode_frontier(frontier: &TreeFrontier) -> Vec<u8> {
    concat(frontier.hashes())
}

/// Decodes a frontier stored for a tree of `size` records.
pub fn decode_frontier(size: u64, bytes: &[u8]) -> Result<TreeFrontier, TreeRowError> {
    let hashes = split(size, bytes)?;
    TreeFrontier::from_parts(size, hashes).map_err(|error| TreeRowError {
        seq: size,
        detail: error.to_string(),
    })
}

fn concat(hashes: &[Digest]) -> Vec<u8> {
    hashes.iter().flat_map(|hash| hash.0).collect()
}

fn split(seq: u64, bytes: &[u8]) -> Result<Vec<Digest>, TreeRowError> {
    if !bytes.len().is_multiple_of(32) {
        return Err(TreeRowError {
            seq,
            detail: format!("{} bytes is not a whole number of hashes", bytes.len()),
        });
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|chunk| {
            let mut hash = [0u8; 32];
            hash.copy_from_slice(chunk);
            Digest(hash)
        })
        .collect())
}

/// A tree growing by records: the rows to store and the frontier after them.
#[derive(Debug, Clone)]
pub struct TreeGrowth {
    frontier: TreeFrontier,
    rows: Vec<TreeRow>,
}

impl TreeGrowth {
    /// Starts from the tree of a chain's first `frontier.size()` records.
    pub fn new(frontier: TreeFrontier) -> Self {
        Self {
            frontier,
            rows: Vec::new(),
        }
    }

    /// The size reached.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Appends the leaf of record `seq` with canonical event bytes
    /// `event_json`. The caller gives records in seq order, starting at
    /// `size() + 1`.
    pub fn push(&mut self, seq: u64, event_json: &[u8]) {
        let stored = self.frontier.push_stored(leaf_hash(event_json));
        if stored.len() > 1 {
            self.rows.push(TreeRow {
                seq,
                hashes: stored[1..].to_vec(),
            });
        }
    }

    /// Appends the leaf of record `seq`, read back from a store, which must
    /// be the next record (`size() + 1`) and readable: the check a store
    /// makes when it grows a tree from its records.
    pub fn push_next(
        &mut self,
        seq: Option<u64>,
        event_json: Option<&[u8]>,
    ) -> Result<(), TreeRowError> {
        let expected = self.size() + 1;
        match (seq, event_json) {
            (Some(seq), Some(event_json)) if seq == expected => {
                self.push(seq, event_json);
                Ok(())
            }
            _ => Err(TreeRowError {
                seq: expected,
                detail: format!("record {expected} is missing or unreadable"),
            }),
        }
    }

    /// Appends sealed records, in seq order.
    pub fn push_records(&mut self, records: &[Record]) {
        for record in records {
            self.push(record.seq, record.event_json.as_bytes());
        }
    }

    /// The rows to store and the frontier.
    pub fn finish(self) -> (Vec<TreeRow>, TreeFrontier) {
        (self.rows, self.frontier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::tree::{stored_hash_count, stored_hash_index};

    #[test]
    fn rows_hold_every_interior_stored_hash_once() {
        let mut all: Vec<Digest> = Vec::new();
        let mut growth = TreeGrowth::new(TreeFrontier::new());
        let mut reference = TreeFrontier::new();
        for seq in 1..=100u64 {
            let data = seq.to_be_bytes();
            all.extend(reference.push_stored(leaf_hash(&data)));
            growth.push(seq, &data);
        }
        let (rows, frontier) = growth.finish();
        assert_eq!(frontier, reference);
        let interior: usize = rows.iter().map(|row| row.hashes.len()).sum();
        assert_eq!(interior as u64, stored_hash_count(100) - 100);
        for row in &rows {
            assert_eq!(row.hashes.len(), TreeRow::len_for(row.seq));
            let first = stored_hash_index(0, row.seq - 1) as usize;
            assert_eq!(
                &all[first + 1..first + 1 + row.hashes.len()],
                &row.hashes[..]
            );
            assert_eq!(TreeRow::decode(row.seq, &row.encode()).as_ref(), Ok(row));
        }
    }

    #[test]
    fn damaged_rows_and_frontiers_are_refused() {
        assert!(TreeRow::decode(2, &[0; 31]).is_err());
        assert!(TreeRow::decode(2, &[0; 64]).is_err());
        assert!(TreeRow::decode(4, &[0; 32]).is_err());
        assert!(decode_frontier(3, &[0; 32]).is_err());
        assert!(decode_frontier(3, &[0; 64]).is_ok());
    }
}
