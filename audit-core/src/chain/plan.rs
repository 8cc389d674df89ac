//! The batch plan: which events of a batch are new, which repeat an id
//! already in the chain or earlier in the batch, how the new ones are
//! sealed, and what each event's outcome is. Every store runs this one plan.
//!
//! A store's append attempt is: read the head, the tree frontier and the
//! records already in the chain for [`BatchPlan::ids`], call
//! [`BatchPlan::seal`], write [`SealedBatch::records`],
//! [`SealedBatch::tree_rows`] and [`SealedBatch::tree`], commit.
//!
//! ```
//! use std::collections::HashMap;
//! use audit_core::chain::{BatchPlan, ChainHead, ChainId, Sealer, SignMode};
//! use audit_core::chain::tree::TreeFrontier;
//! use audit_core::AuditEvent;
//! let sealer = Sealer::new(ChainId::new("c")?, None, SignMode::EveryRecord);
//! let event = AuditEvent::new("t", "a", serde_json::json!(1))?;
//! let plan = BatchPlan::new(sealer, &[event.clone(), event]);
//! assert_eq!(plan.ids().count(), 1);
//! let sealed = plan.seal(ChainHead::EMPTY, &TreeFrontier::new(), &HashMap::new())?;
//! assert_eq!(sealed.records().len(), 1);
//! assert_eq!(sealed.tree().size(), 1);
//! assert_eq!(sealed.outcomes().len(), 2); // the repeat gets the same record
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use super::tree::TreeFrontier;
use super::tree_rows::{TreeGrowth, TreeRow};
use super::{ChainHead, ChainId, Record, Sealer};
use crate::event::AuditEvent;
use crate::sink::{AppendOutcome, ErrorClass, Receipt, SinkError};

/// Batches at least this large are sealed on the blocking pool by
/// [`BatchPlan::seal_off_runtime`].
pub const BLOCKING_SEAL_THRESHOLD: usize = 64;

/// Signed chunks that may wait for an async store's writer
/// ([`BatchPlan::seal_streaming_async`]) before the signing pauses.
const STREAM_DEPTH: usize = 4;

/// The records already in a chain for some event ids: id to head at it.
pub type PresentIds = HashMap<String, ChainHead>;

/// What becomes of one event of the batch.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// The first event with its id in the batch: the `n`th distinct one.
    First(usize),
    /// Repeats the id of the `n`th distinct event.
    Repeat(usize),
}

/// One batch, planned once and sealed on every attempt. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BatchPlan {
    sealer: Sealer,
    events: Arc<[AuditEvent]>,
    slots: Arc<[Slot]>,
    distinct: Arc<[usize]>,
}

impl BatchPlan {
    /// Plans `events` for `sealer`'s chain.
    pub fn new(sealer: Sealer, events: &[AuditEvent]) -> Self {
        let mut first: HashMap<&str, usize> = HashMap::with_capacity(events.len());
        let mut distinct = Vec::with_capacity(events.len());
        let slots: Vec<Slot> = events
            .iter()
            .enumerate()
            .map(|(index, event)| match first.get(event.id()) {
                Some(&n) => Slot::Repeat(n),
                None => {
                    first.insert(event.id(), distinct.len());
                    distinct.push(index);
                    Slot::First(distinct.len() - 1)
                }
            })
            .collect();
        Self {
            sealer,
            events: events.into(),
            slots: slots.into(),
            distinct: distinct.into(),
        }
    }

    /// The chain written.
    pub fn chain(&self) -> &ChainId {
        self.sealer.chain()
    }

    /// The sealer.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// The events, in order.
    pub fn events(&self) -> &[AuditEvent] {
        &self.events
    }

    /// The distinct event ids of the batch, to look up in the chain.
    pub fn ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.distinct.iter().map(|&index| self.events[index].id())
    }

    /// Seals the events whose id is neither in `present` nor earlier in
    /// the batch after `head`, grows the chain's tree from `tree` (the
    /// frontier at `head`), and gives every event its outcome.
    pub fn seal(
        &self,
        head: ChainHead,
        tree: &TreeFrontier,
        present: &PresentIds,
    ) -> Result<SealedBatch, SinkError> {
        self.seal_streaming(head, tree, present, |_| Ok(()))
    }

    /// [`seal`](Self::seal), handing the new records to `write` in seq
    /// order, a chunk at a time, while later chunks are still being signed
    /// ([`Sealer::seal_batch_streaming`]): a store inserts each chunk as it
    /// comes, so its writes overlap with the signing. The records are also
    /// in the [`SealedBatch`] returned; an error of `write` is returned as
    /// it is.
    pub fn seal_streaming(
        &self,
        head: ChainHead,
        tree: &TreeFrontier,
        present: &PresentIds,
        mut write: impl FnMut(&[Record]) -> Result<(), SinkError>,
    ) -> Result<SealedBatch, SinkError> {
        if tree.size() != head.seq {
            return Err(self.refused(format!(
                    "the stored tree covers {} records but the head is at seq {}: the store's tree is out of step with its records",
                    tree.size(),
                    head.seq
                )));
        }
        let fresh: Vec<usize> = self
            .distinct
            .iter()
            .copied()
            .filter(|&index| !present.contains_key(self.events[index].id()))
            .collect();
        let fits = u64::try_from(fresh.len())
            .ok()
            .and_then(|count| head.seq.checked_add(count))
            .is_some_and(|last| last <= i64::MAX as u64);
        if !fits {
            return Err(self.refused(format!(
                "chain is full: {} records after seq {} exceed the largest seq",
                fresh.len(),
                head.seq
            )));
        }
        // The tree grows chunk by chunk as the records are handed over,
        // while the chunks after them are still being signed.
        let mut growth = TreeGrowth::new(tree.clone());
        let write = |chunk: &[Record]| {
            growth.push_records(chunk);
            write(chunk)
        };
        // The common batch has no repeat and nothing already present: seal
        // it as it is, without copying its events.
        let records = if fresh.len() == self.events.len() {
            self.sealer
                .seal_batch_streaming(head, &self.events, write)?
        } else {
            let to_seal: Vec<AuditEvent> = fresh
                .iter()
                .map(|&index| self.events[index].clone())
                .collect();
            self.sealer.seal_batch_streaming(head, &to_seal, write)?
        };
        let mut by_distinct: Vec<(ChainHead, bool)> = Vec::with_capacity(self.distinct.len());
        let mut sealed = records.iter();
        for &index in self.distinct.iter() {
            match present.get(self.events[index].id()) {
                Some(&existing) => by_distinct.push((existing, true)),
                None => {
                    let head = sealed.next().map_or(ChainHead::EMPTY, Record::head);
                    by_distinct.push((head, false));
                }
            }
        }
        let receipt = |(head, already_present): (ChainHead, bool)| {
            AppendOutcome::Appended(Receipt {
                chain: self.chain().clone(),
                seq: head.seq,
                record_hash: head.hash,
                already_present,
            })
        };
        let outcomes = self
            .slots
            .iter()
            .map(|slot| match *slot {
                Slot::First(n) => receipt(by_distinct[n]),
                Slot::Repeat(n) => receipt((by_distinct[n].0, true)),
            })
            .collect();
        let (tree_rows, tree) = growth.finish();
        let new_head = records.last().map_or(head, Record::head);
        // The tree grew from what was handed to `write`: it must hold every
        // record sealed, or the stored tree would silently lack leaves.
        if tree.size() != new_head.seq {
            return Err(self.refused(format!(
                    "the tree grew to {} leaves but the batch ends at seq {}: records were sealed that the store was not handed",
                    tree.size(),
                    new_head.seq
                )));
        }
        Ok(SealedBatch {
            head: new_head,
            records,
            outcomes,
            tree_rows,
            tree,
        })
    }

    /// [`BatchPlan::seal`] for async stores: batches of at least
    /// [`BLOCKING_SEAL_THRESHOLD`] events are sealed (hashed and signed) on
    /// tokio's blocking pool, so the runtime's workers keep serving I/O.
    pub async fn seal_off_runtime(
        &self,
        head: ChainHead,
        tree: TreeFrontier,
        present: PresentIds,
    ) -> Result<SealedBatch, SinkError> {
        if self.events.len() < BLOCKING_SEAL_THRESHOLD {
            return self.seal(head, &tree, &present);
        }
        let plan = self.clone();
        tokio::task::spawn_blocking(move || plan.seal(head, &tree, &present))
            .await
            .map_err(|error| self.sealing_task_failed(&error))?
    }

    /// A batch this chain cannot take as it stands (the store must be
    /// repaired or the chain is full): dead-lettered by the shared policy.
    fn refused(&self, detail: String) -> SinkError {
        SinkError::new(
            format!("chain {}", self.chain()),
            ErrorClass::Permanent,
            detail,
        )
    }

    /// The error of a sealing task that panicked or was cancelled: the
    /// supervisor rebuilds the sink and retries the batch.
    fn sealing_task_failed(&self, error: &tokio::task::JoinError) -> SinkError {
        SinkError::new(
            format!("chain {}", self.chain()),
            ErrorClass::Transient,
            format!("sealing task failed: {error}"),
        )
    }

    /// [`seal_streaming`](Self::seal_streaming) for async stores: the
    /// batch is hashed and signed on tokio's blocking pool, and each chunk
    /// of records is handed to `write` on the caller's task as soon as it
    /// is signed, so a remote store's inserts (and their round trips)
    /// overlap with the signing of the chunks after them. Batches under
    /// [`BLOCKING_SEAL_THRESHOLD`] events are sealed in place and written
    /// as one chunk.
    ///
    /// The first error of `write` stops the signing of chunks not yet
    /// started and is returned; chunks arrive in seq order.
    pub async fn seal_streaming_async<W, F>(
        &self,
        head: ChainHead,
        tree: TreeFrontier,
        present: PresentIds,
        mut write: W,
    ) -> Result<SealedBatch, SinkError>
    where
        W: FnMut(Vec<Record>) -> F,
        F: std::future::Future<Output = Result<(), SinkError>>,
    {
        if self.events.len() < BLOCKING_SEAL_THRESHOLD {
            let sealed = self.seal(head, &tree, &present)?;
            if sealed.appends() {
                write(sealed.records().to_vec()).await?;
            }
            return Ok(sealed);
        }
        let (sender, mut chunks) = tokio::sync::mpsc::channel::<Vec<Record>>(STREAM_DEPTH);
        let plan = self.clone();
        let stopped = format!("chain {}", self.chain());
        let sealing = tokio::task::spawn_blocking(move || {
            plan.seal_streaming(head, &tree, &present, |chunk| {
                sender.blocking_send(chunk.to_vec()).map_err(|_| {
                    SinkError::new(
                        &stopped,
                        ErrorClass::Transient,
                        "the store stopped taking records",
                    )
                })
            })
        });
        let mut written = Ok(());
        while let Some(chunk) = chunks.recv().await {
            if let Err(error) = write(chunk).await {
                written = Err(error);
                break;
            }
        }
        // With the receiver gone, the sealer's next hand-over fails and
        // it stops signing.
        drop(chunks);
        let sealed = sealing
            .await
            .map_err(|error| self.sealing_task_failed(&error));
        written?;
        sealed?
    }
}

/// A planned batch, sealed after a head.
#[derive(Debug, Clone)]
pub struct SealedBatch {
    records: Vec<Record>,
    outcomes: Vec<AppendOutcome>,
    head: ChainHead,
    tree_rows: Vec<TreeRow>,
    tree: TreeFrontier,
}

impl SealedBatch {
    /// The new records to write, in seq order.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The head after these records.
    pub fn head(&self) -> ChainHead {
        self.head
    }

    /// The tree rows the new records complete, to store with them.
    pub fn tree_rows(&self) -> &[TreeRow] {
        &self.tree_rows
    }

    /// The tree's frontier after these records, to store with them.
    pub fn tree(&self) -> &TreeFrontier {
        &self.tree
    }

    /// Whether any record is new.
    pub fn appends(&self) -> bool {
        !self.records.is_empty()
    }

    /// One outcome per event of the batch, in order.
    pub fn outcomes(&self) -> &[AppendOutcome] {
        &self.outcomes
    }

    /// The outcomes, taken.
    pub fn into_outcomes(self) -> Vec<AppendOutcome> {
        self.outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::SignMode;

    fn events(ids: &[usize]) -> Vec<AuditEvent> {
        let pool: Vec<AuditEvent> = (0..10)
            .map(|n| AuditEvent::new("t", "a", serde_json::json!(n)).unwrap())
            .collect();
        ids.iter().map(|&n| pool[n].clone()).collect()
    }

    fn frontier(size: u64) -> TreeFrontier {
        let hashes = vec![crate::Digest::ZERO; size.count_ones() as usize];
        TreeFrontier::from_parts(size, hashes).unwrap()
    }

    fn outcome(outcome: &AppendOutcome) -> (u64, bool) {
        match outcome {
            AppendOutcome::Appended(receipt) => (receipt.seq, receipt.already_present),
            AppendOutcome::DeadLettered { .. } => panic!("dead-lettered"),
        }
    }

    fn signed_plan(count: u64) -> BatchPlan {
        let signer = Arc::new(crate::keys::AuditSigner::generate());
        let sealer = Sealer::new(ChainId::default(), Some(signer), SignMode::EveryRecord);
        let batch: Vec<AuditEvent> = (0..count)
            .map(|n| AuditEvent::new("t", "a", serde_json::json!(n)).unwrap())
            .collect();
        BatchPlan::new(sealer, &batch)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_streaming_writes_every_record_in_order_as_seal_makes_it() {
        let plan = signed_plan(3_000);
        let (head, present) = (ChainHead::EMPTY, PresentIds::new());
        let mut written: Vec<Record> = Vec::new();
        let mut chunks = 0;
        let sealed = plan
            .seal_streaming_async(head, frontier(0), present.clone(), |records| {
                chunks += 1;
                written.extend(records);
                async { Ok(()) }
            })
            .await
            .unwrap();
        assert!(chunks > 1, "the batch came in {chunks} chunk(s)");
        assert_eq!(written, sealed.records());
        let again = plan.seal(head, &frontier(0), &present).unwrap();
        assert_eq!(sealed.records(), again.records());
        assert_eq!(sealed.tree().root(), again.tree().root());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_async_write_stops_the_sealing_with_its_error() {
        let plan = signed_plan(3_000);
        let mut calls = 0;
        let error = plan
            .seal_streaming_async(ChainHead::EMPTY, frontier(0), PresentIds::new(), |_| {
                calls += 1;
                async { Err(SinkError::new("store", ErrorClass::Permanent, "disk full")) }
            })
            .await
            .unwrap_err();
        assert_eq!(calls, 1);
        assert_eq!(error.class, ErrorClass::Permanent);
        assert!(error.to_string().contains("disk full"), "{error}");
    }

    #[test]
    fn repeats_present_and_fresh_events_get_their_records() {
        let sealer = Sealer::new(ChainId::default(), None, SignMode::EveryRecord);
        let batch = events(&[0, 1, 0, 2, 1]);
        let plan = BatchPlan::new(sealer, &batch);
        assert_eq!(plan.ids().count(), 3);
        let head = ChainHead {
            seq: 7,
            hash: crate::Digest([7; 32]),
        };
        let mut present = PresentIds::new();
        present.insert(batch[1].id().to_owned(), ChainHead { seq: 3, ..head });
        let sealed = plan.seal(head, &frontier(7), &present).unwrap();
        assert_eq!(sealed.records().len(), 2);
        assert_eq!(sealed.head().seq, 9);
        let seen: Vec<(u64, bool)> = sealed.outcomes().iter().map(outcome).collect();
        assert_eq!(
            seen,
            [(8, false), (3, true), (8, true), (9, false), (3, true)]
        );
    }

    #[test]
    fn a_full_chain_is_refused_not_wrapped() {
        let sealer = Sealer::new(ChainId::default(), None, SignMode::EveryRecord);
        let plan = BatchPlan::new(sealer, &events(&[0]));
        let head = ChainHead {
            seq: i64::MAX as u64,
            hash: crate::Digest::ZERO,
        };
        let error = plan
            .seal(head, &frontier(i64::MAX as u64), &PresentIds::new())
            .unwrap_err();
        assert_eq!(error.class, ErrorClass::Permanent);
        assert!(error.message.contains("chain is full"), "{error}");
    }

    #[test]
    fn a_tree_out_of_step_with_the_head_is_refused() {
        let sealer = Sealer::new(ChainId::default(), None, SignMode::EveryRecord);
        let plan = BatchPlan::new(sealer, &events(&[0]));
        let error = plan
            .seal(ChainHead::EMPTY, &frontier(3), &PresentIds::new())
            .unwrap_err();
        assert!(error.message.contains("out of step"), "{error}");
    }
}
