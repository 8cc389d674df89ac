//! The write side: one chain in an object store as a [`ChainStore`], one
//! create-only segment object per batch.
//!
//! [`ObjectStoreChain::append_once`] looks the batch's ids up in the
//! chain's id index ([`crate::ids`]: every id of the chain, confirmed by
//! reading its record back), seals the new events after the known head
//! with the core's [`BatchPlan`], and puts them as
//! `P/C/records/{head+1:020}.jsonl` with `PutMode::Create`. When another
//! writer already took that name, the put fails with `AlreadyExists`: the
//! store catches up by listing only the segments after the last one it
//! knows (`list_with_offset`), reading them (their last line is the new
//! head; their ids go into the index), and reports an
//! [`ErrorClass::Conflict`] so that the [`ChainWriter`] re-plans and
//! retries. The first use reads every segment of the chain (for the
//! index; see [`crate::ids`] for the cost).
//!
//! The known head, the segments read and the id index live in an
//! [`ArchiveState`] that an [`ArchiveFactory`] shares between the sinks it
//! builds: after a transient failure the supervisor's rebuilt sink
//! continues from where the previous one was, without reading the chain
//! again, even if the store itself forgot (moto after a restart) or the
//! failed put did land (its segment is read back and its events are
//! answered as already present).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use audit_core::chain_writer::ChainSinkOptions;
//! use audit_core::sink::AuditSink;
//! use audit_core::AuditEvent;
//! use audit_s3_jsonl::{ArchiveOptions, open_sink};
//! use object_store::{memory::InMemory, path::Path};
//!
//! let store = Arc::new(InMemory::new());
//! let mut sink = open_sink(store, Path::from("archive"), ChainSinkOptions::unsigned(), ArchiveOptions::default()).await?;
//! let event = AuditEvent::new("demo", "agent:a", serde_json::json!({"n": 1})).unwrap();
//! let outcomes = sink.append_batch(&[event.clone()]).await.unwrap();
//! let again = sink.append_batch(&[event]).await.unwrap();
//! assert_eq!(outcomes.len(), again.len());
//! # Ok::<(), audit_s3_jsonl::ArchiveError>(())
//! # }).unwrap();
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use audit_core::Digest;
use audit_core::chain::tree::{TreeFrontier, leaf_hash};
use audit_core::chain::tree_checkpoint::merge_notes;
use audit_core::chain::{BatchPlan, PresentIds, SealedBatch};
use audit_core::chain_writer::{ChainSinkOptions, ChainStore, ChainWriter};
use audit_core::dead_letter::DeadLetter;
use audit_core::jsonl::{decode_checkpoint, decode_record, encode_checkpoint};
use audit_core::sink::{AuditSink, ErrorClass, SinkError, SinkFactory};
use audit_core::{ChainHead, ChainId, Checkpoint, Record};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode};

use crate::error::ArchiveError;
use crate::ids::{Fingerprinter, IdBatch, IdIndex};
use crate::layout::ChainLayout;
use crate::probe::probe_create_only;
use crate::segment::{encode_segment, get_bytes, list_segments, split_lines};

/// How many segments are fetched at once when reading a chain.
const READ_AHEAD: usize = 8;

/// Ids read in one load from which they are indexed on the blocking pool.
const BLOCKING_INDEX_THRESHOLD: usize = 100_000;

/// Options of the archive beyond the shared chain-sink options:
/// [`Default`], then the `with_*` methods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct ArchiveOptions {
    assume_single_writer: bool,
}

impl ArchiveOptions {
    /// Skips the create-only probe. Only for a store that exactly one
    /// writer ever writes under this prefix (one process, one sink at a
    /// time): with concurrent writers on a store that ignores
    /// `If-None-Match`, a segment can be silently overwritten. Default
    /// `false`.
    pub fn with_assume_single_writer(mut self, assume_single_writer: bool) -> Self {
        self.assume_single_writer = assume_single_writer;
        self
    }

    /// Whether the create-only probe is skipped.
    pub fn assume_single_writer(&self) -> bool {
        self.assume_single_writer
    }
}

#[derive(Debug, Default)]
struct StateInner {
    /// The known head; `None` until the chain was read.
    head: Option<ChainHead>,
    /// First seqs of the segments read or written (whose ids are indexed), sorted.
    segments: Vec<u64>,
    ids: IdIndex,
    /// The chain's tree, grown from the segments in seq order.
    tree: TreeFrontier,
    /// Why the tree cannot follow the records (a missing or unreadable
    /// record); appends are refused until the archive is repaired.
    tree_broken: Option<String>,
}

/// What a writer knows of its chain (head, segments, every event id),
/// shareable between the successive sinks a factory builds. Cheap to
/// clone (shared).
#[derive(Debug, Clone, Default)]
pub struct ArchiveState(Arc<Mutex<StateInner>>);

impl ArchiveState {
    /// Nothing known yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, StateInner> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The known head, if the chain was read.
    pub fn head(&self) -> Option<ChainHead> {
        self.lock().head
    }

    /// How many event ids are indexed.
    pub fn indexed_ids(&self) -> usize {
        self.lock().ids.len()
    }

    /// Bytes held by the id index and the segment list.
    pub fn memory_bytes(&self) -> usize {
        let inner = self.lock();
        inner.ids.memory_bytes() + inner.segments.capacity() * std::mem::size_of::<u64>()
    }

    fn fingerprinter(&self) -> Fingerprinter {
        self.lock().ids.fingerprinter().clone()
    }

    /// The chain's tree frontier, or why it cannot be known.
    fn tree(&self) -> Result<TreeFrontier, String> {
        let inner = self.lock();
        match &inner.tree_broken {
            Some(why) => Err(why.clone()),
            None => Ok(inner.tree.clone()),
        }
    }

    /// Records segments read or written: indexes their ids and grows the
    /// tree by their leaves (once per segment) and moves the head forward
    /// (never back).
    fn advance(
        &self,
        first_seqs: &[u64],
        ids: IdBatch,
        leaves: Vec<(u64, Digest)>,
        head: ChainHead,
    ) {
        let mut inner = self.lock();
        let mut fresh = false;
        for &first_seq in first_seqs {
            if let Err(position) = inner.segments.binary_search(&first_seq) {
                inner.segments.insert(position, first_seq);
                fresh = true;
            }
        }
        if fresh {
            inner.ids.absorb(ids);
            for (seq, leaf) in leaves {
                let next = inner.tree.size() + 1;
                if seq == next {
                    inner.tree.push(leaf);
                } else if seq > next && inner.tree_broken.is_none() {
                    inner.tree_broken = Some(format!(
                        "record {next} is missing or unreadable, so the chain's tree cannot grow: run `deferred-audit verify`"
                    ));
                }
            }
        }
        if inner.head.is_none_or(|known| known.seq < head.seq) {
            inner.head = Some(head);
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
    /// Nothing is read until [`ObjectStoreChain::load`] or the first use.
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

    /// The chain `chain` under `prefix` of `store`, with a state of its
    /// own, after probing that the store enforces create-only puts and
    /// reading the chain (see [`ObjectStoreChain::open_with`]).
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        chain: ChainId,
    ) -> Result<Self, ArchiveError> {
        Self::open_with(
            store,
            prefix,
            chain,
            ArchiveOptions::default(),
            ArchiveState::new(),
        )
        .await
    }

    /// Like [`ObjectStoreChain::new`], after probing that the store
    /// enforces create-only puts (unless
    /// [`ArchiveOptions::assume_single_writer`]), and reading the chain.
    pub async fn open_with(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        chain: ChainId,
        options: ArchiveOptions,
        state: ArchiveState,
    ) -> Result<Self, ArchiveError> {
        if !options.assume_single_writer {
            probe_create_only(store.as_ref(), &prefix).await?;
        }
        let chain = Self::new(store, prefix, chain, state);
        chain.load().await?;
        Ok(chain)
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

    /// Reads the chain: every segment the first time (for the id index),
    /// then only the segments after the last one known. Returns the head.
    pub async fn load(&self) -> Result<ChainHead, ArchiveError> {
        let (offset, known) = {
            let inner = self.state.lock();
            let offset = inner
                .head
                .and(inner.segments.last())
                .map(|&first_seq| self.layout.segment(first_seq));
            (offset, inner.segments.clone())
        };
        let store = self.store.as_ref();
        let listed: Vec<_> = list_segments(store, &self.layout.records_dir(), offset.as_ref())
            .await?
            .into_iter()
            .filter(|segment| known.binary_search(&segment.first_seq).is_err())
            .collect();
        let fingerprinter = self.state.fingerprinter();
        let mut ids = IdBatch::default();
        let mut leaves = Vec::new();
        let mut head = None;
        let mut first_seqs = Vec::with_capacity(listed.len());
        let count = listed.len();
        let paths: Vec<Path> = listed.iter().map(|segment| segment.path.clone()).collect();
        let mut bodies = futures::stream::iter(paths)
            .map(|path| {
                let store = self.store.clone();
                async move { get_bytes(store.as_ref(), &path).await }
            })
            .buffered(READ_AHEAD);
        let mut position = 0;
        while let Some(body) = bodies.next().await {
            let segment = &listed[position];
            position += 1;
            let body = body?;
            index_segment(&fingerprinter, &segment.path, &body, &mut ids, &mut leaves);
            if position == count {
                head = Some(last_head(&segment.path, &body)?);
            }
            first_seqs.push(segment.first_seq);
        }
        let head = head.unwrap_or(ChainHead::EMPTY);
        if ids.len() < BLOCKING_INDEX_THRESHOLD {
            self.state.advance(&first_seqs, ids, leaves, head);
        } else {
            // Sorting millions of ids takes seconds: off the runtime's workers.
            let state = self.state.clone();
            tokio::task::spawn_blocking(move || state.advance(&first_seqs, ids, leaves, head))
                .await
                .map_err(|error| ArchiveError::Interrupted {
                    what: "indexing the chain's event ids",
                    detail: error.to_string(),
                })?;
        }
        Ok(self.state.head().unwrap_or(head))
    }

    fn known_tree(&self) -> Result<TreeFrontier, SinkError> {
        self.state.tree().map_err(|why| {
            SinkError::new(
                ChainStore::describe(self),
                ErrorClass::Permanent,
                format!("chain {}: {why}", self.chain),
            )
        })
    }

    async fn known_head(&self) -> Result<ChainHead, SinkError> {
        match self.state.head() {
            Some(head) => Ok(head),
            None => self.load().await.map_err(|error| self.sink_error(error)),
        }
    }

    /// The records already in the chain for the plan's ids: candidates
    /// from the index, confirmed by reading their segments.
    async fn present_ids(&self, plan: &BatchPlan) -> Result<PresentIds, SinkError> {
        let mut wanted: BTreeMap<u64, Vec<(String, u64)>> = BTreeMap::new();
        {
            let inner = self.state.lock();
            for id in plan.ids() {
                for seq in inner.ids.candidates(id) {
                    let position = inner.segments.partition_point(|&first| first <= seq);
                    if let Some(&first_seq) =
                        position.checked_sub(1).and_then(|p| inner.segments.get(p))
                    {
                        wanted
                            .entry(first_seq)
                            .or_default()
                            .push((id.to_owned(), seq));
                    }
                }
            }
        }
        let mut present = PresentIds::new();
        for (first_seq, candidates) in wanted {
            let path = self.layout.segment(first_seq);
            let body = get_bytes(self.store.as_ref(), &path)
                .await
                .map_err(|error| self.sink_error(error))?;
            let records: BTreeMap<u64, Record> = split_lines(&body)
                .0
                .into_iter()
                .filter_map(|line| decode_record(std::str::from_utf8(line).ok()?).ok())
                .map(|record| (record.seq, record))
                .collect();
            for (id, seq) in candidates {
                let confirmed = records
                    .get(&seq)
                    .filter(|record| event_id(&record.event_json).as_deref() == Some(id.as_str()));
                if let Some(record) = confirmed {
                    let earlier = present.get(&id).is_some_and(|known| known.seq < seq);
                    if !earlier {
                        present.insert(id, record.head());
                    }
                }
            }
        }
        Ok(present)
    }

    /// Puts `records` (sealed after `head`) as one create-only segment.
    async fn put_segment(&self, records: &[Record]) -> Result<(), SinkError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let path = self.layout.segment(first.seq);
        let body = encode_segment(records);
        match self
            .store
            .put_opts(&path, body.into(), PutMode::Create.into())
            .await
        {
            Ok(_) => {
                let fingerprinter = self.state.fingerprinter();
                let mut ids = IdBatch::with_capacity(records.len());
                let leaves = records
                    .iter()
                    .map(|record| (record.seq, leaf_hash(record.event_json.as_bytes())))
                    .collect();
                for record in records {
                    let id = match &record.columns {
                        Some(columns) => Some(columns.id.to_string()),
                        None => event_id(&record.event_json),
                    };
                    if let Some(id) = id {
                        ids.push(&fingerprinter, &id, record.seq);
                    }
                }
                let head = records.last().map_or(ChainHead::EMPTY, Record::head);
                self.state.advance(&[first.seq], ids, leaves, head);
                Ok(())
            }
            Err(error) => {
                let error =
                    ArchiveError::store(self.store.as_ref(), "writing segment", &path)(error);
                if error.class() == ErrorClass::Conflict {
                    // Catch up before the writer re-plans; a failure here is
                    // the error to report (usually transient).
                    self.load().await.map_err(|error| self.sink_error(error))?;
                }
                Err(self.sink_error(error))
            }
        }
    }

    fn sink_error(&self, error: ArchiveError) -> SinkError {
        error.into_sink_error(&ChainStore::describe(self))
    }

    fn check_chain(&self, chain: &ChainId) -> Result<(), SinkError> {
        if *chain == self.chain {
            return Ok(());
        }
        Err(self.sink_error(ArchiveError::OtherChain {
            store_chain: self.chain.to_string(),
            asked: chain.to_string(),
        }))
    }

    fn does_not_continue(&self, detail: String) -> SinkError {
        self.sink_error(ArchiveError::DoesNotContinue {
            chain: self.chain.to_string(),
            detail,
        })
    }
}

#[async_trait]
impl ChainStore for ObjectStoreChain {
    async fn append_once(&mut self, plan: &BatchPlan) -> Result<SealedBatch, SinkError> {
        self.check_chain(plan.chain())?;
        let head = self.known_head().await?;
        let tree = self.known_tree()?;
        let present = self.present_ids(plan).await?;
        let sealed = plan.seal_off_runtime(head, tree, present).await?;
        self.put_segment(sealed.records()).await?;
        Ok(sealed)
    }

    async fn import(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let mut head = self.known_head().await?;
        if head.seq.checked_add(1) != Some(first.seq) {
            head = self.load().await.map_err(|error| self.sink_error(error))?;
        }
        if first.seq <= head.seq {
            return Err(SinkError::new(
                ChainStore::describe(self),
                ErrorClass::Conflict,
                format!(
                    "seq {} is taken: the chain's head is at seq {}",
                    first.seq, head.seq
                ),
            ));
        }
        if head.seq.checked_add(1) != Some(first.seq) || first.prev != head.hash {
            return Err(self.does_not_continue(format!(
                "the first record (seq {}, prev {}) does not follow the head (seq {}, hash {})",
                first.seq, first.prev, head.seq, head.hash
            )));
        }
        for (offset, record) in records.iter().enumerate() {
            self.check_chain(&record.chain)?;
            if first.seq.checked_add(offset as u64) != Some(record.seq) {
                return Err(self.does_not_continue(format!(
                    "record {} of the batch has seq {}, not consecutive",
                    offset + 1,
                    record.seq
                )));
            }
        }
        self.put_segment(records).await
    }

    async fn dead_letter(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        put_dead_letters(self.store.as_ref(), &self.layout, letters)
            .await
            .map_err(|error| self.sink_error(error))
    }

    async fn remove_dead_letters(&mut self, keys: &[String]) -> Result<(), SinkError> {
        let folder = self.layout.dead_letters_dir();
        for key in keys {
            let path = Path::parse(key)
                .ok()
                .filter(|path| {
                    path.prefix_match(&folder)
                        .is_some_and(|mut rest| rest.next().is_some())
                })
                .ok_or_else(|| {
                    self.sink_error(ArchiveError::ForeignDeadLetterKey {
                        key: key.clone(),
                        folder: folder.to_string(),
                    })
                })?;
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => {
                    let error =
                        ArchiveError::store(self.store.as_ref(), "deleting dead letter", &path)(
                            error,
                        );
                    return Err(self.sink_error(error));
                }
            }
        }
        Ok(())
    }

    async fn write_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), SinkError> {
        put_checkpoint(self.store.as_ref(), &self.prefix, checkpoint)
            .await
            .map_err(|error| self.sink_error(error))
    }

    async fn write_tree_checkpoint(
        &mut self,
        chain: &ChainId,
        size: u64,
        note: &str,
    ) -> Result<(), SinkError> {
        self.check_chain(chain)?;
        put_tree_checkpoint(self.store.as_ref(), &self.prefix, chain, size, note)
            .await
            .map_err(|error| self.sink_error(error))
    }

    async fn head(&mut self, chain: &ChainId) -> Result<ChainHead, SinkError> {
        self.check_chain(chain)?;
        self.load().await.map_err(|error| self.sink_error(error))
    }

    async fn tree(&mut self, chain: &ChainId) -> Result<TreeFrontier, SinkError> {
        self.check_chain(chain)?;
        self.load().await.map_err(|error| self.sink_error(error))?;
        self.known_tree()
    }

    fn describe(&self) -> String {
        format!(
            "jsonl archive {}",
            location(self.store.as_ref(), self.layout.chain_dir())
        )
    }
}

/// `store/prefix` for messages.
pub(crate) fn location(store: &dyn ObjectStore, prefix: &Path) -> String {
    if prefix.as_ref().is_empty() {
        store.to_string()
    } else {
        format!("{store}/{prefix}")
    }
}

/// The event id inside `E`, without validating the rest.
fn event_id(event_json: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Event {
        id: String,
    }
    serde_json::from_str::<Event>(event_json)
        .ok()
        .map(|event| event.id)
}

/// Adds the ids of a segment's lines to `ids` (lines that do not show a
/// seq and an event id are logged: the verifier reports them).
/// Adds the ids of a segment's lines to `ids`, and their leaf hashes
/// (`H(0x00 || E)`) to `leaves` (lines that do not show a seq and an event
/// id are logged: the verifier reports them).
fn index_segment(
    fingerprinter: &Fingerprinter,
    path: &Path,
    body: &[u8],
    ids: &mut IdBatch,
    leaves: &mut Vec<(u64, Digest)>,
) {
    #[derive(serde::Deserialize)]
    struct Line<'a> {
        seq: u64,
        #[serde(borrow)]
        event: &'a serde_json::value::RawValue,
    }
    #[derive(serde::Deserialize)]
    struct Event<'a> {
        #[serde(borrow)]
        id: std::borrow::Cow<'a, str>,
    }
    for (index, line) in split_lines(body).0.into_iter().enumerate() {
        let parsed = serde_json::from_slice::<Line<'_>>(line).and_then(|line| {
            let event = serde_json::from_str::<Event<'_>>(line.event.get())?;
            Ok((line.seq, event.id, line.event.get()))
        });
        match parsed {
            Ok((seq, id, event_json)) => {
                ids.push(fingerprinter, &id, seq);
                leaves.push((seq, leaf_hash(event_json.as_bytes())));
            }
            Err(error) => tracing::warn!(
                %path, line = index + 1, %error,
                "a segment line without a seq and an event id is not indexed; `verify` reports it"
            ),
        }
    }
}

/// The head made by the last record of a segment.
fn last_head(path: &Path, body: &[u8]) -> Result<ChainHead, ArchiveError> {
    let (lines, _) = split_lines(body);
    let malformed = |line: usize, detail: String| ArchiveError::Malformed {
        path: path.to_string(),
        line,
        detail,
    };
    let Some(last) = lines.last() else {
        return Err(malformed(
            0,
            "empty segment: the chain's head cannot be read".into(),
        ));
    };
    let text = std::str::from_utf8(last)
        .map_err(|error| malformed(lines.len(), format!("not UTF-8: {error}")))?;
    decode_record(text)
        .map(|record| record.head())
        .map_err(|error| {
            malformed(
                lines.len(),
                format!("the chain's head cannot be read: {error}"),
            )
        })
}

/// Writes `checkpoint` under `prefix`, never overwriting one: an existing
/// object at the same seq is accepted when it states the same head (a
/// retry, or another writer checkpointing the same head at another time)
/// and is an error otherwise.
/// Puts a tree checkpoint note at `P/C/tree-checkpoints/{size:020}.note`,
/// create-only; when one is already there, merges the signature lines of
/// both (a later cosignature) and refuses a different body.
pub(crate) async fn put_tree_checkpoint(
    store: &dyn ObjectStore,
    prefix: &Path,
    chain: &ChainId,
    size: u64,
    note: &str,
) -> Result<(), ArchiveError> {
    let path = ChainLayout::new(prefix, chain).tree_checkpoint(size);
    match store
        .put_opts(&path, note.to_owned().into(), PutMode::Create.into())
        .await
    {
        Ok(_) => Ok(()),
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => {
            let bytes = get_bytes(store, &path).await?;
            let stored =
                String::from_utf8(bytes.to_vec()).map_err(|error| ArchiveError::Malformed {
                    path: path.to_string(),
                    line: 1,
                    detail: format!("not UTF-8: {error}"),
                })?;
            let merged =
                merge_notes(&stored, note).map_err(|error| ArchiveError::CheckpointConflict {
                    path: path.to_string(),
                    detail: error.to_string(),
                })?;
            if merged == stored {
                return Ok(());
            }
            store
                .put_opts(&path, merged.into(), PutMode::Overwrite.into())
                .await
                .map(drop)
                .map_err(ArchiveError::store(store, "writing tree checkpoint", &path))
        }
        Err(error) => Err(ArchiveError::store(store, "writing tree checkpoint", &path)(error)),
    }
}

pub(crate) async fn put_checkpoint(
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
            let bytes = get_bytes(store, &path).await?;
            let existing = std::str::from_utf8(&bytes)
                .map_err(|error| error.to_string())
                .and_then(|text| decode_checkpoint(text).map_err(|error| error.to_string()));
            match existing {
                Ok(existing)
                    if existing.chain == checkpoint.chain && existing.head == checkpoint.head =>
                {
                    Ok(())
                }
                Ok(existing) => Err(ArchiveError::CheckpointConflict {
                    path: path.to_string(),
                    detail: format!(
                        "stored head {}, new head {}",
                        existing.head.to_hex(),
                        checkpoint.head.to_hex()
                    ),
                }),
                Err(detail) => Err(ArchiveError::Malformed {
                    path: path.to_string(),
                    line: 1,
                    detail,
                }),
            }
        }
        Err(error) => Err(ArchiveError::store(store, "writing checkpoint", &path)(
            error,
        )),
    }
}

/// Stores each letter as its own object, create-only (an existing object
/// with the same name is the same letter, written by a retry).
async fn put_dead_letters(
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

/// The archive sink: the core's [`ChainWriter`] over an [`ObjectStoreChain`].
pub type ArchiveSink = ChainWriter<ObjectStoreChain>;

/// Opens chain `chain_options.chain` under `prefix` of `store` with a state
/// of its own (see [`ObjectStoreChain::open`]).
pub async fn open_sink(
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    chain_options: ChainSinkOptions,
    archive_options: ArchiveOptions,
) -> Result<ArchiveSink, ArchiveError> {
    ArchiveFactory::new(store, prefix, chain_options, archive_options)
        .open()
        .await
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
        Self {
            store,
            prefix,
            chain_options,
            archive_options,
            state: ArchiveState::new(),
        }
    }

    /// Opens a sink (probing the store on every open: cheap, and a store
    /// replaced behind the same URL is checked again).
    pub async fn open(&self) -> Result<ArchiveSink, ArchiveError> {
        let chain = ObjectStoreChain::open_with(
            self.store.clone(),
            self.prefix.clone(),
            self.chain_options.chain().clone(),
            self.archive_options,
            self.state.clone(),
        )
        .await?;
        Ok(ChainWriter::new(chain, self.chain_options.clone()))
    }

    /// The state shared by the sinks built.
    pub fn state(&self) -> &ArchiveState {
        &self.state
    }
}

#[async_trait]
impl SinkFactory for ArchiveFactory {
    async fn create(&self) -> Result<Box<dyn AuditSink>, SinkError> {
        let describe = format!(
            "jsonl archive {}",
            location(self.store.as_ref(), &self.prefix)
        );
        let sink = self
            .open()
            .await
            .map_err(|error| error.into_sink_error(&describe))?;
        Ok(Box::new(sink))
    }
}
