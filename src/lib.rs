//! # deferred-audit
//!
//! Durable, tamper-evident audit logging for Rust services: producers
//! submit events to a non-blocking queue, a supervised drainer appends them
//! in batches to a signed SHA-256 hash chain, with dead letters for what
//! cannot be appended. The format is specified in `docs/FORMAT.md`.
//!
//! This facade re-exports [`audit_core`] (as [`core`]) and, per cargo
//! feature, the backends:
//!
//! | feature | module | backend |
//! |---|---|---|
//! | `sqlite` (default) | `sqlite` | the embedded SQLite chain sink |
//! | `postgres` | `postgres` | the PostgreSQL chain sink |
//! | `s3` | `s3` | the JSONL archive on any object store |
//!
//! See `examples/governance_hook.rs` for a storage layer whose governance
//! hook audits refusals from inside its write lock.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub use audit_core as core;
pub use audit_core::{AuditEvent, ChainHead, ChainId, Checkpoint, Digest, Record};

/// The embedded SQLite chain sink (feature `sqlite`).
#[cfg(feature = "sqlite")]
pub use audit_sqlite as sqlite;
