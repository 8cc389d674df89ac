//! Checkpoint objects: writing them create-only and reading them back.
//!
//! `P/C/checkpoints/{seq:020}.json` holds one checkpoint
//! (`audit_core::jsonl::encode_checkpoint`). Writing is create-only; an
//! existing object at the same seq is accepted when it states the same
//! head (a retry, or another writer checkpointing the same head at another
//! time) and is an error otherwise.

use audit_core::jsonl::{decode_checkpoint, encode_checkpoint, seq_of_name};
use audit_core::{ChainId, Checkpoint};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode};

use crate::error::ArchiveError;
use crate::layout::ChainLayout;

/// Writes `checkpoint` under `prefix`, never overwriting one.
pub async fn put_checkpoint(
    store: &dyn ObjectStore,
    prefix: &Path,
    checkpoint: &Checkpoint,
) -> Result<(), ArchiveError> {
    let path = ChainLayout::new(prefix, &checkpoint.chain).checkpoint(checkpoint.seq);
    let body = encode_checkpoint(checkpoint);
    match store
        .put_opts(&path, body.into(), PutMode::Create.into())
        .await
    {
        Ok(_) => Ok(()),
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => {
            let existing = read_checkpoint(store, &path).await?;
            if existing.chain == checkpoint.chain && existing.head == checkpoint.head {
                Ok(())
            } else {
                Err(ArchiveError::CheckpointConflict {
                    path: path.to_string(),
                    detail: format!(
                        "stored head {}, new head {}",
                        existing.head.to_hex(),
                        checkpoint.head.to_hex()
                    ),
                })
            }
        }
        Err(error) => Err(ArchiveError::store(store, "writing checkpoint", &path)(
            error,
        )),
    }
}

async fn read_checkpoint(store: &dyn ObjectStore, path: &Path) -> Result<Checkpoint, ArchiveError> {
    let bytes = store
        .get(path)
        .await
        .map_err(ArchiveError::store(store, "reading", path))?
        .bytes()
        .await
        .map_err(ArchiveError::store(store, "reading", path))?;
    let text = std::str::from_utf8(&bytes).map_err(|error| ArchiveError::Malformed {
        path: path.to_string(),
        line: 0,
        detail: format!("not UTF-8: {error}"),
    })?;
    decode_checkpoint(text).map_err(|error| ArchiveError::Malformed {
        path: path.to_string(),
        line: 1,
        detail: error.to_string(),
    })
}

/// Every checkpoint of `chain` under `prefix`, in seq order. The seq in an
/// object's name must match the checkpoint it holds.
pub async fn read_checkpoints(
    store: &dyn ObjectStore,
    prefix: &Path,
    chain: &ChainId,
) -> Result<Vec<Checkpoint>, ArchiveError> {
    let dir = ChainLayout::new(prefix, chain).checkpoints_dir();
    let metas: Vec<_> = store
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(ArchiveError::store(store, "listing", &dir))?;
    let mut named: Vec<(u64, Path)> = metas
        .into_iter()
        .filter(|meta| meta.location.as_ref().ends_with(".json"))
        .filter_map(|meta| seq_of_name(meta.location.as_ref()).map(|seq| (seq, meta.location)))
        .collect();
    named.sort();
    let mut checkpoints = Vec::with_capacity(named.len());
    for (seq, path) in named {
        let checkpoint = read_checkpoint(store, &path).await?;
        if checkpoint.seq != seq || &checkpoint.chain != chain {
            return Err(ArchiveError::Malformed {
                path: path.to_string(),
                line: 1,
                detail: format!(
                    "holds the checkpoint of chain {} at seq {}",
                    checkpoint.chain, checkpoint.seq
                ),
            });
        }
        checkpoints.push(checkpoint);
    }
    Ok(checkpoints)
}
