//! Verification of record signatures in batches, on one worker thread per
//! core when the machine has more than one, so that the curve arithmetic
//! (most of a signed record's cost) runs on every core while the caller's
//! thread parses and hashes the next records. Each failure names its seq,
//! and the report sorts failures, so the first failure stays exact
//! whichever worker found it.
//!
//! Every signature is checked with strict Ed25519 verification
//! (`verify_strict`), never with the cofactorless batch equation, which
//! accepts some signatures that strict verification refuses (see
//! [`check_batch`]): a record accepted here is accepted by `verify_strict`.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signature, VerifyingKey};

use super::verify::{Failure, FailureKind};
use crate::digest::Digest;

/// Batches queued for the workers at most, per worker (bounds memory).
const QUEUED_BATCHES_PER_WORKER: usize = 4;

/// One signature to check, with where it came from.
pub(super) struct PendingSignature {
    pub chain: String,
    pub seq: u64,
    pub key: VerifyingKey,
    pub message: Digest,
    pub signature: Signature,
}

/// The worker threads: where batches go, and what each found.
type Workers = (
    SyncSender<Vec<PendingSignature>>,
    Vec<JoinHandle<Vec<Failure>>>,
);

/// Checks batches inline, or on worker threads.
pub(super) struct SignatureChecker {
    worker: Option<Workers>,
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

    /// Waits for the workers and returns every failure found.
    pub(super) fn finish(mut self) -> Vec<Failure> {
        if let Some((jobs, handles)) = self.worker.take() {
            drop(jobs);
            for handle in handles {
                match handle.join() {
                    Ok(failures) => self.failures.extend(failures),
                    Err(_) => self.failures.push(Failure {
                        chain: String::new(),
                        seq: 0,
                        kind: FailureKind::BadSignature,
                        detail:
                            "a signature worker thread panicked; signatures were not all checked"
                                .into(),
                    }),
                }
            }
        }
        self.failures
    }
}

/// One worker per core (none on one core: batches are checked inline).
fn spawn_worker() -> Option<Workers> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if cores < 2 {
        return None;
    }
    let (jobs, batches) = sync_channel::<Vec<PendingSignature>>(QUEUED_BATCHES_PER_WORKER * cores);
    let batches = Arc::new(Mutex::new(batches));
    let handles: Vec<_> = (0..cores)
        .filter_map(|index| {
            let batches = batches.clone();
            std::thread::Builder::new()
                .name(format!("audit-verify-signatures-{index}"))
                .spawn(move || check_batches(&batches))
                .ok()
        })
        .collect();
    if handles.is_empty() {
        return None;
    }
    Some((jobs, handles))
}

/// A worker's loop: takes the next batch until the channel closes.
fn check_batches(batches: &Mutex<Receiver<Vec<PendingSignature>>>) -> Vec<Failure> {
    let mut failures = Vec::new();
    loop {
        let next = match batches.lock() {
            Ok(receiver) => receiver.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match next {
            Ok(batch) => failures.extend(check_batch(&batch)),
            Err(_) => return failures,
        }
    }
}

/// Checks every signature of `batch` exactly as FORMAT.md section 4 asks:
/// strict Ed25519 verification, one signature at a time.
///
/// Why not `ed25519_dalek::verify_batch`: its equation is cofactorless with
/// weights derived from the batch's contents, so a signature whose `R` (or
/// key `A`) carries a small torsion component passes whenever the weight
/// happens to cancel the torsion (one batch in two for a component of order
/// 2, and a forger can grind for it), while `verify_strict` refuses it. Making
/// the batch safe needs a torsion check per `R`, which costs about as much as
/// the strict check itself; so every signature is checked with
/// [`VerifyingKey::verify_strict`], and keys are also refused when they are
/// not canonical or not torsion-free (see [`key_is_strict`]). The worker
/// thread still overlaps this with the parsing and hashing of later records.
fn check_batch(batch: &[PendingSignature]) -> Vec<Failure> {
    let mut keys: HashMap<[u8; 32], bool> = HashMap::new();
    batch
        .iter()
        .filter_map(|item| {
            let key_ok = *keys
                .entry(item.key.to_bytes())
                .or_insert_with(|| key_is_strict(&item.key));
            let detail = if !key_ok {
                "the public key is not canonical, of small order, or has a torsion component"
            } else if item
                .key
                .verify_strict(item.message.as_bytes(), &item.signature)
                .is_err()
            {
                "signature does not verify"
            } else {
                return None;
            };
            Some(Failure {
                chain: item.chain.clone(),
                seq: item.seq,
                kind: FailureKind::BadSignature,
                detail: detail.into(),
            })
        })
        .collect()
}

/// Whether a public key is usable under strict verification and more: its
/// encoding is canonical, it is not of small order, and it lies in the
/// prime-order subgroup (no torsion component; every honestly generated
/// key `A = [a]B` does).
pub(crate) fn key_is_strict(key: &VerifyingKey) -> bool {
    let encoded = key.to_bytes();
    CompressedEdwardsY(encoded)
        .decompress()
        .is_some_and(|point| {
            point.compress().to_bytes() == encoded
                && !point.is_small_order()
                && point.is_torsion_free()
        })
}
