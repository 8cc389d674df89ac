//! `memory://NAME`: an in-process store implementing both storage traits,
//! for tests, examples and services that want a chain without a disk.
//!
//! Stores are shared by name within a process: [`MemoryStore::named`]
//! returns the same store for the same name, so a sink factory and a
//! verifier opened from one URL see the same chain.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use async_trait::async_trait;
use futures::StreamExt;

use super::{
    ChainSource, ChainStore, Inventory, RecordStream, SourceCheckpoint, SourceError, SourceRecord,
    SourceTreeCheckpoint, StoredDeadLetter, StoredTreeCheckpoint,
};
use crate::chain::tree::TreeFrontier;
use crate::chain::tree_checkpoint::merge_notes;
use crate::chain::tree_rows::{TreeGrowth, TreeRow};
use crate::chain::{BatchPlan, ChainHead, ChainId, Checkpoint, PresentIds, Record, SealedBatch};
use crate::dead_letter::DeadLetter;
use crate::shared_str::SharedStr;
use crate::sink::{ErrorClass, SinkError};

#[derive(Debug, Default)]
struct MemoryChain {
    records: Vec<Record>,
    by_id: HashMap<SharedStr, usize>,
    checkpoints: BTreeMap<u64, Checkpoint>,
    tree: TreeFrontier,
    tree_rows: HashMap<u64, Vec<u8>>,
    tree_checkpoints: BTreeMap<u64, String>,
}

impl MemoryChain {
    fn head(&self) -> ChainHead {
        self.records.last().map_or(ChainHead::EMPTY, Record::head)
    }

    fn keep_tree(&mut self, rows: &[TreeRow], tree: &TreeFrontier) {
        for row in rows {
            self.tree_rows.insert(row.seq, row.encode());
        }
        self.tree = tree.clone();
    }
}

#[derive(Debug, Default)]
struct MemoryState {
    chains: BTreeMap<ChainId, MemoryChain>,
    dead_letters: BTreeMap<u64, DeadLetter>,
    next_letter: u64,
}

/// An in-memory chain store; clones share the same chains.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    name: Arc<str>,
    state: Arc<Mutex<MemoryState>>,
}

fn registry() -> &'static Mutex<HashMap<String, MemoryStore>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, MemoryStore>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

impl MemoryStore {
    /// A new, empty store of its own (not in the registry).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: Arc::from(name.into()),
            state: Arc::default(),
        }
    }

    /// The process-wide store named `name` (created empty on first use).
    pub fn named(name: &str) -> Self {
        let mut stores = registry().lock().unwrap_or_else(|p| p.into_inner());
        stores
            .entry(name.to_owned())
            .or_insert_with(|| Self::new(name))
            .clone()
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The records of `chain`, as stored.
    pub fn records(&self, chain: &ChainId) -> Vec<Record> {
        self.lock()
            .chains
            .get(chain)
            .map(|c| c.records.clone())
            .unwrap_or_default()
    }

    /// The checkpoints of `chain`.
    pub fn stored_checkpoints(&self, chain: &ChainId) -> Vec<Checkpoint> {
        self.lock()
            .chains
            .get(chain)
            .map(|c| c.checkpoints.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every dead letter, oldest first.
    pub fn stored_dead_letters(&self) -> Vec<DeadLetter> {
        self.lock().dead_letters.values().cloned().collect()
    }

    /// Changes the stored records of `chain` behind the writer's back (for
    /// tests of the verifier: forge, delete, reorder).
    pub fn tamper(&self, chain: &ChainId, change: impl FnOnce(&mut Vec<Record>)) {
        let mut state = self.lock();
        let stored = state.chains.entry(chain.clone()).or_default();
        change(&mut stored.records);
        stored.by_id = stored
            .records
            .iter()
            .enumerate()
            .filter_map(|(index, record)| record.columns.as_ref().map(|c| (c.id.clone(), index)))
            .collect();
    }

    fn conflict(&self, seq: u64) -> SinkError {
        SinkError::new(
            ChainStore::describe(self),
            ErrorClass::Conflict,
            format!("seq {seq} was taken by another writer"),
        )
    }
}

#[async_trait]
impl ChainStore for MemoryStore {
    async fn append_once(&mut self, plan: &BatchPlan) -> Result<SealedBatch, SinkError> {
        let (head, tree, present) = {
            let state = self.lock();
            let chain = state.chains.get(plan.chain());
            let head = chain.map_or(ChainHead::EMPTY, MemoryChain::head);
            let tree = chain.map(|chain| chain.tree.clone()).unwrap_or_default();
            let present: PresentIds = chain
                .map(|chain| {
                    plan.ids()
                        .filter_map(|id| {
                            chain
                                .by_id
                                .get(id)
                                .map(|&index| (id.to_owned(), chain.records[index].head()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            (head, tree, present)
        };
        let sealed = plan.seal(head, &tree, &present)?;
        // Another writer may commit meanwhile, as between a real read and write.
        tokio::task::yield_now().await;
        let mut state = self.lock();
        let chain = state.chains.entry(plan.chain().clone()).or_default();
        if chain.head() != head {
            return Err(self.conflict(head.seq + 1));
        }
        for record in sealed.records() {
            if let Some(columns) = &record.columns {
                chain.by_id.insert(columns.id.clone(), chain.records.len());
            }
            chain.records.push(record.clone());
        }
        chain.keep_tree(sealed.tree_rows(), sealed.tree());
        Ok(sealed)
    }

    async fn import(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let mut state = self.lock();
        for record in records {
            let chain = state.chains.entry(record.chain.clone()).or_default();
            if chain.head().seq.checked_add(1) != Some(record.seq) {
                return Err(self.conflict(record.seq));
            }
            let id = crate::AuditEvent::from_canonical(&record.event_json)
                .map(|event| SharedStr::from(event.id()))
                .unwrap_or_default();
            chain.by_id.insert(id, chain.records.len());
            chain.records.push(record.clone());
            let mut growth = TreeGrowth::new(chain.tree.clone());
            growth.push(record.seq, record.event_json.as_bytes());
            let (rows, tree) = growth.finish();
            chain.keep_tree(&rows, &tree);
        }
        Ok(())
    }

    async fn dead_letter(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        let mut state = self.lock();
        for letter in letters {
            state.next_letter += 1;
            let key = state.next_letter;
            state.dead_letters.insert(key, letter.clone());
        }
        Ok(())
    }

    async fn remove_dead_letters(&mut self, keys: &[String]) -> Result<(), SinkError> {
        let mut state = self.lock();
        for key in keys {
            if let Ok(key) = key.parse::<u64>() {
                state.dead_letters.remove(&key);
            }
        }
        Ok(())
    }

    async fn write_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), SinkError> {
        let mut state = self.lock();
        let chain = state.chains.entry(checkpoint.chain.clone()).or_default();
        chain
            .checkpoints
            .entry(checkpoint.seq)
            .or_insert_with(|| checkpoint.clone());
        Ok(())
    }

    async fn write_tree_checkpoint(
        &mut self,
        chain: &ChainId,
        size: u64,
        note: &str,
    ) -> Result<(), SinkError> {
        let describe = ChainStore::describe(self);
        let mut state = self.lock();
        let chain = state.chains.entry(chain.clone()).or_default();
        let merged = match chain.tree_checkpoints.get(&size) {
            Some(stored) => merge_notes(stored, note).map_err(|error| {
                SinkError::new(describe, ErrorClass::Permanent, error.to_string())
            })?,
            None => note.to_owned(),
        };
        chain.tree_checkpoints.insert(size, merged);
        Ok(())
    }

    async fn head(&mut self, chain: &ChainId) -> Result<ChainHead, SinkError> {
        Ok(self
            .lock()
            .chains
            .get(chain)
            .map_or(ChainHead::EMPTY, MemoryChain::head))
    }

    async fn tree(&mut self, chain: &ChainId) -> Result<TreeFrontier, SinkError> {
        Ok(self
            .lock()
            .chains
            .get(chain)
            .map(|chain| chain.tree.clone())
            .unwrap_or_default())
    }

    fn describe(&self) -> String {
        format!("memory://{}", self.name)
    }
}

#[async_trait]
impl ChainSource for MemoryStore {
    fn describe(&self) -> String {
        format!("memory://{}", self.name)
    }

    async fn inventory(&self) -> Result<Inventory, SourceError> {
        let state = self.lock();
        let mut inventory = Inventory::default();
        for (chain, stored) in &state.chains {
            if !stored.records.is_empty()
                || !stored.checkpoints.is_empty()
                || !stored.tree_checkpoints.is_empty()
            {
                inventory.add_chain(chain.clone());
            }
        }
        for letter in state.dead_letters.values() {
            match ChainId::new(&letter.chain_id) {
                Ok(chain) => inventory.add_chain(chain),
                Err(error) => inventory.strays.push(super::Stray {
                    chain: format!("{:?}", letter.chain_id),
                    seq: 0,
                    detail: format!("dead letter of an invalid chain: {error}"),
                }),
            }
        }
        Ok(inventory)
    }

    async fn records(&self, chain: &ChainId, from: u64) -> Result<RecordStream<'_>, SourceError> {
        let records: Vec<Result<SourceRecord, SourceError>> = self
            .records(chain)
            .into_iter()
            .filter(|record| from <= 1 || record.seq >= from)
            .map(|record| Ok(SourceRecord::Record(record)))
            .collect();
        Ok(futures::stream::iter(records).boxed())
    }

    async fn checkpoints(&self, chain: &ChainId) -> Result<Vec<SourceCheckpoint>, SourceError> {
        Ok(self.stored_checkpoints(chain).into_iter().map(Ok).collect())
    }

    async fn tree_checkpoints(
        &self,
        chain: &ChainId,
    ) -> Result<Vec<SourceTreeCheckpoint>, SourceError> {
        Ok(self
            .lock()
            .chains
            .get(chain)
            .map(|chain| {
                chain
                    .tree_checkpoints
                    .iter()
                    .map(|(&size, note)| {
                        Ok(StoredTreeCheckpoint {
                            size,
                            note: note.clone(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn tree_rows(
        &self,
        chain: &ChainId,
        seqs: &[u64],
    ) -> Result<Option<super::StoredTreeRows>, SourceError> {
        let state = self.lock();
        let Some(chain) = state.chains.get(chain) else {
            return Ok(Some(Vec::new()));
        };
        Ok(Some(
            seqs.iter()
                .filter_map(|seq| chain.tree_rows.get(seq).map(|row| (*seq, row.clone())))
                .collect(),
        ))
    }

    async fn dead_letters(
        &self,
        chain: Option<&ChainId>,
    ) -> Result<Vec<StoredDeadLetter>, SourceError> {
        Ok(self
            .lock()
            .dead_letters
            .iter()
            .filter(|(_, letter)| chain.is_none_or(|chain| letter.chain_id == chain.as_str()))
            .map(|(key, letter)| StoredDeadLetter {
                key: key.to_string(),
                letter: letter.clone(),
            })
            .collect())
    }

    async fn count_records(&self) -> Result<Option<u64>, SourceError> {
        let state = self.lock();
        Ok(Some(
            state.chains.values().map(|c| c.records.len() as u64).sum(),
        ))
    }
}
