//! Reading a journal back at start: every intact frame is an event to
//! replay; a torn last frame is dropped; anything else stops recovery.
//!
//! A crash while a group is being written can leave the last segment ending
//! inside a frame, or with a last frame whose checksum fails. No event of
//! that group was acknowledged (acknowledgement waits for the fsync), so the
//! torn tail is cut off. A bad frame anywhere else (followed by more bytes,
//! or in an older segment) is corruption: recovery stops with the file and
//! offset, and deletes nothing.

use std::fs;
use std::path::{Path, PathBuf};

use super::JournalError;
use super::frame::{self, Decoded, SEGMENT_MAGIC};
use crate::event::{AuditEvent, EventLimits};

/// One segment as found on disk.
#[derive(Debug)]
pub(crate) struct RecoveredSegment {
    pub id: u64,
    pub path: PathBuf,
    pub bytes: u64,
    pub events: Vec<AuditEvent>,
}

/// The file name of segment `id`.
pub(crate) fn segment_file_name(id: u64) -> String {
    format!("{id:020}.journal")
}

fn segment_id(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_suffix(".journal")?;
    (digits.len() == 20).then(|| digits.parse().ok()).flatten()
}

/// Lists segment files in id order.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let entries = fs::read_dir(dir).map_err(|source| JournalError::io(dir, source))?;
    let mut segments = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| JournalError::io(dir, source))?
            .path();
        if let Some(id) = segment_id(&path) {
            segments.push((id, path));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Reads every segment; truncates a torn tail of the last one.
pub(crate) fn recover(
    dir: &Path,
    limits: EventLimits,
) -> Result<Vec<RecoveredSegment>, JournalError> {
    let segments = list_segments(dir)?;
    let last = segments.len().saturating_sub(1);
    let mut recovered = Vec::with_capacity(segments.len());
    for (index, (id, path)) in segments.into_iter().enumerate() {
        super::check_private(&path)?;
        let bytes = fs::read(&path).map_err(|source| JournalError::io(&path, source))?;
        let (events, good_len) = read_segment(&path, &bytes, index == last, limits)?;
        if good_len < bytes.len() {
            truncate(&path, good_len, bytes.len())?;
        }
        recovered.push(RecoveredSegment {
            id,
            path,
            bytes: good_len as u64,
            events,
        });
    }
    Ok(recovered)
}

/// Decodes a segment: its events and the length of its intact prefix.
fn read_segment(
    path: &Path,
    bytes: &[u8],
    is_last: bool,
    limits: EventLimits,
) -> Result<(Vec<AuditEvent>, usize), JournalError> {
    let corrupt = |offset: usize, detail: &str| JournalError::Corrupt {
        path: path.to_owned(),
        offset: offset as u64,
        detail: detail.to_owned(),
    };
    if bytes.len() < SEGMENT_MAGIC.len() {
        return if is_last && SEGMENT_MAGIC.starts_with(bytes) {
            Ok((Vec::new(), 0))
        } else {
            Err(corrupt(0, "segment shorter than its header"))
        };
    }
    if &bytes[..SEGMENT_MAGIC.len()] != SEGMENT_MAGIC {
        return Err(corrupt(
            0,
            "not a journal segment (bad magic or unknown version)",
        ));
    }
    let mut events = Vec::new();
    let mut offset = SEGMENT_MAGIC.len();
    while offset < bytes.len() {
        match frame::decode(bytes, offset) {
            Decoded::Frame { payload, next } => {
                let event = std::str::from_utf8(payload)
                    .map_err(|_| corrupt(offset, "frame payload is not UTF-8"))
                    .and_then(|text| {
                        AuditEvent::from_canonical_with(text, limits).map_err(|error| {
                            corrupt(offset, &format!("frame holds no valid event: {error}"))
                        })
                    })?;
                events.push(event);
                offset = next;
            }
            Decoded::Incomplete if is_last => return Ok((events, offset)),
            Decoded::BadChecksum { end } if is_last && end >= bytes.len() => {
                return Ok((events, offset));
            }
            Decoded::Incomplete => {
                return Err(corrupt(
                    offset,
                    "frame cut short in a segment that is not the last",
                ));
            }
            Decoded::BadChecksum { .. } => return Err(corrupt(offset, "frame checksum mismatch")),
        }
    }
    Ok((events, offset))
}

fn truncate(path: &Path, good_len: usize, found_len: usize) -> Result<(), JournalError> {
    tracing::warn!(path = %path.display(), offset = good_len, dropped_bytes = found_len - good_len, "dropping the torn tail of the journal (an unacknowledged write cut by a crash)");
    let file = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|source| JournalError::io(path, source))?;
    file.set_len(good_len as u64)
        .and_then(|()| file.sync_all())
        .map_err(|source| JournalError::io(path, source))
}
