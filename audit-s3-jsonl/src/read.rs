//! The read side: an archive prefix as a [`ChainSource`], for the core's
//! one verifier, export and dead-letter replay.
//!
//! [`ArchiveSource`] reads every object under the prefix as stored:
//!
//! - the inventory lists the prefix once and sorts every object by the
//!   layout ([`classify`]): an object in a folder that is not a valid chain
//!   name (`.hidden`, `bad name`) or anywhere outside the layout is a
//!   [`Stray`](audit_core::store::Stray), never skipped; a chain is any
//!   folder holding a segment, a checkpoint or a dead letter;
//! - records come segment by segment in name order (a few fetched ahead),
//!   each line decoded with [`audit_core::jsonl::decode_record`]. A line
//!   that does not decode, a segment not named after its first record's
//!   seq, an empty segment and a last line without its `\n` are
//!   [`SourceRecord::Malformed`] at the seq where they are found (the seq
//!   of the segment's name plus the line's offset); a record whose `chain`
//!   member names another chain is returned as it is (the verifier
//!   reports a record filed under another chain);
//! - checkpoints that do not decode, or whose chain or seq differs from
//!   their object's folder or name, are `Err((seq, detail))`;
//! - dead letters are keyed by their object path (what
//!   [`ObjectStoreChain::remove_dead_letters`](crate::ObjectStoreChain) deletes). A letter object
//!   that cannot be read as a dead letter is returned anyway, with its raw
//!   text as `event_json`, no event id and the reason in
//!   `failure_reason`: a replay lists it as unreadable and keeps it. A
//!   letter's chain is its `chain_id` member: a letter in chain `c`'s
//!   folder that names another chain is listed under its own chain (and
//!   never replayed into `c`).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use audit_core::keys::Keyring;
//! use audit_core::verification::{SourceVerifyOptions, verify_source};
//! use audit_s3_jsonl::ArchiveSource;
//! use object_store::{memory::InMemory, path::Path};
//! let source = ArchiveSource::new(Arc::new(InMemory::new()), Path::from("archive"));
//! let report = verify_source(&source, &Keyring::new(), SourceVerifyOptions::default()).await?;
//! assert!(report.is_ok());
//! # Ok::<(), audit_core::store::SourceError>(())
//! # }).unwrap();
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use audit_core::ChainId;
use audit_core::dead_letter::DeadLetter;
use audit_core::jsonl::{decode_checkpoint, decode_record};
use audit_core::store::{
    ChainSource, Inventory, RecordStream, SourceCheckpoint, SourceError, SourceRecord,
    SourceTreeCheckpoint, StoredDeadLetter, StoredTreeCheckpoint,
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path;

use crate::error::ArchiveError;
use crate::layout::{ChainLayout, Object, classify};
use crate::segment::{SegmentRef, get_bytes, list_segments, split_lines};
use crate::write::location;

/// How many objects are fetched at once.
const READ_AHEAD: usize = 4;

/// An archive prefix of an object store, read as stored.
#[derive(Debug, Clone)]
pub struct ArchiveSource {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl ArchiveSource {
    /// The archive under `prefix` of `store`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path) -> Self {
        Self { store, prefix }
    }

    /// The archive a store URL names (`s3://BUCKET/PREFIX`, `file:///DIR`).
    pub fn from_url(url: &str) -> Result<Self, ArchiveError> {
        let (store, prefix) = crate::url::open_store_url(url)?;
        Ok(Self::new(store, prefix))
    }

    /// The store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The prefix.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    fn error(&self, error: ArchiveError) -> SourceError {
        error.into_source_error(&self.describe())
    }

    /// Every object under `dir`, sorted by path.
    async fn list(&self, dir: &Path) -> Result<Vec<Path>, SourceError> {
        let store = self.store.as_ref();
        let mut paths: Vec<Path> = store
            .list(Some(dir))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|error| self.error(ArchiveError::store(store, "listing", dir)(error)))?;
        paths.sort();
        Ok(paths)
    }

    /// The bytes of each object of `paths`, in order, a few at a time.
    async fn read_all(&self, paths: Vec<Path>) -> Result<Vec<(Path, Bytes)>, SourceError> {
        let store = self.store.as_ref();
        futures::stream::iter(paths)
            .map(|path| async move {
                let body = get_bytes(store, &path).await;
                body.map(|body| (path, body))
            })
            .buffered(READ_AHEAD)
            .map_err(|error| self.error(error))
            .try_collect()
            .await
    }
}

/// The rows of one segment with seq `>= from`, as stored.
fn segment_rows(segment: &SegmentRef, body: &[u8], from: u64) -> Vec<SourceRecord> {
    let path = &segment.path;
    let first_seq = i128::from(segment.first_seq);
    let (lines, ends_with_newline) = split_lines(body);
    let mut rows = Vec::with_capacity(lines.len() + 1);
    if lines.is_empty() {
        rows.push(SourceRecord::Malformed {
            seq: first_seq,
            detail: format!("{path}: empty segment"),
        });
    }
    let last = lines.len().saturating_sub(1);
    for (index, line) in lines.into_iter().enumerate() {
        let text = std::str::from_utf8(line);
        // Where the line is reported: the seq it states when it can be
        // read, else its place in the segment.
        let seq = text
            .ok()
            .and_then(stated_seq)
            .unwrap_or(first_seq + index as i128);
        let malformed = |detail: String| SourceRecord::Malformed {
            seq,
            detail: format!("{path}, line {}: {detail}", index + 1),
        };
        if index == last && !ends_with_newline {
            rows.push(malformed(
                "no final newline: the segment is cut short".into(),
            ));
            continue;
        }
        let record = match text.map(decode_record) {
            Err(error) => Err(format!("not UTF-8: {error}")),
            Ok(Err(error)) => Err(error.to_string()),
            Ok(Ok(record)) if record.seq == 0 => Err("seq 0 is outside 1..=head".into()),
            Ok(Ok(record)) => Ok(record),
        };
        match record {
            Err(detail) => rows.push(malformed(detail)),
            Ok(record) => {
                if index == 0 && i128::from(record.seq) != first_seq {
                    rows.push(SourceRecord::Malformed {
                        seq: first_seq,
                        detail: format!(
                            "{path} is named for seq {first_seq} but its first record has seq {}",
                            record.seq
                        ),
                    });
                }
                rows.push(SourceRecord::Record(record));
            }
        }
    }
    if from > 1 {
        let from = i128::from(from);
        rows.retain(|row| match row {
            SourceRecord::Record(record) => i128::from(record.seq) >= from,
            SourceRecord::Malformed { seq, .. } => *seq >= from,
        });
    }
    rows
}

/// The `seq` member of a line that may not decode as a record (it may be
/// zero or negative).
fn stated_seq(text: &str) -> Option<i128> {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: i128,
    }
    serde_json::from_str::<Seq>(text).ok().map(|line| line.seq)
}

/// A dead-letter object as a letter; one that cannot be read keeps its
/// raw text and says why.
fn letter_of(path: &Path, folder_chain: &ChainId, body: &[u8]) -> DeadLetter {
    match serde_json::from_slice::<DeadLetter>(body) {
        Ok(letter) => letter,
        Err(error) => {
            let stem = path
                .filename()
                .and_then(|name| name.strip_suffix(".json"))
                .unwrap_or_default();
            // `{time}-{event_id}`: the id is a 36-character UUID.
            let failed_at = stem
                .len()
                .checked_sub(37)
                .and_then(|end| stem.get(..end))
                .unwrap_or_default();
            DeadLetter {
                chain_id: folder_chain.to_string(),
                event_id: String::new(),
                event_json: String::from_utf8_lossy(body).into_owned(),
                failure_reason: format!("unreadable dead-letter object {path}: {error}"),
                failed_at: failed_at.to_owned(),
                attempts: 0,
                key_id: None,
                sig: None,
            }
        }
    }
}

#[async_trait]
impl ChainSource for ArchiveSource {
    fn describe(&self) -> String {
        format!(
            "jsonl archive {}",
            location(self.store.as_ref(), &self.prefix)
        )
    }

    async fn inventory(&self) -> Result<Inventory, SourceError> {
        let mut inventory = Inventory::default();
        for path in self.list(&self.prefix).await? {
            match classify(&self.prefix, &path) {
                Object::Segment { chain, .. }
                | Object::Checkpoint { chain, .. }
                | Object::TreeCheckpoint { chain, .. }
                | Object::DeadLetter { chain } => inventory.add_chain(chain),
                Object::Probe => {}
                Object::Stray(stray) => inventory.strays.push(stray),
            }
        }
        Ok(inventory)
    }

    async fn records(&self, chain: &ChainId, from: u64) -> Result<RecordStream<'_>, SourceError> {
        let store = self.store.as_ref();
        let records_dir = ChainLayout::new(&self.prefix, chain).records_dir();
        let mut segments = list_segments(store, &records_dir, None)
            .await
            .map_err(|error| self.error(error))?;
        if from > 1 {
            // Segments before the one whose name is at or before `from` end before it.
            let keep = segments
                .partition_point(|segment| segment.first_seq <= from)
                .saturating_sub(1);
            segments.drain(..keep);
        }
        let stream = futures::stream::iter(segments)
            .map(move |segment| async move {
                let body = get_bytes(store, &segment.path).await;
                (segment, body)
            })
            .buffered(READ_AHEAD)
            .flat_map(move |(segment, body)| {
                let rows: Vec<Result<SourceRecord, SourceError>> = match body {
                    Ok(body) => segment_rows(&segment, &body, from)
                        .into_iter()
                        .map(Ok)
                        .collect(),
                    Err(error) => vec![Err(self.error(error))],
                };
                futures::stream::iter(rows)
            });
        Ok(stream.boxed())
    }

    async fn tree_checkpoints(
        &self,
        chain: &ChainId,
    ) -> Result<Vec<SourceTreeCheckpoint>, SourceError> {
        let dir = ChainLayout::new(&self.prefix, chain).tree_checkpoints_dir();
        let mut named: Vec<(u64, Path)> = self
            .list(&dir)
            .await?
            .into_iter()
            .filter_map(|path| match classify(&self.prefix, &path) {
                Object::TreeCheckpoint { size, .. } => Some((size, path)),
                _ => None,
            })
            .collect();
        named.sort();
        let (sizes, paths): (Vec<u64>, Vec<Path>) = named.into_iter().unzip();
        let bodies = self.read_all(paths).await?;
        Ok(sizes
            .into_iter()
            .zip(bodies)
            .map(
                |(size, (path, body))| match String::from_utf8(body.to_vec()) {
                    Ok(note) => Ok(StoredTreeCheckpoint { size, note }),
                    Err(error) => Err((i128::from(size), format!("{path}: not UTF-8: {error}"))),
                },
            )
            .collect())
    }

    async fn checkpoints(&self, chain: &ChainId) -> Result<Vec<SourceCheckpoint>, SourceError> {
        let dir = ChainLayout::new(&self.prefix, chain).checkpoints_dir();
        let mut named: Vec<(u64, Path)> = self
            .list(&dir)
            .await?
            .into_iter()
            .filter_map(|path| match classify(&self.prefix, &path) {
                Object::Checkpoint { seq, .. } => Some((seq, path)),
                _ => None,
            })
            .collect();
        named.sort();
        let (seqs, paths): (Vec<u64>, Vec<Path>) = named.into_iter().unzip();
        let bodies = self.read_all(paths).await?;
        Ok(seqs
            .into_iter()
            .zip(bodies)
            .map(|(seq, (path, body))| {
                let bad = |detail: String| (i128::from(seq), format!("{path}: {detail}"));
                let text = std::str::from_utf8(&body)
                    .map_err(|error| bad(format!("not UTF-8: {error}")))?;
                let checkpoint = decode_checkpoint(text).map_err(|error| bad(error.to_string()))?;
                if checkpoint.chain != *chain || checkpoint.seq != seq {
                    return Err(bad(format!(
                        "holds the checkpoint of chain {} at seq {}",
                        checkpoint.chain, checkpoint.seq
                    )));
                }
                Ok(checkpoint)
            })
            .collect())
    }

    async fn dead_letters(
        &self,
        chain: Option<&ChainId>,
    ) -> Result<Vec<StoredDeadLetter>, SourceError> {
        let dir = match chain {
            Some(chain) => ChainLayout::new(&self.prefix, chain).dead_letters_dir(),
            None => self.prefix.clone(),
        };
        let mut found: Vec<(ChainId, Path)> = self
            .list(&dir)
            .await?
            .into_iter()
            .filter_map(|path| match classify(&self.prefix, &path) {
                Object::DeadLetter { chain } => Some((chain, path)),
                _ => None,
            })
            .collect();
        // Oldest first: names start with the time.
        found.sort_by(|(_, a), (_, b)| (a.filename(), a).cmp(&(b.filename(), b)));
        let (chains, paths): (Vec<ChainId>, Vec<Path>) = found.into_iter().unzip();
        let bodies = self.read_all(paths).await?;
        Ok(chains
            .into_iter()
            .zip(bodies)
            .map(|(folder_chain, (path, body))| StoredDeadLetter {
                letter: letter_of(&path, &folder_chain, &body),
                key: path.to_string(),
            })
            .filter(|stored| chain.is_none_or(|chain| stored.letter.chain_id == chain.as_str()))
            .collect())
    }
}
