//! Segment objects: encoding a batch of records, listing and reading them.
//!
//! A segment is one or more consecutive records, one JSONL line each
//! (`audit_core::jsonl`), named by the seq of its first record, so that a
//! lexicographic listing is seq order. Listings are sorted here anyway:
//! `ObjectStore::list` promises no order (a local folder lists in directory
//! order).

use audit_core::Record;
use audit_core::jsonl::{decode_record, encode_record, seq_of_name};
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;

use crate::error::ArchiveError;

/// One segment object found by a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRef {
    /// The seq in its name (of its first record).
    pub first_seq: u64,
    /// Where it is.
    pub path: Path,
}

/// The body of a segment holding `records`.
pub fn encode_segment(records: &[Record]) -> String {
    let mut body = String::with_capacity(records.len() * 512);
    for record in records {
        body.push_str(&encode_record(record));
    }
    body
}

/// The segments under `records_dir` (after `offset` when given), in seq
/// order. Objects whose names are not segment names are ignored.
pub async fn list_segments(
    store: &dyn ObjectStore,
    records_dir: &Path,
    offset: Option<&Path>,
) -> Result<Vec<SegmentRef>, ArchiveError> {
    let listing = match offset {
        Some(offset) => store.list_with_offset(Some(records_dir), offset),
        None => store.list(Some(records_dir)),
    };
    let metas: Vec<_> =
        listing
            .try_collect()
            .await
            .map_err(ArchiveError::store(store, "listing", records_dir))?;
    let mut segments: Vec<SegmentRef> = metas
        .into_iter()
        .filter(|meta| meta.location.as_ref().ends_with(".jsonl"))
        .filter_map(|meta| {
            seq_of_name(meta.location.as_ref()).map(|first_seq| SegmentRef {
                first_seq,
                path: meta.location,
            })
        })
        .collect();
    segments.sort_by_key(|segment| segment.first_seq);
    Ok(segments)
}

/// The text of a segment object.
pub async fn read_segment_text(
    store: &dyn ObjectStore,
    path: &Path,
) -> Result<String, ArchiveError> {
    let bytes = store
        .get(path)
        .await
        .map_err(ArchiveError::store(store, "reading", path))?
        .bytes()
        .await
        .map_err(ArchiveError::store(store, "reading", path))?;
    String::from_utf8(bytes.to_vec()).map_err(|error| ArchiveError::Malformed {
        path: path.to_string(),
        line: 0,
        detail: format!("not UTF-8: {error}"),
    })
}

/// Each line of a segment, decoded or with why it is not a record.
pub fn decode_lines(text: &str) -> impl Iterator<Item = Result<Record, String>> + '_ {
    text.split_terminator('\n')
        .map(|line| decode_record(line).map_err(|error| error.to_string()))
}

/// Reads and decodes a whole segment; the first bad line is an error.
pub async fn read_segment(
    store: &dyn ObjectStore,
    path: &Path,
) -> Result<Vec<Record>, ArchiveError> {
    let text = read_segment_text(store, path).await?;
    let records = decode_lines(&text)
        .enumerate()
        .map(|(index, line)| {
            line.map_err(|detail| ArchiveError::Malformed {
                path: path.to_string(),
                line: index + 1,
                detail,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if records.is_empty() {
        return Err(ArchiveError::Malformed {
            path: path.to_string(),
            line: 0,
            detail: "empty segment".into(),
        });
    }
    Ok(records)
}
