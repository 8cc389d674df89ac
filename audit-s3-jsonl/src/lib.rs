//! # audit-s3-jsonl
//!
//! The forensic archive of `deferred-audit` chains: JSONL segments in any
//! [`object_store`] backend (Amazon S3 and S3-compatible servers, a local
//! folder, memory), in the layout of FORMAT.md section 7, and the place
//! where checkpoints are published off-box.
//!
//! This crate is storage code only: batch planning, sealing, verification,
//! export and dead-letter replay are `audit-core`'s, over the two storage
//! traits implemented here.
//!
//! - [`write`](mod@write): [`ObjectStoreChain`], the write side
//!   ([`ChainStore`](audit_core::store::ChainStore)): one create-only
//!   segment object per batch, idempotent for any event id anywhere in the
//!   chain ([`ids`]); [`ArchiveSink`] (the core's `ChainWriter` over it),
//!   [`open_sink`] and [`ArchiveFactory`] for the supervisor;
//! - [`read`]: [`ArchiveSource`], the read side
//!   ([`ChainSource`](audit_core::store::ChainSource)): every object under
//!   the prefix, as stored, for `audit_core::verification::verify_source`,
//!   `audit_core::export` and `audit_core::replay`;
//! - [`publisher`]: [`ObjectStoreCheckpointPublisher`] publishes any chain
//!   sink's checkpoints to a prefix;
//! - [`probe`]: the check that the store refuses a second create-only put;
//! - [`url`]: `s3://BUCKET/PREFIX` and `file:///DIR`;
//! - [`layout`], [`segment`]: the object layout and the segment codec;
//!   [`error`]: errors and their classification for the retry policy.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use audit_core::chain_writer::ChainSinkOptions;
//! use audit_core::keys::Keyring;
//! use audit_core::sink::AuditSink;
//! use audit_core::verification::{SourceVerifyOptions, verify_source};
//! use audit_core::AuditEvent;
//! use audit_s3_jsonl::{ArchiveOptions, ArchiveSource, open_sink};
//! use object_store::{ObjectStore, memory::InMemory, path::Path};
//!
//! let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
//! let prefix = Path::from("archive");
//! let mut sink = open_sink(store.clone(), prefix.clone(), ChainSinkOptions::unsigned(), ArchiveOptions::default()).await?;
//! sink.append_batch(&[AuditEvent::new("t", "a", serde_json::json!(1)).unwrap()]).await.unwrap();
//! let source = ArchiveSource::new(store, prefix);
//! let report = verify_source(&source, &Keyring::new(), SourceVerifyOptions::default()).await.unwrap();
//! assert!(report.is_ok());
//! assert_eq!(report.records, 1);
//! # Ok::<(), audit_s3_jsonl::ArchiveError>(())
//! # }).unwrap();
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod error;
pub mod ids;
pub mod layout;
pub mod probe;
pub mod publisher;
pub mod read;
pub mod segment;
pub mod url;
pub mod write;

pub use error::ArchiveError;
pub use publisher::ObjectStoreCheckpointPublisher;
pub use read::ArchiveSource;
pub use write::{
    ArchiveFactory, ArchiveOptions, ArchiveSink, ArchiveState, ObjectStoreChain, open_sink,
};
