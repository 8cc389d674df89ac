//! The one export: copy chains record for record (hashes and signatures
//! untouched) from any [`ChainSource`] into any [`ChainStore`], e.g. a
//! SQLite chain into the JSONL archive, which `verify` then accepts.
//!
//! An export into a store that already holds part of the chain continues
//! it: the destination's head must be a record of the source (same seq,
//! same hash), and only the records after it are copied. Checkpoints are
//! copied after the records (idempotently).
//!
//! ```
//! use audit_core::export::{ExportOptions, export};
//! use audit_core::store::{ChainStore, memory::MemoryStore};
//! use audit_core::chain_writer::{ChainSinkOptions, ChainWriter};
//! use audit_core::sink::AuditSink;
//! use audit_core::{AuditEvent, ChainId};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let from = MemoryStore::new("from");
//! let mut sink = ChainWriter::new(from.clone(), ChainSinkOptions::unsigned());
//! sink.append_batch(&[AuditEvent::new("t", "a", serde_json::json!(1))?]).await?;
//! let to = MemoryStore::new("to");
//! let open = |_: &ChainId| { let to = to.clone(); async move { Ok(Box::new(to) as Box<dyn ChainStore>) } };
//! let report = export(&from, open, ExportOptions::default()).await?;
//! assert_eq!(report.records, 1);
//! # Ok(()) }
//! ```

use std::future::Future;

use futures::StreamExt;

use crate::chain::{ChainHead, ChainId, Record};
use crate::sink::SinkError;
use crate::store::{ChainSource, ChainStore, SourceError, SourceRecord};

/// Options of [`export`]: [`Default`] (10,000 records per import, every
/// chain), then the `with_*` methods.
#[derive(Debug, Clone)]
#[must_use]
pub struct ExportOptions {
    batch_records: usize,
    chains: Vec<ChainId>,
}

impl ExportOptions {
    /// Records written per import (one segment object in the archive; at
    /// least 1).
    pub fn with_batch_records(mut self, batch_records: usize) -> Self {
        self.batch_records = batch_records.max(1);
        self
    }

    /// Only these chains (all when empty).
    pub fn with_chains(mut self, chains: Vec<ChainId>) -> Self {
        self.chains = chains;
        self
    }

    /// Records written per import.
    pub fn batch_records(&self) -> usize {
        self.batch_records
    }

    /// The chains exported (all when empty).
    pub fn chains(&self) -> &[ChainId] {
        &self.chains
    }
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            batch_records: 10_000,
            chains: Vec::new(),
        }
    }
}

/// What an export copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Chains exported.
    pub chains: u64,
    /// Records written now.
    pub records: u64,
    /// Records the destination held already.
    pub already_present: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Tree checkpoints (FORMAT.md section 8.2) written.
    pub tree_checkpoints: u64,
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The source could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The destination could not be written.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A stored record or checkpoint cannot be exported as it is.
    #[error(
        "{store}: chain {chain} seq {seq} cannot be exported: {detail}; run `deferred-audit verify` on it"
    )]
    Malformed {
        /// The source.
        store: String,
        /// The chain.
        chain: String,
        /// Where.
        seq: i128,
        /// What is wrong.
        detail: String,
    },
    /// The destination holds another history of the chain.
    #[error(
        "the destination's chain {chain} ends at seq {seq} with hash {destination}, the source has {source_hash} there: the two histories diverge"
    )]
    Diverged {
        /// The chain.
        chain: String,
        /// The destination's head seq.
        seq: u64,
        /// The destination's head hash.
        destination: String,
        /// The source's hash at that seq (empty when the source has none).
        source_hash: String,
    },
}

/// Copies every chain of `source` into the store `open` gives for it.
pub async fn export<Open, Fut>(
    source: &dyn ChainSource,
    open: Open,
    options: ExportOptions,
) -> Result<ExportReport, ExportError>
where
    Open: Fn(&ChainId) -> Fut,
    Fut: Future<Output = Result<Box<dyn ChainStore>, SinkError>>,
{
    let mut report = ExportReport::default();
    let inventory = source.inventory().await?;
    for chain in &inventory.chains {
        if !options.chains.is_empty() && !options.chains.contains(chain) {
            continue;
        }
        let mut destination = open(chain).await?;
        export_chain(source, destination.as_mut(), chain, &options, &mut report).await?;
        report.chains += 1;
    }
    Ok(report)
}

async fn export_chain(
    source: &dyn ChainSource,
    destination: &mut dyn ChainStore,
    chain: &ChainId,
    options: &ExportOptions,
    report: &mut ExportReport,
) -> Result<(), ExportError> {
    let held = destination.head(chain).await?;
    let malformed = |seq: i128, detail: String| ExportError::Malformed {
        store: source.describe(),
        chain: chain.to_string(),
        seq,
        detail,
    };
    let mut records = source.records(chain, held.seq.max(1)).await?;
    let mut batch: Vec<Record> = Vec::with_capacity(options.batch_records.max(1));
    let mut matched = held.seq == 0;
    while let Some(row) = records.next().await {
        let record = match row? {
            SourceRecord::Record(record) => record,
            SourceRecord::Malformed { seq, detail } => return Err(malformed(seq, detail)),
        };
        if record.seq <= held.seq {
            if record.seq == held.seq {
                check_same(chain, held, &record)?;
                matched = true;
                report.already_present += held.seq;
            }
            continue;
        }
        if !matched {
            return Err(diverged(chain, held, ""));
        }
        batch.push(record);
        if batch.len() >= options.batch_records.max(1) {
            destination.import(&batch).await?;
            report.records += batch.len() as u64;
            batch.clear();
        }
    }
    if !matched {
        return Err(diverged(chain, held, ""));
    }
    if !batch.is_empty() {
        destination.import(&batch).await?;
        report.records += batch.len() as u64;
    }
    drop(records);
    for checkpoint in source.checkpoints(chain).await? {
        let checkpoint =
            checkpoint.map_err(|(seq, detail)| malformed(seq, format!("checkpoint: {detail}")))?;
        destination.write_checkpoint(&checkpoint).await?;
        report.checkpoints += 1;
    }
    for stored in source.tree_checkpoints(chain).await? {
        let stored = stored
            .map_err(|(size, detail)| malformed(size, format!("tree checkpoint: {detail}")))?;
        destination
            .write_tree_checkpoint(chain, stored.size, &stored.note)
            .await?;
        report.tree_checkpoints += 1;
    }
    Ok(())
}

fn check_same(chain: &ChainId, held: ChainHead, record: &Record) -> Result<(), ExportError> {
    if record.hash == held.hash {
        Ok(())
    } else {
        Err(diverged(chain, held, &record.hash.to_hex()))
    }
}

fn diverged(chain: &ChainId, held: ChainHead, source_hash: &str) -> ExportError {
    ExportError::Diverged {
        chain: chain.to_string(),
        seq: held.seq,
        destination: held.hash.to_hex(),
        source_hash: source_hash.to_owned(),
    }
}
