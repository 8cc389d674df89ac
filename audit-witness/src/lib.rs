//! # audit-witness
//!
//! Witnesses for deferred-audit's tree checkpoints (FORMAT.md section 8.4),
//! in the bytes of C2SP `tlog-witness` and `tlog-cosignature`: a witness
//! keeps the latest tree head it cosigned for each log, cosigns a new head
//! only when given a consistency proof from that one, and refuses rollbacks
//! and forks. A log that gathers cosignatures from a quorum of independent
//! witnesses can no longer show one history to some and another to others.
//!
//! - [`protocol`]: the request checks of `add-checkpoint`, with no I/O, and
//!   the refusals with their HTTP status codes;
//! - [`state`]: where a witness keeps its per-log tree heads, with an atomic
//!   compare-and-swap (SQLite, PostgreSQL, memory), opened by URL;
//! - [`server`]: the HTTP server (axum on hyper), with body, proof and time
//!   limits;
//! - [`client`]: one witness over HTTP ([`WitnessClient`]), with a typed
//!   error per status and the returned cosignatures verified;
//! - [`witnesses`]: a set of witnesses with a quorum, a minimum interval
//!   per witness, jittered backoff and per-witness outcomes
//!   ([`Witnesses::cosign`]).
//!
//! ```
//! use std::sync::Arc;
//! use audit_core::chain::note::Vkey;
//! use audit_core::chain::tree::{leaf_hash, TreeFrontier};
//! use audit_core::chain::tree_checkpoint::TreeCheckpoint;
//! use audit_core::Digest;
//! use audit_witness::{StoredHashes, WitnessClient, WitnessConfig, WitnessServer, Witnesses};
//! use audit_witness::state::MemoryState;
//! use ed25519_dalek::SigningKey;
//!
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! // A log of three records, and its signed tree checkpoint.
//! let log_key = SigningKey::from_bytes(&[1; 32]);
//! let mut stored: Vec<Digest> = Vec::new();
//! let mut frontier = TreeFrontier::new();
//! for n in 0..3u8 {
//!     stored.extend(frontier.push_stored(leaf_hash(&[n])));
//! }
//! let checkpoint = TreeCheckpoint::new("example.org/log", 3, frontier.root())?;
//! let note = checkpoint.sign(&log_key)?;
//!
//! // A witness that knows the log's key, on a loopback port.
//! let config = WitnessConfig::new(
//!     "witness.example/w1",
//!     SigningKey::from_bytes(&[2; 32]),
//!     vec![checkpoint.log_vkey(&log_key.verifying_key())?],
//!     Arc::new(MemoryState::new()),
//! )?;
//! let witness = WitnessServer::bind(config, "127.0.0.1:0".parse()?).await?;
//!
//! // The log asks it (a quorum of one) to cosign.
//! let client = WitnessClient::new(&witness.url(), witness.vkey().clone())?;
//! let witnesses = Witnesses::new(vec![client], 1)?;
//! let cosigned = witnesses.cosign(&note, &StoredHashes(stored)).await;
//! assert!(cosigned.quorum_met());
//! assert_eq!(cosigned.note.verify(&[witness.vkey().clone()])?.len(), 1);
//! witness.shutdown(std::time::Duration::from_secs(5)).await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A witness's key is an audit-core [`AuditSigner`](audit_core::keys::AuditSigner)
//! (the same PKCS#8 PEM files, loaded with the same permission check), or
//! any [`NoteSigningKey`](audit_core::chain::note::NoteSigningKey). Give a
//! witness a key of its own: an Ed25519 cosignature does not commit to the
//! witness's name, so one key must never serve two witnesses
//! (tlog-cosignature).
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod client;
pub mod protocol;
pub mod server;
pub mod state;
pub mod witnesses;

pub use client::{WitnessClient, WitnessError};
pub use protocol::{Refusal, TreeHead, Witness};
pub use server::{ServerError, WitnessConfig, WitnessHandle, WitnessLimits, WitnessServer};
pub use state::{StateError, WitnessState, open_state};
pub use witnesses::{
    ConsistencySource, Cosigned, OutcomeKind, ReaderSource, SkipReason, SourceError, StoredHashes,
    WitnessOptions, WitnessOutcome, WitnessSetError, Witnesses,
};
