//! The JSONL codec of FORMAT.md section 7: record lines and checkpoint
//! objects, shared by the object-store archive and the CLI.
//!
//! A record line embeds `E` itself as the `"event"` member; decoding keeps
//! those bytes exactly as written, so a verifier checks what is stored.
//!
//! ```
//! use audit_core::chain::{ChainHead, ChainId, Sealer, SignMode};
//! use audit_core::{jsonl, AuditEvent};
//! let sealer = Sealer::new(ChainId::new("c")?, None, SignMode::EveryRecord);
//! let event = AuditEvent::new("t", "a", serde_json::json!([1, "x"]))?;
//! let record = sealer.seal(ChainHead::EMPTY, &event);
//! let line = jsonl::encode_record(&record);
//! assert!(line.ends_with('\n'));
//! let decoded = jsonl::decode_record(&line)?;
//! assert_eq!(decoded.hash, record.hash);
//! assert_eq!(decoded.event_json, record.event_json);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::chain::{ChainId, Checkpoint, Record};
use crate::digest::Digest;
use crate::error::JsonlError;
use crate::shared_str::SharedStr;

/// The format version written in every line (`"v":1`).
pub const FORMAT_VERSION: u64 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordLine<'a> {
    v: u64,
    #[serde(borrow)]
    chain: std::borrow::Cow<'a, str>,
    seq: u64,
    #[serde(borrow)]
    event: &'a RawValue,
    event_hash: String,
    prev: String,
    hash: String,
    key_id: Option<SharedStr>,
    sig: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointObject {
    v: u64,
    chain: String,
    seq: u64,
    head: String,
    time: String,
    key_id: String,
    sig: String,
}

/// Encodes a record as one line, `\n` included.
pub fn encode_record(record: &Record) -> String {
    let event = RawValue::from_string(record.event_json.to_string()).ok();
    let line = event.as_deref().map(|event| RecordLine {
        v: FORMAT_VERSION,
        chain: record.chain.as_str().into(),
        seq: record.seq,
        event,
        event_hash: record.event_hash.to_hex(),
        prev: record.prev.to_hex(),
        hash: record.hash.to_hex(),
        key_id: record.key_id.clone(),
        sig: record.sig.map(hex::encode),
    });
    let mut text = match line.map(|line| serde_json::to_string(&line)) {
        Some(Ok(text)) => text,
        // Records always hold canonical JSON; this keeps the line valid anyway.
        _ => String::from("{}"),
    };
    text.push('\n');
    text
}

/// Decodes one record line (with or without its trailing `\n`).
pub fn decode_record(line: &str) -> Result<Record, JsonlError> {
    let error = |detail: String| JsonlError {
        what: "record line",
        detail,
    };
    let parsed: RecordLine<'_> =
        serde_json::from_str(line.trim_end_matches('\n')).map_err(|e| error(e.to_string()))?;
    if parsed.v != FORMAT_VERSION {
        return Err(error(format!("unknown format version {}", parsed.v)));
    }
    let chain = ChainId::new(&*parsed.chain).map_err(|e| error(e.to_string()))?;
    let digest = |name: &str, text: &str| {
        Digest::from_hex(text).map_err(|e| error(format!("member `{name}`: {}", e.detail)))
    };
    let sig = parsed
        .sig
        .as_deref()
        .map(|text| {
            decode_signature(text).map_err(|detail| error(format!("member `sig`: {detail}")))
        })
        .transpose()?;
    Ok(Record {
        chain,
        seq: parsed.seq,
        event_json: parsed.event.get().into(),
        columns: None,
        event_hash: digest("event_hash", &parsed.event_hash)?,
        prev: digest("prev", &parsed.prev)?,
        hash: digest("hash", &parsed.hash)?,
        key_id: parsed.key_id,
        sig,
    })
}

/// Encodes a checkpoint object (no trailing newline).
pub fn encode_checkpoint(checkpoint: &Checkpoint) -> String {
    let object = CheckpointObject {
        v: FORMAT_VERSION,
        chain: checkpoint.chain.as_str().to_owned(),
        seq: checkpoint.seq,
        head: checkpoint.head.to_hex(),
        time: checkpoint.time.clone(),
        key_id: checkpoint.key_id.clone(),
        sig: hex::encode(checkpoint.sig),
    };
    serde_json::to_string(&object).unwrap_or_default()
}

/// Decodes a checkpoint object.
pub fn decode_checkpoint(text: &str) -> Result<Checkpoint, JsonlError> {
    let error = |detail: String| JsonlError {
        what: "checkpoint",
        detail,
    };
    let parsed: CheckpointObject =
        serde_json::from_str(text.trim_end()).map_err(|e| error(e.to_string()))?;
    if parsed.v != FORMAT_VERSION {
        return Err(error(format!("unknown format version {}", parsed.v)));
    }
    Ok(Checkpoint {
        chain: ChainId::new(&parsed.chain).map_err(|e| error(e.to_string()))?,
        seq: parsed.seq,
        head: Digest::from_hex(&parsed.head)
            .map_err(|e| error(format!("member `head`: {}", e.detail)))?,
        time: parsed.time,
        key_id: parsed.key_id,
        sig: decode_signature(&parsed.sig)
            .map_err(|detail| error(format!("member `sig`: {detail}")))?,
    })
}

/// Decodes a 64-byte signature from 128 hex characters.
pub fn decode_signature(text: &str) -> Result<[u8; 64], String> {
    let mut bytes = [0u8; 64];
    hex::decode_to_slice(text, &mut bytes)
        .map_err(|_| format!("expected 128 hex characters, got {} characters", text.len()))?;
    Ok(bytes)
}

/// Name of the segment object starting at `first_seq`: `{first_seq:020}.jsonl`.
pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.jsonl")
}

/// Name of the checkpoint object at `seq`: `{seq:020}.json`.
pub fn checkpoint_name(seq: u64) -> String {
    format!("{seq:020}.json")
}

/// Parses the seq out of a segment or checkpoint object name.
pub fn seq_of_name(name: &str) -> Option<u64> {
    let stem = name.rsplit('/').next()?;
    let digits = stem
        .strip_suffix(".jsonl")
        .or_else(|| stem.strip_suffix(".json"))?;
    if digits.len() != 20 {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{ChainHead, Sealer, SignMode};
    use crate::keys::AuditSigner;
    use std::sync::Arc;

    fn signed_record() -> Record {
        let sealer = Sealer::new(
            ChainId::new("c").unwrap(),
            Some(Arc::new(AuditSigner::generate())),
            SignMode::EveryRecord,
        );
        let event = crate::AuditEvent::new("t", "a", serde_json::json!({"k": "v"})).unwrap();
        sealer.seal(ChainHead::EMPTY, &event)
    }

    #[test]
    fn signed_records_round_trip_without_their_columns() {
        let record = signed_record();
        let decoded = decode_record(&encode_record(&record)).unwrap();
        assert_eq!(
            decoded,
            Record {
                columns: None,
                ..record
            }
        );
    }

    #[test]
    fn lines_list_members_in_the_format_order() {
        let line = encode_record(&signed_record());
        let order = [
            "\"v\":1",
            "\"chain\":",
            "\"seq\":",
            "\"event\":{",
            "\"event_hash\":",
            "\"prev\":",
            "\"hash\":",
            "\"key_id\":",
            "\"sig\":",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|member| line.find(member).unwrap())
            .collect();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{line}");
    }

    #[test]
    fn bad_lines_are_refused_with_the_member_named() {
        let line = encode_record(&signed_record());
        let cases = [
            (
                line.replace("\"v\":1", "\"v\":2"),
                "unknown format version 2",
            ),
            (
                line.replacen("\"chain\":\"c\"", "\"chain\":\"a b\"", 1),
                "chain name",
            ),
            (
                line.replacen("\"prev\":\"00", "\"prev\":\"zz", 1),
                "member `prev`",
            ),
            (
                line.replacen("\"sig\":\"", "\"sig\":\"00", 1),
                "member `sig`",
            ),
            ("{}".to_owned(), "missing field"),
        ];
        for (bad, needle) in cases {
            let error = decode_record(&bad).unwrap_err();
            assert_eq!(error.what, "record line");
            assert!(error.to_string().contains(needle), "{error} lacks {needle}");
        }
    }

    #[test]
    fn checkpoints_round_trip_and_bad_ones_are_refused() {
        let signer = AuditSigner::generate();
        let checkpoint = Checkpoint::sign(
            &ChainId::new("c").unwrap(),
            ChainHead {
                seq: 9,
                hash: Digest([7; 32]),
            },
            &signer,
        );
        let text = encode_checkpoint(&checkpoint);
        assert_eq!(decode_checkpoint(&text).unwrap(), checkpoint);
        let error = decode_checkpoint(&text.replace("\"head\":\"07", "\"head\":\"7")).unwrap_err();
        assert_eq!(error.what, "checkpoint");
        assert!(error.to_string().contains("member `head`"));
    }

    #[test]
    fn object_names_are_zero_padded_and_parse_back() {
        assert_eq!(segment_name(42), "00000000000000000042.jsonl");
        assert_eq!(
            seq_of_name("p/c/records/00000000000000000042.jsonl"),
            Some(42)
        );
        assert_eq!(seq_of_name(&checkpoint_name(7)), Some(7));
        assert_eq!(seq_of_name("42.jsonl"), None);
    }
}
