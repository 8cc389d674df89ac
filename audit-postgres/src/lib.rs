//! # audit-postgres
//!
//! The PostgreSQL storage of `deferred-audit`: one FORMAT.md v1 chain
//! shared by many writer processes on many machines. Storage only: the
//! batch plan, sealing, verification, export and dead-letter replay are
//! `audit-core`'s, and run over this crate's two implementations of the
//! core's storage traits.
//!
//! - [`PostgresStore`] implements the write side,
//!   [`ChainStore`](audit_core::store::ChainStore): one append attempt is
//!   one transaction on a locked head row ([`write`](mod@write) says why) and one
//!   binary `COPY … FROM STDIN` per signed chunk of records.
//!   [`PostgresSink`] (= `ChainWriter<PostgresStore>`) is the
//!   [`AuditSink`](audit_core::sink::AuditSink); [`sink_factory`] gives the
//!   pipeline's supervisor a fresh connection per (re)start.
//! - [`PostgresSource`] ([`open_source`]) implements the read side,
//!   [`ChainSource`](audit_core::store::ChainSource): every chain of every
//!   table, every stored row as stored ([`read`](mod@read)).
//! - [`schema`]: the tables of FORMAT.md section 6, created and migrated by
//!   writers on connect; another format or a newer version is refused
//!   untouched.
//! - [`connect`]: URLs, TLS (`sslmode`, `sslrootcert`; rustls behind the
//!   crate feature `tls`), timeouts. [`error`]: typed errors classified
//!   by SQLSTATE; a lost connection is transient, so the supervisor
//!   reconnects through [`sink_factory`] with backoff.
//!
//! ```no_run
//! use audit_core::chain_writer::ChainSinkOptions;
//! use audit_core::keys::Keyring;
//! use audit_core::sink::AuditSink;
//! use audit_core::verification::{SourceVerifyOptions, verify_source};
//! use audit_core::AuditEvent;
//! use audit_postgres::{PostgresOptions, PostgresSink, PostgresSinkExt, open_source};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let url = "postgres://audit@db.example/audit?sslmode=disable";
//! let mut sink = PostgresSink::connect(url, ChainSinkOptions::unsigned(), PostgresOptions::default()).await?;
//! let event = AuditEvent::new("governance.refusal", "agent:a", serde_json::json!({"why": "policy"}))?;
//! sink.append_batch(&[event]).await?;
//!
//! let source = open_source(url, PostgresOptions::default()).await?;
//! let report = verify_source(&source, &Keyring::new(), SourceVerifyOptions::default()).await?;
//! assert!(report.is_ok());
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod connect;
pub mod error;
pub mod read;
pub mod schema;
pub mod tree;
pub mod write;

use std::future::Future;

use audit_core::chain_writer::{ChainSinkOptions, ChainWriter};
use audit_core::sink::{SinkError, SinkFactory};

#[cfg(feature = "tls")]
pub use connect::rustls_connector;
pub use connect::{
    ConnectSettings, PostgresOptions, RootCerts, TlsMode, TlsSettings, describe, parse_connect_url,
    parse_url,
};
pub use error::PostgresError;
pub use read::{PostgresSource, open_source};
pub use write::PostgresStore;

/// The PostgreSQL chain sink: the shared chain policy over a [`PostgresStore`].
pub type PostgresSink = ChainWriter<PostgresStore>;

/// `PostgresSink::connect(url, chain_options, postgres_options)`.
pub trait PostgresSinkExt: Sized {
    /// Connects to `url` (TLS as its `sslmode` says; see
    /// [`PostgresStore::connect`]), checks
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
/// connection (this is how a lost connection is re-established), with TLS
/// when the URL's `sslmode` asks for it (see [`connect`]).
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
