//! The two storage traits every backend implements, and nothing more.
//!
//! The core owns every algorithm (batch planning, sealing, verification,
//! export, dead-letter replay); a backend only moves rows, the way
//! object_store's backends only move bytes:
//!
//! - [`ChainStore`], the write side: one atomic append attempt driven by a
//!   core [`BatchPlan`](crate::chain::BatchPlan), verbatim imports, dead
//!   letters, checkpoints and the head;
//! - [`ChainSource`], the read side: every chain that left a trace
//!   anywhere in the store, every stored record of a chain *as stored*
//!   (rows that are malformed, out of range or of the wrong type come back
//!   as [`SourceRecord::Malformed`], never skipped), checkpoints, head rows
//!   and dead letters.
//!
//! [`StoreUrl`] names a store (`sqlite://`, `postgres://`, `s3://`,
//! `file://`, `memory://`); [`memory::MemoryStore`] is the in-process store
//! behind `memory://`.
//!
//! ```
//! use audit_core::store::{ChainSource, memory::MemoryStore};
//! use audit_core::chain_writer::{ChainSinkOptions, ChainWriter};
//! use audit_core::sink::AuditSink;
//! use audit_core::AuditEvent;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryStore::new("doc");
//! let mut sink = ChainWriter::new(store.clone(), ChainSinkOptions::unsigned());
//! sink.append_batch(&[AuditEvent::new("t", "a", serde_json::json!(1))?]).await?;
//! let inventory = store.inventory().await?;
//! assert_eq!(inventory.chains.len(), 1);
//! # Ok(()) }
//! ```

pub mod memory;
mod source;
mod url;

pub use source::{
    Anchor, ChainSource, Inventory, RecordStream, SourceCheckpoint, SourceError, SourceRecord,
    SourceTreeCheckpoint, StoredDeadLetter, StoredTreeCheckpoint, StoredTreeRows, Stray,
};
pub use url::{StoreUrl, StoreUrlError, redact_url};

use async_trait::async_trait;

use crate::chain::tree::TreeFrontier;
use crate::chain::{BatchPlan, ChainHead, ChainId, Checkpoint, Record, SealedBatch};
use crate::dead_letter::DeadLetter;
use crate::sink::SinkError;

/// The write side of a chain store: storage steps only; the policy
/// (retries, dead-lettering, checkpoints) is [`ChainWriter`](crate::chain_writer::ChainWriter)'s.
#[async_trait]
pub trait ChainStore: Send {
    /// One atomic attempt: in one transaction (or one create-only object),
    /// read the head and tree frontier of [`BatchPlan::chain`] and the
    /// records already in the chain for [`BatchPlan::ids`], seal with
    /// [`BatchPlan::seal`] (or [`BatchPlan::seal_off_runtime`] on an async
    /// runtime), write [`SealedBatch::records`] with the tree's
    /// [`SealedBatch::tree_rows`] and [`SealedBatch::tree`] (when the store
    /// keeps them), commit, and return the sealed batch.
    /// Returns `Err` with [`ErrorClass::Conflict`](crate::sink::ErrorClass::Conflict)
    /// when another writer took a seq.
    async fn append_once(&mut self, plan: &BatchPlan) -> Result<SealedBatch, SinkError>;

    /// Writes already sealed records verbatim (an export or a copy), in one
    /// atomic step. They must continue the chain's head; a lost race is a
    /// conflict.
    async fn import(&mut self, records: &[Record]) -> Result<(), SinkError>;

    /// Stores dead letters durably.
    async fn dead_letter(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError>;

    /// Removes replayed dead letters by their [`StoredDeadLetter::key`].
    async fn remove_dead_letters(&mut self, keys: &[String]) -> Result<(), SinkError>;

    /// Stores a checkpoint (idempotent for the same seq).
    async fn write_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), SinkError>;

    /// Stores a signed tree checkpoint note of `chain` at tree `size`
    /// (FORMAT.md section 8.2). A note already stored at that size is
    /// replaced only by one with the same body (more cosignatures).
    async fn write_tree_checkpoint(
        &mut self,
        chain: &ChainId,
        size: u64,
        note: &str,
    ) -> Result<(), SinkError>;

    /// The current head of `chain`.
    async fn head(&mut self, chain: &ChainId) -> Result<ChainHead, SinkError>;

    /// The current tree frontier of `chain` (its size is the head's seq).
    async fn tree(&mut self, chain: &ChainId) -> Result<TreeFrontier, SinkError>;

    /// A short description for logs, e.g. `sqlite:///var/audit.db`.
    fn describe(&self) -> String;
}

#[async_trait]
impl ChainStore for Box<dyn ChainStore> {
    async fn append_once(&mut self, plan: &BatchPlan) -> Result<SealedBatch, SinkError> {
        (**self).append_once(plan).await
    }
    async fn import(&mut self, records: &[Record]) -> Result<(), SinkError> {
        (**self).import(records).await
    }
    async fn dead_letter(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        (**self).dead_letter(letters).await
    }
    async fn remove_dead_letters(&mut self, keys: &[String]) -> Result<(), SinkError> {
        (**self).remove_dead_letters(keys).await
    }
    async fn write_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), SinkError> {
        (**self).write_checkpoint(checkpoint).await
    }
    async fn write_tree_checkpoint(
        &mut self,
        chain: &ChainId,
        size: u64,
        note: &str,
    ) -> Result<(), SinkError> {
        (**self).write_tree_checkpoint(chain, size, note).await
    }
    async fn head(&mut self, chain: &ChainId) -> Result<ChainHead, SinkError> {
        (**self).head(chain).await
    }
    async fn tree(&mut self, chain: &ChainId) -> Result<TreeFrontier, SinkError> {
        (**self).tree(chain).await
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}
