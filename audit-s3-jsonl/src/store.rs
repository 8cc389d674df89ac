//! The archive as a chain store: one batch, one create-only segment object.
//!
//! [`ObjectStoreChain`] implements [`ChainStore`]; [`ArchiveSink`] is the
//! [`ChainWriter`] over it (conflict retries, dead letters, checkpoints).
//!
//! Appending seals the batch after the known head and puts it as
//! `P/C/records/{head+1:020}.jsonl` with `PutMode::Create`. When another
//! writer already took that name, the put fails with `AlreadyExists`: the
//! store catches up by listing only the segments after the last one it
//! knows (`list_with_offset`), reading them (their last line is the new
//! head; their ids go into the id index), and reports a
//! [`ErrorClass::Conflict`] so that the writer re-seals and retries. The
//! head is found at open by one listing of the chain's records.
//!
//! The known head and the id index live in an [`ArchiveState`] that an
//! [`ArchiveFactory`] shares between the sinks it builds: after a transient
//! failure the supervisor's rebuilt sink continues from where the previous
//! one was, even if the store itself forgot (moto after a restart) or the
//! failed put did land (its segment is read back and its events are
//! answered as already present).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use audit_core::chain_writer::ChainSinkOptions;
//! use audit_core::sink::AuditSink;
//! use audit_core::AuditEvent;
//! use audit_s3_jsonl::{ArchiveOptions, ArchiveSink};
//! use object_store::{memory::InMemory, path::Path};
//!
//! let store = Arc::new(InMemory::new());
//! let mut sink = ArchiveSink::open(store, Path::from("archive"), ChainSinkOptions::default(), ArchiveOptions::default()).await?;
//! let event = AuditEvent::new("demo", "agent:a", serde_json::json!({"n": 1})).unwrap();
//! let outcomes = sink.append_batch(&[event]).await.unwrap();
//! assert_eq!(outcomes.len(), 1);
//! # Ok::<(), audit_s3_jsonl::ArchiveError>(())
//! # }).unwrap();
//! ```

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use audit_core::chain::Sealer;
use audit_core::chain_writer::{ChainSinkOptions, ChainStore, ChainWriter};
use audit_core::dead_letter::DeadLetter;
use audit_core::sink::{AppendOutcome, AuditSink, ErrorClass, Receipt, SinkError, SinkFactory};
use audit_core::{AuditEvent, ChainHead, ChainId, Checkpoint};
use object_store::path::Path;
use object_store::{ObjectStore, PutMode};

use crate::checkpoints::put_checkpoint;
use crate::dead_letters::put_dead_letters;
use crate::error::ArchiveError;
use crate::ids::RecentIds;
use crate::layout::ChainLayout;
use crate::probe::probe_create_only;
use crate::segment::{encode_segment, list_segments, read_segment};

/// Options of the archive beyond the shared chain-sink options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveOptions {
    /// Skip the create-only probe. Only for a store that exactly one writer
    /// ever writes under this prefix (one process, one sink at a time): with
    /// concurrent writers on a store that ignores `If-None-Match`, a segment
    /// can be silently overwritten. Default `false`.
    pub assume_single_writer: bool,
    /// How many event ids the in-memory idempotency index keeps (see
    /// [`crate::ids`]). Default 100 000 (a few MiB).
    pub id_index_capacity: usize,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        Self {
            assume_single_writer: false,
            id_index_capacity: 100_000,
        }
    }
}

/// The known head of a chain and the segment it ends.
#[derive(Debug, Clone)]
struct Cursor {
    head: ChainHead,
    last_segment: Option<Path>,
}

#[derive(Debug)]
struct StateInner {
    cursor: Option<Cursor>,
    ids: RecentIds,
}

/// What a writer knows of its chain (head, recent ids), shareable between
/// the successive sinks a factory builds. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct ArchiveState(Arc<Mutex<StateInner>>);

impl ArchiveState {
    /// Nothing known yet; the id index holds at most `id_capacity` ids.
    pub fn new(id_capacity: usize) -> Self {
        Self(Arc::new(Mutex::new(StateInner {
            cursor: None,
            ids: RecentIds::new(id_capacity),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, StateInner> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The known head, if the chain was read.
    pub fn head(&self) -> Option<ChainHead> {
        self.lock().cursor.as_ref().map(|cursor| cursor.head)
    }

    /// Moves the cursor forward (never back) and remembers the records' ids.
    fn advance(&self, cursor: Cursor, records: &[audit_core::Record]) {
        let mut inner = self.lock();
        inner.ids.insert_records(records);
        let behind = inner
            .cursor
            .as_ref()
            .is_none_or(|known| known.head.seq < cursor.head.seq);
        if behind {
            inner.cursor = Some(cursor);
        }
    }
}

/// One chain in an object store, as a [`ChainStore`].
#[derive(Debug)]
pub struct ObjectStoreChain {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    chain: ChainId,
    layout: ChainLayout,
    state: ArchiveState,
}

impl ObjectStoreChain {
    /// The chain `chain` under `prefix` of `store`, continuing from `state`.
    /// Nothing is read until [`ObjectStoreChain::load`] or the first append.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        chain: ChainId,
        state: ArchiveState,
    ) -> Self {
        let layout = ChainLayout::new(&prefix, &chain);
        Self {
            store,
            prefix,
            chain,
            layout,
            state,
        }
    }

    /// The store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The prefix.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The shared state.
    pub fn state(&self) -> &ArchiveState {
        &self.state
    }

    /// Reads the head: by one listing of the chain's records the first time
    /// (the ids of the last segment go into the index), then only the
    /// segments after the last known one.
    pub async fn load(&self) -> Result<ChainHead, ArchiveError> {
        let known = self.state.lock().cursor.clone();
        let offset = known
            .as_ref()
            .and_then(|cursor| cursor.last_segment.clone());
        let segments = list_segments(
            self.store.as_ref(),
            &self.layout.records_dir(),
            offset.as_ref(),
        )
        .await?;
        let to_read = match &known {
            // First look: only the last segment matters for the head.
            None => segments.last().into_iter().collect::<Vec<_>>(),
            // Catching up: every segment written since, for the id index.
            Some(_) => segments.iter().collect(),
        };
        if to_read.is_empty() && known.is_none() {
            self.state.advance(
                Cursor {
                    head: ChainHead::EMPTY,
                    last_segment: None,
                },
                &[],
            );
        }
        for segment in to_read {
            let records = read_segment(self.store.as_ref(), &segment.path).await?;
            if let Some(last) = records.last() {
                self.state.advance(
                    Cursor {
                        head: last.head(),
                        last_segment: Some(segment.path.clone()),
                    },
                    &records,
                );
            }
        }
        Ok(self.state.head().unwrap_or(ChainHead::EMPTY))
    }

    async fn cursor(&self) -> Result<Cursor, SinkError> {
        if let Some(cursor) = self.state.lock().cursor.clone() {
            return Ok(cursor);
        }
        self.load().await.map_err(|error| self.sink_error(error))?;
        let cursor = self.state.lock().cursor.clone();
        cursor
            .ok_or_else(|| SinkError::new(self.describe(), ErrorClass::Transient, "head not read"))
    }

    fn sink_error(&self, error: ArchiveError) -> SinkError {
        error.into_sink_error(&self.describe())
    }

    fn receipt(&self, head: ChainHead, already_present: bool) -> AppendOutcome {
        AppendOutcome::Appended(Receipt {
            chain: self.chain.clone(),
            seq: head.seq,
            record_hash: head.hash,
            already_present,
        })
    }
}

#[async_trait]
impl ChainStore for ObjectStoreChain {
    async fn append_once(
        &mut self,
        sealer: &Sealer,
        events: &[AuditEvent],
    ) -> Result<Vec<AppendOutcome>, SinkError> {
        let cursor = self.cursor().await?;
        let plan = plan_batch(&self.state, events);
        if plan.fresh.is_empty() {
            return Ok(plan.resolve(self, &[]));
        }
        let fresh: Vec<AuditEvent> = plan
            .fresh
            .iter()
            .map(|&index| events[index].clone())
            .collect();
        let records = sealer.seal_batch(cursor.head, &fresh);
        let path = self.layout.segment(cursor.head.seq + 1);
        let body = encode_segment(&records);
        match self
            .store
            .put_opts(&path, body.into(), PutMode::Create.into())
            .await
        {
            Ok(_) => {
                let head = records.last().map_or(cursor.head, |record| record.head());
                self.state.advance(
                    Cursor {
                        head,
                        last_segment: Some(path),
                    },
                    &records,
                );
                let heads: Vec<ChainHead> = records.iter().map(|record| record.head()).collect();
                Ok(plan.resolve(self, &heads))
            }
            Err(error) => {
                let error =
                    ArchiveError::store(self.store.as_ref(), "writing segment", &path)(error);
                if error.class() == ErrorClass::Conflict {
                    // Catch up before the writer re-seals; a failure here is
                    // the error to report (usually transient).
                    self.load().await.map_err(|error| self.sink_error(error))?;
                }
                Err(self.sink_error(error))
            }
        }
    }

    async fn dead_letter(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        put_dead_letters(self.store.as_ref(), &self.layout, letters)
            .await
            .map_err(|error| self.sink_error(error))
    }

    async fn write_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), SinkError> {
        put_checkpoint(self.store.as_ref(), &self.prefix, checkpoint)
            .await
            .map_err(|error| self.sink_error(error))
    }

    async fn head(&mut self, _chain: &ChainId) -> Result<ChainHead, SinkError> {
        self.load().await.map_err(|error| self.sink_error(error))
    }

    fn describe(&self) -> String {
        format!(
            "jsonl archive {}/{}/{}",
            self.store, self.prefix, self.chain
        )
    }
}

/// Which events of a batch are new, and which repeat a known id.
struct BatchPlan {
    /// Per event: a known record, or the index into `fresh` it repeats.
    slots: Vec<Slot>,
    /// Indexes (into the batch) of the events to seal, in order.
    fresh: Vec<usize>,
}

enum Slot {
    Known(ChainHead),
    Fresh { position: usize, repeat: bool },
}

fn plan_batch(state: &ArchiveState, events: &[AuditEvent]) -> BatchPlan {
    let inner = state.lock();
    let mut in_batch: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut slots = Vec::with_capacity(events.len());
    let mut fresh = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        if let Some(head) = inner.ids.get(event.id()) {
            slots.push(Slot::Known(head));
        } else if let Some(&position) = in_batch.get(event.id()) {
            slots.push(Slot::Fresh {
                position,
                repeat: true,
            });
        } else {
            in_batch.insert(event.id(), fresh.len());
            slots.push(Slot::Fresh {
                position: fresh.len(),
                repeat: false,
            });
            fresh.push(index);
        }
    }
    BatchPlan { slots, fresh }
}

impl BatchPlan {
    fn resolve(&self, chain: &ObjectStoreChain, heads: &[ChainHead]) -> Vec<AppendOutcome> {
        self.slots
            .iter()
            .map(|slot| match *slot {
                Slot::Known(head) => chain.receipt(head, true),
                Slot::Fresh { position, repeat } => {
                    let head = heads.get(position).copied().unwrap_or(ChainHead::EMPTY);
                    chain.receipt(head, repeat)
                }
            })
            .collect()
    }
}

/// The archive sink: a [`ChainWriter`] over an [`ObjectStoreChain`].
pub struct ArchiveSink(ChainWriter<ObjectStoreChain>);

impl ArchiveSink {
    /// Opens chain `chain_options.chain` under `prefix` of `store`: probes
    /// that the store enforces create-only puts (unless
    /// [`ArchiveOptions::assume_single_writer`]), then finds the head by
    /// listing.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        chain_options: ChainSinkOptions,
        archive_options: ArchiveOptions,
    ) -> Result<Self, ArchiveError> {
        let state = ArchiveState::new(archive_options.id_index_capacity);
        Self::open_with_state(store, prefix, chain_options, archive_options, state).await
    }

    /// Like [`ArchiveSink::open`], continuing from `state` (what an earlier
    /// sink of this writer knew).
    pub async fn open_with_state(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        chain_options: ChainSinkOptions,
        archive_options: ArchiveOptions,
        state: ArchiveState,
    ) -> Result<Self, ArchiveError> {
        if !archive_options.assume_single_writer {
            probe_create_only(store.as_ref(), &prefix).await?;
        }
        let chain = ObjectStoreChain::new(store, prefix, chain_options.chain.clone(), state);
        chain.load().await?;
        Ok(Self(ChainWriter::new(chain, chain_options)))
    }

    /// The chain writer.
    pub fn writer(&self) -> &ChainWriter<ObjectStoreChain> {
        &self.0
    }

    /// The current head as last known (no I/O).
    pub fn known_head(&self) -> Option<ChainHead> {
        self.0.store().state().head()
    }
}

#[async_trait]
impl AuditSink for ArchiveSink {
    async fn append_batch(
        &mut self,
        events: &[AuditEvent],
    ) -> Result<Vec<AppendOutcome>, SinkError> {
        self.0.append_batch(events).await
    }

    async fn checkpoint(&mut self) -> Result<Option<Checkpoint>, SinkError> {
        self.0.checkpoint().await
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        self.0.close().await
    }

    fn race_retries(&self) -> u64 {
        self.0.race_retries()
    }

    fn describe(&self) -> String {
        self.0.describe()
    }
}

/// Builds [`ArchiveSink`]s for the supervisor, sharing one [`ArchiveState`]
/// so that a rebuilt sink continues where the failed one was.
#[derive(Clone)]
pub struct ArchiveFactory {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    chain_options: ChainSinkOptions,
    archive_options: ArchiveOptions,
    state: ArchiveState,
}

impl ArchiveFactory {
    /// A factory for chain `chain_options.chain` under `prefix` of `store`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        chain_options: ChainSinkOptions,
        archive_options: ArchiveOptions,
    ) -> Self {
        let state = ArchiveState::new(archive_options.id_index_capacity);
        Self {
            store,
            prefix,
            chain_options,
            archive_options,
            state,
        }
    }

    /// Opens a sink (probing the store on every open: cheap, and a store
    /// replaced behind the same URL is checked again).
    pub async fn open(&self) -> Result<ArchiveSink, ArchiveError> {
        ArchiveSink::open_with_state(
            self.store.clone(),
            self.prefix.clone(),
            self.chain_options.clone(),
            self.archive_options,
            self.state.clone(),
        )
        .await
    }

    /// The state shared by the sinks built.
    pub fn state(&self) -> &ArchiveState {
        &self.state
    }
}

#[async_trait]
impl SinkFactory for ArchiveFactory {
    async fn create(&self) -> Result<Box<dyn AuditSink>, SinkError> {
        let describe = format!("jsonl archive {}/{}", self.store, self.prefix);
        let sink = self
            .open()
            .await
            .map_err(|error| error.into_sink_error(&describe))?;
        Ok(Box::new(sink))
    }
}
