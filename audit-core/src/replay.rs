//! The one dead-letter replay: the dead letters of a chain, read from any
//! [`ChainSource`], appended through a [`ChainWriter`] (so the batch plan,
//! checkpoints and publishers apply), then removed from the store.
//!
//! Replay is idempotent: an event whose id is already in the chain keeps
//! its record (`already_present`), so a crash between the append and the
//! removal only means the next replay finds those letters already there.
//! A letter is removed only once its event is in the chain. Letters whose
//! event cannot be read stay and are listed.
//!
//! Replay refuses to append unsigned records to a signed chain: replaying
//! into a chain whose head record is signed needs the chain's key. When
//! the writer has a key, only dead letters authenticated by a trusted key
//! (the writer's own, or one of `trusted`) are replayed: anyone who can
//! insert a row into a dead-letter table could otherwise have the
//! operator sign a forged event into the chain. The others are kept and
//! listed in [`ReplayReport::unauthenticated`].

use futures::StreamExt;

use crate::chain::ChainId;
use crate::chain_writer::{ChainStore, ChainWriter};
use crate::dead_letter::REPLAY_BATCH;
use crate::keys::Keyring;
use crate::sink::{AppendOutcome, AuditSink, SinkError};
use crate::store::{ChainSource, SourceError, SourceRecord, StoredDeadLetter};

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplayReport {
    /// Letters appended to the chain now.
    pub appended: u64,
    /// Letters whose event was already in the chain (removed as well).
    pub already_present: u64,
    /// Letters the writer dead-lettered again (kept).
    pub dead_lettered: u64,
    /// Letters kept because their event cannot be read: key and why.
    pub unreadable: Vec<(String, String)>,
    /// Letters kept because no trusted key authenticates them: key and why.
    pub unauthenticated: Vec<(String, String)>,
    /// Letters of other chains, left in place.
    pub other_chains: u64,
}

impl ReplayReport {
    /// Whether every letter of the chain is now in the chain.
    pub fn is_complete(&self) -> bool {
        self.dead_lettered == 0 && self.unreadable.is_empty() && self.unauthenticated.is_empty()
    }
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The dead letters or the chain could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The chain or the dead-letter store could not be written.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The chain's records are signed and the writer has no key.
    #[error(
        "chain {chain} is signed (its head record at seq {seq} carries a signature) but no key was given: replaying would append unsigned records; pass the chain's key"
    )]
    WouldAppendUnsigned {
        /// The chain.
        chain: String,
        /// Its head seq.
        seq: u64,
    },
}

/// Replays the dead letters of the writer's chain found in `source`,
/// trusting letters authenticated by the writer's key or a key of
/// `trusted` (a writer without a key replays unsigned letters into an
/// unsigned chain).
pub async fn replay_dead_letters<S: ChainStore>(
    source: &dyn ChainSource,
    writer: &mut ChainWriter<S>,
    trusted: &Keyring,
) -> Result<ReplayReport, ReplayError> {
    let chain = writer.options().chain().clone();
    let mut keyring = trusted.clone();
    if let Some(signer) = &writer.options().signer() {
        keyring.insert(signer.public_key());
    }
    refuse_unsigned_into_signed(source, writer, &chain).await?;
    let mut report = ReplayReport {
        other_chains: source
            .dead_letters(None)
            .await?
            .iter()
            .filter(|stored| stored.letter.chain_id != chain.as_str())
            .count() as u64,
        ..ReplayReport::default()
    };
    let letters = source.dead_letters(Some(&chain)).await?;
    for chunk in letters.chunks(REPLAY_BATCH) {
        replay_chunk(writer, chunk, &keyring, &mut report).await?;
    }
    writer.checkpoint().await?;
    Ok(report)
}

async fn replay_chunk<S: ChainStore>(
    writer: &mut ChainWriter<S>,
    chunk: &[StoredDeadLetter],
    keyring: &Keyring,
    report: &mut ReplayReport,
) -> Result<(), ReplayError> {
    let mut events = Vec::with_capacity(chunk.len());
    let mut keys = Vec::with_capacity(chunk.len());
    for stored in chunk {
        if !keyring.is_empty()
            && let Err(error) = stored.letter.verify(keyring)
        {
            report
                .unauthenticated
                .push((stored.key.clone(), error.to_string()));
            continue;
        }
        match stored.letter.event() {
            Ok(event) if event.id() == stored.letter.event_id => {
                events.push(event);
                keys.push(stored.key.clone());
            }
            Ok(event) => report.unreadable.push((
                stored.key.clone(),
                format!(
                    "the letter names event {} but holds event {}",
                    stored.letter.event_id,
                    event.id()
                ),
            )),
            Err(error) => report
                .unreadable
                .push((stored.key.clone(), error.to_string())),
        }
    }
    if events.is_empty() {
        return Ok(());
    }
    let outcomes = writer.append_batch(&events).await?;
    let mut replayed = Vec::with_capacity(keys.len());
    for (key, outcome) in keys.into_iter().zip(&outcomes) {
        match outcome {
            AppendOutcome::Appended(receipt) => {
                if receipt.already_present {
                    report.already_present += 1;
                } else {
                    report.appended += 1;
                }
                replayed.push(key);
            }
            AppendOutcome::DeadLettered { .. } => report.dead_lettered += 1,
        }
    }
    writer.store_mut().remove_dead_letters(&replayed).await?;
    Ok(())
}

async fn refuse_unsigned_into_signed<S: ChainStore>(
    source: &dyn ChainSource,
    writer: &mut ChainWriter<S>,
    chain: &ChainId,
) -> Result<(), ReplayError> {
    if writer.options().sealer().signs_records() {
        return Ok(());
    }
    let head = writer.store_mut().head(chain).await?;
    if head.seq == 0 {
        return Ok(());
    }
    let mut records = source.records(chain, head.seq).await?;
    if let Some(SourceRecord::Record(record)) = records.next().await.transpose()?
        && record.sig.is_some()
    {
        return Err(ReplayError::WouldAppendUnsigned {
            chain: chain.to_string(),
            seq: head.seq,
        });
    }
    Ok(())
}
