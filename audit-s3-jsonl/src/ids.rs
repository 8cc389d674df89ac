//! The bounded index of event ids this process has seen in a chain.
//!
//! Event ids are the idempotency key: an event whose id is already in the
//! chain is answered with its existing record instead of being appended
//! again. An object store has no unique index, so the archive remembers the
//! ids of the records it wrote or read (its own segments, and every segment
//! of other writers it read while catching up with the head), up to a
//! capacity, oldest forgotten first.
//!
//! What this detects: a retried batch (a supervisor retry after a lost
//! acknowledgement, a journal replay) whose events are among the last
//! `capacity` records this process knows. What it does not: an id written
//! by another process before this one started (other than in the last
//! segment, read at open), or one older than the capacity. The verifier
//! reports such duplicates (`DuplicateEventId`).

use std::collections::{HashMap, VecDeque};

use audit_core::{ChainHead, Record};

/// Ids of recent records and where they are.
#[derive(Debug, Clone)]
pub struct RecentIds {
    capacity: usize,
    heads: HashMap<String, ChainHead>,
    order: VecDeque<String>,
}

impl RecentIds {
    /// An empty index holding at most `capacity` ids.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            heads: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The record of `id`, when known.
    pub fn get(&self, id: &str) -> Option<ChainHead> {
        self.heads.get(id).copied()
    }

    /// Remembers the ids of `records` (their event ids are parsed from `E`).
    pub fn insert_records(&mut self, records: &[Record]) {
        for record in records {
            if let Some(id) = event_id(&record.event_json) {
                self.insert(id, record.head());
            }
        }
    }

    /// Remembers one id.
    pub fn insert(&mut self, id: String, head: ChainHead) {
        if self.capacity == 0 {
            return;
        }
        if self.heads.insert(id.clone(), head).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.heads.remove(&oldest);
            }
        }
    }

    /// How many ids are held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

fn event_id(event_json: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: String,
    }
    serde_json::from_str::<Id>(event_json)
        .ok()
        .map(|parsed| parsed.id)
}
