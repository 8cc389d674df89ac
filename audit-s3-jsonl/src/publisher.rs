//! Publishing a chain's checkpoints to an object-store prefix.
//!
//! Any chain sink (SQLite, PostgreSQL, the archive itself) can be given an
//! [`ObjectStoreCheckpointPublisher`] as its
//! [`ChainSinkOptions::publisher`](audit_core::chain_writer::ChainSinkOptions::publisher):
//! every checkpoint it writes is also put, create-only, at
//! `P/C/checkpoints/{seq:020}.json` of another store. Deleting the tail of
//! the database together with its own checkpoints is then still caught by a
//! verification given the published ones (read back with
//! [`ArchiveSource`](crate::ArchiveSource)'s `checkpoints`, and passed as
//! outside checkpoints): a checkpoint beyond the head means the chain was
//! truncated.

use std::sync::Arc;

use async_trait::async_trait;
use audit_core::Checkpoint;
use audit_core::sink::{CheckpointPublisher, SinkError};
use object_store::ObjectStore;
use object_store::path::Path;

use crate::write::{put_checkpoint, put_tree_checkpoint};

/// Publishes checkpoints under a prefix of an object store.
#[derive(Debug, Clone)]
pub struct ObjectStoreCheckpointPublisher {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl ObjectStoreCheckpointPublisher {
    /// Publishes under `prefix` of `store`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path) -> Self {
        Self { store, prefix }
    }

    fn describe(&self) -> String {
        format!("checkpoints in {}/{}", self.store, self.prefix)
    }
}

#[async_trait]
impl CheckpointPublisher for ObjectStoreCheckpointPublisher {
    async fn publish(&self, checkpoint: &Checkpoint) -> Result<(), SinkError> {
        put_checkpoint(self.store.as_ref(), &self.prefix, checkpoint)
            .await
            .map_err(|error| error.into_sink_error(&self.describe()))
    }

    async fn publish_tree_checkpoint(
        &self,
        chain: &audit_core::ChainId,
        size: u64,
        note: &str,
    ) -> Result<(), SinkError> {
        put_tree_checkpoint(self.store.as_ref(), &self.prefix, chain, size, note)
            .await
            .map_err(|error| error.into_sink_error(&self.describe()))
    }
}
