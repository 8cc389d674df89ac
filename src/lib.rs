#![doc = include_str!("../README.md")]
//!
//! ## Cargo features
//!
//! - `sqlite` (default): the embedded SQLite chain sink, as [`sqlite`];
//! - `postgres`: the PostgreSQL chain sink, as [`postgres`];
//! - `s3`: the JSONL archive on any `object_store` backend, as [`s3`];
//! - `tracing` (default): [`tracing_layer::AuditLayer`], a
//!   `tracing-subscriber` layer turning events of a target into audit events.
//!
//! [`prelude`] brings what a service needs in one `use`.
//!
//! [`open`] opens any store from its URL (`sqlite://`, `postgres://`,
//! `s3://`, `file://`, `memory://`) as a sink factory or a chain source.
//!
//! Everything else (events, the chain format, keys, the pipeline, metrics,
//! the tee) comes from [`core`], with the most used items re-exported here.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod open;
pub mod prelude;
#[cfg(feature = "tracing")]
pub mod tracing_layer;

pub use audit_core as core;
pub use audit_core::metrics::{MetricsSnapshot, PipelineMetrics};
pub use audit_core::pipeline::{
    AuditPipeline, AuditQueue, Backpressure, ShutdownReport, SubmitError, close_and_flush,
};
pub use audit_core::sink::{AppendOutcome, AuditSink, Receipt, SinkError, SinkFactory};
pub use audit_core::store::{ChainSource, ChainStore, StoreUrl};
pub use audit_core::tee::Tee;
pub use audit_core::{AuditEvent, ChainId};
pub use open::{
    OpenError, StoreSinkFactory, checkpoint_publisher, open_chain_store, open_source, open_writer,
    sink_factory,
};
#[cfg(feature = "tracing")]
pub use tracing_layer::AuditLayer;

/// The embedded SQLite chain sink (feature `sqlite`).
#[cfg(feature = "sqlite")]
pub use audit_sqlite as sqlite;

/// The PostgreSQL chain sink (feature `postgres`).
#[cfg(feature = "postgres")]
pub use audit_postgres as postgres;

/// Witnesses: the writer's cosigner and the witness server (feature `witness`).
#[cfg(feature = "witness")]
pub mod witness;

/// The JSONL archive on object stores (feature `s3`).
#[cfg(feature = "s3")]
pub use audit_s3_jsonl as s3;
