//! The verifier of FORMAT.md section 4.
//!
//! [`Verifier`] is push-based so that any source can feed it (an iterator, a
//! database cursor, a stream of objects): hand it checkpoints, then records
//! in seq order, then call [`Verifier::finish`]. It keeps one head per chain,
//! the checkpoints not yet reached and the set of event ids seen (16 bytes a
//! record; turn off with [`VerifyOptions::check_unique_ids`] where the store
//! enforces uniqueness and checks it itself).
//!
//! Signatures are checked in batches (Ed25519 batch verification, about
//! twice as fast as one by one, on a worker thread when a core is spare),
//! after a per-signature check of what strict
//! verification adds (canonical, non-small-order `R`; weak keys are refused
//! by the keyring); a batch that fails is re-checked one signature at a time
//! with `verify_strict` to name the records at fault.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use ed25519_dalek::Signature;
use serde::Serialize;

use super::note::{Note, Vkey};
use super::signatures::{PendingSignature, SignatureChecker};
use super::tree::{TreeFrontier, leaf_hash};
use super::tree_checkpoint::TreeCheckpoint;
use super::{ChainHead, ChainId, Checkpoint, Record, record_hash};
use crate::digest::Digest;
use crate::error::EventError;
use crate::event::{AuditEvent, EventLimits};
use crate::keys::Keyring;

/// Signatures verified together in one batch.
const SIGNATURE_BATCH: usize = 256;

/// Policy options of a verification: [`Default`] (unsigned records
/// accepted, ids checked for uniqueness, default limits), then the `with_*`
/// methods.
///
/// ```
/// use audit_core::chain::VerifyOptions;
/// let options = VerifyOptions::default().with_require_signed(true);
/// assert!(options.require_signed());
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct VerifyOptions {
    pub(crate) require_signed: bool,
    pub(crate) expect_head: Option<ChainHead>,
    pub(crate) start: Option<ChainHead>,
    pub(crate) skip_unique_ids: bool,
    pub(crate) limits: EventLimits,
}

impl VerifyOptions {
    /// Whether an unsigned record is a failure.
    pub fn with_require_signed(mut self, require_signed: bool) -> Self {
        self.require_signed = require_signed;
        self
    }

    /// The head every chain must end at (seq and hash).
    pub fn with_expect_head(mut self, expect_head: Option<ChainHead>) -> Self {
        self.expect_head = expect_head;
        self
    }

    /// Starts after this head instead of at seq 1: the first record must
    /// be `start.seq + 1` with `prev == start.hash`.
    pub fn with_start(mut self, start: Option<ChainHead>) -> Self {
        self.start = start;
        self
    }

    /// Skips the check that event ids are unique (saves 16 bytes a record).
    pub fn with_skip_unique_ids(mut self, skip_unique_ids: bool) -> Self {
        self.skip_unique_ids = skip_unique_ids;
        self
    }

    /// Limits applied when parsing stored events.
    pub fn with_limits(mut self, limits: EventLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Whether an unsigned record is a failure.
    pub fn require_signed(&self) -> bool {
        self.require_signed
    }

    /// The head every chain must end at, if one is expected.
    pub fn expect_head(&self) -> Option<ChainHead> {
        self.expect_head
    }

    /// The head verification starts after, if not at seq 1.
    pub fn start(&self) -> Option<ChainHead> {
        self.start
    }

    /// Limits applied when parsing stored events.
    pub fn limits(&self) -> EventLimits {
        self.limits
    }

    /// Whether event ids are checked for uniqueness.
    pub fn check_unique_ids(&self) -> bool {
        !self.skip_unique_ids
    }
}

/// What kind of check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// Seqs are missing before this record.
    SeqGap,
    /// A record's seq is not after the previous one (duplicate or reordered).
    SeqOutOfOrder,
    /// `prev` differs from the previous `record_hash`.
    PrevMismatch,
    /// `H(E)` differs from the stored `event_hash`.
    EventHashMismatch,
    /// `E` is not a valid event.
    EventInvalid,
    /// `E` is valid but not canonical.
    EventNotCanonical,
    /// A stored column copy differs from the member of `E`.
    ColumnMismatch,
    /// The event id appeared earlier in the chain.
    DuplicateEventId,
    /// `record_hash` does not recompute.
    RecordHashMismatch,
    /// A key id without a signature or a signature without a key id.
    HalfSigned,
    /// The key id of a signature is not in the keyring.
    UnknownKeyId,
    /// The signature does not verify.
    BadSignature,
    /// Unsigned record under `require_signed`.
    Unsigned,
    /// The source could not decode the stored record.
    Malformed,
    /// A checkpoint's signature does not verify or its key is unknown.
    CheckpointBadSignature,
    /// The record at a checkpoint's seq has another hash.
    CheckpointMismatch,
    /// A checkpoint or a stored head lies beyond the chain's head: the
    /// chain was truncated.
    Truncated,
    /// A stored row outside `1..=head`: seq zero or negative.
    SeqOutOfRange,
    /// A trace outside every valid chain: a row whose chain is NULL, not
    /// text or not a valid name; an object or folder outside the layout; a
    /// record filed under another chain.
    Stray,
    /// A head the store states (e.g. a head row) differs from the record
    /// at its seq.
    AnchorMismatch,
    /// Records are signed but no public key was given to check them.
    NoKeyGiven,
    /// The chain does not end at the expected head.
    HeadMismatch,
    /// A tree checkpoint (FORMAT.md section 8.2) is not signed by a
    /// trusted key, or its signature does not verify.
    TreeCheckpointBadSignature,
    /// A tree checkpoint's root differs from the root recomputed from the
    /// chain's records at its size: the records were rewritten, or the log
    /// signed a history it does not hold.
    TreeRootMismatch,
    /// The newest tree checkpoint lacks the cosignatures a witness policy
    /// requires (FORMAT.md section 8.5 item 9), or carries an invalid one.
    WitnessQuorum,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_value(self)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        f.write_str(&text)
    }
}

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The chain.
    pub chain: String,
    /// The seq of the record at which the check failed (for a gap, the
    /// first record after it; for a checkpoint, the checkpoint's seq).
    pub seq: u64,
    /// What failed.
    pub kind: FailureKind,
    /// Details for a person.
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chain {} seq {}: {} ({})",
            self.chain, self.seq, self.kind, self.detail
        )
    }
}

/// What a chain looked like to the verifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainSummary {
    /// Records checked.
    pub records: u64,
    /// Of which signed.
    pub signed: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Tree checkpoints whose root was recomputed from the records.
    pub tree_checkpoints: u64,
    /// Last seq seen.
    pub head_seq: u64,
    /// Its record hash, hex.
    pub head_hash: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Records checked, over all chains.
    pub records: u64,
    /// Checkpoints checked, over all chains.
    pub checkpoints: u64,
    /// Per chain.
    pub chains: BTreeMap<String, ChainSummary>,
    /// Every failure, in (chain, seq) order.
    pub failures: Vec<Failure>,
    /// What could not be checked, for a person (e.g. that truncation of
    /// the tail is not detectable without outside checkpoints).
    pub unchecked: Vec<String>,
}

impl VerifyReport {
    /// Whether every check held.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// The first failure in (chain, seq) order.
    pub fn first_failure(&self) -> Option<&Failure> {
        self.failures.first()
    }
}

#[derive(Default)]
struct ChainState {
    anchors: BTreeMap<u64, super::super::store::Anchor>,
    no_key_reported: bool,
    unchecked_checkpoint: Option<u64>,
    head: ChainHead,
    started: bool,
    after_gap: bool,
    summary_records: u64,
    signed: u64,
    checkpoints_checked: u64,
    event_ids: HashSet<u128>,
    pending_checkpoints: BTreeMap<u64, Checkpoint>,
    /// The tree of the records so far, grown once a tree checkpoint is given.
    tree: Option<TreeFrontier>,
    pending_trees: BTreeMap<u64, Vec<TreeCheckpoint>>,
    trees_checked: u64,
}

/// Checks records and checkpoints of one or more chains.
pub struct Verifier {
    keyring: Keyring,
    options: VerifyOptions,
    chains: HashMap<String, ChainState>,
    pending: Vec<PendingSignature>,
    signatures: SignatureChecker,
    failures: Vec<Failure>,
}

impl Verifier {
    /// A verifier trusting the keys of `keyring`.
    pub fn new(keyring: Keyring, options: VerifyOptions) -> Self {
        Self {
            keyring,
            options,
            chains: HashMap::new(),
            pending: Vec::with_capacity(SIGNATURE_BATCH),
            signatures: SignatureChecker::new(),
            failures: Vec::new(),
        }
    }

    /// Names a chain that must be checked even if it has no record, so that
    /// an emptied chain still fails [`VerifyOptions::expect_head`].
    pub fn expect_chain(&mut self, chain: &ChainId) {
        self.state(chain.as_str());
    }

    /// Takes a checkpoint; give each before the record at its seq.
    pub fn checkpoint(&mut self, checkpoint: &Checkpoint) {
        let chain = checkpoint.chain.as_str().to_owned();
        if self.keyring.is_empty() {
            let state = self.state(&chain);
            state.unchecked_checkpoint.get_or_insert(checkpoint.seq);
            state
                .pending_checkpoints
                .insert(checkpoint.seq, checkpoint.clone());
            return;
        }
        let valid = self.keyring.get(&checkpoint.key_id).map(|key| {
            key.verifying_key()
                .verify_strict(
                    checkpoint.hash().as_bytes(),
                    &Signature::from_bytes(&checkpoint.sig),
                )
                .is_ok()
        });
        match valid {
            Some(true) => {}
            Some(false) => self.fail(
                &chain,
                checkpoint.seq,
                FailureKind::CheckpointBadSignature,
                "checkpoint signature does not verify".into(),
            ),
            None => self.fail(
                &chain,
                checkpoint.seq,
                FailureKind::CheckpointBadSignature,
                format!("checkpoint signed by unknown key id {}", checkpoint.key_id),
            ),
        }
        let state = self.chains.entry(chain.clone()).or_default();
        if state.started && checkpoint.seq <= state.head.seq {
            let detail = format!(
                "checkpoint given after the record at seq {} had passed",
                checkpoint.seq
            );
            self.fail(
                &chain,
                checkpoint.seq,
                FailureKind::CheckpointMismatch,
                detail,
            );
            return;
        }
        state
            .pending_checkpoints
            .insert(checkpoint.seq, checkpoint.clone());
    }

    /// Takes a tree checkpoint note of `chain` (FORMAT.md section 8.5
    /// item 8), stored under tree size `stored_size`; give each before the
    /// records, which must then start at seq 1. Its log signature must
    /// verify under a key of the keyring (the key name being its origin),
    /// and its root must equal the root of the chain's first `size`
    /// records. Checkpoints whose roots all recompute from the same records
    /// extend one another, so consistency between them needs no proof.
    pub fn tree_checkpoint(&mut self, chain: &ChainId, stored_size: u64, note: &str) {
        let name = chain.as_str();
        let checkpoint = match Note::parse(note.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|note| {
                let checkpoint =
                    TreeCheckpoint::parse_body(note.body()).map_err(|e| e.to_string())?;
                Ok((note, checkpoint))
            }) {
            Ok((note, checkpoint)) if checkpoint.size() == stored_size => {
                self.check_tree_signature(name, &note, &checkpoint);
                checkpoint
            }
            Ok((_, checkpoint)) => {
                let detail = format!(
                    "tree checkpoint stored at size {stored_size} says size {}",
                    checkpoint.size()
                );
                self.fail(name, stored_size, FailureKind::Malformed, detail);
                return;
            }
            Err(detail) => {
                let detail = format!("tree checkpoint at size {stored_size}: {detail}");
                self.fail(name, stored_size, FailureKind::Malformed, detail);
                return;
            }
        };
        let state = self.state(name);
        if state.started {
            let detail = "tree checkpoint given after the records had started".to_owned();
            self.fail(name, stored_size, FailureKind::Malformed, detail);
            return;
        }
        state.tree.get_or_insert_with(TreeFrontier::new);
        state
            .pending_trees
            .entry(checkpoint.size())
            .or_default()
            .push(checkpoint);
        if stored_size == 0 {
            self.check_tree_roots(name);
        }
    }

    /// Checks the newest tree checkpoint of `chain` (at `size`, note
    /// text `note`, or none) under a witness policy: at least `quorum`
    /// valid cosignatures of distinct keys among `witnesses` (FORMAT.md
    /// section 8.5 item 9). Lines of other keys are ignored.
    pub fn require_cosignatures(
        &mut self,
        chain: &ChainId,
        newest: Option<(u64, &str)>,
        witnesses: &[Vkey],
        quorum: usize,
    ) {
        let name = chain.as_str();
        let Some((size, note)) = newest else {
            let detail = format!("no tree checkpoint: {quorum} witness cosignature(s) required");
            self.fail(name, 0, FailureKind::WitnessQuorum, detail);
            return;
        };
        let verdict = match Note::parse(note.as_bytes()).map(|note| note.verify(witnesses)) {
            Ok(Ok(verified)) if verified.len() >= quorum => return,
            Ok(Ok(verified)) => format!(
                "the newest tree checkpoint carries {} valid cosignature(s) of the given witnesses, {quorum} required",
                verified.len()
            ),
            Ok(Err(super::note::NoteError::NoKnownSignature)) if quorum == 0 => return,
            Ok(Err(super::note::NoteError::NoKnownSignature)) => format!(
                "the newest tree checkpoint carries no cosignature of the given witnesses, {quorum} required"
            ),
            Ok(Err(error)) => format!("a witness cosignature does not verify: {error}"),
            Err(error) => format!("the newest tree checkpoint: {error}"),
        };
        self.fail(name, size, FailureKind::WitnessQuorum, verdict);
    }

    fn check_tree_signature(&mut self, chain: &str, note: &Note, checkpoint: &TreeCheckpoint) {
        if self.keyring.is_empty() {
            let state = self.state(chain);
            state.unchecked_checkpoint.get_or_insert(checkpoint.size());
            return;
        }
        let vkeys: Vec<Vkey> = self
            .keyring
            .keys()
            .filter_map(|key| Vkey::ed25519(checkpoint.origin(), key.verifying_key()).ok())
            .collect();
        let verdict = match vkeys
            .iter()
            .find(|vkey| note.signatures().iter().any(|line| vkey.matches(line)))
        {
            None => Some(format!(
                "tree checkpoint of origin {:?} carries no signature of a trusted key",
                checkpoint.origin()
            )),
            Some(vkey) => TreeCheckpoint::verify(note, vkey)
                .err()
                .map(|error| format!("tree checkpoint signature: {error}")),
        };
        if let Some(detail) = verdict {
            self.fail(
                chain,
                checkpoint.size(),
                FailureKind::TreeCheckpointBadSignature,
                detail,
            );
        }
    }

    /// Compares the pending tree checkpoints at the tree's current size.
    fn check_tree_roots(&mut self, chain: &str) {
        let state = self.state(chain);
        let Some(tree) = &state.tree else {
            return;
        };
        let size = tree.size();
        let Some(checkpoints) = state.pending_trees.remove(&size) else {
            return;
        };
        let root = tree.root();
        state.trees_checked += checkpoints.len() as u64;
        for checkpoint in checkpoints {
            if checkpoint.root() != root {
                let detail = format!(
                    "tree checkpoint of origin {:?} at size {size} signs root {}, the records give {root}",
                    checkpoint.origin(),
                    checkpoint.root()
                );
                self.fail(chain, size, FailureKind::TreeRootMismatch, detail);
            }
        }
    }

    /// Reports a record the source could not decode.
    pub fn malformed(&mut self, chain: &str, seq: u64, detail: impl Into<String>) {
        self.fail(chain, seq, FailureKind::Malformed, detail.into());
    }

    /// Reports a stored row as the source found it: a seq outside `1..`
    /// is [`FailureKind::SeqOutOfRange`], anything else
    /// [`FailureKind::Malformed`].
    pub fn malformed_row(&mut self, chain: &str, seq: i128, detail: impl Into<String>) {
        match u64::try_from(seq) {
            Ok(seq) if seq >= 1 => self.malformed(chain, seq, detail),
            _ => self.fail(
                chain,
                0,
                FailureKind::SeqOutOfRange,
                format!("a row at seq {seq}, outside 1..=head: {}", detail.into()),
            ),
        }
    }

    /// Reports a trace outside every valid chain.
    pub fn stray(&mut self, stray: &crate::store::Stray) {
        self.fail(
            &stray.chain,
            stray.seq,
            FailureKind::Stray,
            stray.detail.clone(),
        );
    }

    /// Takes a head the store states besides its records: the record at
    /// its seq must exist and carry its hash.
    pub fn anchor(&mut self, chain: &ChainId, anchor: crate::store::Anchor) {
        let state = self.state(chain.as_str());
        state.anchors.insert(anchor.seq, anchor);
    }

    /// Checks the next record of its chain.
    pub fn record(&mut self, record: &Record) {
        let chain = record.chain.as_str();
        if !self.check_sequence(record) {
            return;
        }
        self.check_event(record);
        let recomputed = record_hash(&record.chain, record.seq, &record.prev, &record.event_hash);
        if recomputed != record.hash {
            self.fail(
                chain,
                record.seq,
                FailureKind::RecordHashMismatch,
                format!("stored {}, recomputed {recomputed}", record.hash),
            );
        }
        self.check_signature(record);
        self.check_checkpoint_at(record);
        self.check_anchor_at(record);
        let state = self.state(chain);
        state.head = record.head();
        state.summary_records += 1;
        if let Some(tree) = &mut state.tree {
            tree.push(leaf_hash(record.event_json.as_bytes()));
            if !state.pending_trees.is_empty() {
                self.check_tree_roots(chain);
            }
        }
    }

    /// Finishes: checks remaining signatures, checkpoints beyond the heads
    /// and the expected head, and reports.
    pub fn finish(mut self) -> VerifyReport {
        self.flush_signatures();
        let checker = std::mem::replace(&mut self.signatures, SignatureChecker::new());
        self.failures.extend(checker.finish());
        let mut chains = BTreeMap::new();
        let names: Vec<String> = self.chains.keys().cloned().collect();
        for name in names {
            let Some(state) = self.chains.remove(&name) else {
                continue;
            };
            for (seq, checkpoint) in &state.pending_checkpoints {
                let detail = format!(
                    "checkpoint at seq {seq} (head {}) lies beyond the chain's head at seq {}",
                    checkpoint.head, state.head.seq
                );
                self.fail(&name, *seq, FailureKind::Truncated, detail);
            }
            for (size, checkpoints) in &state.pending_trees {
                for checkpoint in checkpoints {
                    let detail = format!(
                        "tree checkpoint of origin {:?} at size {size} lies beyond the chain's head at seq {}",
                        checkpoint.origin(),
                        state.head.seq
                    );
                    self.fail(&name, *size, FailureKind::Truncated, detail);
                }
            }
            if let Some(seq) = state.unchecked_checkpoint
                && !state.no_key_reported
            {
                self.fail(
                    &name,
                    seq,
                    FailureKind::NoKeyGiven,
                    "checkpoints are signed but no public key was given: pass the signer's public key (--pubkey PEM)".into(),
                );
            }
            for (seq, anchor) in &state.anchors {
                let detail = format!(
                    "{} states head seq {seq} (hash {}) but the chain ends at seq {}",
                    anchor.what, anchor.hash, state.head.seq
                );
                self.fail(&name, *seq, FailureKind::Truncated, detail);
            }
            if let Some(expected) = self.options.expect_head
                && expected != state.head
            {
                let detail = format!(
                    "expected head seq {} hash {}, found seq {} hash {}",
                    expected.seq, expected.hash, state.head.seq, state.head.hash
                );
                self.fail(
                    &name,
                    expected.seq.min(state.head.seq.saturating_add(1)),
                    FailureKind::HeadMismatch,
                    detail,
                );
            }
            chains.insert(
                name,
                ChainSummary {
                    records: state.summary_records,
                    signed: state.signed,
                    checkpoints: state.checkpoints_checked,
                    tree_checkpoints: state.trees_checked,
                    head_seq: state.head.seq,
                    head_hash: state.head.hash.to_hex(),
                },
            );
        }
        self.failures
            .sort_by(|a, b| (&a.chain, a.seq).cmp(&(&b.chain, b.seq)));
        VerifyReport {
            records: chains.values().map(|chain| chain.records).sum(),
            checkpoints: chains.values().map(|chain| chain.checkpoints).sum(),
            chains,
            failures: self.failures,
            unchecked: Vec::new(),
        }
    }

    fn state(&mut self, chain: &str) -> &mut ChainState {
        self.chains.entry(chain.to_owned()).or_default()
    }

    fn fail(&mut self, chain: &str, seq: u64, kind: FailureKind, detail: String) {
        self.failures.push(Failure {
            chain: chain.to_owned(),
            seq,
            kind,
            detail,
        });
    }

    /// Checks seq and prev; returns false when the record is to be skipped.
    fn check_sequence(&mut self, record: &Record) -> bool {
        let start = self.options.start.unwrap_or(ChainHead::EMPTY);
        let chain = record.chain.as_str();
        let state = self.state(chain);
        if !state.started {
            state.started = true;
            state.head = start;
        }
        let expected_prev = state.head.hash;
        let after_gap = std::mem::take(&mut state.after_gap);
        let Some(expected) = state.head.seq.checked_add(1) else {
            let detail = format!("found seq {} after the largest seq", record.seq);
            self.fail(chain, record.seq, FailureKind::SeqOutOfOrder, detail);
            return false;
        };
        if record.seq == 0 {
            self.fail(
                chain,
                0,
                FailureKind::SeqOutOfRange,
                "a record at seq 0, outside 1..=head".into(),
            );
            return false;
        }
        if record.seq < expected {
            let detail = format!(
                "found seq {} where seq {expected} was expected (duplicate or reordered record)",
                record.seq
            );
            self.fail(chain, record.seq, FailureKind::SeqOutOfOrder, detail);
            return false;
        }
        if record.seq > expected {
            let detail = format!(
                "seq {expected} to {} missing: found seq {}",
                record.seq.saturating_sub(1),
                record.seq
            );
            self.fail(chain, record.seq, FailureKind::SeqGap, detail);
            // Resynchronise on this record; its prev cannot be checked.
            return true;
        }
        if record.prev != expected_prev && !after_gap {
            let detail = format!(
                "prev is {}, previous record_hash is {expected_prev}",
                record.prev
            );
            self.fail(chain, record.seq, FailureKind::PrevMismatch, detail);
        }
        true
    }

    fn check_event(&mut self, record: &Record) {
        let chain = record.chain.as_str();
        let parsed = AuditEvent::from_canonical_with(&record.event_json, self.options.limits);
        // A parsed event's bytes are exactly E, so its hash is H(E).
        let actual = match &parsed {
            Ok(event) => event.event_hash(),
            Err(_) => Digest(sha2_digest(record.event_json.as_bytes())),
        };
        if actual != record.event_hash {
            let detail = format!("stored event_hash {}, H(E) is {actual}", record.event_hash);
            self.fail(chain, record.seq, FailureKind::EventHashMismatch, detail);
        }
        let event = match parsed {
            Ok(event) => event,
            Err(EventError::NotCanonical) => {
                self.fail(
                    chain,
                    record.seq,
                    FailureKind::EventNotCanonical,
                    "stored event bytes are not RFC 8785 canonical".into(),
                );
                return;
            }
            Err(error) => {
                self.fail(
                    chain,
                    record.seq,
                    FailureKind::EventInvalid,
                    error.to_string(),
                );
                return;
            }
        };
        if let Some(columns) = &record.columns {
            let pairs = [
                ("event_id", &columns.id, event.id()),
                ("event_type", &columns.event_type, event.event_type()),
                ("actor", &columns.actor, event.actor()),
                ("event_time", &columns.time, event.time()),
            ];
            for (name, stored, member) in pairs {
                if stored != member {
                    let detail = format!("column {name} is {stored:?}, event has {member:?}");
                    self.fail(chain, record.seq, FailureKind::ColumnMismatch, detail);
                }
            }
        }
        if self.options.check_unique_ids() {
            let id = uuid::Uuid::try_parse(event.id())
                .map(|id| id.as_u128())
                .unwrap_or_default();
            if !self.state(chain).event_ids.insert(id) {
                let detail = format!("event id {} appears earlier in the chain", event.id());
                self.fail(chain, record.seq, FailureKind::DuplicateEventId, detail);
            }
        }
    }

    fn check_signature(&mut self, record: &Record) {
        let chain = record.chain.as_str();
        match (&record.key_id, &record.sig) {
            (None, None) => {
                if self.options.require_signed {
                    self.fail(
                        chain,
                        record.seq,
                        FailureKind::Unsigned,
                        "record is not signed".into(),
                    );
                }
            }
            (Some(_), None) | (None, Some(_)) => {
                self.fail(
                    chain,
                    record.seq,
                    FailureKind::HalfSigned,
                    "key_id and sig must both be present or both absent".into(),
                );
            }
            (Some(_), Some(_)) if self.keyring.is_empty() => {
                let state = self.state(chain);
                state.signed += 1;
                if !std::mem::replace(&mut state.no_key_reported, true) {
                    self.fail(
                        chain,
                        record.seq,
                        FailureKind::NoKeyGiven,
                        "records are signed but no public key was given: pass the signer's public key (--pubkey PEM)".into(),
                    );
                }
            }
            (Some(key_id), Some(sig)) => {
                self.state(chain).signed += 1;
                let Some(key) = self.keyring.get(key_id).map(|key| *key.verifying_key()) else {
                    self.fail(
                        chain,
                        record.seq,
                        FailureKind::UnknownKeyId,
                        format!("key id {key_id:?} is not in the keyring"),
                    );
                    return;
                };
                // `verify_strict` (on the signature workers) refuses an `R`
                // that does not decompress, is of small order, or is not
                // canonically encoded, so nothing is checked twice here.
                let signature = Signature::from_bytes(sig);
                self.pending.push(PendingSignature {
                    chain: chain.to_owned(),
                    seq: record.seq,
                    key,
                    message: record.hash,
                    signature,
                });
                if self.pending.len() >= SIGNATURE_BATCH {
                    self.flush_signatures();
                }
            }
        }
    }

    fn check_checkpoint_at(&mut self, record: &Record) {
        let chain = record.chain.as_str();
        let state = self.state(chain);
        let skipped: Vec<u64> = state
            .pending_checkpoints
            .range(..record.seq)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in &skipped {
            state.pending_checkpoints.remove(seq);
        }
        for seq in skipped {
            let detail = format!("the record at checkpoint seq {seq} is missing");
            self.fail(chain, record.seq, FailureKind::CheckpointMismatch, detail);
        }
        let state = self.state(chain);
        let Some(checkpoint) = state.pending_checkpoints.remove(&record.seq) else {
            return;
        };
        self.state(chain).checkpoints_checked += 1;
        if checkpoint.head != record.hash {
            let detail = format!(
                "checkpoint head {}, record_hash {}",
                checkpoint.head, record.hash
            );
            self.fail(chain, record.seq, FailureKind::CheckpointMismatch, detail);
        }
    }

    fn check_anchor_at(&mut self, record: &Record) {
        let chain = record.chain.as_str();
        let state = self.state(chain);
        let passed: Vec<u64> = state
            .anchors
            .range(..record.seq)
            .map(|(seq, _)| *seq)
            .collect();
        let mut missed = Vec::new();
        for seq in passed {
            if let Some(anchor) = state.anchors.remove(&seq) {
                missed.push(anchor);
            }
        }
        let at = state.anchors.remove(&record.seq);
        for anchor in missed {
            let detail = format!(
                "{} states head seq {}, which has no record",
                anchor.what, anchor.seq
            );
            self.fail(chain, record.seq, FailureKind::AnchorMismatch, detail);
        }
        if let Some(anchor) = at
            && anchor.hash != record.hash
        {
            let detail = format!(
                "{} states hash {} at seq {}, the record has {}",
                anchor.what, anchor.hash, anchor.seq, record.hash
            );
            self.fail(chain, record.seq, FailureKind::AnchorMismatch, detail);
        }
    }

    fn flush_signatures(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(SIGNATURE_BATCH));
        self.signatures.check(batch);
    }
}

fn sha2_digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}
