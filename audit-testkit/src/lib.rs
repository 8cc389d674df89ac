//! # audit-testkit
//!
//! What tests of `deferred-audit` and of its users need:
//!
//! - [`sinks`]: a recording sink with assertions, fault-injecting sinks
//!   (failing, panicking, slow, flaky) and an in-memory chain that seals
//!   real records under the shared chain-writer policy;
//! - [`strategies`]: proptest strategies for payloads, events and chain names;
//! - [`object_stores`]: fault-injecting `object_store` wrappers;
//! - [`servers`]: throwaway PostgreSQL and S3 (moto) servers for tests;
//! - [`vectors`]: the workspace's shared FORMAT.md test vectors;
//! - [`conformance`]: the suite every [`AuditSink`](audit_core::sink::AuditSink)
//!   implementation must pass, run with the sink's own factory;
//! - [`hostile`]: the hostile-chain suite every backend's store must fail
//!   the same way, through the core's one verifier.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod conformance;
pub mod go_checker;
pub mod hostile;
pub mod object_stores;
pub mod servers;
pub mod sinks;
pub mod strategies;
pub mod vectors;

pub use sinks::{
    CallCounter, FailingSink, FlakySink, MemoryChain, MemoryChainSink, MemoryChainStore,
    PanickingSink, Recording, RecordingSink, SlowSink,
};

/// Every record of every chain of `source`, in seq order per chain.
///
/// # Errors
/// When the store cannot be read or holds a row that is not a record
/// (what is wrong, with its seq).
pub async fn read_all_records(
    source: &dyn audit_core::store::ChainSource,
) -> Result<Vec<audit_core::Record>, String> {
    use futures::StreamExt as _;
    let inventory = source
        .inventory()
        .await
        .map_err(|error| error.to_string())?;
    let mut all = Vec::new();
    for chain in &inventory.chains {
        let mut rows = source
            .records(chain, 1)
            .await
            .map_err(|error| error.to_string())?;
        while let Some(row) = rows.next().await {
            match row.map_err(|error| error.to_string())? {
                audit_core::store::SourceRecord::Record(record) => all.push(record),
                audit_core::store::SourceRecord::Malformed { seq, detail } => {
                    return Err(format!("chain {chain} seq {seq}: {detail}"));
                }
            }
        }
    }
    Ok(all)
}
