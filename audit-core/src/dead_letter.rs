//! Dead letters: events a sink could not append, kept for replay.
//!
//! [`DeadLetter`] is the one shape every store uses (the SQL table of
//! FORMAT.md section 6, the dead-letter objects of section 7). The
//! [`FallbackFile`] is the last resort of the pipeline, for batches the sink
//! could not even dead-letter: JSON lines, fsync'd before the events are
//! counted, readable back, and replayed into any sink with
//! [`FallbackFile::replay_into`] (or [`FallbackFile::replay_with`], which
//! can require authenticated letters) once the sink works again;
//! [`FallbackFile::read`] lists it, skipping (and counting) torn or damaged
//! lines.
//!
//! A writer holding the chain key authenticates the letters it makes
//! ([`DeadLetter::authenticate`]): an Ed25519 signature over
//! [`DeadLetter::authentication_hash`], so that replay, which signs the
//! events into the chain, can refuse letters inserted by anyone else
//! ([`DeadLetter::verify`]).
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
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::chain::ChainId;
use crate::digest::Digest;
use crate::event::{AuditEvent, EventLimits, now_utc};
use crate::keys::{AuditSigner, Keyring};
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
    /// Key id of the writer's key that authenticated the letter (see
    /// [`DeadLetter::authenticate`]); absent on an unauthenticated letter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Hex Ed25519 signature over [`DeadLetter::authentication_hash`];
    /// absent on an unauthenticated letter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
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
            key_id: None,
            sig: None,
        }
    }

    /// The hash the writer signs:
    /// `H("audit-chain/v1/dead-letter" || 0x00 || str(chain_id) || str(event_id)
    /// || H(event_json) || str(failure_reason) || str(failed_at) || u32be(attempts))`,
    /// with `str` and `H` of FORMAT.md (the notation section).
    pub fn authentication_hash(&self) -> Digest {
        use sha2::Digest as _;
        let mut buffer = Vec::with_capacity(
            64 + self.chain_id.len()
                + self.event_id.len()
                + self.failure_reason.len()
                + self.failed_at.len(),
        );
        buffer.extend_from_slice(DEAD_LETTER_DOMAIN);
        push_str(&mut buffer, &self.chain_id);
        push_str(&mut buffer, &self.event_id);
        buffer.extend_from_slice(&sha2::Sha256::digest(self.event_json.as_bytes()));
        push_str(&mut buffer, &self.failure_reason);
        push_str(&mut buffer, &self.failed_at);
        buffer.extend_from_slice(&self.attempts.to_be_bytes());
        Digest(sha2::Sha256::digest(&buffer).into())
    }

    /// Signs the letter with the writer's key (the chain key): sets
    /// `key_id` and `sig`. Call it last: any later change of a field
    /// invalidates the signature.
    pub fn authenticate(&mut self, signer: &AuditSigner) {
        let signature = signer.sign(&self.authentication_hash());
        self.key_id = Some(signer.key_id().to_string());
        self.sig = Some(hex::encode(signature));
    }

    /// This letter, authenticated by `signer` (see [`DeadLetter::authenticate`]).
    pub fn authenticated(mut self, signer: &AuditSigner) -> Self {
        self.authenticate(signer);
        self
    }

    /// Whether the letter carries a signature (valid or not).
    pub fn is_signed(&self) -> bool {
        self.key_id.is_some() || self.sig.is_some()
    }

    /// Checks that a key of `keyring` authenticated this letter (strict
    /// Ed25519 verification), so that replay only signs into the chain what
    /// a writer holding the chain key dead-lettered.
    pub fn verify(&self, keyring: &Keyring) -> Result<(), DeadLetterAuthError> {
        let event_id = self.event_id.clone();
        let (key_id, sig) = match (&self.key_id, &self.sig) {
            (None, None) => return Err(DeadLetterAuthError::Unsigned { event_id }),
            (Some(key_id), Some(sig)) => (key_id, sig),
            _ => return Err(DeadLetterAuthError::HalfSigned { event_id }),
        };
        let Some(key) = keyring.get(key_id) else {
            return Err(DeadLetterAuthError::UnknownKey {
                event_id,
                key_id: key_id.clone(),
            });
        };
        let mut bytes = [0u8; 64];
        if hex::decode_to_slice(sig, &mut bytes).is_err() {
            return Err(DeadLetterAuthError::MalformedSignature { event_id });
        }
        let signature = ed25519_dalek::Signature::from_bytes(&bytes);
        key.verifying_key()
            .verify_strict(self.authentication_hash().as_bytes(), &signature)
            .map_err(|_| DeadLetterAuthError::BadSignature {
                event_id,
                key_id: key_id.clone(),
            })
    }

    /// Parses the stored event back, validating it, for replay.
    pub fn event(&self) -> Result<AuditEvent, crate::error::EventError> {
        AuditEvent::from_canonical_with(&self.event_json, EventLimits::default())
    }
}

/// Domain separation of [`DeadLetter::authentication_hash`].
pub const DEAD_LETTER_DOMAIN: &[u8] = b"audit-chain/v1/dead-letter\0";

/// `str(s) = u32be(byte length of s) || UTF-8 bytes of s` (FORMAT.md).
fn push_str(buffer: &mut Vec<u8>, text: &str) {
    let length = u32::try_from(text.len()).unwrap_or(u32::MAX);
    buffer.extend_from_slice(&length.to_be_bytes());
    buffer.extend_from_slice(text.as_bytes());
}

/// Why a dead letter is not authenticated by a trusted key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeadLetterAuthError {
    /// The letter carries no signature.
    #[error("dead letter of event {event_id} is not authenticated (no key_id and sig)")]
    Unsigned {
        /// The event id.
        event_id: String,
    },
    /// One of `key_id` and `sig` without the other.
    #[error("dead letter of event {event_id} has only one of key_id and sig")]
    HalfSigned {
        /// The event id.
        event_id: String,
    },
    /// Signed by a key the keyring does not hold.
    #[error(
        "dead letter of event {event_id} is signed by key {key_id}, which is not in the keyring"
    )]
    UnknownKey {
        /// The event id.
        event_id: String,
        /// The letter's key id.
        key_id: String,
    },
    /// `sig` is not 128 hex characters.
    #[error("dead letter of event {event_id}: sig is not 64 bytes of hex")]
    MalformedSignature {
        /// The event id.
        event_id: String,
    },
    /// The signature does not verify: the letter was changed or forged.
    #[error(
        "dead letter of event {event_id}: the signature by key {key_id} does not verify (changed or forged)"
    )]
    BadSignature {
        /// The event id.
        event_id: String,
        /// The letter's key id.
        key_id: String,
    },
}

/// Why the fallback file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// Letters not authenticated by a key of the keyring given in
    /// [`ReplayOptions::require_authenticated`], left alone: event id and why.
    pub unauthenticated: Vec<(String, DeadLetterAuthError)>,
    /// Lines of the file that hold no letter (torn by a crash or a full
    /// disk, or damaged), left alone.
    pub skipped_lines: Vec<SkippedLine>,
}

impl FallbackReplay {
    /// Whether every letter of the file is now in the chain.
    pub fn is_complete(&self) -> bool {
        self.dead_lettered == 0
            && self.other_chain == 0
            && self.invalid.is_empty()
            && self.unauthenticated.is_empty()
            && self.skipped_lines.is_empty()
    }
}

/// How [`FallbackFile::replay_with`] treats the letters: [`Default`]
/// (every letter), then the `with_*` methods.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ReplayOptions {
    require_authenticated: Option<Keyring>,
}

impl ReplayOptions {
    /// When set, only letters that [`DeadLetter::verify`] accepts under
    /// this keyring are replayed; the others are reported in
    /// [`FallbackReplay::unauthenticated`] and left alone.
    pub fn with_require_authenticated(mut self, keyring: Option<Keyring>) -> Self {
        self.require_authenticated = keyring;
        self
    }

    /// The keyring letters must be authenticated by, if any.
    pub fn require_authenticated(&self) -> Option<&Keyring> {
        self.require_authenticated.as_ref()
    }
}

/// A line of the fallback file that holds no letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    /// 1-based line number.
    pub line: usize,
    /// Byte offset of the line's start.
    pub offset: u64,
    /// Why it was skipped.
    pub reason: String,
}

/// What [`FallbackFile::read`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FallbackContents {
    /// The letters, in file order.
    pub letters: Vec<DeadLetter>,
    /// Non-empty lines read (letters plus skipped lines).
    pub lines_read: usize,
    /// Lines that hold no letter, with their line numbers and why.
    pub skipped: Vec<SkippedLine>,
}

/// Why a replay of the fallback file stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    ///
    /// Every letter is one whole line: when the file does not end with a
    /// newline (a line torn by a crash), the torn line is terminated first
    /// so that it stays one bad line, skipped by [`FallbackFile::read`],
    /// and the new letters stay readable. A failed write (a full disk) is
    /// undone by cutting the file back to its length before the append.
    /// When the file is created, its directory is fsync'd too, so that the
    /// file itself survives a crash.
    pub fn append(&self, letters: &[DeadLetter]) -> Result<(), FallbackError> {
        let io_error = |source| FallbackError::Io {
            path: self.path.clone(),
            source,
        };
        let mut lines = String::new();
        for letter in letters {
            let line = serde_json::to_string(letter).map_err(|error| io_error(error.into()))?;
            lines.push_str(&line);
            lines.push('\n');
        }
        let parent = self
            .path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty());
        if let Some(parent) = parent {
            fs::create_dir_all(parent).map_err(io_error)?;
        }
        let existed = fs::symlink_metadata(&self.path).is_ok();
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(io_error)?;
        let before = file.metadata().map_err(io_error)?.len();
        let mut text = Vec::with_capacity(lines.len() + 1);
        if before > 0 {
            let mut last = [0u8; 1];
            file.read_exact_at(&mut last, before - 1)
                .map_err(io_error)?;
            if last[0] != b'\n' {
                tracing::warn!(path = %self.path.display(), offset = before, "the fallback dead-letter file ends in a torn line; terminating it so that new letters stay whole lines");
                text.push(b'\n');
            }
        }
        text.extend_from_slice(lines.as_bytes());
        if let Err(source) = file.write_all(&text).and_then(|()| file.sync_data()) {
            if let Err(undo) = file.set_len(before).and_then(|()| file.sync_data()) {
                tracing::error!(path = %self.path.display(), error = %undo, "could not cut a failed append off the fallback dead-letter file; the next append terminates the torn line");
            }
            return Err(io_error(source));
        }
        if !existed {
            let directory = parent.unwrap_or(Path::new("."));
            fs::File::open(directory)
                .and_then(|directory| directory.sync_all())
                .map_err(|source| FallbackError::Io {
                    path: directory.to_owned(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Replays as [`FallbackFile::replay_with`] with default options: every
    /// letter of `chain`, authenticated or not.
    pub async fn replay_into(
        &self,
        sink: &mut dyn AuditSink,
        chain: &ChainId,
    ) -> Result<FallbackReplay, FallbackReplayError> {
        self.replay_with(sink, chain, &ReplayOptions::default())
            .await
    }

    /// Appends the letters of `chain` in the file to `sink`, in file order,
    /// [`REPLAY_BATCH`] at a time, and reports what became of them.
    ///
    /// Idempotent: the sink gives an event whose id is already in the chain
    /// its existing record, so a replay repeated (after a crash, or after
    /// an error part way) appends nothing twice. Letters of other chains,
    /// letters whose event does not parse, letters not authenticated when
    /// [`ReplayOptions::require_authenticated`] asks for it, and lines that
    /// hold no letter are left alone and reported.
    /// The file is not modified: remove it once the report
    /// [`is_complete`](FallbackReplay::is_complete).
    pub async fn replay_with(
        &self,
        sink: &mut dyn AuditSink,
        chain: &ChainId,
        options: &ReplayOptions,
    ) -> Result<FallbackReplay, FallbackReplayError> {
        let file = self.clone();
        let contents = tokio::task::spawn_blocking(move || file.read())
            .await
            .map_err(|join_error| FallbackError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(join_error),
            })??;
        let mut report = FallbackReplay {
            skipped_lines: contents.skipped,
            ..FallbackReplay::default()
        };
        let mut events = Vec::new();
        for letter in contents.letters {
            if letter.chain_id != chain.as_str() {
                report.other_chain += 1;
                continue;
            }
            if let Some(keyring) = &options.require_authenticated
                && let Err(error) = letter.verify(keyring)
            {
                report.unauthenticated.push((letter.event_id, error));
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

    /// Reads every letter back, skipping lines that hold none (see
    /// [`FallbackFile::read`] for which, and their count); a missing file
    /// has none.
    pub fn read_all(&self) -> Result<Vec<DeadLetter>, FallbackError> {
        let contents = self.read()?;
        for skipped in &contents.skipped {
            tracing::warn!(path = %self.path.display(), line = skipped.line, reason = %skipped.reason, "skipped a line of the fallback dead-letter file");
        }
        Ok(contents.letters)
    }

    /// Lists the file: every letter, and every line that holds none (a
    /// line torn by a crash or a full disk, a damaged line) with its line
    /// number and why; later lines are still read. A missing file is empty.
    pub fn read(&self) -> Result<FallbackContents, FallbackError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(FallbackContents::default());
            }
            Err(source) => {
                return Err(FallbackError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let mut contents = FallbackContents::default();
        let mut offset = 0u64;
        let mut pieces = bytes.split(|byte| *byte == b'\n').enumerate().peekable();
        while let Some((index, line)) = pieces.next() {
            let start = offset;
            offset += line.len() as u64 + 1;
            let is_last = pieces.peek().is_none();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            contents.lines_read += 1;
            let parsed = std::str::from_utf8(line)
                .map_err(|error| format!("not UTF-8: {error}"))
                .and_then(|text| {
                    serde_json::from_str::<DeadLetter>(text).map_err(|error| error.to_string())
                });
            match parsed {
                Ok(letter) => contents.letters.push(letter),
                Err(detail) => contents.skipped.push(SkippedLine {
                    line: index + 1,
                    offset: start,
                    reason: if is_last {
                        format!("torn last line (no newline; a write cut short): {detail}")
                    } else {
                        detail
                    },
                }),
            }
        }
        Ok(contents)
    }
}
