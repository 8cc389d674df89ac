//! [`MemoryState`]: tree heads in a map behind a mutex, for tests and
//! throwaway witnesses.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use super::{StateError, Swap, WitnessState};
use crate::protocol::TreeHead;

/// Tree heads in the process's memory, lost when it exits.
#[derive(Debug, Default)]
pub struct MemoryState {
    heads: Mutex<HashMap<String, TreeHead>>,
}

impl MemoryState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl WitnessState for MemoryState {
    async fn latest(&self, origin: &str) -> Result<Option<TreeHead>, StateError> {
        // The critical sections cannot panic half-way: a poisoned map is whole.
        let heads = self.heads.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(heads.get(origin).copied())
    }

    async fn compare_and_swap(
        &self,
        origin: &str,
        expected: Option<TreeHead>,
        new: TreeHead,
    ) -> Result<Swap, StateError> {
        let mut heads = self.heads.lock().unwrap_or_else(PoisonError::into_inner);
        let current = heads.get(origin).copied();
        if current != expected {
            return Ok(Swap::Conflict { current });
        }
        heads.insert(origin.to_owned(), new);
        Ok(Swap::Stored)
    }

    fn describe(&self) -> String {
        "memory://".into()
    }
}
