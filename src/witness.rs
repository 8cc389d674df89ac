//! Witnesses for a chain writer (FORMAT.md section 8.4): a
//! [`Cosigner`] that asks a set of C2SP tlog-witness servers
//! ([`audit_witness::Witnesses`]) to cosign each tree checkpoint, with the
//! consistency proofs read from the chain's own store. The writer runs it
//! off its append path and stores the cosigned note when it is ready.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::{Arc, Mutex};
//! use deferred_audit::core::chain_writer::ChainSinkOptions;
//! use deferred_audit::core::keys::AuditSigner;
//! use deferred_audit::witness::{WitnessClient, Witnesses, witness_cosigner};
//! use deferred_audit::{StoreUrl, sink_factory};
//!
//! let store: StoreUrl = "sqlite:///var/lib/audit/audit.db".parse()?;
//! let witnesses = Witnesses::new(
//!     vec![
//!         WitnessClient::parse("https://w1.example/witness,w1.example+1234abcd+BA…")?,
//!         WitnessClient::parse("https://w2.example/witness,w2.example+5678ef01+BA…")?,
//!     ],
//!     2,
//! )?;
//! let options = ChainSinkOptions::signed(Arc::new(AuditSigner::load("key.pem".as_ref())?))
//!     .with_cosigner(witness_cosigner(&store, witnesses));
//! let factory = sink_factory(&store, options)?;
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use audit_core::Digest;
use audit_core::chain::ChainId;
use audit_core::chain::note::Note;
use audit_core::chain_writer::Cosigner;
use audit_core::proving::consistency_hashes;
use audit_core::store::{ChainSource, StoreUrl};
pub use audit_witness::*;

use crate::OpenError;

/// A [`Cosigner`] over a set of witnesses, with proofs from a store.
pub struct WitnessCosigner {
    witnesses: Witnesses,
    url: Option<StoreUrl>,
    source: Mutex<Option<Arc<dyn ChainSource>>>,
}

impl WitnessCosigner {
    /// Asks `witnesses`, proving consistency from `source` (the store the
    /// writer writes).
    pub fn new(witnesses: Witnesses, source: Arc<dyn ChainSource>) -> Self {
        Self {
            witnesses,
            url: None,
            source: Mutex::new(Some(source)),
        }
    }

    /// Asks `witnesses`, proving consistency from the store at `url`,
    /// opened when the first checkpoint is cosigned (the writer may create
    /// the store after this is built).
    pub fn for_store(witnesses: Witnesses, url: StoreUrl) -> Self {
        Self {
            witnesses,
            url: Some(url),
            source: Mutex::new(None),
        }
    }

    async fn source(&self) -> Result<Arc<dyn ChainSource>, OpenError> {
        if let Some(source) = self
            .source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(source);
        }
        let Some(url) = &self.url else {
            return Err(OpenError::Unsupported {
                url: "(none)".into(),
                why: "a witness cosigner without a store".into(),
            });
        };
        let source: Arc<dyn ChainSource> = Arc::from(crate::open_source(url).await?);
        *self.source.lock().unwrap_or_else(|p| p.into_inner()) = Some(source.clone());
        Ok(source)
    }
}

impl std::fmt::Debug for WitnessCosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WitnessCosigner")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Consistency proofs of one chain, from its store.
struct StoreProofs {
    source: Arc<dyn ChainSource>,
    chain: ChainId,
}

#[async_trait]
impl ConsistencySource for StoreProofs {
    async fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Digest>, SourceError> {
        consistency_hashes(self.source.as_ref(), &self.chain, old_size, new_size)
            .await
            .map_err(SourceError::new)
    }
}

#[async_trait]
impl Cosigner for WitnessCosigner {
    async fn cosign(&self, chain: &ChainId, note: Note) -> Note {
        let source = match self.source().await {
            Ok(source) => source,
            Err(error) => {
                tracing::warn!(%chain, %error, "no witness asked: the store cannot be read for consistency proofs");
                return note;
            }
        };
        let proofs = StoreProofs {
            source,
            chain: chain.clone(),
        };
        let cosigned = self.witnesses.cosign(&note, &proofs).await;
        for outcome in &cosigned.outcomes {
            if let OutcomeKind::Failed { error, .. } = &outcome.kind {
                tracing::warn!(%chain, witness = %outcome.witness, url = %outcome.url, %error, "a witness did not cosign");
            }
        }
        if !cosigned.quorum_met() {
            tracing::warn!(
                %chain,
                cosignatures = cosigned.cosignatures,
                quorum = cosigned.quorum,
                "the tree checkpoint lacks its witness quorum"
            );
        }
        cosigned.note
    }
}

/// A [`Cosigner`] asking `witnesses`, with consistency proofs read from
/// the store at `url` (the one the writer writes).
pub fn witness_cosigner(url: &StoreUrl, witnesses: Witnesses) -> Arc<dyn Cosigner> {
    Arc::new(WitnessCosigner::for_store(witnesses, url.clone()))
}
