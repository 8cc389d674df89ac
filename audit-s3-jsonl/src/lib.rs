//! # audit-s3-jsonl
//!
//! The forensic archive of `deferred-audit` chains: JSONL segments in any
//! [`object_store`] backend (Amazon S3 and S3-compatible servers, a local
//! folder, memory), in the layout of FORMAT.md section 7, and the place
//! where checkpoints are published off-box.
//!
//! - [`ArchiveSink`]: an `AuditSink` writing one create-only segment object
//!   per batch ([`store`]), after a probe that the store enforces
//!   create-only puts ([`probe`]); [`ArchiveFactory`] builds them for the
//!   supervisor;
//! - [`ObjectStoreCheckpointPublisher`]: publishes any chain sink's
//!   checkpoints to a prefix ([`publisher`]), read back with
//!   [`read_checkpoints`];
//! - [`verify::verify_archive`]: streaming verification of a prefix;
//! - [`url::open_store_url`]: `s3://BUCKET/PREFIX` and `file:///DIR`;
//! - [`layout`], [`segment`], [`checkpoints`], [`dead_letters`], [`ids`]:
//!   the object layout and its codecs; [`error`]: errors and their
//!   classification for the retry policy.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod checkpoints;
pub mod dead_letters;
pub mod error;
pub mod ids;
pub mod layout;
pub mod probe;
pub mod publisher;
pub mod segment;
pub mod store;
pub mod url;
pub mod verify;

pub use checkpoints::read_checkpoints;
pub use error::ArchiveError;
pub use publisher::ObjectStoreCheckpointPublisher;
pub use store::{ArchiveFactory, ArchiveOptions, ArchiveSink, ArchiveState, ObjectStoreChain};
