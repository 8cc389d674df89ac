//! The one verifier over any store: FORMAT.md section 4 for every chain a
//! [`ChainSource`] holds a trace of.
//!
//! [`verify_source`] lists the store's inventory (chains named in any
//! table or folder, and strays that belong to none), then per chain feeds
//! the pure [`Verifier`] the stored checkpoints, the checkpoints given from
//! outside, the heads the store states, and every stored row in seq order.
//! Every row is accounted for: a stray, a malformed row or a row outside
//! `1..=head` is a failure at the seq where it is found.
//!
//! ```
//! use audit_core::store::memory::MemoryStore;
//! use audit_core::verification::{SourceVerifyOptions, verify_source};
//! use audit_core::chain_writer::{ChainSinkOptions, ChainWriter};
//! use audit_core::keys::{AuditSigner, Keyring};
//! use audit_core::sink::AuditSink;
//! use audit_core::AuditEvent;
//! use std::sync::Arc;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let signer = Arc::new(AuditSigner::generate());
//! let store = MemoryStore::new("doc");
//! let mut sink = ChainWriter::new(store.clone(), ChainSinkOptions::signed(signer.clone()));
//! sink.append_batch(&[AuditEvent::new("t", "a", serde_json::json!(1))?]).await?;
//! let mut keyring = Keyring::new();
//! keyring.insert(signer.public_key());
//! let report = verify_source(&store, &keyring, SourceVerifyOptions::default()).await?;
//! assert!(report.is_ok());
//! assert!(report.unchecked[0].contains("truncation"));
//! # Ok(()) }
//! ```

use std::sync::Arc;

use futures::StreamExt;

use crate::chain::note::Vkey;
use crate::chain::tree_checkpoint::TreeCheckpoint;
use crate::chain::{
    ChainHead, ChainId, Checkpoint, Failure, FailureKind, Verifier, VerifyOptions, VerifyReport,
};
use crate::keys::Keyring;
use crate::store::{ChainSource, SourceError, SourceRecord};

/// How often (in records) the progress callback is called.
const PROGRESS_EVERY: u64 = 1_000;

/// The note when no outside checkpoint was given.
pub const NO_OUTSIDE_CHECKPOINTS: &str =
    "no outside checkpoints: truncation of the tail is not detectable";

/// Options of [`verify_source`]: [`Default`], then the `with_*` methods.
///
/// ```
/// use audit_core::chain::ChainId;
/// use audit_core::verification::SourceVerifyOptions;
/// let options = SourceVerifyOptions::default()
///     .with_chains(vec![ChainId::new("refusals")?])
///     .with_from(Some(1_000));
/// assert_eq!(options.from(), Some(1_000));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct SourceVerifyOptions {
    pub(crate) verify: VerifyOptions,
    pub(crate) allow_unsigned: bool,
    pub(crate) from: Option<u64>,
    pub(crate) chains: Vec<ChainId>,
    pub(crate) outside_checkpoints: Vec<Checkpoint>,
    pub(crate) progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    pub(crate) outside_tree_checkpoints: Vec<(ChainId, String)>,
    pub(crate) witnesses: Vec<Vkey>,
    pub(crate) witness_quorum: usize,
}

impl SourceVerifyOptions {
    /// The pure verifier's policy (`start` and `skip_unique_ids` are set
    /// per chain by [`verify_source`]).
    pub fn with_verify(mut self, verify: VerifyOptions) -> Self {
        self.verify = verify;
        self
    }

    /// With a key given, accepts unsigned records anyway. Without this, a
    /// non-empty keyring means every record must be signed.
    pub fn with_allow_unsigned(mut self, allow_unsigned: bool) -> Self {
        self.allow_unsigned = allow_unsigned;
        self
    }

    /// Verifies from this seq on, trusting the stored `record_hash` of the
    /// record before it.
    pub fn with_from(mut self, from: Option<u64>) -> Self {
        self.from = from;
        self
    }

    /// Only these chains (all when empty).
    pub fn with_chains(mut self, chains: Vec<ChainId>) -> Self {
        self.chains = chains;
        self
    }

    /// Checkpoints kept outside the store (published off-box).
    pub fn with_outside_checkpoints(mut self, outside_checkpoints: Vec<Checkpoint>) -> Self {
        self.outside_checkpoints = outside_checkpoints;
        self
    }

    /// Called with the number of records read so far.
    pub fn with_progress(mut self, progress: Option<Arc<dyn Fn(u64) + Send + Sync>>) -> Self {
        self.progress = progress;
        self
    }

    /// Tree checkpoint notes kept outside the store (a proof handed out, a
    /// note a witness or an auditor kept), with the chain each is of:
    /// checked like stored ones (FORMAT.md section 8.5 item 8), so a note
    /// beyond the head is truncation and a root the records do not give is
    /// a rewrite.
    pub fn with_outside_tree_checkpoints(mut self, notes: Vec<(ChainId, String)>) -> Self {
        self.outside_tree_checkpoints = notes;
        self
    }

    /// Witness cosigner keys (type 0x04) of the witness policy.
    pub fn with_witnesses(mut self, witnesses: Vec<Vkey>) -> Self {
        self.witnesses = witnesses;
        self
    }

    /// With a witness policy: the newest tree checkpoint of each chain must
    /// carry at least this many valid cosignatures of the witnesses
    /// (FORMAT.md section 8.5 item 9); 0 checks none.
    pub fn with_witness_quorum(mut self, witness_quorum: usize) -> Self {
        self.witness_quorum = witness_quorum;
        self
    }

    /// The pure verifier's policy.
    pub fn verify(&self) -> &VerifyOptions {
        &self.verify
    }

    /// Whether unsigned records are accepted with a key given.
    pub fn allow_unsigned(&self) -> bool {
        self.allow_unsigned
    }

    /// The seq verification starts at, if not 1.
    pub fn from(&self) -> Option<u64> {
        self.from
    }

    /// The chains verified (all when empty).
    pub fn chains(&self) -> &[ChainId] {
        &self.chains
    }

    /// The witness quorum required.
    pub fn witness_quorum(&self) -> usize {
        self.witness_quorum
    }
}

impl std::fmt::Debug for SourceVerifyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceVerifyOptions")
            .field("verify", &self.verify)
            .field("allow_unsigned", &self.allow_unsigned)
            .field("from", &self.from)
            .field("chains", &self.chains)
            .field("outside_checkpoints", &self.outside_checkpoints.len())
            .field("progress", &self.progress.is_some())
            .field(
                "outside_tree_checkpoints",
                &self.outside_tree_checkpoints.len(),
            )
            .field("witnesses", &self.witnesses.len())
            .field("witness_quorum", &self.witness_quorum)
            .finish()
    }
}

/// Verifies every chain of `source` (or those of `options.chains`).
///
/// Returns `Err` only when the store cannot be read; everything wrong
/// *in* the store is a failure in the report.
pub async fn verify_source(
    source: &dyn ChainSource,
    keyring: &Keyring,
    options: SourceVerifyOptions,
) -> Result<VerifyReport, SourceError> {
    let inventory = source.inventory().await?;
    let mut chains = inventory.chains.clone();
    let outside_chains = options
        .outside_checkpoints
        .iter()
        .map(|checkpoint| &checkpoint.chain)
        .chain(
            options
                .outside_tree_checkpoints
                .iter()
                .map(|(chain, _)| chain),
        );
    for chain in outside_chains {
        if let Err(position) = chains.binary_search(chain) {
            chains.insert(position, chain.clone());
        }
    }
    if !options.chains.is_empty() {
        chains.retain(|chain| options.chains.contains(chain));
    }
    let mut total = VerifyReport {
        records: 0,
        checkpoints: 0,
        chains: Default::default(),
        failures: inventory
            .strays
            .iter()
            .map(|stray| Failure {
                chain: stray.chain.clone(),
                seq: stray.seq,
                kind: FailureKind::Stray,
                detail: stray.detail.clone(),
            })
            .collect(),
        unchecked: unchecked_notes(keyring, &options),
    };
    let mut done = 0u64;
    for chain in &chains {
        let report = verify_chain(source, keyring, &options, chain, &mut done).await?;
        total.records += report.records;
        total.checkpoints += report.checkpoints;
        total.chains.extend(report.chains);
        total.failures.extend(report.failures);
    }
    if let Some(progress) = &options.progress {
        progress(done);
    }
    total
        .failures
        .sort_by(|a, b| (&a.chain, a.seq).cmp(&(&b.chain, b.seq)));
    Ok(total)
}

fn unchecked_notes(keyring: &Keyring, options: &SourceVerifyOptions) -> Vec<String> {
    let mut notes = Vec::new();
    if options.outside_checkpoints.is_empty() && options.outside_tree_checkpoints.is_empty() {
        notes.push(NO_OUTSIDE_CHECKPOINTS.to_owned());
    }
    if keyring.is_empty() {
        notes.push("no public key given: unsigned records are accepted and who wrote the chain is not checked".to_owned());
    } else if options.allow_unsigned && !options.verify.require_signed {
        notes.push("unsigned records are accepted (allow_unsigned)".to_owned());
    }
    if let Some(from) = options.from.filter(|&from| from > 1) {
        notes.push(format!(
            "records before seq {from} were not checked; the record at seq {} is trusted; tree checkpoints were not checked",
            from - 1
        ));
    }
    notes
}

async fn verify_chain(
    source: &dyn ChainSource,
    keyring: &Keyring,
    options: &SourceVerifyOptions,
    chain: &ChainId,
    done: &mut u64,
) -> Result<VerifyReport, SourceError> {
    let from = options.from.unwrap_or(1).max(1);
    let duplicates = source.duplicate_ids(chain, from).await?;
    let mut verify = options.verify.clone();
    verify.require_signed |= !keyring.is_empty() && !options.allow_unsigned;
    verify.skip_unique_ids |= duplicates.is_some();
    verify.start = Some(start_head(source, chain, from).await?);
    let mut verifier = Verifier::new(keyring.clone(), verify);
    verifier.expect_chain(chain);
    for checkpoint in source.checkpoints(chain).await? {
        match checkpoint {
            Ok(checkpoint) if checkpoint.seq >= from => verifier.checkpoint(&checkpoint),
            Ok(_) => {}
            Err((seq, detail)) => {
                verifier.malformed_row(chain.as_str(), seq, format!("checkpoint: {detail}"))
            }
        }
    }
    for checkpoint in options
        .outside_checkpoints
        .iter()
        .filter(|checkpoint| checkpoint.chain == *chain && checkpoint.seq >= from)
    {
        verifier.checkpoint(checkpoint);
    }
    let tree_checkpoints = source.tree_checkpoints(chain).await?;
    if options.witness_quorum > 0 {
        let newest = tree_checkpoints
            .iter()
            .filter_map(|stored| stored.as_ref().ok())
            .max_by_key(|stored| stored.size)
            .map(|stored| (stored.size, stored.note.as_str()));
        verifier.require_cosignatures(chain, newest, &options.witnesses, options.witness_quorum);
    }
    if from <= 1 {
        for stored in tree_checkpoints {
            match stored {
                Ok(stored) => verifier.tree_checkpoint(chain, stored.size, &stored.note),
                Err((size, detail)) => verifier.malformed_row(
                    chain.as_str(),
                    size,
                    format!("tree checkpoint: {detail}"),
                ),
            }
        }
        for (_, note) in options
            .outside_tree_checkpoints
            .iter()
            .filter(|(of, _)| of == chain)
        {
            let size = crate::chain::note::Note::parse(note.as_bytes())
                .ok()
                .and_then(|note| TreeCheckpoint::parse_body(note.body()).ok())
                .map_or(0, |checkpoint| checkpoint.size());
            verifier.tree_checkpoint(chain, size, note);
        }
    }
    for anchor in source.anchors(chain).await? {
        if anchor.seq >= from {
            verifier.anchor(chain, anchor);
        }
    }
    let mut records = source.records(chain, from).await?;
    while let Some(row) = records.next().await {
        match row? {
            SourceRecord::Record(record) if record.chain != *chain => {
                verifier.stray(&crate::store::Stray {
                    chain: chain.to_string(),
                    seq: record.seq,
                    detail: format!(
                        "a record of chain {} is filed under chain {chain}",
                        record.chain
                    ),
                });
            }
            SourceRecord::Record(record) => verifier.record(&record),
            SourceRecord::Malformed { seq, detail } => {
                verifier.malformed_row(chain.as_str(), seq, detail)
            }
        }
        *done += 1;
        if done.is_multiple_of(PROGRESS_EVERY)
            && let Some(progress) = &options.progress
        {
            progress(*done);
        }
    }
    drop(records);
    let mut report = verifier.finish();
    for (seq, id) in duplicates.unwrap_or_default() {
        report.failures.push(Failure {
            chain: chain.to_string(),
            seq,
            kind: FailureKind::DuplicateEventId,
            detail: format!("event id {id} appears earlier in the chain"),
        });
    }
    Ok(report)
}

/// The head before `from`: empty for 1, else the stored record at
/// `from - 1` (trusted).
async fn start_head(
    source: &dyn ChainSource,
    chain: &ChainId,
    from: u64,
) -> Result<ChainHead, SourceError> {
    if from <= 1 {
        return Ok(ChainHead::EMPTY);
    }
    let previous = from - 1;
    let mut records = source.records(chain, previous).await?;
    match records.next().await.transpose()? {
        Some(SourceRecord::Record(record)) if record.seq == previous => Ok(record.head()),
        _ => Err(SourceError::new(
            source.describe(),
            format!(
                "cannot start at seq {from} of chain {chain}: there is no readable record at seq {previous}"
            ),
        )),
    }
}
