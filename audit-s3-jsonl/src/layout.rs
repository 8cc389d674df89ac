//! Where things live in the object store (FORMAT.md section 7), and what
//! an object found by a listing is.
//!
//! Under a prefix `P` (may be empty), chain `C`:
//! `P/C/records/{first_seq:020}.jsonl`, `P/C/checkpoints/{seq:020}.json`,
//! `P/C/dead-letters/{time}-{event_id}.json`; the create-only probe writes
//! `P/.probe/{uuid}.probe`. [`classify`] sorts any object under `P` into
//! one of those, or a [`Stray`]: an object in a folder that is not a valid
//! chain name (names starting with `.` included), or anywhere else outside
//! the layout.
//!
//! ```
//! use audit_core::ChainId;
//! use audit_s3_jsonl::layout::{ChainLayout, Object, classify};
//! use object_store::path::Path;
//! let prefix = Path::from("archive");
//! let layout = ChainLayout::new(&prefix, &ChainId::default());
//! assert_eq!(layout.segment(7).as_ref(), "archive/default/records/00000000000000000007.jsonl");
//! assert_eq!(layout.checkpoint(50).as_ref(), "archive/default/checkpoints/00000000000000000050.json");
//! assert!(matches!(classify(&prefix, &layout.segment(7)), Object::Segment { first_seq: 7, .. }));
//! assert!(matches!(classify(&prefix, &Path::from("archive/.hidden/records/x.jsonl")), Object::Stray(_)));
//! ```

use audit_core::ChainId;
use audit_core::dead_letter::DeadLetter;
use audit_core::jsonl::{checkpoint_name, segment_name};
use audit_core::store::Stray;
use object_store::path::Path;

/// The extension of tree checkpoint notes.
pub const TREE_CHECKPOINT_EXTENSION: &str = ".note";

/// The folder of the create-only probe, directly under the prefix.
pub const PROBE_DIR: &str = ".probe";

/// The object paths of one chain under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLayout {
    chain_dir: Path,
}

impl ChainLayout {
    /// The layout of `chain` under `prefix`.
    pub fn new(prefix: &Path, chain: &ChainId) -> Self {
        Self {
            chain_dir: prefix.clone().join(chain.as_str()),
        }
    }

    /// `P/C`.
    pub fn chain_dir(&self) -> &Path {
        &self.chain_dir
    }

    /// `P/C/records`.
    pub fn records_dir(&self) -> Path {
        self.chain_dir.clone().join("records")
    }

    /// `P/C/records/{first_seq:020}.jsonl`.
    pub fn segment(&self, first_seq: u64) -> Path {
        self.records_dir().join(segment_name(first_seq))
    }

    /// `P/C/checkpoints`.
    pub fn checkpoints_dir(&self) -> Path {
        self.chain_dir.clone().join("checkpoints")
    }

    /// `P/C/checkpoints/{seq:020}.json`.
    pub fn checkpoint(&self, seq: u64) -> Path {
        self.checkpoints_dir().join(checkpoint_name(seq))
    }

    /// `P/C/tree-checkpoints`.
    pub fn tree_checkpoints_dir(&self) -> Path {
        self.chain_dir.clone().join("tree-checkpoints")
    }

    /// `P/C/tree-checkpoints/{size:020}.note`: a tree checkpoint note
    /// (FORMAT.md section 8.2).
    pub fn tree_checkpoint(&self, size: u64) -> Path {
        self.tree_checkpoints_dir()
            .join(format!("{size:020}{TREE_CHECKPOINT_EXTENSION}"))
    }

    /// `P/C/dead-letters`.
    pub fn dead_letters_dir(&self) -> Path {
        self.chain_dir.clone().join("dead-letters")
    }

    /// `P/C/dead-letters/{time}-{event_id}.json`.
    pub fn dead_letter(&self, letter: &DeadLetter) -> Path {
        self.dead_letters_dir()
            .join(format!("{}-{}.json", letter.failed_at, letter.event_id))
    }
}

/// `P/.probe`: where the create-only probe writes.
pub fn probe_dir(prefix: &Path) -> Path {
    prefix.clone().join(PROBE_DIR)
}

/// What an object under the prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Object {
    /// `P/C/records/{first_seq:020}.jsonl`.
    Segment {
        /// The chain of its folder.
        chain: ChainId,
        /// The seq in its name.
        first_seq: u64,
    },
    /// `P/C/checkpoints/{seq:020}.json`.
    Checkpoint {
        /// The chain of its folder.
        chain: ChainId,
        /// The seq in its name.
        seq: u64,
    },
    /// `P/C/tree-checkpoints/{size:020}.note`.
    TreeCheckpoint {
        /// The chain of its folder.
        chain: ChainId,
        /// The tree size in its name.
        size: u64,
    },
    /// `P/C/dead-letters/*.json`.
    DeadLetter {
        /// The chain of its folder.
        chain: ChainId,
    },
    /// `P/.probe/*.probe`, left by an interrupted probe.
    Probe,
    /// Anything else: a verification failure.
    Stray(Stray),
}

/// The seq of `name` when it is 20 decimal digits followed by `extension`.
pub fn seq_in_name(name: &str, extension: &str) -> Option<u64> {
    let digits = name.strip_suffix(extension)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether `name` is a valid chain folder name.
fn chain_of_folder(name: &str) -> Option<ChainId> {
    if name.starts_with('.') {
        return None;
    }
    ChainId::new(name).ok()
}

/// Sorts `path` (an object under `prefix`) into the layout.
pub fn classify(prefix: &Path, path: &Path) -> Object {
    let parts: Vec<String> = match path.prefix_match(prefix) {
        Some(parts) => parts.map(|part| part.as_ref().to_owned()).collect(),
        None => {
            return Object::Stray(Stray {
                chain: String::from("\"\""),
                seq: 0,
                detail: format!("object {path} is outside the prefix {prefix}"),
            });
        }
    };
    let stray = |chain: String, seq: u64, why: &str| {
        Object::Stray(Stray {
            chain,
            seq,
            detail: format!("object {path} {why}"),
        })
    };
    match parts.as_slice() {
        [probe, name] if probe == PROBE_DIR && name.ends_with(".probe") => Object::Probe,
        [folder, kind, name] => {
            let seq = seq_in_name(name, ".jsonl")
                .or_else(|| seq_in_name(name, ".json"))
                .or_else(|| seq_in_name(name, TREE_CHECKPOINT_EXTENSION));
            let Some(chain) = chain_of_folder(folder) else {
                return stray(
                    format!("{folder:?}"),
                    seq.unwrap_or(0),
                    &format!("is in folder {folder:?}, which is not a valid chain name"),
                );
            };
            match (kind.as_str(), seq) {
                ("records", Some(first_seq)) if name.ends_with(".jsonl") => {
                    Object::Segment { chain, first_seq }
                }
                ("checkpoints", Some(seq)) if name.ends_with(".json") => {
                    Object::Checkpoint { chain, seq }
                }
                ("tree-checkpoints", Some(size)) if name.ends_with(TREE_CHECKPOINT_EXTENSION) => {
                    Object::TreeCheckpoint { chain, size }
                }
                ("dead-letters", _) if name.len() > ".json".len() && name.ends_with(".json") => {
                    Object::DeadLetter { chain }
                }
                _ => stray(
                    chain.to_string(),
                    seq.unwrap_or(0),
                    "is outside the layout (records/{seq:020}.jsonl, checkpoints/{seq:020}.json, tree-checkpoints/{size:020}.note, dead-letters/*.json)",
                ),
            }
        }
        [folder, ..] if chain_of_folder(folder).is_none() => stray(
            format!("{folder:?}"),
            0,
            &format!("is in folder {folder:?}, which is not a valid chain name"),
        ),
        [folder, _, ..] => stray(folder.clone(), 0, "is outside the layout"),
        _ => stray(
            String::from("\"\""),
            0,
            "is outside the layout (not in a chain folder)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(path: &str) -> Object {
        classify(&Path::from("p"), &Path::from(path))
    }

    #[test]
    fn objects_of_the_layout_are_recognised() {
        let chain = ChainId::new("c").unwrap();
        assert_eq!(
            kind("p/c/records/00000000000000000001.jsonl"),
            Object::Segment {
                chain: chain.clone(),
                first_seq: 1
            }
        );
        assert_eq!(
            kind("p/c/checkpoints/00000000000000000010.json"),
            Object::Checkpoint {
                chain: chain.clone(),
                seq: 10
            }
        );
        assert_eq!(
            kind("p/c/dead-letters/2024-01-01T00:00:00.000000Z-x.json"),
            Object::DeadLetter {
                chain: chain.clone()
            }
        );
        assert_eq!(
            kind("p/c/tree-checkpoints/00000000000000000010.note"),
            Object::TreeCheckpoint { chain, size: 10 }
        );
        assert_eq!(kind("p/.probe/0190.probe"), Object::Probe);
    }

    #[test]
    fn everything_else_is_a_stray_naming_the_object() {
        for path in [
            "p/.hidden/records/00000000000000000001.jsonl",
            "p/bad name/records/00000000000000000001.jsonl",
            "p/c/records/1.jsonl",
            "p/c/records/+0000000000000000001.jsonl",
            "p/c/records/00000000000000000001.json",
            "p/c/checkpoints/00000000000000000001.jsonl",
            "p/c/checkpoints/00000000000000000001.note",
            "p/c/tree-checkpoints/00000000000000000001.json",
            "p/c/notes.txt",
            "p/c/records/sub/00000000000000000001.jsonl",
            "p/README",
            "p/.probe/other",
        ] {
            match kind(path) {
                Object::Stray(stray) => assert!(stray.detail.contains(path), "{stray:?}"),
                other => panic!("{path}: {other:?}"),
            }
        }
    }
}
