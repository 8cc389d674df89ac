//! Dead-letter objects: `P/C/dead-letters/{time}-{event_id}.json`.
//!
//! One object per event, holding the [`DeadLetter`] as JSON, created
//! create-only (an existing object with the same name is the same letter,
//! written by a retry). [`read_dead_letters`] lists them back for replay.

use audit_core::ChainId;
use audit_core::dead_letter::DeadLetter;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode};

use crate::error::ArchiveError;
use crate::layout::ChainLayout;

/// Stores each letter as its own object.
pub async fn put_dead_letters(
    store: &dyn ObjectStore,
    layout: &ChainLayout,
    letters: &[DeadLetter],
) -> Result<(), ArchiveError> {
    for letter in letters {
        let path = layout.dead_letter(letter);
        let body = serde_json::to_vec(letter).map_err(|error| ArchiveError::Malformed {
            path: path.to_string(),
            line: 0,
            detail: error.to_string(),
        })?;
        match store
            .put_opts(&path, body.into(), PutMode::Create.into())
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(error) => {
                return Err(ArchiveError::store(store, "writing dead letter", &path)(
                    error,
                ));
            }
        }
    }
    Ok(())
}

/// Every dead letter of `chain` under `prefix`, oldest first.
pub async fn read_dead_letters(
    store: &dyn ObjectStore,
    prefix: &Path,
    chain: &ChainId,
) -> Result<Vec<DeadLetter>, ArchiveError> {
    let dir = ChainLayout::new(prefix, chain).dead_letters_dir();
    let mut paths: Vec<Path> = store
        .list(Some(&dir))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .map_err(ArchiveError::store(store, "listing", &dir))?;
    paths.sort();
    let mut letters = Vec::with_capacity(paths.len());
    for path in paths {
        let bytes = store
            .get(&path)
            .await
            .map_err(ArchiveError::store(store, "reading", &path))?
            .bytes()
            .await
            .map_err(ArchiveError::store(store, "reading", &path))?;
        let letter = serde_json::from_slice(&bytes).map_err(|error| ArchiveError::Malformed {
            path: path.to_string(),
            line: 1,
            detail: error.to_string(),
        })?;
        letters.push(letter);
    }
    Ok(letters)
}
