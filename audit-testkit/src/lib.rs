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
//!   implementation must pass, run with the sink's own factory.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod conformance;
pub mod object_stores;
pub mod servers;
pub mod sinks;
pub mod strategies;
pub mod vectors;

pub use sinks::{
    CallCounter, FailingSink, FlakySink, MemoryChain, MemoryChainSink, MemoryChainStore,
    PanickingSink, Recording, RecordingSink, SlowSink,
};
