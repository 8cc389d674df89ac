//! Where things live in the object store (FORMAT.md section 7).
//!
//! Under a prefix `P` (may be empty), chain `C`:
//! `P/C/records/{first_seq:020}.jsonl`, `P/C/checkpoints/{seq:020}.json`,
//! `P/C/dead-letters/{time}-{event_id}.json`; the create-only probe writes
//! under `P/.probe/`.
//!
//! ```
//! use audit_core::ChainId;
//! use audit_s3_jsonl::layout::ChainLayout;
//! use object_store::path::Path;
//! let layout = ChainLayout::new(&Path::from("archive"), &ChainId::default());
//! assert_eq!(layout.segment(7).as_ref(), "archive/default/records/00000000000000000007.jsonl");
//! assert_eq!(layout.checkpoint(50).as_ref(), "archive/default/checkpoints/00000000000000000050.json");
//! ```

use audit_core::ChainId;
use audit_core::dead_letter::DeadLetter;
use audit_core::jsonl::{checkpoint_name, segment_name};
use object_store::path::Path;

/// The object paths of one chain under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLayout {
    chain_dir: Path,
}

impl ChainLayout {
    /// The layout of `chain` under `prefix`.
    pub fn new(prefix: &Path, chain: &ChainId) -> Self {
        Self {
            chain_dir: prefix.child(chain.as_str()),
        }
    }

    /// `P/C`.
    pub fn chain_dir(&self) -> &Path {
        &self.chain_dir
    }

    /// `P/C/records`.
    pub fn records_dir(&self) -> Path {
        self.chain_dir.child("records")
    }

    /// `P/C/records/{first_seq:020}.jsonl`.
    pub fn segment(&self, first_seq: u64) -> Path {
        self.records_dir().child(segment_name(first_seq))
    }

    /// `P/C/checkpoints`.
    pub fn checkpoints_dir(&self) -> Path {
        self.chain_dir.child("checkpoints")
    }

    /// `P/C/checkpoints/{seq:020}.json`.
    pub fn checkpoint(&self, seq: u64) -> Path {
        self.checkpoints_dir().child(checkpoint_name(seq))
    }

    /// `P/C/dead-letters`.
    pub fn dead_letters_dir(&self) -> Path {
        self.chain_dir.child("dead-letters")
    }

    /// `P/C/dead-letters/{time}-{event_id}.json`.
    pub fn dead_letter(&self, letter: &DeadLetter) -> Path {
        self.dead_letters_dir()
            .child(format!("{}-{}.json", letter.failed_at, letter.event_id))
    }
}

/// `P/.probe`: where the create-only probe writes.
pub fn probe_dir(prefix: &Path) -> Path {
    prefix.child(".probe")
}
