//! Dead letters: events a sink could not append, kept for replay.
//!
//! [`DeadLetter`] is the one shape every store uses (the SQL table of
//! FORMAT.md section 6, the dead-letter objects of section 7). The
//! [`FallbackFile`] is the last resort of the pipeline, for batches the sink
//! could not even dead-letter: JSON lines, fsync'd before the events are
//! counted, readable back, and replayed into any sink with
//! [`FallbackFile::replay_into`] once the sink works again.
//!
//! ```
//! use audit_core::dead_letter::{DeadLetter, FallbackFile};
//! use audit_core::{AuditEvent, chain::ChainId};
//! let dir = tempfile::tempdir().unwrap();
//! let file = FallbackFile::new(dir.path().join("fallback.jsonl"));
//! let event = AuditEvent::new("t", "a", serde_json::json!(null)).unwrap();
//! let letter = DeadLetter::new(&ChainId::default(), &event, "sink down", 3);
//! file.append(std::slice::from_ref(&letter)).unwrap();
//! assert_eq!(file.read_all().unwrap(), vec![letter]);
//! ```

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::chain::ChainId;
use crate::event::{AuditEvent, EventLimits, now_utc};
use crate::sink::{AppendOutcome, AuditSink, SinkError};

/// Letters handed to the sink per `append_batch` call during a replay.
pub const REPLAY_BATCH: usize = 1_000;

/// One dead-lettered event with why and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The chain the event was meant for.
    pub chain_id: String,
    /// The event id.
    pub event_id: String,
    /// The canonical event bytes `E`.
    pub event_json: String,
    /// Why it could not be appended.
    pub failure_reason: String,
    /// When it was dead-lettered, in the event time format.
    pub failed_at: String,
    /// How many attempts were made.
    pub attempts: u32,
}

impl DeadLetter {
    /// A dead letter for `event`, failed now.
    pub fn new(
        chain: &ChainId,
        event: &AuditEvent,
        reason: impl Into<String>,
        attempts: u32,
    ) -> Self {
        Self {
            chain_id: chain.as_str().to_owned(),
            event_id: event.id().to_owned(),
            event_json: event.canonical_json().to_owned(),
            failure_reason: reason.into(),
            failed_at: now_utc(),
            attempts,
        }
    }

    /// Parses the stored event back, validating it, for replay.
    pub fn event(&self) -> Result<AuditEvent, crate::error::EventError> {
        AuditEvent::from_canonical_with(&self.event_json, EventLimits::default())
    }
}

/// Why the fallback file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum FallbackError {
    /// I/O on the file failed.
    #[error("fallback dead-letter file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a dead letter.
    #[error("fallback dead-letter file {path}, line {line}: {detail}")]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        detail: String,
    },
}

/// What [`FallbackFile::replay_into`] did with the letters of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FallbackReplay {
    /// Letters whose event was appended now.
    pub appended: u64,
    /// Letters whose event was already in the chain (replayed before, a
    /// batch committed whose acknowledgement was lost, or the same event
    /// twice in the file).
    pub already_present: u64,
    /// Letters the sink dead-lettered again, into its own dead-letter store.
    pub dead_lettered: u64,
    /// Letters meant for another chain, left alone.
    pub other_chain: u64,
    /// Letters whose event does not parse, left alone: event id and why.
    pub invalid: Vec<(String, String)>,
}

impl FallbackReplay {
    /// Whether every letter of the file is now in the chain.
    pub fn is_complete(&self) -> bool {
        self.dead_lettered == 0 && self.other_chain == 0 && self.invalid.is_empty()
    }
}

/// Why a replay of the fallback file stopped.
#[derive(Debug, thiserror::Error)]
pub enum FallbackReplayError {
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] FallbackError),
    /// The sink failed; the batches before were appended, and replaying
    /// again is safe (event ids are idempotent).
    #[error(
        "replaying fallback file {path} stopped after {replayed} letters (replaying again is safe): {source}"
    )]
    Sink {
        /// The file.
        path: PathBuf,
        /// Letters appended (or found present) before the failure.
        replayed: u64,
        /// The sink's error.
        #[source]
        source: SinkError,
    },
}

/// An append-only JSON-lines file of dead letters, fsync'd on every append.
#[derive(Debug, Clone)]
pub struct FallbackFile {
    path: PathBuf,
}

impl FallbackFile {
    /// The file at `path` (created on first append, mode 0600).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the letters and fsyncs before returning.
    pub fn append(&self, letters: &[DeadLetter]) -> Result<(), FallbackError> {
        let io_error = |source| FallbackError::Io {
            path: self.path.clone(),
            source,
        };
        let mut text = String::new();
        for letter in letters {
            let line = serde_json::to_string(letter).map_err(|error| io_error(error.into()))?;
            text.push_str(&line);
            text.push('\n');
        }
        if let Some(parent) = self
            .path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            fs::create_dir_all(parent).map_err(io_error)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(io_error)?;
        file.write_all(text.as_bytes()).map_err(io_error)?;
        file.sync_data().map_err(io_error)
    }

    /// Appends the letters of `chain` in the file to `sink`, in file order,
    /// [`REPLAY_BATCH`] at a time, and reports what became of them.
    ///
    /// Idempotent: the sink gives an event whose id is already in the chain
    /// its existing record, so a replay repeated (after a crash, or after
    /// an error part way) appends nothing twice. Letters of other chains
    /// and letters whose event does not parse are left alone and reported.
    /// The file is not modified: remove it once the report
    /// [`is_complete`](FallbackReplay::is_complete).
    pub async fn replay_into(
        &self,
        sink: &mut dyn AuditSink,
        chain: &ChainId,
    ) -> Result<FallbackReplay, FallbackReplayError> {
        let file = self.clone();
        let letters = tokio::task::spawn_blocking(move || file.read_all())
            .await
            .map_err(|join_error| FallbackError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(join_error),
            })??;
        let mut report = FallbackReplay::default();
        let mut events = Vec::new();
        for letter in letters {
            if letter.chain_id != chain.as_str() {
                report.other_chain += 1;
                continue;
            }
            match letter.event() {
                Ok(event) => events.push(event),
                Err(error) => report.invalid.push((letter.event_id, error.to_string())),
            }
        }
        for batch in events.chunks(REPLAY_BATCH) {
            let outcomes =
                sink.append_batch(batch)
                    .await
                    .map_err(|source| FallbackReplayError::Sink {
                        path: self.path.clone(),
                        replayed: report.appended + report.already_present,
                        source,
                    })?;
            for outcome in outcomes {
                match outcome {
                    AppendOutcome::Appended(receipt) if receipt.already_present => {
                        report.already_present += 1;
                    }
                    AppendOutcome::Appended(_) => report.appended += 1,
                    AppendOutcome::DeadLettered { .. } => report.dead_lettered += 1,
                }
            }
        }
        Ok(report)
    }

    /// Reads every letter back; a missing file has none.
    pub fn read_all(&self) -> Result<Vec<DeadLetter>, FallbackError> {
        let file = match fs::File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(FallbackError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let mut letters = Vec::new();
        for (index, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|source| FallbackError::Io {
                path: self.path.clone(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let letter = serde_json::from_str(&line).map_err(|error| FallbackError::BadLine {
                path: self.path.clone(),
                line: index + 1,
                detail: error.to_string(),
            })?;
            letters.push(letter);
        }
        Ok(letters)
    }
}
