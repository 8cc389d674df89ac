//! A set of witnesses and a quorum: what a log's writer uses to get its
//! tree checkpoints cosigned.
//!
//! [`Witnesses::cosign`] asks every witness, concurrently, to cosign one
//! signed tree checkpoint, and returns the note with the valid
//! cosignatures merged in and an outcome per witness ([`Cosigned`]). For
//! each witness it remembers:
//!
//! - the size that witness last cosigned: the next request carries a
//!   consistency proof from there (obtained from a [`ConsistencySource`]);
//!   at first it asks from 0, and on a 409 it asks again once from the size
//!   the witness answers;
//! - when it last asked: it never asks one witness more often than
//!   [`WitnessOptions::min_interval`] (default 10 s); a checkpoint that
//!   comes sooner is skipped for that witness;
//! - its failures: after one, it waits a jittered, exponentially growing
//!   delay before asking again;
//! - its last cosignature: asked again for the same checkpoint, it answers
//!   from memory.
//!
//! Every request has the client's timeout and a witness busy with an
//! earlier call is skipped, so a call returns within about
//! `(2 + max_conflict_retries) ×` the timeout, whatever the witnesses do.
//! Run it off the append path (e.g. on a task of its own after each
//! checkpoint): appends never wait for witnesses.
//!
//! Metrics: counter `audit_witness_client_requests_total` with labels
//! `witness` and `outcome` (`cosigned`, `cached`, `skipped`, or the
//! failure's [`WitnessError::kind`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use audit_core::Digest;
use audit_core::chain::note::{Note, NoteError, NoteSignature, Vkey};
use audit_core::chain::tree::{HashReader, prove_consistency};
use audit_core::retry::RetryPolicy;
use tokio::sync::Mutex;

use crate::client::{WitnessClient, WitnessError};
use crate::protocol::checkpoint_head;

/// Why a consistency proof could not be obtained.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(#[source] Box<dyn std::error::Error + Send + Sync>);

impl SourceError {
    /// Wraps any error.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(error.into())
    }
}

/// Where consistency proofs come from: the log's stored tree hashes.
#[async_trait]
pub trait ConsistencySource: Send + Sync {
    /// The RFC 6962 consistency proof from the tree of `old_size` records
    /// to the tree of `new_size` records (`0 < old_size < new_size`).
    async fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Digest>, SourceError>;
}

/// Every stored hash of a tree in memory (see
/// [`audit_core::chain::tree`]): a [`ConsistencySource`] for tests, tools
/// and small logs.
#[derive(Debug, Clone, Default)]
pub struct StoredHashes<H>(pub H);

#[async_trait]
impl<H: AsRef<[Digest]> + Send + Sync> ConsistencySource for StoredHashes<H> {
    async fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Digest>, SourceError> {
        prove_consistency(old_size, new_size, self.0.as_ref()).map_err(SourceError::new)
    }
}

/// Any [`HashReader`] as a [`ConsistencySource`]. The reader is called on
/// the async task: fine for memory, not for a reader that blocks on I/O
/// (implement [`ConsistencySource`] with `spawn_blocking` for that).
#[derive(Debug, Clone, Default)]
pub struct ReaderSource<R>(pub R);

#[async_trait]
impl<R: HashReader + Send + Sync> ConsistencySource for ReaderSource<R> {
    async fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Digest>, SourceError> {
        prove_consistency(old_size, new_size, &self.0).map_err(SourceError::new)
    }
}

/// How often and how insistently witnesses are asked: [`Default`], then
/// the `with_*` methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct WitnessOptions {
    min_interval: Duration,
    backoff: RetryPolicy,
    max_conflict_retries: u32,
}

impl WitnessOptions {
    /// The least time between two requests to one witness (default 10 s).
    pub fn with_min_interval(mut self, min_interval: Duration) -> Self {
        self.min_interval = min_interval;
        self
    }

    /// Backoff after failures: `initial × 2^(failures-1)`, capped at `max`,
    /// each delay drawn uniformly from its upper half (default 1 s to 5 min).
    pub fn with_backoff(mut self, backoff: RetryPolicy) -> Self {
        self.backoff = backoff;
        self
    }

    /// Requests again from the size a 409 answers, at most (default 1).
    pub fn with_max_conflict_retries(mut self, max_conflict_retries: u32) -> Self {
        self.max_conflict_retries = max_conflict_retries;
        self
    }

    /// The least time between two requests to one witness.
    pub fn min_interval(&self) -> Duration {
        self.min_interval
    }

    /// Backoff after failures.
    pub fn backoff(&self) -> RetryPolicy {
        self.backoff
    }

    /// Requests again from the size a 409 answers, at most.
    pub fn max_conflict_retries(&self) -> u32 {
        self.max_conflict_retries
    }
}

impl Default for WitnessOptions {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_secs(10),
            backoff: RetryPolicy {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(300),
                max_retries: u32::MAX,
            },
            max_conflict_retries: 1,
        }
    }
}

/// Why a witness was not asked this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// It was asked less than the minimum interval ago.
    Interval {
        /// Time until it may be asked again.
        retry_in: Duration,
    },
    /// It failed recently and is backed off.
    BackingOff {
        /// Time until it may be asked again.
        retry_in: Duration,
    },
    /// An earlier call is still talking to it.
    InFlight,
}

/// What happened with one witness.
#[derive(Debug)]
#[non_exhaustive]
pub enum OutcomeKind {
    /// It cosigned, from `old_size`.
    Cosigned {
        /// The cosignature line.
        signature: NoteSignature,
        /// The old size of the accepted request.
        old_size: u64,
    },
    /// It had cosigned this very checkpoint; the line is from memory.
    Cached {
        /// The cosignature line.
        signature: NoteSignature,
    },
    /// It was not asked.
    Skipped(SkipReason),
    /// It failed; it will not be asked before `retry_in`.
    Failed {
        /// Why.
        error: WitnessError,
        /// The backoff before the next request.
        retry_in: Duration,
    },
}

impl OutcomeKind {
    /// A short name for logs and metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            OutcomeKind::Cosigned { .. } => "cosigned",
            OutcomeKind::Cached { .. } => "cached",
            OutcomeKind::Skipped(_) => "skipped",
            OutcomeKind::Failed { error, .. } => error.kind(),
        }
    }
}

/// The outcome for one witness.
#[derive(Debug)]
pub struct WitnessOutcome {
    /// The witness's cosigner vkey.
    pub witness: Vkey,
    /// Its submission URL.
    pub url: String,
    /// What happened.
    pub kind: OutcomeKind,
}

/// The result of [`Witnesses::cosign`].
#[derive(Debug)]
pub struct Cosigned {
    /// The checkpoint note with every valid cosignature merged in (lines it
    /// already carried are kept).
    pub note: Note,
    /// One outcome per witness, in configuration order.
    pub outcomes: Vec<WitnessOutcome>,
    /// Distinct configured witnesses whose valid cosignature the note carries.
    pub cosignatures: usize,
    /// The quorum asked for.
    pub quorum: usize,
}

impl Cosigned {
    /// Whether the note carries at least `quorum` cosignatures.
    pub fn quorum_met(&self) -> bool {
        self.cosignatures >= self.quorum
    }
}

/// Why a witness set cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessSetError {
    /// The quorum is larger than the number of witnesses.
    #[error("quorum {quorum} is more than the {witnesses} witnesses")]
    QuorumTooLarge {
        /// The quorum.
        quorum: usize,
        /// The number of witnesses.
        witnesses: usize,
    },
    /// Two witnesses share a key name and key hash.
    #[error("witness {vkey} is configured twice")]
    Duplicate {
        /// Its vkey.
        vkey: String,
    },
}

#[derive(Debug, Default)]
struct Memory {
    cosigned_size: Option<u64>,
    last_request: Option<Instant>,
    failures: u32,
    retry_at: Option<Instant>,
    last_cosignature: Option<(String, NoteSignature)>,
}

#[derive(Debug)]
struct Member {
    client: WitnessClient,
    memory: Mutex<Memory>,
}

/// Witnesses and a quorum "k of these n".
#[derive(Debug, Clone)]
pub struct Witnesses {
    members: Arc<Vec<Member>>,
    quorum: usize,
    options: WitnessOptions,
}

impl Witnesses {
    /// These witnesses, of which `quorum` must cosign, with default options.
    pub fn new(clients: Vec<WitnessClient>, quorum: usize) -> Result<Self, WitnessSetError> {
        if quorum > clients.len() {
            return Err(WitnessSetError::QuorumTooLarge {
                quorum,
                witnesses: clients.len(),
            });
        }
        for (index, client) in clients.iter().enumerate() {
            let vkey = client.vkey();
            if clients[..index].iter().any(|other| {
                other.vkey().name() == vkey.name() && other.vkey().key_hash() == vkey.key_hash()
            }) {
                return Err(WitnessSetError::Duplicate {
                    vkey: vkey.to_string(),
                });
            }
        }
        let members = clients
            .into_iter()
            .map(|client| Member {
                client,
                memory: Mutex::new(Memory::default()),
            })
            .collect();
        Ok(Self {
            members: Arc::new(members),
            quorum,
            options: WitnessOptions::default(),
        })
    }

    /// Uses these options.
    pub fn with_options(mut self, options: WitnessOptions) -> Self {
        self.options = options;
        self
    }

    /// The quorum.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// The witnesses' cosigner vkeys, e.g. for a verifier's
    /// `TrustPolicy::with_witnesses`.
    pub fn vkeys(&self) -> Vec<Vkey> {
        self.members
            .iter()
            .map(|member| member.client.vkey().clone())
            .collect()
    }

    /// The clients, in configuration order.
    pub fn clients(&self) -> impl Iterator<Item = &WitnessClient> {
        self.members.iter().map(|member| &member.client)
    }

    /// The size each witness last cosigned, as far as this set knows
    /// (`None`: not known yet), in configuration order. Waits for calls in
    /// flight.
    pub async fn cosigned_sizes(&self) -> Vec<Option<u64>> {
        let mut sizes = Vec::with_capacity(self.members.len());
        for member in self.members.iter() {
            sizes.push(member.memory.lock().await.cosigned_size);
        }
        sizes
    }

    /// Asks every witness to cosign `note`, a tree checkpoint signed by the
    /// log, with consistency proofs from `source`; returns the note with
    /// the valid cosignatures merged in and the outcome per witness.
    pub async fn cosign(&self, note: &Note, source: &dyn ConsistencySource) -> Cosigned {
        let size = match checkpoint_head(note.body()) {
            Ok(checkpoint) => checkpoint.size(),
            Err(error) => {
                let outcomes = self
                    .members
                    .iter()
                    .map(|member| WitnessOutcome {
                        witness: member.client.vkey().clone(),
                        url: member.client.url().to_owned(),
                        kind: OutcomeKind::Failed {
                            error: WitnessError::InvalidCheckpoint {
                                detail: error.to_string(),
                            },
                            retry_in: Duration::ZERO,
                        },
                    })
                    .collect();
                return self.finish(note.clone(), outcomes);
            }
        };
        let asks = self
            .members
            .iter()
            .map(|member| self.ask(member, note, size, source));
        let kinds = futures::future::join_all(asks).await;
        let mut merged = note.clone();
        let mut outcomes = Vec::with_capacity(kinds.len());
        for (member, kind) in self.members.iter().zip(kinds) {
            let vkey = member.client.vkey();
            metrics::counter!(
                "audit_witness_client_requests_total",
                "witness" => vkey.name().to_owned(),
                "outcome" => kind.label(),
            )
            .increment(1);
            match &kind {
                OutcomeKind::Cosigned { signature, .. } | OutcomeKind::Cached { signature } => {
                    if let Err(error) = merged.push_signature(signature.clone()) {
                        // The note already carries a line of this witness.
                        tracing::debug!(witness = %vkey, %error, "cosignature not merged");
                    }
                }
                OutcomeKind::Failed { error, retry_in } => {
                    tracing::warn!(witness = %vkey, url = member.client.url(), %error, ?retry_in, "witness did not cosign");
                }
                OutcomeKind::Skipped(reason) => {
                    tracing::debug!(witness = %vkey, ?reason, "witness not asked");
                }
            }
            outcomes.push(WitnessOutcome {
                witness: vkey.clone(),
                url: member.client.url().to_owned(),
                kind,
            });
        }
        self.finish(merged, outcomes)
    }

    fn finish(&self, note: Note, outcomes: Vec<WitnessOutcome>) -> Cosigned {
        let cosignatures = match note.verify(&self.vkeys()) {
            Ok(verified) => verified.len(),
            Err(NoteError::NoKnownSignature) => 0,
            Err(error) => {
                tracing::warn!(%error, "checkpoint carries an invalid cosignature of a configured witness");
                0
            }
        };
        Cosigned {
            note,
            outcomes,
            cosignatures,
            quorum: self.quorum,
        }
    }

    async fn ask(
        &self,
        member: &Member,
        note: &Note,
        size: u64,
        source: &dyn ConsistencySource,
    ) -> OutcomeKind {
        let Ok(mut memory) = member.memory.try_lock() else {
            return OutcomeKind::Skipped(SkipReason::InFlight);
        };
        if let Some((body, signature)) = &memory.last_cosignature
            && body == note.body()
        {
            return OutcomeKind::Cached {
                signature: signature.clone(),
            };
        }
        let now = Instant::now();
        if let Some(retry_at) = memory.retry_at
            && retry_at > now
        {
            return OutcomeKind::Skipped(SkipReason::BackingOff {
                retry_in: retry_at - now,
            });
        }
        if let Some(last) = memory.last_request {
            let next = last + self.options.min_interval;
            if next > now {
                return OutcomeKind::Skipped(SkipReason::Interval {
                    retry_in: next - now,
                });
            }
        }
        memory.last_request = Some(now);
        match self
            .request(&member.client, &mut memory, note, size, source)
            .await
        {
            Ok((signatures, old_size)) => {
                memory.failures = 0;
                memory.retry_at = None;
                memory.cosigned_size = Some(size);
                let Some(signature) = signatures.into_iter().next() else {
                    return self.failed(
                        &mut memory,
                        WitnessError::NoCosignature {
                            vkey: member.client.vkey().to_string(),
                        },
                    );
                };
                memory.last_cosignature = Some((note.body().to_owned(), signature.clone()));
                OutcomeKind::Cosigned {
                    signature,
                    old_size,
                }
            }
            Err(error) => self.failed(&mut memory, error),
        }
    }

    fn failed(&self, memory: &mut Memory, error: WitnessError) -> OutcomeKind {
        memory.failures = memory.failures.saturating_add(1);
        let delay = self.options.backoff.delay(memory.failures - 1);
        let retry_in = jitter(delay);
        memory.retry_at = Some(Instant::now() + retry_in);
        OutcomeKind::Failed { error, retry_in }
    }

    /// The request, and its retries after a 409.
    async fn request(
        &self,
        client: &WitnessClient,
        memory: &mut Memory,
        note: &Note,
        size: u64,
        source: &dyn ConsistencySource,
    ) -> Result<(Vec<NoteSignature>, u64), WitnessError> {
        let mut old_size = memory.cosigned_size.unwrap_or(0);
        let mut conflicts = 0;
        loop {
            if old_size > size {
                return Err(WitnessError::WitnessAhead {
                    latest_size: old_size,
                    size,
                });
            }
            let proof = if old_size == 0 || old_size == size {
                Vec::new()
            } else {
                let unavailable = |source| WitnessError::ProofUnavailable { old_size, source };
                tokio::time::timeout(client.timeout(), source.consistency_proof(old_size, size))
                    .await
                    .map_err(|_| unavailable(SourceError::new("timed out")))?
                    .map_err(unavailable)?
            };
            match client.add_checkpoint(old_size, &proof, note).await {
                Ok(signatures) => return Ok((signatures, old_size)),
                Err(WitnessError::Conflict { latest_size }) => {
                    memory.cosigned_size = Some(latest_size);
                    if latest_size == old_size {
                        // The old size matched, so the witness holds this
                        // size with another root.
                        return Err(WitnessError::Fork { size: latest_size });
                    }
                    if conflicts >= self.options.max_conflict_retries {
                        return Err(WitnessError::Conflict { latest_size });
                    }
                    conflicts += 1;
                    old_size = latest_size;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// A delay drawn uniformly from `[delay / 2, delay]` (the whole delay when
/// the operating system's random source fails).
fn jitter(delay: Duration) -> Duration {
    let half = delay / 2;
    let random = getrandom::u32().unwrap_or(u32::MAX);
    let fraction = f64::from(random) / f64::from(u32::MAX);
    half + half.mul_f64(fraction)
}
