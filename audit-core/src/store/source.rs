//! The read side of a store: [`ChainSource`].

use std::fmt;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::chain::{ChainId, Checkpoint, Record};
use crate::dead_letter::DeadLetter;
use crate::digest::Digest;

/// A store could not be read (an I/O error, not a verification failure).
#[derive(Debug, thiserror::Error)]
#[error("{store}: {message}")]
pub struct SourceError {
    /// Which store (its [`ChainSource::describe`]).
    pub store: String,
    /// What went wrong.
    pub message: String,
    /// The underlying error.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl SourceError {
    /// A new error without a source.
    pub fn new(store: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            store: store.into(),
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
}

/// One stored record of a chain, as stored.
// Rows are streamed one at a time and nearly all are records: boxing the
// record would cost an allocation per row to save bytes on the rare
// malformed one.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceRecord {
    /// A row that decodes into a record (which the verifier then checks).
    Record(Record),
    /// A row that does not: a NULL or mistyped column, a hash of the wrong
    /// length, a seq outside `1..`, a line that is not a record.
    Malformed {
        /// The seq as stored (it may be zero or negative), or where it was
        /// found when the seq itself is unreadable.
        seq: i128,
        /// What is wrong, naming the column or member.
        detail: String,
    },
}

/// A checkpoint as stored: decoded, or what is wrong with it.
pub type SourceCheckpoint = Result<Checkpoint, (i128, String)>;

/// A tree checkpoint note as stored (FORMAT.md section 8.2): the size the
/// store files it under and the note's text, with any cosignatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTreeCheckpoint {
    /// The tree size the store files the note under.
    pub size: u64,
    /// The signed note, as stored.
    pub note: String,
}

/// Stored tree rows: `(seq, bytes)` of each
/// [`TreeRow`](crate::chain::tree_rows::TreeRow) found.
pub type StoredTreeRows = Vec<(u64, Vec<u8>)>;

/// A tree checkpoint as stored, or where it is and what is wrong with it.
pub type SourceTreeCheckpoint = Result<StoredTreeCheckpoint, (i128, String)>;

/// A trace in the store that belongs to no valid chain: a row whose
/// `chain_id` is NULL, not text or not a valid chain name; an object or
/// folder outside the layout. Every stray is a verification failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stray {
    /// The chain name as stored, for the report (quoted or described).
    pub chain: String,
    /// The seq, when one can be read (else 0).
    pub seq: u64,
    /// What and where.
    pub detail: String,
}

/// A head the store states besides its records (for example PostgreSQL's
/// `audit_heads` row): the records must reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The stated head seq.
    pub seq: u64,
    /// The stated head hash.
    pub hash: Digest,
    /// Where it is stated, e.g. `audit_heads`.
    pub what: String,
}

/// Every chain a store holds a trace of, and what belongs to none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Chains named anywhere (records, checkpoints, head rows, dead
    /// letters), sorted.
    pub chains: Vec<ChainId>,
    /// Traces outside any valid chain.
    pub strays: Vec<Stray>,
}

impl Inventory {
    /// Adds `chain` unless listed.
    pub fn add_chain(&mut self, chain: ChainId) {
        if let Err(position) = self.chains.binary_search(&chain) {
            self.chains.insert(position, chain);
        }
    }
}

/// A dead letter with the key that removes it from its store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeadLetter {
    /// The store's key: a row id, an object path, a line number.
    pub key: String,
    /// The letter.
    pub letter: DeadLetter,
}

/// The records of a chain, in stored seq order.
pub type RecordStream<'a> = BoxStream<'a, Result<SourceRecord, SourceError>>;

/// The read side of a store: what the one verifier, the one export and the
/// one dead-letter replay of the core read.
///
/// Implementations must return *every* trace: a row a decoder cannot read
/// is a [`SourceRecord::Malformed`] or a [`Stray`], never skipped and never
/// an I/O error.
#[async_trait]
pub trait ChainSource: Send + Sync {
    /// A short description for reports, never with a password.
    fn describe(&self) -> String;

    /// Every chain with a trace in any table or folder, and the strays.
    async fn inventory(&self) -> Result<Inventory, SourceError>;

    /// Every stored record of `chain` with seq `>= from` in seq order; with
    /// `from <= 1`, every stored row of the chain, whatever its seq.
    async fn records(&self, chain: &ChainId, from: u64) -> Result<RecordStream<'_>, SourceError>;

    /// The stored rows of `chain` at exactly `seqs` (rows not stored are
    /// left out), for proofs that read a few leaves. The default reads
    /// [`records`](Self::records) from each seq; stores with an index
    /// answer it directly.
    async fn records_at(
        &self,
        chain: &ChainId,
        seqs: &[u64],
    ) -> Result<Vec<SourceRecord>, SourceError> {
        use futures::StreamExt as _;
        let mut found = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            let mut records = self.records(chain, seq).await?;
            match records.next().await.transpose()? {
                Some(SourceRecord::Record(record)) if record.seq == seq => {
                    found.push(SourceRecord::Record(record));
                }
                Some(SourceRecord::Malformed { seq: at, detail }) if at == i128::from(seq) => {
                    found.push(SourceRecord::Malformed { seq: at, detail });
                }
                _ => {}
            }
        }
        Ok(found)
    }

    /// Every stored checkpoint of `chain`, in seq order.
    async fn checkpoints(&self, chain: &ChainId) -> Result<Vec<SourceCheckpoint>, SourceError>;

    /// Every stored tree checkpoint of `chain`, in size order.
    async fn tree_checkpoints(
        &self,
        chain: &ChainId,
    ) -> Result<Vec<SourceTreeCheckpoint>, SourceError>;

    /// The stored [`TreeRow`](crate::chain::tree_rows::TreeRow)s of `chain`
    /// for the records `seqs`, as `(seq, bytes)` (rows not stored are left
    /// out), or `None` when the store keeps no tree rows: proofs are then
    /// computed from the records.
    async fn tree_rows(
        &self,
        _chain: &ChainId,
        _seqs: &[u64],
    ) -> Result<Option<StoredTreeRows>, SourceError> {
        Ok(None)
    }

    /// Heads the store states besides its records.
    async fn anchors(&self, _chain: &ChainId) -> Result<Vec<Anchor>, SourceError> {
        Ok(Vec::new())
    }

    /// The dead letters, of one chain or of all, oldest first.
    async fn dead_letters(
        &self,
        chain: Option<&ChainId>,
    ) -> Result<Vec<StoredDeadLetter>, SourceError>;

    /// Records with seq `>= from` whose event id appears at a lower seq
    /// `>= from`, as `(seq, event_id)`, when the store can answer it more
    /// cheaply than the verifier's in-memory set; `None` otherwise.
    async fn duplicate_ids(
        &self,
        _chain: &ChainId,
        _from: u64,
    ) -> Result<Option<Vec<(u64, String)>>, SourceError> {
        Ok(None)
    }

    /// Number of stored records over all chains, for a progress bar.
    async fn count_records(&self) -> Result<Option<u64>, SourceError> {
        Ok(None)
    }

    /// The highest seq stored for `chain` (`None` when it has no record).
    /// The default reads the whole chain; stores with an index answer it
    /// directly.
    async fn last_seq(&self, chain: &ChainId) -> Result<Option<u64>, SourceError> {
        use futures::StreamExt as _;
        let mut records = self.records(chain, 1).await?;
        let mut last = None;
        while let Some(row) = records.next().await {
            if let SourceRecord::Record(record) = row? {
                last = Some(last.map_or(record.seq, |seq: u64| seq.max(record.seq)));
            }
        }
        Ok(last)
    }
}

impl fmt::Debug for dyn ChainSource + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainSource({})", self.describe())
    }
}

/// `ChainSource` for smart pointers to a source: every method delegates.
macro_rules! delegate_source {
    ($($pointer:ident)::+) => {
        #[async_trait]
        impl<T: ChainSource + ?Sized> ChainSource for $($pointer)::+<T> {
            fn describe(&self) -> String {
                (**self).describe()
            }
            async fn inventory(&self) -> Result<Inventory, SourceError> {
                (**self).inventory().await
            }
            async fn records(
                &self,
                chain: &ChainId,
                from: u64,
            ) -> Result<RecordStream<'_>, SourceError> {
                (**self).records(chain, from).await
            }
            async fn records_at(
                &self,
                chain: &ChainId,
                seqs: &[u64],
            ) -> Result<Vec<SourceRecord>, SourceError> {
                (**self).records_at(chain, seqs).await
            }
            async fn checkpoints(
                &self,
                chain: &ChainId,
            ) -> Result<Vec<SourceCheckpoint>, SourceError> {
                (**self).checkpoints(chain).await
            }
            async fn tree_checkpoints(
                &self,
                chain: &ChainId,
            ) -> Result<Vec<SourceTreeCheckpoint>, SourceError> {
                (**self).tree_checkpoints(chain).await
            }
            async fn tree_rows(
                &self,
                chain: &ChainId,
                seqs: &[u64],
            ) -> Result<Option<StoredTreeRows>, SourceError> {
                (**self).tree_rows(chain, seqs).await
            }
            async fn anchors(&self, chain: &ChainId) -> Result<Vec<Anchor>, SourceError> {
                (**self).anchors(chain).await
            }
            async fn dead_letters(
                &self,
                chain: Option<&ChainId>,
            ) -> Result<Vec<StoredDeadLetter>, SourceError> {
                (**self).dead_letters(chain).await
            }
            async fn duplicate_ids(
                &self,
                chain: &ChainId,
                from: u64,
            ) -> Result<Option<Vec<(u64, String)>>, SourceError> {
                (**self).duplicate_ids(chain, from).await
            }
            async fn count_records(&self) -> Result<Option<u64>, SourceError> {
                (**self).count_records().await
            }
            async fn last_seq(&self, chain: &ChainId) -> Result<Option<u64>, SourceError> {
                (**self).last_seq(chain).await
            }
        }
    };
}

delegate_source!(std::sync::Arc);
delegate_source!(Box);
