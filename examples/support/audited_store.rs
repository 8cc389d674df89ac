//! What the store examples (`postgres_store`, `s3_archive`) share: drain a
//! few refusals through a pipeline into a store, verify the chain with the
//! public key alone, and prove one event's inclusion against the signed
//! tree checkpoint. The facade's tests run the same code against a real
//! PostgreSQL server and a real S3-compatible server.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use deferred_audit::core::chain::{ChainId, VerifyReport};
use deferred_audit::core::proving::{newest_tree_checkpoint, prove_inclusion};
use deferred_audit::prelude::*;

/// What one run wrote and found.
#[derive(Debug)]
pub struct Outcome {
    /// Events the pipeline appended.
    pub appended: u64,
    /// The verification of the whole store.
    pub report: VerifyReport,
    /// The tlog-proof of the first event's inclusion (FORMAT.md 8.3).
    pub proof: String,
}

/// A refusal of `agent`'s request `n`, with a typed payload.
#[derive(serde::Serialize)]
struct Refusal<'a> {
    rule: &'a str,
    action: &'a str,
    path: String,
    request: u64,
}

/// Submits `events` refusals through a pipeline over `factory` and shuts
/// it down (which writes the final checkpoints); returns how many were
/// appended.
pub async fn audit_into(
    factory: impl SinkFactory,
    events: u64,
) -> Result<u64, Box<dyn std::error::Error>> {
    let pipeline = AuditPipeline::builder(factory).name("example").spawn();
    let queue = pipeline.queue();
    for n in 0..events {
        let event = AuditEvent::from_serialize(
            "governance.refusal",
            "agent:example",
            &Refusal {
                rule: "no-secrets",
                action: "write",
                path: format!("secrets/{n}.env"),
                request: n,
            },
        )?;
        // Fire and forget: the request path never waits for the store.
        queue.submit(event);
    }
    drop(queue);
    let shutdown = pipeline.shutdown(Duration::from_secs(60)).await;
    if !shutdown.is_clean() {
        return Err(format!("the pipeline did not drain cleanly: {shutdown:?}").into());
    }
    Ok(shutdown.metrics.appended)
}

/// Verifies every chain of `source` with `signer`'s public key alone and
/// proves the first record's inclusion against the newest tree checkpoint.
pub async fn verify_and_prove(
    source: &dyn ChainSource,
    signer: &AuditSigner,
    appended: u64,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    let report = verify_source(source, &keyring, SourceVerifyOptions::default()).await?;
    let chain = ChainId::default();
    let checkpoint = newest_tree_checkpoint(source, &chain).await?;
    let proof = prove_inclusion(source, &chain, 1, &checkpoint).await?;
    Ok(Outcome {
        appended,
        report,
        proof: proof.to_string(),
    })
}

/// The signer of the examples: a fresh key (a service loads its own with
/// `AuditSigner::load`, from a file only its user can read).
pub fn signer() -> Arc<AuditSigner> {
    Arc::new(AuditSigner::generate())
}
