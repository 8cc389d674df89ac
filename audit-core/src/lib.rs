//! # audit-core
//!
//! The core of `deferred-audit`: durable, tamper-evident audit logging for
//! services that must neither block on audit I/O nor lose a record silently.
//!
//! - [`event`]: the audit event, its validation and canonical bytes;
//! - [`canonical`]: RFC 8785 canonical JSON and the number rule;
//! - [`chain`]: records, sealing, checkpoints and verification (FORMAT.md v1);
//! - [`keys`]: Ed25519 keys, PEM files, key ids and keyrings;
//! - [`journal`]: the durable admission journal;
//! - [`jsonl`]: the JSONL line codec of the object-store layout;
//! - [`sink`]: the async sink contract;
//! - [`store`]: the storage traits backends implement (write side
//!   [`store::ChainStore`], read side [`store::ChainSource`]) and store URLs;
//! - [`chain_writer`]: the policy shared by chain sinks over a [`chain_writer::ChainStore`];
//! - [`dead_letter`]: dead letters and the fallback file;
//! - [`retry`]: capped exponential backoff;
//! - [`pipeline`]: the queue, the batching drainer and its supervisor;
//! - [`metrics`]: pipeline counters and the accounting invariant;
//! - [`tee`]: a sink that also writes to mirrors;
//! - [`verification`], [`export`], [`replay`]: the one verifier, export and
//!   dead-letter replay, over any store.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod canonical;
pub mod chain;
pub mod chain_writer;
pub mod dead_letter;
pub mod digest;
pub mod error;
pub mod event;
pub mod export;
pub mod journal;
pub mod jsonl;
pub mod keys;
pub mod metrics;
pub mod pipeline;
pub mod proving;
pub mod replay;
pub mod retry;
pub mod shared_str;
pub mod sink;
pub mod store;
pub mod tee;
pub mod verification;

pub use chain::{ChainHead, ChainId, Checkpoint, Record};
pub use digest::Digest;
pub use error::{EventError, KeyError};
pub use event::AuditEvent;
pub use shared_str::SharedStr;
