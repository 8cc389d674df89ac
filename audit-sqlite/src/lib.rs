//! # audit-sqlite
//!
//! The embedded default backend of `deferred-audit`: a FORMAT.md v1 chain in
//! one SQLite file (bundled SQLite, WAL, `synchronous=FULL` by default).
//!
//! - [`schema`]: the tables of FORMAT.md section 6, how a file is
//!   recognised, created and migrated (foreign or newer files are refused,
//!   untouched);
//! - [`store`]: [`SqliteStore`], the [`ChainStore`](audit_core::chain_writer::ChainStore)
//!   of one file, and [`SqliteSink`], the sink the pipeline drains into;
//! - [`read`]: [`SqliteSource`], the read side (every chain, every row
//!   as stored) that the core's verifier, export and replay read;
//! - [`error`]: [`SqliteError`], naming the file and what to do.
//!
//! ```
//! use audit_core::chain_writer::ChainSinkOptions;
//! use audit_core::sink::AuditSink;
//! use audit_core::verification::{SourceVerifyOptions, verify_source};
//! use audit_core::{AuditEvent, keys::Keyring};
//! use audit_sqlite::{SqliteOptions, SqliteSource, open_sink};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("audit.db");
//! let mut sink = open_sink(&path, ChainSinkOptions::unsigned(), SqliteOptions::default()).await?;
//! let event = AuditEvent::new("governance.refusal", "agent-7", serde_json::json!({"rule": "R001"}))?;
//! sink.append_batch(&[event]).await?;
//! let source = SqliteSource::open(&path)?;
//! let report = verify_source(&source, &Keyring::new(), SourceVerifyOptions::default()).await?;
//! assert!(report.is_ok());
//! assert_eq!(report.records, 1);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod error;
pub mod read;
pub mod schema;
pub mod store;
pub mod tree;
mod wal_checkpointer;

pub use error::{SqliteError, classify};
pub use read::SqliteSource;
pub use store::{
    Durability, SqliteOptions, SqliteSink, SqliteStore, insert_sealed_blocking, open_sink,
    sink_factory,
};
