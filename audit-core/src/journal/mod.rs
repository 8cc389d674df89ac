//! The durable admission journal: events are on local disk before they are
//! acknowledged, and replayed into the sink after a crash.
//!
//! A journal is a directory of segment files (`{id:020}.journal`, see
//! [`frame`] for the bytes). One writer thread group-commits: every append
//! waiting when it wakes is written and shares one `fdatasync`, so durable
//! admission costs one fsync per group, not per event. [`Journal::append`]
//! resolves once the event is on disk, with a [`JournalTicket`]; when the
//! pipeline has appended or dead-lettered the event it calls
//! [`Journal::resolve`], and a segment whose events are all resolved is
//! deleted.
//!
//! On [`Journal::open`], every event still in the journal is handed back for
//! replay before new events are accepted ([`Recovered`]); replay is
//! idempotent because sinks skip event ids already in the chain. A torn last
//! frame (a crash mid-write, never acknowledged) is dropped; any other damage
//! stops recovery with the file and offset, and nothing is deleted.
//!
//! The directory is created 0700 and its files 0600; an existing directory
//! or file that group or others can write is refused. A `LOCK` file, locked
//! while the journal is open, keeps a second process (or a second pipeline)
//! from using the same directory.
//!
//! ```
//! use audit_core::journal::{Journal, JournalConfig};
//! use audit_core::AuditEvent;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let config = JournalConfig::new(dir.path().join("journal"));
//! let (journal, recovered) = Journal::open(config.clone())?;
//! assert!(recovered.events.is_empty());
//! let event = AuditEvent::new("t", "a", serde_json::json!(1))?;
//! let _ticket = journal.append(&event).await?; // on disk now
//! drop(journal);
//! let (_journal, recovered) = Journal::open(config)?; // as after a crash
//! assert_eq!(recovered.events[0].0, event);
//! # Ok(()) }
//! ```

pub mod frame;
mod recovery;
mod writer;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, oneshot};

use crate::event::{AuditEvent, EventLimits};

/// What to do when the journal is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhenFull {
    /// Wait until the sink catches up and segments are freed.
    #[default]
    Block,
    /// Refuse with [`JournalError::Full`], so the caller can fail closed.
    Reject,
}

/// Where and how large the journal is: [`JournalConfig::new`] with the
/// directory, then the `with_*` methods.
///
/// ```
/// use audit_core::journal::{JournalConfig, WhenFull};
/// let config = JournalConfig::new("/var/lib/service/audit-journal")
///     .with_max_bytes(256 << 20)
///     .with_when_full(WhenFull::Reject);
/// assert_eq!(config.max_bytes(), 256 << 20);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct JournalConfig {
    dir: PathBuf,
    segment_bytes: u64,
    max_bytes: u64,
    max_segments: usize,
    when_full: WhenFull,
    limits: EventLimits,
}

impl JournalConfig {
    /// Defaults: 16 MiB segments, 1 GiB and 256 segments at most, blocking when full.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_bytes: 16 << 20,
            max_bytes: 1 << 30,
            max_segments: 256,
            when_full: WhenFull::Block,
            limits: EventLimits::default(),
        }
    }

    /// A segment is closed once it reaches this size (at most a quarter
    /// of `max_bytes`, so that a small bound still frees space).
    pub fn with_segment_bytes(mut self, segment_bytes: u64) -> Self {
        self.segment_bytes = segment_bytes;
        self
    }

    /// Most bytes the journal may hold.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Most segment files the journal may hold (one more while rotating).
    pub fn with_max_segments(mut self, max_segments: usize) -> Self {
        self.max_segments = max_segments;
        self
    }

    /// What appends do when a bound is reached.
    pub fn with_when_full(mut self, when_full: WhenFull) -> Self {
        self.when_full = when_full;
        self
    }

    /// Limits for events read back.
    pub fn with_limits(mut self, limits: EventLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The size at which a segment is closed.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// Most bytes the journal may hold.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Most segment files the journal may hold.
    pub fn max_segments(&self) -> usize {
        self.max_segments
    }

    /// What appends do when a bound is reached.
    pub fn when_full(&self) -> WhenFull {
        self.when_full
    }

    /// Limits for events read back.
    pub fn limits(&self) -> EventLimits {
        self.limits
    }
}

/// Why the journal failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// I/O on a journal file failed (e.g. the disk is full).
    #[error("journal {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Damage that is not a torn last write: recovery stops, nothing is deleted.
    #[error(
        "journal file {path} is corrupt at offset {offset}: {detail}; nothing was deleted: inspect or move the file away"
    )]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the bad frame.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// Group or others may write the journal.
    #[error(
        "journal path {path} has mode {mode:04o}: group or others can write it; run `chmod go-w {path}`"
    )]
    InsecurePermissions {
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The journal holds as much as it may (in [`WhenFull::Reject`]).
    #[error(
        "journal {dir} is full ({bytes} bytes in {segments} segments); the event was not admitted"
    )]
    Full {
        /// The directory.
        dir: PathBuf,
        /// Bytes held.
        bytes: u64,
        /// Segments held.
        segments: usize,
    },
    /// An earlier write failed and could not be undone; the journal refuses
    /// further appends until reopened.
    #[error("journal {dir} is unusable after a failed write: {detail}")]
    Broken {
        /// The directory.
        dir: PathBuf,
        /// The first failure.
        detail: String,
    },
    /// Another journal handle (in this or another process) holds the directory.
    #[error(
        "journal {dir} is in use by another process (its LOCK file is locked); one pipeline per journal directory"
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// The event can never fit the journal.
    #[error("event of {size} bytes can never fit a journal of at most {limit} bytes")]
    TooLarge {
        /// Frame size.
        size: u64,
        /// The journal's byte bound.
        limit: u64,
    },
}

impl JournalError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        JournalError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Says which segment holds a journaled event; hand it back to
/// [`Journal::resolve`] once the event is in the sink or dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalTicket {
    segment: u64,
}

/// Events found in the journal at open, to replay before anything else.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Events in journal order, each with its ticket.
    pub events: Vec<(AuditEvent, JournalTicket)>,
}

#[derive(Debug)]
struct SegmentState {
    path: PathBuf,
    bytes: u64,
    pending: u64,
}

#[derive(Debug)]
struct Table {
    segments: BTreeMap<u64, SegmentState>,
    active: Option<u64>,
    next_id: u64,
    bytes: u64,
    reserved: u64,
    broken: Option<String>,
}

struct Shared {
    config: JournalConfig,
    table: Mutex<Table>,
    space: Notify,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct WriteRequest {
    payload: AuditEvent,
    reserved: u64,
    ack: oneshot::Sender<Result<JournalTicket, JournalError>>,
}

/// A handle to an open journal; cheap to clone. The writer thread stops
/// when the last handle is dropped.
#[derive(Clone)]
pub struct Journal {
    shared: Arc<Shared>,
    requests: std::sync::mpsc::Sender<WriteRequest>,
    /// The directory's lock, released when the last handle is dropped.
    _lock: Arc<fs::File>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.shared.config.dir)
            .finish()
    }
}

impl Journal {
    /// Opens (creating if needed) the journal, recovers what it holds, and
    /// starts the writer thread.
    pub fn open(mut config: JournalConfig) -> Result<(Journal, Recovered), JournalError> {
        // A segment is freed only when all its events are settled: keep
        // several within the byte bound, so a small bound still rotates.
        config.segment_bytes = config.segment_bytes.min((config.max_bytes / 4).max(4096));
        prepare_dir(&config.dir)?;
        let lock = lock_dir(&config.dir)?;
        let segments = recovery::recover(&config.dir, config.limits)?;
        let mut table = Table {
            segments: BTreeMap::new(),
            active: None,
            next_id: segments.last().map_or(1, |segment| segment.id + 1),
            bytes: 0,
            reserved: 0,
            broken: None,
        };
        let mut recovered = Recovered::default();
        for segment in segments {
            if segment.events.is_empty() {
                fs::remove_file(&segment.path)
                    .map_err(|source| JournalError::io(&segment.path, source))?;
                continue;
            }
            let ticket = JournalTicket {
                segment: segment.id,
            };
            table.bytes += segment.bytes;
            table.segments.insert(
                segment.id,
                SegmentState {
                    path: segment.path,
                    bytes: segment.bytes,
                    pending: segment.events.len() as u64,
                },
            );
            recovered
                .events
                .extend(segment.events.into_iter().map(|event| (event, ticket)));
        }
        if !recovered.events.is_empty() {
            tracing::info!(dir = %config.dir.display(), events = recovered.events.len(), "journal holds events to replay");
        }
        let shared = Arc::new(Shared {
            config,
            table: Mutex::new(table),
            space: Notify::new(),
        });
        let requests = writer::spawn(shared.clone())?;
        Ok((
            Journal {
                shared,
                requests,
                _lock: Arc::new(lock),
            },
            recovered,
        ))
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.shared.config.dir
    }

    /// Writes `event` and resolves once it is on disk (fsync'd).
    pub async fn append(&self, event: &AuditEvent) -> Result<JournalTicket, JournalError> {
        let size = (frame::FRAME_HEADER + event.canonical_json().len()) as u64;
        if size + frame::SEGMENT_MAGIC.len() as u64 > self.shared.config.max_bytes {
            return Err(JournalError::TooLarge {
                size,
                limit: self.shared.config.max_bytes,
            });
        }
        self.reserve(size).await?;
        let (ack, done) = oneshot::channel();
        let request = WriteRequest {
            payload: event.clone(),
            reserved: size,
            ack,
        };
        if self.requests.send(request).is_err() {
            self.release(size);
            return Err(self.broken_error("the journal writer has stopped"));
        }
        match done.await {
            Ok(result) => result,
            Err(_) => Err(self.broken_error("the journal writer stopped before acknowledging")),
        }
    }

    /// Marks a journaled event as in the sink (or dead-lettered): a segment
    /// whose events are all resolved is deleted.
    pub fn resolve(&self, ticket: JournalTicket) {
        let mut table = self.shared.table();
        let Some(segment) = table.segments.get_mut(&ticket.segment) else {
            return;
        };
        segment.pending = segment.pending.saturating_sub(1);
        let pending = segment.pending;
        // The active segment may go too when no append is reserved or being
        // written (`reserved == 0`): the writer opens a new segment when it
        // finds its own gone. So a clean shutdown leaves nothing to replay,
        // and a journal at its bound always frees space.
        let active = table.active == Some(ticket.segment);
        if pending == 0 && (!active || table.reserved == 0) {
            if active {
                table.active = None;
            }
            remove_segment(&mut table, ticket.segment);
            drop(table);
            self.shared.space.notify_waiters();
        }
    }

    /// The most bytes the journal may hold (its configured `max_bytes`).
    pub fn max_bytes(&self) -> u64 {
        self.shared.config.max_bytes
    }

    /// Bytes and segment files the journal holds now.
    pub fn usage(&self) -> (u64, usize) {
        let table = self.shared.table();
        (table.bytes, table.segments.len())
    }

    async fn reserve(&self, size: u64) -> Result<(), JournalError> {
        loop {
            let notified = self.shared.space.notified();
            {
                let mut table = self.shared.table();
                if let Some(detail) = &table.broken {
                    return Err(JournalError::Broken {
                        dir: self.shared.config.dir.clone(),
                        detail: detail.clone(),
                    });
                }
                let config = &self.shared.config;
                let fits = table.bytes + table.reserved + size <= config.max_bytes
                    && table.segments.len() <= config.max_segments;
                if fits {
                    table.reserved += size;
                    return Ok(());
                }
                if config.when_full == WhenFull::Reject {
                    return Err(JournalError::Full {
                        dir: config.dir.clone(),
                        bytes: table.bytes,
                        segments: table.segments.len(),
                    });
                }
            }
            notified.await;
        }
    }

    fn release(&self, size: u64) {
        let mut table = self.shared.table();
        table.reserved = table.reserved.saturating_sub(size);
    }

    fn broken_error(&self, detail: &str) -> JournalError {
        let table = self.shared.table();
        JournalError::Broken {
            dir: self.shared.config.dir.clone(),
            detail: table.broken.clone().unwrap_or_else(|| detail.to_owned()),
        }
    }
}

fn remove_segment(table: &mut Table, id: u64) {
    if let Some(segment) = table.segments.remove(&id) {
        table.bytes = table.bytes.saturating_sub(segment.bytes);
        if let Err(error) = fs::remove_file(&segment.path) {
            tracing::warn!(path = %segment.path.display(), %error, "could not delete a fully resolved journal segment; it will be replayed (idempotently) at the next start");
        }
    }
}

/// Creates the directory 0700, or checks an existing one.
fn prepare_dir(dir: &Path) -> Result<(), JournalError> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| JournalError::io(dir, source))?;
    }
    check_private(dir)
}

/// Takes the directory's exclusive lock, so one journal handle at a time
/// (across processes) owns its segments.
fn lock_dir(dir: &Path) -> Result<fs::File, JournalError> {
    let path = dir.join("LOCK");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| JournalError::io(&path, source))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(JournalError::Locked {
            dir: dir.to_owned(),
        }),
        Err(fs::TryLockError::Error(source)) => Err(JournalError::io(&path, source)),
    }
}

/// Refuses a path that group or others can write.
fn check_private(path: &Path) -> Result<(), JournalError> {
    let mode = fs::metadata(path)
        .map_err(|source| JournalError::io(path, source))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o022 != 0 {
        return Err(JournalError::InsecurePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}
