//! The RFC 6962 Merkle tree over a chain's records (FORMAT.md section 8.1),
//! storage-agnostic, in the manner of Go's `golang.org/x/mod/sumdb/tlog`.
//!
//! Leaf `i` of a chain's tree is the record with `seq = i + 1`; its leaf hash
//! is `H(0x00 || E)` over the canonical event bytes `E`, an interior node is
//! `H(0x01 || left || right)`, and the root of the empty tree is `H("")`.
//!
//! # Stored hashes
//!
//! A store keeps the tree as a flat sequence of *stored hashes*: when record
//! `n` (0-based) is appended, its leaf hash (level 0) and the root of every
//! perfect subtree that record completes (levels 1, 2, …) are written at the
//! consecutive indexes starting at [`stored_hash_index`]`(0, n)`. The hash of
//! the perfect subtree of height `level` number `k` (covering leaves
//! `k·2^level … (k+1)·2^level - 1`) lives at `stored_hash_index(level, k)`.
//! [`stored_hashes_for_record`] computes what to write for record `n` from
//! `O(log n)` earlier stored hashes, so a backend can write them in the same
//! transaction as the record; [`tree_hash`], [`prove_inclusion`] and
//! [`prove_consistency`] read at most `O(log n)` stored hashes through a
//! [`HashReader`].
//!
//! On average a record adds two stored hashes (64 bytes): one at level 0 and,
//! summed over all levels, one above. A backend short of space may keep only
//! the level ≥ 1 hashes (32 bytes a record on average) and answer a level-0
//! index ([`split_stored_hash_index`] gives `(0, n)`) with [`leaf_hash`] of
//! record `n`'s stored `E`: a tree hash, a proof or the stored hashes of a
//! new record then need at most two such leaf reads. Every stored hash
//! belongs to one record ([`stored_hash_record`]), so a backend can keep
//! record `n`'s hashes (levels 1 to `trailing_ones(n)`) in the record's own
//! row, written in the same statement as the record.
//!
//! # Verifying while streaming
//!
//! [`TreeFrontier`] is the tree's right edge (one hash per set bit of the
//! size): push leaf hashes in order and read the root at any size, in
//! `O(log n)` memory. It is rebuilt from a store with
//! [`TreeFrontier::from_reader`].
//!
//! ```
//! use audit_core::chain::tree::{
//!     check_consistency, check_inclusion, leaf_hash, prove_consistency, prove_inclusion,
//!     tree_hash, TreeFrontier,
//! };
//! use audit_core::Digest;
//!
//! // A writer keeps the stored hashes (here in a Vec) and a frontier.
//! let mut stored: Vec<Digest> = Vec::new();
//! let mut frontier = TreeFrontier::new();
//! for n in 0..10u32 {
//!     let event = format!("{{\"n\":{n}}}");
//!     stored.extend(frontier.push_stored(leaf_hash(event.as_bytes())));
//! }
//! let root = tree_hash(10, stored.as_slice())?;
//! assert_eq!(root, frontier.root());
//!
//! // Anyone holding record 4's event and the root checks its inclusion.
//! let proof = prove_inclusion(10, 4, stored.as_slice())?;
//! check_inclusion(4, &leaf_hash(b"{\"n\":4}"), 10, &root, &proof)?;
//!
//! // And that the tree at size 10 extends the tree at size 6.
//! let old_root = tree_hash(6, stored.as_slice())?;
//! let proof = prove_consistency(6, 10, stored.as_slice())?;
//! check_consistency(6, &old_root, 10, &root, &proof)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::digest::Digest;

/// The root of the empty tree, `H("")`.
pub const EMPTY_ROOT: Digest = Digest([
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
]);

/// The largest tree size the stored-hash functions accept (2^62 records):
/// beyond it stored-hash indexes would not fit in a `u64`.
pub const MAX_STORED_TREE_SIZE: u64 = 1 << 62;

/// `leaf_hash = H(0x00 || E)`, the hash of leaf data `E` (the canonical event bytes).
pub fn leaf_hash(leaf_data: &[u8]) -> Digest {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    hasher.update([0x00]);
    hasher.update(leaf_data);
    Digest(hasher.finalize().into())
}

/// `H(0x01 || left || right)`, an interior node of the tree.
pub fn node_hash(left: &Digest, right: &Digest) -> Digest {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    hasher.update([0x01]);
    hasher.update(left.as_bytes());
    hasher.update(right.as_bytes());
    Digest(hasher.finalize().into())
}

/// Read access to stored hashes, implemented by each storage backend.
pub trait HashReader {
    /// The backend's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The stored hashes at `indexes`, in the same order, one per index.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Digest>, Self::Error>;
}

/// A stored hash index a slice-backed [`HashReader`] does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored hash index {index} is beyond the {stored} stored hashes")]
pub struct HashIndexOutOfRange {
    /// The index asked for.
    pub index: u64,
    /// How many hashes are stored.
    pub stored: u64,
}

/// A slice of every stored hash, at its index: an in-memory store.
impl HashReader for [Digest] {
    type Error = HashIndexOutOfRange;

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Digest>, Self::Error> {
        indexes
            .iter()
            .map(|&index| {
                usize::try_from(index)
                    .ok()
                    .and_then(|i| self.get(i))
                    .copied()
                    .ok_or(HashIndexOutOfRange {
                        index,
                        stored: self.len() as u64,
                    })
            })
            .collect()
    }
}

impl<R: HashReader + ?Sized> HashReader for &R {
    type Error = R::Error;

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Digest>, Self::Error> {
        (**self).read_hashes(indexes)
    }
}

/// Why the tree could not be read or a proof could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError<E: std::error::Error + Send + Sync + 'static> {
    /// The hash reader failed.
    #[error("reading stored tree hashes: {0}")]
    Read(#[source] E),
    /// The hash reader answered with the wrong number of hashes.
    #[error("hash reader returned {got} hashes for {asked} indexes")]
    ReaderCount {
        /// Indexes asked for.
        asked: usize,
        /// Hashes returned.
        got: usize,
    },
    /// An inclusion proof of a leaf that is not in the tree.
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexBeyondSize {
        /// The leaf index (seq - 1).
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A consistency proof from a size larger than the new size.
    #[error("old tree size {old} is beyond the new tree size {new}")]
    OldSizeBeyondSize {
        /// The old size.
        old: u64,
        /// The new size.
        new: u64,
    },
    /// A size or record number beyond [`MAX_STORED_TREE_SIZE`].
    #[error("tree size {size} is beyond the supported maximum {MAX_STORED_TREE_SIZE}")]
    TooLarge {
        /// The offending size.
        size: u64,
    },
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexBeyondSize {
        /// The leaf index (seq - 1).
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The old size of a consistency proof is larger than the new size.
    #[error("old tree size {old} is beyond the new tree size {new}")]
    OldSizeBeyondSize {
        /// The old size.
        old: u64,
        /// The new size.
        new: u64,
    },
    /// The proof has more or fewer hashes than the sizes call for.
    #[error("proof has {got} hashes, the tree sizes call for {expected}")]
    WrongLength {
        /// Hashes the proof should have.
        expected: usize,
        /// Hashes it has.
        got: usize,
    },
    /// The root recomputed from the proof differs from the given root.
    #[error("proof leads to root {computed}, not the expected root {expected}")]
    RootMismatch {
        /// The root the proof leads to.
        computed: Digest,
        /// The root it should lead to.
        expected: Digest,
    },
    /// The old root recomputed from a consistency proof differs from the given old root.
    #[error("consistency proof leads to old root {computed}, not the expected old root {expected}")]
    OldRootMismatch {
        /// The old root the proof leads to.
        computed: Digest,
        /// The old root it should lead to.
        expected: Digest,
    },
}

/// The stored hash index of the perfect subtree of height `level` number
/// `n` (leaves `n·2^level … (n+1)·2^level - 1`); level 0 is leaf `n`.
///
/// Defined for `n·2^level < 2^62`.
pub fn stored_hash_index(level: u32, n: u64) -> u64 {
    // Level L's n'th hash is written right after level L+1's 2n+1'th hash:
    // walk down to the level-0 ordering, then add back the level count.
    // (Saturating: beyond the defined range the result is meaningless but
    // never a panic.)
    let mut n = n;
    for _ in 0..level {
        n = n.saturating_mul(2).saturating_add(1);
    }
    // Level 0's n'th hash is written at n + n/2 + n/4 + …
    let mut index = 0u64;
    while n > 0 {
        index = index.saturating_add(n);
        n >>= 1;
    }
    index.saturating_add(u64::from(level))
}

/// The record (0-based leaf index) whose append stores the hash of the
/// perfect subtree of height `level` number `n`: the subtree's last leaf,
/// `(n + 1)·2^level - 1`. That record stores it as its hash number `level`
/// (level 0 being its own leaf hash), so a backend may keep each record's
/// stored hashes in the record's own row, and leave out the level-0 one,
/// which [`leaf_hash`] recomputes from `E`.
pub fn stored_hash_record(level: u32, n: u64) -> u64 {
    let subtrees = n.saturating_add(1);
    match u64::MAX.checked_shr(level) {
        Some(max) if subtrees <= max => (subtrees << level) - 1,
        _ => u64::MAX,
    }
}

/// The inverse of [`stored_hash_index`]: `(level, n)` of a stored hash index.
pub fn split_stored_hash_index(index: u64) -> (u32, u64) {
    // stored_hash_index(0, n) <= 2n, so record n is at least index / 2.
    let mut n = index / 2;
    let mut index_n = stored_hash_index(0, n);
    loop {
        // Record n adds 1 + trailing_zeros(n + 1) hashes.
        let next = index_n + 1 + u64::from((n + 1).trailing_zeros());
        if next > index {
            break;
        }
        n += 1;
        index_n = next;
    }
    let level = (index - index_n) as u32;
    (level, n >> level)
}

/// How many hashes a tree of `size` records stores.
pub fn stored_hash_count(size: u64) -> u64 {
    if size == 0 {
        return 0;
    }
    let mut count = stored_hash_index(0, size - 1) + 1;
    let mut i = size - 1;
    while i & 1 != 0 {
        count += 1;
        i >>= 1;
    }
    count
}

fn check_size<E: std::error::Error + Send + Sync + 'static>(size: u64) -> Result<(), TreeError<E>> {
    if size > MAX_STORED_TREE_SIZE {
        return Err(TreeError::TooLarge { size });
    }
    Ok(())
}

fn read<R: HashReader + ?Sized>(
    reader: &R,
    indexes: &[u64],
) -> Result<Vec<Digest>, TreeError<R::Error>> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = reader.read_hashes(indexes).map_err(TreeError::Read)?;
    if hashes.len() != indexes.len() {
        return Err(TreeError::ReaderCount {
            asked: indexes.len(),
            got: hashes.len(),
        });
    }
    Ok(hashes)
}

/// The hashes to store when appending record `n` (0-based, `seq = n + 1`)
/// whose leaf hash is `leaf`, given the hashes stored for records `0 … n-1`.
///
/// They go at the consecutive indexes `stored_hash_index(0, n)`,
/// `stored_hash_index(0, n) + 1`, …: first the leaf hash, then the root of
/// each perfect subtree record `n` completes, smallest first. Reads
/// `trailing_ones(n)` earlier hashes. A writer holding a [`TreeFrontier`]
/// gets the same hashes from [`TreeFrontier::push_stored`] without reading.
pub fn stored_hashes_for_record<R: HashReader + ?Sized>(
    n: u64,
    leaf: Digest,
    reader: &R,
) -> Result<Vec<Digest>, TreeError<R::Error>> {
    check_size(n)?;
    let completed = (n + 1).trailing_zeros();
    // The left siblings, in increasing index order (highest level first).
    let indexes: Vec<u64> = (0..completed)
        .rev()
        .map(|level| stored_hash_index(level, (n >> level) - 1))
        .collect();
    let siblings = read(reader, &indexes)?;
    let mut hashes = Vec::with_capacity(siblings.len() + 1);
    let mut hash = leaf;
    hashes.push(hash);
    for sibling in siblings.iter().rev() {
        hash = node_hash(sibling, &hash);
        hashes.push(hash);
    }
    Ok(hashes)
}

/// The largest power of two that is at most `x` (`x >= 1`).
fn pow2_at_most(x: u64) -> u64 {
    1u64 << (63 - x.leading_zeros())
}

/// The size of the left subtree of a node over `lo … hi-1` (`hi - lo >= 2`):
/// the largest power of two strictly below `hi - lo`.
fn split(lo: u64, hi: u64) -> u64 {
    pow2_at_most(hi - lo - 1)
}

/// The stored indexes of the perfect subtrees that make up `lo … hi-1`,
/// largest (leftmost) first.
fn subtree_indexes(mut lo: u64, hi: u64, need: &mut Vec<u64>) {
    while lo < hi {
        let k = pow2_at_most(hi - lo);
        let level = k.trailing_zeros();
        need.push(stored_hash_index(level, lo >> level));
        lo += k;
    }
}

/// Combines the perfect subtree hashes of `lo … hi-1` taken from `hashes`.
fn subtree_hash(mut lo: u64, hi: u64, hashes: &mut std::slice::Iter<'_, Digest>) -> Digest {
    let mut parts = Vec::new();
    while lo < hi {
        let k = pow2_at_most(hi - lo);
        parts.push(hashes.next().copied().unwrap_or_default());
        lo += k;
    }
    fold_right(&parts)
}

/// `node(p0, node(p1, … node(pk-1, pk)))`, or [`EMPTY_ROOT`] for no parts.
fn fold_right(parts: &[Digest]) -> Digest {
    let mut iter = parts.iter().rev();
    let Some(last) = iter.next() else {
        return EMPTY_ROOT;
    };
    iter.fold(*last, |hash, left| node_hash(left, &hash))
}

/// The root of the tree of the first `size` records.
pub fn tree_hash<R: HashReader + ?Sized>(
    size: u64,
    reader: &R,
) -> Result<Digest, TreeError<R::Error>> {
    check_size(size)?;
    let mut indexes = Vec::new();
    subtree_indexes(0, size, &mut indexes);
    let hashes = read(reader, &indexes)?;
    Ok(fold_right(&hashes))
}

fn inclusion_indexes(lo: u64, hi: u64, n: u64, need: &mut Vec<u64>) {
    if hi - lo <= 1 {
        return;
    }
    let k = split(lo, hi);
    if n < lo + k {
        inclusion_indexes(lo, lo + k, n, need);
        subtree_indexes(lo + k, hi, need);
    } else {
        subtree_indexes(lo, lo + k, need);
        inclusion_indexes(lo + k, hi, n, need);
    }
}

fn inclusion_path(
    lo: u64,
    hi: u64,
    n: u64,
    hashes: &mut std::slice::Iter<'_, Digest>,
    proof: &mut Vec<Digest>,
) {
    if hi - lo <= 1 {
        return;
    }
    let k = split(lo, hi);
    if n < lo + k {
        inclusion_path(lo, lo + k, n, hashes, proof);
        proof.push(subtree_hash(lo + k, hi, hashes));
    } else {
        let left = subtree_hash(lo, lo + k, hashes);
        inclusion_path(lo + k, hi, n, hashes, proof);
        proof.push(left);
    }
}

/// The RFC 6962 audit path of leaf `index` (`seq - 1`) in the tree of
/// `size` records, from the leaf's sibling up.
pub fn prove_inclusion<R: HashReader + ?Sized>(
    size: u64,
    index: u64,
    reader: &R,
) -> Result<Vec<Digest>, TreeError<R::Error>> {
    check_size(size)?;
    if index >= size {
        return Err(TreeError::IndexBeyondSize { index, size });
    }
    let mut indexes = Vec::new();
    inclusion_indexes(0, size, index, &mut indexes);
    let hashes = read(reader, &indexes)?;
    let mut proof = Vec::new();
    inclusion_path(0, size, index, &mut hashes.iter(), &mut proof);
    Ok(proof)
}

fn consistency_indexes(lo: u64, hi: u64, n: u64, need: &mut Vec<u64>) {
    if n == hi {
        if lo != 0 {
            subtree_indexes(lo, hi, need);
        }
        return;
    }
    let k = split(lo, hi);
    if n <= lo + k {
        consistency_indexes(lo, lo + k, n, need);
        subtree_indexes(lo + k, hi, need);
    } else {
        subtree_indexes(lo, lo + k, need);
        consistency_indexes(lo + k, hi, n, need);
    }
}

fn consistency_path(
    lo: u64,
    hi: u64,
    n: u64,
    hashes: &mut std::slice::Iter<'_, Digest>,
    proof: &mut Vec<Digest>,
) {
    if n == hi {
        if lo != 0 {
            proof.push(subtree_hash(lo, hi, hashes));
        }
        return;
    }
    let k = split(lo, hi);
    if n <= lo + k {
        consistency_path(lo, lo + k, n, hashes, proof);
        proof.push(subtree_hash(lo + k, hi, hashes));
    } else {
        let left = subtree_hash(lo, lo + k, hashes);
        consistency_path(lo + k, hi, n, hashes, proof);
        proof.push(left);
    }
}

/// The RFC 6962 consistency proof that the tree of `new_size` records
/// extends the tree of `old_size` records. Empty when `old_size` is 0 or
/// equals `new_size`.
pub fn prove_consistency<R: HashReader + ?Sized>(
    old_size: u64,
    new_size: u64,
    reader: &R,
) -> Result<Vec<Digest>, TreeError<R::Error>> {
    check_size(new_size)?;
    if old_size > new_size {
        return Err(TreeError::OldSizeBeyondSize {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == 0 {
        return Ok(Vec::new());
    }
    let mut indexes = Vec::new();
    consistency_indexes(0, new_size, old_size, &mut indexes);
    let hashes = read(reader, &indexes)?;
    let mut proof = Vec::new();
    consistency_path(0, new_size, old_size, &mut hashes.iter(), &mut proof);
    Ok(proof)
}

/// The number of hashes in the audit path of leaf `index` in a tree of
/// `size` records (`index < size`).
pub fn inclusion_proof_len(size: u64, index: u64) -> usize {
    let (mut lo, mut hi) = (0u64, size);
    let mut len = 0;
    while hi - lo > 1 && index >= lo && index < hi {
        let k = split(lo, hi);
        if index < lo + k {
            hi = lo + k;
        } else {
            lo += k;
        }
        len += 1;
    }
    len
}

/// The number of hashes in the consistency proof from `old_size` to
/// `new_size` (`old_size <= new_size`).
pub fn consistency_proof_len(old_size: u64, new_size: u64) -> usize {
    if old_size == 0 || old_size >= new_size {
        return 0;
    }
    let (mut lo, mut hi) = (0u64, new_size);
    let mut len = 0;
    while old_size != hi {
        let k = split(lo, hi);
        if old_size <= lo + k {
            hi = lo + k;
        } else {
            lo += k;
        }
        len += 1;
    }
    len + usize::from(lo != 0)
}

/// Walks an audit path; `proof` holds the path hashes, leaf side first
/// (consumed from the end while descending).
fn run_inclusion(proof: &[Digest], lo: u64, hi: u64, n: u64, leaf: Digest) -> Digest {
    if hi - lo <= 1 {
        return leaf;
    }
    let Some((last, rest)) = proof.split_last() else {
        return leaf;
    };
    let k = split(lo, hi);
    if n < lo + k {
        node_hash(&run_inclusion(rest, lo, lo + k, n, leaf), last)
    } else {
        node_hash(last, &run_inclusion(rest, lo + k, hi, n, leaf))
    }
}

/// Checks that `leaf` (a [`leaf_hash`]) is leaf `index` (`seq - 1`) of the
/// tree of `size` records whose root is `root`, given its audit path.
pub fn check_inclusion(
    index: u64,
    leaf: &Digest,
    size: u64,
    root: &Digest,
    proof: &[Digest],
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexBeyondSize { index, size });
    }
    let expected = inclusion_proof_len(size, index);
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    let computed = run_inclusion(proof, 0, size, index, *leaf);
    if computed != *root {
        return Err(ProofError::RootMismatch {
            computed,
            expected: *root,
        });
    }
    Ok(())
}

/// Returns `(old root, new root)` recomputed from a consistency proof of
/// the right length.
fn run_consistency(proof: &[Digest], lo: u64, hi: u64, n: u64, old: Digest) -> (Digest, Digest) {
    if n == hi {
        if lo == 0 {
            return (old, old);
        }
        let hash = proof.first().copied().unwrap_or_default();
        return (hash, hash);
    }
    let Some((last, rest)) = proof.split_last() else {
        return (old, old);
    };
    let k = split(lo, hi);
    if n <= lo + k {
        let (old_hash, new_hash) = run_consistency(rest, lo, lo + k, n, old);
        (old_hash, node_hash(&new_hash, last))
    } else {
        let (old_hash, new_hash) = run_consistency(rest, lo + k, hi, n, old);
        (node_hash(last, &old_hash), node_hash(last, &new_hash))
    }
}

/// Checks that the tree of `new_size` records with root `new_root` extends
/// the tree of `old_size` records with root `old_root`, given the
/// consistency proof. From size 0 the proof is empty and any old root is
/// accepted only if it is [`EMPTY_ROOT`]; between equal sizes the proof is
/// empty and the roots must be equal.
pub fn check_consistency(
    old_size: u64,
    old_root: &Digest,
    new_size: u64,
    new_root: &Digest,
    proof: &[Digest],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OldSizeBeyondSize {
            old: old_size,
            new: new_size,
        });
    }
    let expected = consistency_proof_len(old_size, new_size);
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    if old_size == 0 {
        if *old_root != EMPTY_ROOT {
            return Err(ProofError::OldRootMismatch {
                computed: EMPTY_ROOT,
                expected: *old_root,
            });
        }
        return Ok(());
    }
    let (old_computed, new_computed) = run_consistency(proof, 0, new_size, old_size, *old_root);
    if old_computed != *old_root {
        return Err(ProofError::OldRootMismatch {
            computed: old_computed,
            expected: *old_root,
        });
    }
    if new_computed != *new_root {
        return Err(ProofError::RootMismatch {
            computed: new_computed,
            expected: *new_root,
        });
    }
    Ok(())
}

/// The right edge of a tree: the roots of the perfect subtrees that make up
/// its leaves, largest (leftmost) first, one per set bit of the size.
///
/// Push leaf hashes in order to follow a growing tree in `O(log n)` memory;
/// a verifier streaming records recomputes the root this way, and a writer
/// gets the hashes to store for each record from [`push_stored`](Self::push_stored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeFrontier {
    size: u64,
    hashes: Vec<Digest>,
}

/// Why a frontier could not be rebuilt from its parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a tree of size {size} has a frontier of {expected} hashes, got {got}")]
pub struct FrontierError {
    /// The size given.
    pub size: u64,
    /// Hashes a frontier of that size has.
    pub expected: usize,
    /// Hashes given.
    pub got: usize,
}

impl TreeFrontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a frontier from its size and hashes (as returned by
    /// [`hashes`](Self::hashes)).
    pub fn from_parts(size: u64, hashes: Vec<Digest>) -> Result<Self, FrontierError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(FrontierError {
                size,
                expected,
                got: hashes.len(),
            });
        }
        Ok(Self { size, hashes })
    }

    /// Rebuilds the frontier of the tree of `size` records from stored
    /// hashes, reading one hash per set bit of `size`.
    pub fn from_reader<R: HashReader + ?Sized>(
        size: u64,
        reader: &R,
    ) -> Result<Self, TreeError<R::Error>> {
        check_size(size)?;
        let mut indexes = Vec::new();
        subtree_indexes(0, size, &mut indexes);
        let hashes = read(reader, &indexes)?;
        Ok(Self { size, hashes })
    }

    /// The number of leaves pushed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect subtree roots, largest first.
    pub fn hashes(&self) -> &[Digest] {
        &self.hashes
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Digest) {
        self.push_with(leaf, |_| {});
    }

    /// Appends a leaf hash and returns the hashes a store keeps for this
    /// record, as [`stored_hashes_for_record`] would.
    pub fn push_stored(&mut self, leaf: Digest) -> Vec<Digest> {
        let mut stored = Vec::with_capacity(1 + self.size.trailing_ones() as usize);
        self.push_with(leaf, |hash| stored.push(hash));
        stored
    }

    fn push_with(&mut self, leaf: Digest, mut emit: impl FnMut(Digest)) {
        let mut hash = leaf;
        emit(hash);
        let mut n = self.size;
        while n & 1 == 1 {
            let Some(left) = self.hashes.pop() else {
                break;
            };
            hash = node_hash(&left, &hash);
            emit(hash);
            n >>= 1;
        }
        self.hashes.push(hash);
        self.size += 1;
    }

    /// The root at the current size ([`EMPTY_ROOT`] when empty).
    pub fn root(&self) -> Digest {
        fold_right(&self.hashes)
    }
}

/// A tree with nothing stored: every read fails. Useful for
/// [`stored_hashes_for_record`] of record 0, which reads nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHashes;

impl HashReader for NoHashes {
    type Error = HashIndexOutOfRange;

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Digest>, Self::Error> {
        match indexes.first() {
            Some(&index) => Err(HashIndexOutOfRange { index, stored: 0 }),
            None => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        use sha2::Digest as _;
        assert_eq!(EMPTY_ROOT.0, <[u8; 32]>::from(sha2::Sha256::digest(b"")));
    }

    #[test]
    fn split_inverts_stored_hash_index() {
        for n in 0..2000u64 {
            for level in 0..6u32 {
                if n << level > 4000 {
                    continue;
                }
                // only hashes that are ever stored: subtree complete
                assert_eq!(
                    split_stored_hash_index(stored_hash_index(level, n)),
                    (level, n)
                );
            }
        }
    }

    #[test]
    fn every_stored_hash_belongs_to_the_last_leaf_of_its_subtree() {
        for n in 0..500u64 {
            for level in 0..=n.trailing_ones() {
                let k = n >> level;
                assert_eq!(stored_hash_record(level, k), n);
                assert_eq!(
                    stored_hash_index(level, k),
                    stored_hash_index(0, n) + u64::from(level)
                );
            }
        }
    }

    #[test]
    fn stored_hash_index_saturates_instead_of_overflowing() {
        assert_eq!(stored_hash_index(63, u64::MAX), u64::MAX);
        assert_eq!(stored_hash_record(63, u64::MAX), u64::MAX);
    }

    #[test]
    fn stored_hashes_sit_at_consecutive_indexes() {
        let mut stored: Vec<Digest> = Vec::new();
        let mut frontier = TreeFrontier::new();
        for n in 0..300u64 {
            let leaf = leaf_hash(&n.to_be_bytes());
            let from_reader = stored_hashes_for_record(n, leaf, stored.as_slice()).unwrap();
            assert_eq!(stored.len() as u64, stored_hash_index(0, n));
            let pushed = frontier.push_stored(leaf);
            assert_eq!(from_reader, pushed);
            stored.extend(pushed);
            assert_eq!(stored.len() as u64, stored_hash_count(n + 1));
        }
    }
}
