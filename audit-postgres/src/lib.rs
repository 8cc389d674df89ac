//! # audit-postgres
//!
//! The PostgreSQL chain sink of `deferred-audit`: one FORMAT.md v1 chain
//! shared by many writer processes on many machines.
//!
//! - [`PostgresSink`] (= `ChainWriter<PostgresStore>`) is the
//!   [`AuditSink`](audit_core::sink::AuditSink): one batch is one
//!   transaction and one `INSERT … SELECT … FROM unnest(…)` statement;
//!   writers of a chain take turns on a locked head row ([`append`] says
//!   why); event ids are idempotent.
//! - [`schema`]: the tables of FORMAT.md section 6, created and migrated on
//!   connect; another format or a newer version is refused untouched.
//! - [`connect`]: URLs, TLS, timeouts. [`error`]: typed errors classified
//!   by SQLSTATE; a lost connection is transient, so the pipeline's
//!   supervisor reconnects through [`sink_factory`] with backoff.
//! - [`dead_letters`]: listing and transactional replay of
//!   `audit_dead_letters`.
//! - [`verify`]: constant-memory verification ([`verify_postgres`]) and a
//!   read-only [`PostgresReader`] for export.
//!
//! ```no_run
//! use audit_core::chain_writer::ChainSinkOptions;
//! use audit_core::sink::AuditSink;
//! use audit_core::AuditEvent;
//! use audit_postgres::{PostgresOptions, PostgresSink, PostgresSinkExt};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let url = "postgres://audit@db.example/audit?sslmode=disable";
//! let mut sink = PostgresSink::connect(url, ChainSinkOptions::default(), PostgresOptions::default()).await?;
//! let event = AuditEvent::new("governance.refusal", "agent:a", serde_json::json!({"why": "policy"}))?;
//! let outcomes = sink.append_batch(&[event]).await?;
//! # drop(outcomes);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod append;
pub mod connect;
pub mod dead_letters;
pub mod error;
pub mod schema;
mod statements;
pub mod store;
pub mod verify;

use std::future::Future;

use audit_core::chain_writer::{ChainSinkOptions, ChainWriter};
use audit_core::sink::{SinkError, SinkFactory};

pub use connect::{PostgresOptions, describe, parse_url};
pub use dead_letters::{ReplayReport, StoredDeadLetter};
pub use error::PostgresError;
pub use store::PostgresStore;
pub use verify::{PostgresReader, StoredRecord, verify_postgres};

/// The PostgreSQL chain sink: the shared chain policy over a [`PostgresStore`].
pub type PostgresSink = ChainWriter<PostgresStore>;

/// `PostgresSink::connect(url, chain_options, postgres_options)`.
pub trait PostgresSinkExt: Sized {
    /// Connects to `url` (no TLS; see [`PostgresStore::connect`]), checks
    /// or creates the schema, and wraps the store in the chain policy.
    fn connect(
        url: &str,
        chain: ChainSinkOptions,
        options: PostgresOptions,
    ) -> impl Future<Output = Result<Self, PostgresError>> + Send;
}

impl PostgresSinkExt for PostgresSink {
    async fn connect(
        url: &str,
        chain: ChainSinkOptions,
        options: PostgresOptions,
    ) -> Result<Self, PostgresError> {
        let store = PostgresStore::connect(url, options).await?;
        Ok(ChainWriter::new(store, chain))
    }
}

/// A factory for the pipeline's supervisor: each call opens a fresh
/// connection (this is how a lost connection is re-established).
pub fn sink_factory(
    url: impl Into<String>,
    chain: ChainSinkOptions,
    options: PostgresOptions,
) -> impl SinkFactory {
    let url: String = url.into();
    move || {
        let url = url.clone();
        let chain = chain.clone();
        let options = options.clone();
        async move {
            PostgresSink::connect(&url, chain, options)
                .await
                .map_err(SinkError::from)
        }
    }
}
