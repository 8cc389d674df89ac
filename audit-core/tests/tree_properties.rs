//! Properties of the tree (FORMAT.md section 8.1): for random trees every
//! inclusion and consistency proof verifies, and any change to a proof hash,
//! the index, a size, a root or the leaf makes it fail.

use audit_core::Digest;
use audit_core::chain::tree::{
    EMPTY_ROOT, HashReader, ProofError, TreeError, TreeFrontier, check_consistency,
    check_inclusion, leaf_hash, prove_consistency, prove_inclusion, split_stored_hash_index,
    stored_hash_count, stored_hash_index, stored_hashes_for_record, tree_hash,
};
use proptest::prelude::*;

fn tree(size: u64) -> (Vec<Digest>, Vec<Digest>) {
    let mut stored = Vec::new();
    let mut leaves = Vec::new();
    let mut frontier = TreeFrontier::new();
    for n in 0..size {
        let leaf = leaf_hash(format!("{{\"n\":{n}}}").as_bytes());
        leaves.push(leaf);
        stored.extend(frontier.push_stored(leaf));
    }
    (stored, leaves)
}

/// RFC 6962 section 2.1 Merkle Tree Hash, straight from the definition.
fn mth(leaves: &[Digest]) -> Digest {
    use audit_core::chain::tree::node_hash;
    match leaves.len() {
        0 => EMPTY_ROOT,
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

fn flip(hash: &Digest, bit: usize) -> Digest {
    let mut bytes = hash.0;
    bytes[(bit / 8) % 32] ^= 1 << (bit % 8);
    Digest(bytes)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn tree_hash_and_frontier_equal_the_rfc6962_definition(size in 0u64..300) {
        let (stored, leaves) = tree(size);
        let root = tree_hash(size, stored.as_slice()).unwrap();
        prop_assert_eq!(root, mth(&leaves));
        let mut frontier = TreeFrontier::new();
        leaves.iter().for_each(|leaf| frontier.push(*leaf));
        prop_assert_eq!(frontier.root(), root);
        prop_assert_eq!(frontier.size(), size);
        prop_assert_eq!(frontier.hashes().len() as u32, size.count_ones());
    }

    #[test]
    fn inclusion_proofs_verify_and_any_alteration_fails(
        size in 1u64..300,
        index_seed in any::<u64>(),
        bit in 0usize..256,
        position_seed in any::<usize>(),
        other_seed in any::<u64>(),
    ) {
        let (stored, leaves) = tree(size);
        let index = index_seed % size;
        let root = tree_hash(size, stored.as_slice()).unwrap();
        let leaf = leaves[index as usize];
        let proof = prove_inclusion(size, index, stored.as_slice()).unwrap();
        prop_assert_eq!(check_inclusion(index, &leaf, size, &root, &proof), Ok(()));

        // Any proof hash altered.
        if !proof.is_empty() {
            let mut altered = proof.clone();
            let position = position_seed % altered.len();
            altered[position] = flip(&altered[position], bit);
            prop_assert!(matches!(
                check_inclusion(index, &leaf, size, &root, &altered),
                Err(ProofError::RootMismatch { .. })
            ), "unexpected verification result");
        }
        // Another index.
        let other = other_seed % size;
        if other != index {
            prop_assert!(check_inclusion(other, &leaf, size, &root, &proof).is_err());
        }
        prop_assert!(matches!(
            check_inclusion(size, &leaf, size, &root, &proof),
            Err(ProofError::IndexBeyondSize { .. })
        ), "unexpected verification result");
        // Another size, with the root of the tree at that size. (A size
        // changed alone, with this root, can go unnoticed when the path has
        // the same shape: RFC 6962 binds the size through the signed
        // checkpoint, whose signature covers size and root together.)
        let other_size = 1 + other_seed % 300;
        if other_size != size && other_size > index {
            let (other_stored, _) = tree(other_size);
            let other_root = tree_hash(other_size, other_stored.as_slice()).unwrap();
            prop_assert!(check_inclusion(index, &leaf, other_size, &other_root, &proof).is_err());
        }
        // Another leaf, and another root.
        prop_assert!(check_inclusion(index, &flip(&leaf, bit), size, &root, &proof).is_err());
        prop_assert!(check_inclusion(index, &leaf, size, &flip(&root, bit), &proof).is_err());
        // A hash added or removed.
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert!(matches!(
            check_inclusion(index, &leaf, size, &root, &longer),
            Err(ProofError::WrongLength { .. })
        ), "unexpected verification result");
        if let Some((_, shorter)) = proof.split_last() {
            prop_assert!(matches!(
                check_inclusion(index, &leaf, size, &root, shorter),
                Err(ProofError::WrongLength { .. })
            ), "unexpected verification result");
        }
    }

    #[test]
    fn consistency_proofs_verify_and_any_alteration_fails(
        new in 1u64..300,
        old_seed in any::<u64>(),
        bit in 0usize..256,
        position_seed in any::<usize>(),
        other_seed in any::<u64>(),
    ) {
        let (stored, _) = tree(new);
        let old = old_seed % (new + 1);
        let old_root = tree_hash(old, stored.as_slice()).unwrap();
        let new_root = tree_hash(new, stored.as_slice()).unwrap();
        let proof = prove_consistency(old, new, stored.as_slice()).unwrap();
        prop_assert_eq!(check_consistency(old, &old_root, new, &new_root, &proof), Ok(()));

        if !proof.is_empty() {
            let mut altered = proof.clone();
            let position = position_seed % altered.len();
            altered[position] = flip(&altered[position], bit);
            prop_assert!(check_consistency(old, &old_root, new, &new_root, &altered).is_err());
        }
        // Other roots: the old one changed, the new one changed.
        prop_assert!(check_consistency(old, &flip(&old_root, bit), new, &new_root, &proof).is_err());
        // (From size 0 any new tree is consistent: only the empty old root counts.)
        if old != 0 {
            prop_assert!(check_consistency(old, &old_root, new, &flip(&new_root, bit), &proof).is_err());
        }
        // Another old size, with the root of that size.
        let other_old = other_seed % (new + 1);
        if other_old != old && old != 0 && other_old != 0 {
            let other_root = tree_hash(other_old, stored.as_slice()).unwrap();
            prop_assert!(check_consistency(other_old, &other_root, new, &new_root, &proof).is_err());
        }
        // Another new size, with the root of that size.
        let other_new = old.max(1) + other_seed % 300;
        if other_new != new && old != 0 {
            let (other_stored, _) = tree(other_new);
            let other_root = tree_hash(other_new, other_stored.as_slice()).unwrap();
            prop_assert!(check_consistency(old, &old_root, other_new, &other_root, &proof).is_err());
        }
        prop_assert!(matches!(
            check_consistency(new + 1, &old_root, new, &new_root, &proof),
            Err(ProofError::OldSizeBeyondSize { .. })
        ), "unexpected verification result");
    }

    #[test]
    fn stored_hashes_for_record_equal_the_frontiers_and_sit_at_their_indexes(size in 1u64..300) {
        let mut stored: Vec<Digest> = Vec::new();
        let mut frontier = TreeFrontier::new();
        for n in 0..size {
            let leaf = leaf_hash(&n.to_be_bytes());
            let computed = stored_hashes_for_record(n, leaf, stored.as_slice()).unwrap();
            prop_assert_eq!(stored.len() as u64, stored_hash_index(0, n));
            for (level, hash) in computed.iter().enumerate() {
                let index = stored_hash_index(0, n) + level as u64;
                prop_assert_eq!(split_stored_hash_index(index), (level as u32, n >> level));
                prop_assert_eq!(stored_hash_index(level as u32, n >> level), index);
                if level == 0 {
                    prop_assert_eq!(*hash, leaf);
                }
            }
            prop_assert_eq!(&computed, &frontier.push_stored(leaf));
            stored.extend(computed);
        }
        prop_assert_eq!(stored.len() as u64, stored_hash_count(size));
    }
}

#[test]
fn consistency_from_size_zero_needs_the_empty_root_and_no_hashes() {
    let (stored, _) = tree(5);
    let root = tree_hash(5, stored.as_slice()).unwrap();
    assert_eq!(
        prove_consistency(0, 5, stored.as_slice()).unwrap(),
        Vec::<Digest>::new()
    );
    assert_eq!(check_consistency(0, &EMPTY_ROOT, 5, &root, &[]), Ok(()));
    assert!(matches!(
        check_consistency(0, &root, 5, &root, &[]),
        Err(ProofError::OldRootMismatch { .. })
    ));
    assert!(matches!(
        check_consistency(0, &EMPTY_ROOT, 5, &root, &[root]),
        Err(ProofError::WrongLength {
            expected: 0,
            got: 1
        })
    ));
}

#[test]
fn empty_tree_root_is_sha256_of_the_empty_string() {
    assert_eq!(
        EMPTY_ROOT.to_hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(tree_hash(0, [].as_slice()).unwrap(), EMPTY_ROOT);
    assert_eq!(TreeFrontier::new().root(), EMPTY_ROOT);
}

#[derive(Debug, thiserror::Error)]
#[error("storage is down")]
struct Down;

struct FailingReader;

impl HashReader for FailingReader {
    type Error = Down;
    fn read_hashes(&self, _: &[u64]) -> Result<Vec<Digest>, Down> {
        Err(Down)
    }
}

struct ShortReader;

impl HashReader for ShortReader {
    type Error = Down;
    fn read_hashes(&self, _: &[u64]) -> Result<Vec<Digest>, Down> {
        Ok(Vec::new())
    }
}

#[test]
fn reader_failures_and_bad_arguments_are_typed_errors() {
    assert!(matches!(
        tree_hash(3, &FailingReader),
        Err(TreeError::Read(Down))
    ));
    assert!(matches!(
        tree_hash(3, &ShortReader),
        Err(TreeError::ReaderCount { asked: 2, got: 0 })
    ));
    let (stored, _) = tree(4);
    assert!(matches!(
        prove_inclusion(4, 4, stored.as_slice()),
        Err(TreeError::IndexBeyondSize { index: 4, size: 4 })
    ));
    assert!(matches!(
        prove_consistency(5, 4, stored.as_slice()),
        Err(TreeError::OldSizeBeyondSize { old: 5, new: 4 })
    ));
    assert!(matches!(
        tree_hash(9, stored.as_slice()),
        Err(TreeError::Read(
            audit_core::chain::tree::HashIndexOutOfRange { .. }
        ))
    ));
    assert!(matches!(
        tree_hash(u64::MAX, stored.as_slice()),
        Err(TreeError::TooLarge { .. })
    ));
}

#[test]
fn verifying_huge_claimed_sizes_fails_cleanly_without_panicking() {
    let leaf = leaf_hash(b"x");
    assert!(check_inclusion(u64::MAX - 1, &leaf, u64::MAX, &leaf, &[]).is_err());
    assert!(check_consistency(1, &leaf, u64::MAX, &leaf, &[]).is_err());
    assert!(check_consistency(u64::MAX - 1, &leaf, u64::MAX, &leaf, &[leaf; 3]).is_err());
}

#[test]
fn frontier_rebuilds_from_its_parts_and_refuses_the_wrong_count() {
    let (stored, leaves) = tree(11);
    let mut frontier = TreeFrontier::new();
    leaves.iter().for_each(|leaf| frontier.push(*leaf));
    let rebuilt = TreeFrontier::from_parts(11, frontier.hashes().to_vec()).unwrap();
    assert_eq!(rebuilt, frontier);
    assert_eq!(
        TreeFrontier::from_reader(11, stored.as_slice()).unwrap(),
        frontier
    );
    let error = TreeFrontier::from_parts(12, frontier.hashes().to_vec()).unwrap_err();
    assert_eq!((error.expected, error.got), (2, 3));
}
