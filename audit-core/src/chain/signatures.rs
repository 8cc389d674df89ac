//! Batch verification of record signatures, on a worker thread when the
//! machine has a spare core, so that parsing and hashing of the next
//! records (on the caller's thread) overlap with the curve arithmetic.

use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use ed25519_dalek::{Signature, VerifyingKey};

use super::verify::{Failure, FailureKind};
use crate::digest::Digest;

/// Batches queued for the worker at most (bounds memory).
const QUEUED_BATCHES: usize = 4;

/// One signature to check, with where it came from.
pub(super) struct PendingSignature {
    pub chain: String,
    pub seq: u64,
    pub key: VerifyingKey,
    pub message: Digest,
    pub signature: Signature,
}

/// The worker thread: where batches go, and what it found.
type Worker = (SyncSender<Vec<PendingSignature>>, JoinHandle<Vec<Failure>>);

/// Checks batches inline, or on one worker thread.
pub(super) struct SignatureChecker {
    worker: Option<Worker>,
    started: bool,
    failures: Vec<Failure>,
}

impl SignatureChecker {
    pub(super) fn new() -> Self {
        Self {
            worker: None,
            started: false,
            failures: Vec::new(),
        }
    }

    /// Checks `batch` (now, or on the worker).
    pub(super) fn check(&mut self, batch: Vec<PendingSignature>) {
        if !self.started {
            self.started = true;
            self.worker = spawn_worker();
        }
        let batch = match &self.worker {
            Some((jobs, _)) => match jobs.send(batch) {
                Ok(()) => return,
                Err(returned) => returned.0,
            },
            None => batch,
        };
        self.failures.extend(check_batch(&batch));
    }

    /// Waits for the worker and returns every failure found.
    pub(super) fn finish(mut self) -> Vec<Failure> {
        if let Some((jobs, handle)) = self.worker.take() {
            drop(jobs);
            match handle.join() {
                Ok(failures) => self.failures.extend(failures),
                Err(_) => self.failures.push(Failure {
                    chain: String::new(),
                    seq: 0,
                    kind: FailureKind::BadSignature,
                    detail: "the signature worker thread panicked; signatures were not all checked"
                        .into(),
                }),
            }
        }
        self.failures
    }
}

fn spawn_worker() -> Option<Worker> {
    if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
        return None;
    }
    let (jobs, batches) = sync_channel::<Vec<PendingSignature>>(QUEUED_BATCHES);
    let handle = std::thread::Builder::new()
        .name("audit-verify-signatures".into())
        .spawn(move || {
            batches
                .iter()
                .flat_map(|batch| check_batch(&batch))
                .collect()
        })
        .ok()?;
    Some((jobs, handle))
}

/// Batch-verifies; on a failed batch, finds the culprits with `verify_strict`.
fn check_batch(batch: &[PendingSignature]) -> Vec<Failure> {
    let messages: Vec<&[u8]> = batch
        .iter()
        .map(|item| item.message.as_bytes().as_slice())
        .collect();
    let signatures: Vec<Signature> = batch.iter().map(|item| item.signature).collect();
    let keys: Vec<VerifyingKey> = batch.iter().map(|item| item.key).collect();
    if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
        return Vec::new();
    }
    batch
        .iter()
        .filter(|item| {
            item.key
                .verify_strict(item.message.as_bytes(), &item.signature)
                .is_err()
        })
        .map(|item| Failure {
            chain: item.chain.clone(),
            seq: item.seq,
            kind: FailureKind::BadSignature,
            detail: "signature does not verify".into(),
        })
        .collect()
}
