//! The policy every chain sink shares, over a store that only knows how to
//! write: conflict retries, dead-lettering, checkpoint scheduling and
//! publication.
//!
//! A backend implements [`ChainStore`] (one atomic append attempt, dead
//! letters, checkpoints, the head); [`ChainWriter`] turns it into an
//! [`AuditSink`]:
//!
//! - a lost race for a seq ([`ErrorClass::Conflict`]) is retried with a
//!   fresh head, with backoff, up to [`ChainSinkOptions::with_race_retry`]; each
//!   retry is counted in `unique_race_retries`;
//! - past that budget, or on a [`ErrorClass::Permanent`] error, the batch is
//!   dead-lettered in the store; if even that fails the error goes to the
//!   supervisor, which falls back to its dead-letter file;
//! - a [`ErrorClass::Transient`] error goes to the supervisor, which rebuilds
//!   the sink (reconnects) and retries the same batch;
//! - checkpoints are written every N records or T seconds when a key is set,
//!   and at shutdown, and published off-box when a publisher is set.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::chain::note::{Note, NoteError, check_key_name};
use crate::chain::tree::TreeFrontier;
use crate::chain::tree_checkpoint::{TreeCheckpoint, default_origin};
use crate::chain::{BatchPlan, ChainHead, ChainId, Checkpoint, Sealer, SignMode};
use crate::dead_letter::DeadLetter;
use crate::event::AuditEvent;
use crate::keys::AuditSigner;
use crate::retry::RetryPolicy;
use crate::sink::{AppendOutcome, AuditSink, CheckpointPublisher, ErrorClass, SinkError};

/// When checkpoints are written (only when a key is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// After this many records since the last checkpoint.
    pub every_records: Option<u64>,
    /// After this much time since the last checkpoint.
    pub every: Option<Duration>,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        Self {
            every_records: Some(10_000),
            every: Some(Duration::from_secs(60)),
        }
    }
}

/// Options shared by every chain sink, built from a key
/// ([`signed`](Self::signed), the secure default) or without one, said
/// explicitly ([`unsigned`](Self::unsigned)), then adjusted with the
/// `with_*` methods.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use audit_core::chain::ChainId;
/// use audit_core::chain_writer::{ChainSinkOptions, CheckpointPolicy};
/// use audit_core::keys::AuditSigner;
///
/// let options = ChainSinkOptions::signed(Arc::new(AuditSigner::generate()))
///     .for_chain(ChainId::new("refusals")?)
///     .with_checkpoints(CheckpointPolicy {
///         every_records: Some(1_000),
///         every: Some(Duration::from_secs(10)),
///     })
///     .with_origin("audit.example.com/refusals")?;
/// assert_eq!(options.chain().as_str(), "refusals");
/// assert_eq!(options.tree_origin(), "audit.example.com/refusals");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct ChainSinkOptions {
    chain: ChainId,
    signer: Option<Arc<AuditSigner>>,
    sign_mode: SignMode,
    checkpoints: CheckpointPolicy,
    race_retry: RetryPolicy,
    publisher: Option<Arc<dyn CheckpointPublisher>>,
    origin: Option<String>,
    cosigner: Option<Arc<dyn Cosigner>>,
}

impl std::fmt::Debug for ChainSinkOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainSinkOptions")
            .field("chain", &self.chain)
            .field("signer", &self.signer)
            .field("sign_mode", &self.sign_mode)
            .field("checkpoints", &self.checkpoints)
            .field("race_retry", &self.race_retry)
            .field("publisher", &self.publisher.is_some())
            .field("origin", &self.origin)
            .field("cosigner", &self.cosigner.is_some())
            .finish()
    }
}

impl ChainSinkOptions {
    /// Options that sign every record and checkpoint with `signer`, on the
    /// chain `default`: the secure default.
    pub fn signed(signer: Arc<AuditSigner>) -> Self {
        Self {
            signer: Some(signer),
            ..Self::unsigned()
        }
    }

    /// Options without a key: records and checkpoints are unsigned, so a
    /// verifier can only check the chain's hashes, never who wrote it, and
    /// no checkpoint is ever written. Say so explicitly.
    pub fn unsigned() -> Self {
        Self {
            chain: ChainId::default(),
            signer: None,
            sign_mode: SignMode::EveryRecord,
            checkpoints: CheckpointPolicy::default(),
            race_retry: RetryPolicy {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(50),
                max_retries: 64,
            },
            publisher: None,
            origin: None,
            cosigner: None,
        }
    }

    /// The same options for another chain.
    pub fn for_chain(mut self, chain: ChainId) -> Self {
        self.chain = chain;
        self
    }

    /// Which records carry a signature (default [`SignMode::EveryRecord`];
    /// checkpoints are signed either way when there is a key).
    pub fn with_sign_mode(mut self, sign_mode: SignMode) -> Self {
        self.sign_mode = sign_mode;
        self
    }

    /// When checkpoints are written (default every 10,000 records or 60 s).
    pub fn with_checkpoints(mut self, checkpoints: CheckpointPolicy) -> Self {
        self.checkpoints = checkpoints;
        self
    }

    /// Budget and backoff for lost races on a seq (default 64 retries,
    /// 1 ms doubling to 50 ms).
    pub fn with_race_retry(mut self, race_retry: RetryPolicy) -> Self {
        self.race_retry = race_retry;
        self
    }

    /// Also publishes every checkpoint and tree checkpoint through
    /// `publisher`, outside the store (off-box, so that a truncated store
    /// is caught: see the README).
    pub fn with_publisher(mut self, publisher: Arc<dyn CheckpointPublisher>) -> Self {
        self.publisher = Some(publisher);
        self
    }

    /// Asks witnesses (through `cosigner`) to cosign every tree checkpoint.
    pub fn with_cosigner(mut self, cosigner: Arc<dyn Cosigner>) -> Self {
        self.cosigner = Some(cosigner);
        self
    }

    /// The same options with tree checkpoints under `origin`; refused
    /// unless it is a valid note key name (non-empty, no white space, no
    /// `+`).
    pub fn with_origin(mut self, origin: impl Into<String>) -> Result<Self, NoteError> {
        let origin = origin.into();
        check_key_name(&origin)?;
        self.origin = Some(origin);
        Ok(self)
    }

    /// The chain written.
    pub fn chain(&self) -> &ChainId {
        &self.chain
    }

    /// The signing key, if records or checkpoints are signed.
    pub fn signer(&self) -> Option<&Arc<AuditSigner>> {
        self.signer.as_ref()
    }

    /// Which records carry a signature.
    pub fn sign_mode(&self) -> SignMode {
        self.sign_mode
    }

    /// When checkpoints are written.
    pub fn checkpoints(&self) -> CheckpointPolicy {
        self.checkpoints
    }

    /// Budget and backoff for lost races on a seq.
    pub fn race_retry(&self) -> RetryPolicy {
        self.race_retry
    }

    /// Where checkpoints are also published, outside the store.
    pub fn publisher(&self) -> Option<&Arc<dyn CheckpointPublisher>> {
        self.publisher.as_ref()
    }

    /// The configured origin of tree checkpoints, if one was set (see
    /// [`tree_origin`](Self::tree_origin) for the one used).
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// The witnesses' cosigner, if one was set.
    pub fn cosigner(&self) -> Option<&Arc<dyn Cosigner>> {
        self.cosigner.as_ref()
    }

    /// The origin of the chain's tree checkpoints: the configured one, or
    /// `deferred-audit/<key_id>/<chain>` (`deferred-audit/unsigned/<chain>`
    /// without a key, which never signs one).
    pub fn tree_origin(&self) -> String {
        match (&self.origin, &self.signer) {
            (Some(origin), _) => origin.clone(),
            (None, Some(signer)) => default_origin(&signer.key_id(), &self.chain),
            (None, None) => format!("deferred-audit/unsigned/{}", self.chain.as_str()),
        }
    }

    /// The sealer these options describe.
    pub fn sealer(&self) -> Sealer {
        Sealer::new(self.chain.clone(), self.signer.clone(), self.sign_mode)
    }
}

pub use crate::store::ChainStore;

/// Gathers witness cosignatures (FORMAT.md section 8.4) on a tree
/// checkpoint the writer signed. The writer runs it on a task of its own,
/// so appends never wait for a witness, and stores and publishes the
/// cosigned note when it is ready (the stored note gains the lines).
/// `audit-witness`'s `Witnesses` implements the protocol; the facade's
/// `witness_cosigner` ties it to a store.
#[async_trait]
pub trait Cosigner: Send + Sync {
    /// The note with every valid cosignature gathered merged in (the note
    /// as given when none could be gathered: failures are the
    /// implementation's to log and count).
    async fn cosign(&self, chain: &ChainId, note: Note) -> Note;
}

/// How long [`ChainWriter`]'s final checkpoint waits for cosignatures
/// still being gathered.
pub const COSIGN_WAIT_AT_CHECKPOINT: Duration = Duration::from_secs(30);

/// A [`ChainStore`] with the shared policy: an [`AuditSink`].
pub struct ChainWriter<S> {
    store: S,
    options: ChainSinkOptions,
    sealer: Sealer,
    last_checkpoint: Option<(u64, Instant)>,
    last_head: Option<ChainHead>,
    last_tree: Option<TreeFrontier>,
    race_retries: u64,
    /// Cosignatures being gathered: the tree size and the task.
    cosigning: Vec<(u64, tokio::task::JoinHandle<Note>)>,
}

impl<S: ChainStore> ChainWriter<S> {
    /// Wraps `store` with `options`.
    pub fn new(store: S, options: ChainSinkOptions) -> Self {
        let sealer = options.sealer();
        Self {
            store,
            options,
            sealer,
            last_checkpoint: None,
            last_head: None,
            last_tree: None,
            race_retries: 0,
            cosigning: Vec::new(),
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, mutably.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The options.
    pub fn options(&self) -> &ChainSinkOptions {
        &self.options
    }

    async fn dead_letter_batch(
        &mut self,
        events: &[AuditEvent],
        error: SinkError,
        attempts: u32,
    ) -> Result<Vec<AppendOutcome>, SinkError> {
        let reason = error.to_string();
        tracing::warn!(chain = %self.options.chain, batch = events.len(), error = %reason, "dead-lettering batch");
        let letters: Vec<DeadLetter> = events
            .iter()
            .map(|event| {
                let letter = DeadLetter::new(&self.options.chain, event, reason.clone(), attempts);
                match &self.options.signer {
                    Some(signer) => letter.authenticated(signer),
                    None => letter,
                }
            })
            .collect();
        match self.store.dead_letter(&letters).await {
            Ok(()) => Ok(events
                .iter()
                .map(|_| AppendOutcome::DeadLettered {
                    reason: reason.clone(),
                })
                .collect()),
            Err(dead_letter_error) => {
                tracing::error!(chain = %self.options.chain, error = %dead_letter_error, "dead-letter store failed too");
                Err(error)
            }
        }
    }

    async fn checkpoint_if_due(&mut self) -> Result<(), SinkError> {
        let Some(head) = self.last_head else {
            return Ok(());
        };
        let tree = self.last_tree.clone();
        let policy = self.options.checkpoints;
        let (last_seq, last_time) = *self.last_checkpoint.get_or_insert((0, Instant::now()));
        let by_count = policy
            .every_records
            .is_some_and(|every| head.seq >= last_seq + every.max(1));
        let by_time = policy
            .every
            .is_some_and(|every| head.seq > last_seq && last_time.elapsed() >= every);
        if by_count || by_time {
            self.write_checkpoint_at(head, tree).await?;
        }
        Ok(())
    }

    /// Signs and stores (and publishes) the section 3 checkpoint at `head`
    /// and the tree checkpoint of `tree` (read from the store when not
    /// given).
    async fn write_checkpoint_at(
        &mut self,
        head: ChainHead,
        tree: Option<TreeFrontier>,
    ) -> Result<Option<Checkpoint>, SinkError> {
        let Some(signer) = self.options.signer.clone() else {
            return Ok(None);
        };
        if head.seq == 0 {
            return Ok(None);
        }
        let checkpoint = Checkpoint::sign(&self.options.chain, head, &signer);
        self.store.write_checkpoint(&checkpoint).await?;
        if let Some(publisher) = &self.options.publisher {
            publisher.publish(&checkpoint).await?;
        }
        let tree = match tree {
            Some(tree) => tree,
            None => self.store.tree(&self.options.chain).await?,
        };
        self.write_tree_checkpoint(&tree, &signer).await?;
        self.last_checkpoint = Some((head.seq, Instant::now()));
        tracing::debug!(chain = %self.options.chain, seq = head.seq, "checkpoint written");
        Ok(Some(checkpoint))
    }
}

impl<S: ChainStore> ChainWriter<S> {
    async fn write_tree_checkpoint(
        &mut self,
        tree: &TreeFrontier,
        signer: &AuditSigner,
    ) -> Result<(), SinkError> {
        let origin = self.options.tree_origin();
        let describe = || format!("chain {}", self.options.chain);
        let refused = |error: String| SinkError::new(describe(), ErrorClass::Permanent, error);
        let note = TreeCheckpoint::new(&origin, tree.size(), tree.root())
            .and_then(|checkpoint| Ok(checkpoint.sign(signer)?))
            .map_err(|error| refused(format!("tree checkpoint: {error}")))?
            .to_string();
        self.store
            .write_tree_checkpoint(&self.options.chain, tree.size(), &note)
            .await?;
        if let Some(publisher) = &self.options.publisher {
            publisher
                .publish_tree_checkpoint(&self.options.chain, tree.size(), &note)
                .await?;
        }
        tracing::debug!(chain = %self.options.chain, size = tree.size(), %origin, "tree checkpoint written");
        if let Some(cosigner) = self.options.cosigner.clone() {
            let chain = self.options.chain.clone();
            match Note::parse(note.as_bytes()) {
                Ok(note) => self.cosigning.push((
                    tree.size(),
                    tokio::spawn(async move { cosigner.cosign(&chain, note).await }),
                )),
                Err(error) => {
                    tracing::error!(%error, "a tree checkpoint just signed does not parse")
                }
            }
        }
        Ok(())
    }

    /// Stores (and publishes) the cosigned notes that are ready; with
    /// `wait`, waits up to that long for the others first.
    async fn store_cosigned(&mut self, wait: Option<Duration>) {
        let deadline = wait.map(|wait| tokio::time::Instant::now() + wait);
        let mut ready = Vec::new();
        for (size, mut task) in std::mem::take(&mut self.cosigning) {
            let result = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, &mut task).await.ok(),
                None if task.is_finished() => Some((&mut task).await),
                None => None,
            };
            match result {
                Some(result) => ready.push((size, result)),
                None => self.cosigning.push((size, task)),
            }
        }
        for (size, result) in ready {
            let note = match result {
                Ok(note) => note.to_string(),
                Err(error) => {
                    tracing::warn!(chain = %self.options.chain, size, %error, "gathering cosignatures failed");
                    continue;
                }
            };
            let stored = self
                .store
                .write_tree_checkpoint(&self.options.chain, size, &note)
                .await;
            let published = match (&stored, &self.options.publisher) {
                (Ok(()), Some(publisher)) => {
                    publisher
                        .publish_tree_checkpoint(&self.options.chain, size, &note)
                        .await
                }
                _ => Ok(()),
            };
            if let Err(error) = stored.and(published) {
                tracing::warn!(chain = %self.options.chain, size, %error, "storing a cosigned tree checkpoint failed");
            }
        }
    }
}

#[async_trait]
impl<S: ChainStore> AuditSink for ChainWriter<S> {
    async fn append_batch(
        &mut self,
        events: &[AuditEvent],
    ) -> Result<Vec<AppendOutcome>, SinkError> {
        if !self.cosigning.is_empty() {
            self.store_cosigned(None).await;
        }
        let policy = self.options.race_retry;
        let plan = BatchPlan::new(self.sealer.clone(), events);
        let mut attempt = 0u32;
        loop {
            match self.store.append_once(&plan).await {
                Ok(sealed) => {
                    if sealed.appends() {
                        self.last_head = Some(sealed.head());
                        self.last_tree = Some(sealed.tree().clone());
                    }
                    if let Err(error) = self.checkpoint_if_due().await {
                        tracing::warn!(chain = %self.options.chain, %error, "scheduled checkpoint failed; will retry");
                    }
                    return Ok(sealed.into_outcomes());
                }
                Err(error)
                    if error.class == ErrorClass::Conflict && attempt < policy.max_retries =>
                {
                    self.race_retries += 1;
                    tracing::debug!(chain = %self.options.chain, attempt, "lost a seq race; re-reading the head");
                    tokio::time::sleep(policy.delay(attempt)).await;
                    attempt += 1;
                }
                Err(error) if error.class == ErrorClass::Transient => return Err(error),
                Err(error) => return self.dead_letter_batch(events, error, attempt + 1).await,
            }
        }
    }

    async fn checkpoint(&mut self) -> Result<Option<Checkpoint>, SinkError> {
        let head = self.store.head(&self.options.chain).await?;
        if self.last_checkpoint.is_some_and(|(seq, _)| seq == head.seq) {
            self.store_cosigned(Some(COSIGN_WAIT_AT_CHECKPOINT)).await;
            return Ok(None);
        }
        let written = self.write_checkpoint_at(head, None).await;
        self.store_cosigned(Some(COSIGN_WAIT_AT_CHECKPOINT)).await;
        written
    }

    fn race_retries(&self) -> u64 {
        self.race_retries
    }

    fn describe(&self) -> String {
        self.store.describe()
    }
}
