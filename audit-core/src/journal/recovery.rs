//! Reading a journal back at start: every intact frame is an event to
//! replay; a torn last frame is dropped; anything else stops recovery.
//!
//! A crash while a group is being written can leave the last segment ending
//! inside a frame, or with zeros where the last frame's bytes did not reach
//! the disk. No event of that group was acknowledged (acknowledgement waits
//! for the fsync), so such a torn tail is cut off. Only bytes that a crash
//! can leave count as torn (see `torn_tail`): a plausible length, a payload
//! that is a strict prefix of one canonical event, zeros at most at the end.
//! Anything else (a damaged length that runs to the end of the file, a whole
//! last frame with a bad checksum, a bad frame followed by more bytes, a bad
//! frame in an older segment) is corruption: recovery stops with
//! [`JournalError::Corrupt`] naming the file and offset, and deletes nothing.
//!
//! Leftovers of a rotation cut short (a `*.journal.tmp` file, never renamed
//! into place, so never acknowledged) are removed.

use std::fs;
use std::path::{Path, PathBuf};

use super::JournalError;
use super::frame::{self, Decoded, FRAME_HEADER, SEGMENT_MAGIC};
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

/// The temporary name a new segment is written under before it is renamed
/// to [`segment_file_name`].
pub(crate) fn temporary_file_name(id: u64) -> String {
    format!("{id:020}.journal.tmp")
}

/// Lists segment files in id order, removing leftovers of a rotation that
/// failed or was cut by a crash (`*.journal.tmp`: never renamed into
/// place, so they hold no acknowledged event).
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let entries = fs::read_dir(dir).map_err(|source| JournalError::io(dir, source))?;
    let mut segments = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| JournalError::io(dir, source))?
            .path();
        if let Some(id) = segment_id(&path) {
            segments.push((id, path));
        } else if path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.ends_with(".journal.tmp"))
        {
            tracing::info!(path = %path.display(), "removing a journal segment whose creation did not finish");
            fs::remove_file(&path).map_err(|source| JournalError::io(&path, source))?;
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
            Decoded::Incomplete | Decoded::BadChecksum { .. } if is_last => {
                return match torn_tail(&bytes[offset..], limits) {
                    Ok(()) => Ok((events, offset)),
                    Err(why) => Err(corrupt(offset, why)),
                };
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

/// Whether `rest`, the bytes from a damaged frame of the last segment to
/// the end of the file, can be what a crash during one group write left;
/// `Err` says why not (corruption: refuse, delete nothing).
///
/// A group write appends whole frames with one `write` and is acknowledged
/// only after its fsync. A crash before the fsync leaves a prefix of those
/// bytes, possibly followed by zeros (a file size that reached the disk
/// before the data). So a torn frame is one that reaches the end of the
/// file, whose declared length is at most the largest event, and whose
/// payload bytes present (zeros at the end set aside) are a *strict* prefix
/// of one canonical JSON object: never a whole object (then the length
/// lies), never bytes JSON cannot hold (such as the next frame's header).
/// A frame of full length whose checksum fails is torn only when it ends in
/// such zeros: canonical JSON ends with `}`, so a flipped bit in an
/// acknowledged last frame is refused, not cut off.
fn torn_tail(rest: &[u8], limits: EventLimits) -> Result<(), &'static str> {
    let max_payload = limits.max_event_bytes as u64;
    if rest.len() < FRAME_HEADER {
        // A cut header: only its length bytes can be checked.
        let mut length = [0u8; 4];
        let present = rest.len().min(4);
        length[..present].copy_from_slice(&rest[..present]);
        let lowest = u64::from(u32::from_be_bytes(length));
        return if lowest > max_payload {
            Err("cut frame header declares a frame longer than the largest event")
        } else {
            Ok(())
        };
    }
    let declared = u64::from(u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]));
    if declared > max_payload {
        return Err(
            "frame declares a length beyond the largest event (a damaged length, not a torn write)",
        );
    }
    let payload = &rest[FRAME_HEADER..];
    let data_end = payload
        .iter()
        .rposition(|byte| *byte != 0)
        .map_or(0, |last| last + 1);
    let zero_filled =
        data_end < payload.len() || (payload.is_empty() && rest[FRAME_HEADER - 1] == 0);
    if payload.len() as u64 >= declared && !zero_filled {
        return Err("frame checksum mismatch (the frame is whole: damage, not a torn write)");
    }
    if payload.len() as u64 > declared {
        return Err("bytes after the end of the last frame");
    }
    let data = &payload[..data_end];
    if data.is_empty() {
        return Ok(());
    }
    if data[0] != b'{' {
        return Err("cut frame does not start a JSON object");
    }
    let mut values =
        serde_json::Deserializer::from_slice(data).into_iter::<serde::de::IgnoredAny>();
    match values.next() {
        Some(Err(error)) if error.is_eof() => Ok(()),
        Some(Ok(_)) => Err(
            "frame holds a whole event but declares a longer length (a damaged length, not a torn write)",
        ),
        _ => Err("cut frame holds bytes that are not the start of a canonical event"),
    }
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
