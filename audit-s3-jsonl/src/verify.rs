//! Streaming verification of an archive prefix.
//!
//! For each chain under the prefix (or the one asked for): its checkpoints
//! (its own, and any given from elsewhere, e.g. published off-box) go to the
//! [`Verifier`] first, then its segments are listed, sorted by seq, and read
//! one at a time, each line fed to the verifier (an undecodable line is
//! reported as `malformed` at the seq it should have had). Memory holds one
//! segment, the segment names of the listing (tens of bytes each) and what
//! the verifier keeps (one head per chain, 16 bytes per event id). It works
//! on any [`ObjectStore`]: S3, a local folder in the same layout (the
//! shared vectors' `jsonl/`), memory.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use audit_core::chain::VerifyOptions;
//! use audit_core::keys::Keyring;
//! use object_store::{memory::InMemory, path::Path};
//! let report = audit_s3_jsonl::verify::verify_archive(
//!     &InMemory::new(), &Path::from("archive"), None, Keyring::new(), VerifyOptions::default(), &[]).await?;
//! assert!(report.is_ok());
//! # Ok::<(), audit_s3_jsonl::ArchiveError>(())
//! # }).unwrap();
//! ```

use audit_core::chain::{Verifier, VerifyOptions, VerifyReport};
use audit_core::keys::Keyring;
use audit_core::{ChainId, Checkpoint};
use object_store::ObjectStore;
use object_store::path::Path;

use crate::checkpoints::read_checkpoints;
use crate::error::ArchiveError;
use crate::layout::ChainLayout;
use crate::segment::{decode_lines, list_segments, read_segment_text};

/// The chains stored under `prefix` (the folders holding a `records/`,
/// `checkpoints/` or `dead-letters/` folder), sorted.
pub async fn list_chains(
    store: &dyn ObjectStore,
    prefix: &Path,
) -> Result<Vec<ChainId>, ArchiveError> {
    let listing = store
        .list_with_delimiter(Some(prefix))
        .await
        .map_err(ArchiveError::store(store, "listing", prefix))?;
    let mut chains: Vec<ChainId> = listing
        .common_prefixes
        .iter()
        .filter_map(|dir| dir.filename())
        .filter_map(|name| ChainId::new(name).ok())
        .filter(|chain| !chain.as_str().starts_with('.'))
        .collect();
    chains.sort();
    Ok(chains)
}

/// Verifies chain `chain` (or every chain) under `prefix`, with its own
/// checkpoints and `extra_checkpoints` (any chain's; those of chains not
/// verified are ignored). A chain that only exists in `extra_checkpoints`
/// is verified too: all its records are missing, which is a truncation.
pub async fn verify_archive(
    store: &dyn ObjectStore,
    prefix: &Path,
    chain: Option<&ChainId>,
    keyring: Keyring,
    options: VerifyOptions,
    extra_checkpoints: &[Checkpoint],
) -> Result<VerifyReport, ArchiveError> {
    let chains = match chain {
        Some(chain) => vec![chain.clone()],
        None => {
            let mut chains = list_chains(store, prefix).await?;
            chains.extend(
                extra_checkpoints
                    .iter()
                    .map(|checkpoint| checkpoint.chain.clone()),
            );
            chains.sort();
            chains.dedup();
            chains
        }
    };
    let mut verifier = Verifier::new(keyring, options);
    for chain in &chains {
        verify_chain(store, prefix, chain, extra_checkpoints, &mut verifier).await?;
    }
    Ok(verifier.finish())
}

async fn verify_chain(
    store: &dyn ObjectStore,
    prefix: &Path,
    chain: &ChainId,
    extra_checkpoints: &[Checkpoint],
    verifier: &mut Verifier,
) -> Result<(), ArchiveError> {
    let mut checkpoints = read_checkpoints(store, prefix, chain).await?;
    checkpoints.extend(
        extra_checkpoints
            .iter()
            .filter(|checkpoint| &checkpoint.chain == chain)
            .cloned(),
    );
    checkpoints.sort_by_key(|checkpoint| checkpoint.seq);
    checkpoints.dedup();
    for checkpoint in &checkpoints {
        verifier.checkpoint(checkpoint);
    }
    let layout = ChainLayout::new(prefix, chain);
    let segments = list_segments(store, &layout.records_dir(), None).await?;
    for segment in segments {
        let text = read_segment_text(store, &segment.path).await?;
        for (index, line) in decode_lines(&text).enumerate() {
            match line {
                Ok(record) => verifier.record(&record),
                Err(detail) => verifier.malformed(
                    chain.as_str(),
                    segment.first_seq + index as u64,
                    format!("{}, line {}: {detail}", segment.path, index + 1),
                ),
            }
        }
    }
    Ok(())
}
