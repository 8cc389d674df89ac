//! What a service needs to keep and verify an audit chain, in one `use`.
//!
//! ```
//! use deferred_audit::prelude::*;
//! use std::sync::Arc;
//! use std::time::Duration;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A store named by URL (here in memory; `sqlite://audit.db` on disk),
//! // every record signed.
//! let url: StoreUrl = "memory://prelude-doc".parse()?;
//! let signer = Arc::new(AuditSigner::generate());
//! let factory = sink_factory(&url, ChainSinkOptions::signed(signer.clone()))?;
//! let pipeline = AuditPipeline::builder(move || {
//!     let factory = factory.clone();
//!     async move { factory.create().await }
//! })
//! .backpressure(Backpressure::Unbounded)
//! .spawn();
//!
//! let audit: AuditQueue = pipeline.queue();
//! audit.submit(AuditEvent::new("governance.refusal", "agent:alice", serde_json::json!({"rule": "R001"}))?);
//! let report = pipeline.shutdown(Duration::from_secs(5)).await;
//! assert!(report.is_clean(), "{report:?}");
//!
//! // Anyone holding the public key can verify the chain.
//! let mut keyring = Keyring::new();
//! keyring.insert(signer.public_key());
//! let source = open_source(&url).await?;
//! let verified = verify_source(source.as_ref(), &keyring, SourceVerifyOptions::default()).await?;
//! assert!(verified.is_ok());
//! assert_eq!(verified.records, 1);
//! # Ok(()) }
//! ```
//!
//! With the `tracing` feature (on by default) it also brings
//! [`AuditLayer`], which turns `tracing` events of the `audit` target into
//! audit events.

pub use audit_core::AuditEvent;
pub use audit_core::chain_writer::ChainSinkOptions;
pub use audit_core::keys::{AuditSigner, Keyring};
pub use audit_core::pipeline::{
    AuditPipeline, AuditQueue, Backpressure, ShutdownReport, SubmitError,
};
pub use audit_core::sink::{AuditSink, SinkFactory};
pub use audit_core::store::{ChainSource, StoreUrl};
pub use audit_core::verification::{SourceVerifyOptions, verify_source};

pub use crate::open::{open_source, sink_factory};

#[cfg(feature = "tracing")]
pub use crate::tracing_layer::AuditLayer;
