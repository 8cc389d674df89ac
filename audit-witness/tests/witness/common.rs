//! A test log: leaves, stored hashes, signed tree checkpoints and
//! consistency proofs; and a witness server on loopback.

use std::sync::Arc;
use std::time::Duration;

use audit_core::Digest;
use audit_core::chain::note::{Note, Vkey};
use audit_core::chain::tree::{TreeFrontier, leaf_hash, prove_consistency, tree_hash};
use audit_core::chain::tree_checkpoint::TreeCheckpoint;
use audit_witness::state::{MemoryState, WitnessState};
use audit_witness::{
    StoredHashes, WitnessClient, WitnessConfig, WitnessHandle, WitnessLimits, WitnessServer,
};
use ed25519_dalek::SigningKey;

/// A log with its key and its whole tree in memory.
#[derive(Clone)]
pub struct TestLog {
    pub origin: String,
    pub key: SigningKey,
    pub stored: Vec<Digest>,
    pub frontier: TreeFrontier,
    /// Leaf data prefix: two logs with other prefixes diverge.
    pub branch: String,
}

impl TestLog {
    pub fn new(origin: &str, seed: u8) -> Self {
        Self {
            origin: origin.to_owned(),
            key: SigningKey::from_bytes(&[seed; 32]),
            stored: Vec::new(),
            frontier: TreeFrontier::new(),
            branch: "a".into(),
        }
    }

    pub fn vkey(&self) -> Vkey {
        Vkey::ed25519(&self.origin, &self.key.verifying_key()).unwrap()
    }

    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    pub fn append(&mut self, count: u64) {
        for _ in 0..count {
            let leaf = format!("{}-{}", self.branch, self.frontier.size());
            self.stored
                .extend(self.frontier.push_stored(leaf_hash(leaf.as_bytes())));
        }
    }

    /// A copy that diverges from here on.
    pub fn fork(&self, branch: &str) -> Self {
        let mut fork = self.clone();
        fork.branch = branch.to_owned();
        fork
    }

    pub fn checkpoint(&self) -> TreeCheckpoint {
        TreeCheckpoint::new(&self.origin, self.size(), self.frontier.root()).unwrap()
    }

    pub fn note(&self) -> Note {
        self.checkpoint().sign(&self.key).unwrap()
    }

    pub fn root_at(&self, size: u64) -> Digest {
        tree_hash(size, self.stored.as_slice()).unwrap()
    }

    pub fn proof(&self, old: u64) -> Vec<Digest> {
        prove_consistency(old, self.size(), self.stored.as_slice()).unwrap()
    }

    /// The signed checkpoint at an earlier size.
    pub fn note_at(&self, size: u64) -> Note {
        TreeCheckpoint::new(&self.origin, size, self.root_at(size))
            .unwrap()
            .sign(&self.key)
            .unwrap()
    }

    pub fn proof_between(&self, old: u64, new: u64) -> Vec<Digest> {
        prove_consistency(old, new, self.stored.as_slice()).unwrap()
    }

    pub fn source(&self) -> StoredHashes<Vec<Digest>> {
        StoredHashes(self.stored.clone())
    }
}

pub fn witness_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub async fn start_witness(
    name: &str,
    seed: u8,
    logs: Vec<Vkey>,
    state: Arc<dyn WitnessState>,
    limits: WitnessLimits,
) -> WitnessHandle {
    let config = WitnessConfig::new(name, witness_key(seed), logs, state)
        .unwrap()
        .with_limits(limits);
    WitnessServer::bind(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

pub async fn memory_witness(logs: Vec<Vkey>) -> WitnessHandle {
    start_witness(
        "witness.test/w1",
        0x51,
        logs,
        Arc::new(MemoryState::new()),
        WitnessLimits::default(),
    )
    .await
}

pub fn client_of(handle: &WitnessHandle) -> WitnessClient {
    WitnessClient::new(&handle.url(), handle.vkey().clone())
        .unwrap()
        .with_timeout(Duration::from_secs(5))
}

pub async fn stop(handle: WitnessHandle) {
    handle.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Posts a raw body to a witness; returns status, content type and body.
pub async fn post_raw(handle: &WitnessHandle, body: Vec<u8>) -> (u16, String, String) {
    let response = reqwest_client()
        .post(format!("{}/add-checkpoint", handle.url()))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

pub fn reqwest_client() -> reqwest::Client {
    audit_witness::client::shared_http_client().unwrap()
}
