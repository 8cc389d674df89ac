//! Segment objects: one or more consecutive records, one JSONL line each
//! (`audit_core::jsonl`), `\n` after every line, named by the seq of the
//! first record so that a lexicographic listing is seq order. Listings are
//! sorted here anyway: `ObjectStore::list` promises no order (a local
//! folder lists in directory order).
//!
//! ```
//! use audit_s3_jsonl::segment::split_lines;
//! let (lines, ends_with_newline) = split_lines(b"{\"a\":1}\n{\"b\":2}");
//! assert_eq!(lines, [&b"{\"a\":1}"[..], &b"{\"b\":2}"[..]]);
//! assert!(!ends_with_newline);
//! ```

use audit_core::Record;
use audit_core::jsonl::encode_record;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};

use crate::error::ArchiveError;
use crate::layout::seq_in_name;

/// One segment object found by a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentRef {
    /// The seq in its name (of its first record).
    pub(crate) first_seq: u64,
    /// Where it is.
    pub(crate) path: Path,
}

/// The body of a segment holding `records`.
pub fn encode_segment(records: &[Record]) -> String {
    let mut body = String::with_capacity(records.len() * 512);
    for record in records {
        body.push_str(&encode_record(record));
    }
    body
}

/// The lines of a segment body (without their `\n`), and whether the body
/// ends with `\n` as the format requires. An empty body has no line.
pub fn split_lines(body: &[u8]) -> (Vec<&[u8]>, bool) {
    if body.is_empty() {
        return (Vec::new(), true);
    }
    let ends_with_newline = body.ends_with(b"\n");
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    (
        body.split(|&byte| byte == b'\n').collect(),
        ends_with_newline,
    )
}

/// The segments directly under `records_dir` (after `offset` when given),
/// in seq order. Objects whose names are not segment names are left out
/// (an archive source reports them as strays).
pub(crate) async fn list_segments(
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
        .filter(|meta| {
            meta.location
                .prefix_match(records_dir)
                .is_some_and(|rest| rest.count() == 1)
        })
        .filter_map(|meta| {
            let first_seq = seq_in_name(meta.location.filename()?, ".jsonl")?;
            Some(SegmentRef {
                first_seq,
                path: meta.location,
            })
        })
        .collect();
    segments.sort_by_key(|segment| segment.first_seq);
    Ok(segments)
}

/// The bytes of an object.
pub(crate) async fn get_bytes(store: &dyn ObjectStore, path: &Path) -> Result<Bytes, ArchiveError> {
    store
        .get(path)
        .await
        .map_err(ArchiveError::store(store, "reading", path))?
        .bytes()
        .await
        .map_err(ArchiveError::store(store, "reading", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_a_missing_final_newline_is_seen() {
        assert_eq!(split_lines(b""), (Vec::<&[u8]>::new(), true));
        assert_eq!(split_lines(b"a\n"), (vec![&b"a"[..]], true));
        assert_eq!(split_lines(b"a\n\nb"), (vec![&b"a"[..], b"", b"b"], false));
    }
}
