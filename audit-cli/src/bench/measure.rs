//! The measuring instruments of `deferred-audit bench`: signing rates,
//! latency percentiles, peak memory. Pure measurement, no policy.

use std::time::{Duration, Instant};

use audit_core::Digest;
use audit_core::keys::AuditSigner;

/// Ed25519 signatures per second over `count` signatures on one thread.
pub fn signs_per_s_one_core(signer: &AuditSigner, count: u64) -> f64 {
    let started = Instant::now();
    sign_many(signer, count, 0);
    per_second(count, started.elapsed())
}

/// Ed25519 signatures per second with one thread per core, each signing
/// `count_per_core` digests.
pub fn signs_per_s_all_cores(signer: &AuditSigner, count_per_core: u64) -> f64 {
    let cores = cores();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for core in 0..cores {
            scope.spawn(move || sign_many(signer, count_per_core, core as u64));
        }
    });
    per_second(count_per_core * cores as u64, started.elapsed())
}

fn sign_many(signer: &AuditSigner, count: u64, salt: u64) {
    let mut digest = Digest([0; 32]);
    digest.0[..8].copy_from_slice(&salt.to_be_bytes());
    for _ in 0..count {
        // Each message depends on the previous signature, so that no work
        // can be skipped.
        let signature = signer.sign(&digest);
        digest.0.copy_from_slice(&signature[..32]);
    }
}

/// Strict Ed25519 verifications per second (`verify_strict`, as the
/// verifier checks every record signature) with one thread per core, each
/// checking `count_per_core` signatures: the ceiling of verifying a chain
/// whose every record is signed, before any parsing or hashing.
pub fn verifies_per_s_all_cores(signer: &AuditSigner, count_per_core: u64) -> f64 {
    let key = signer.public_key();
    let message = Digest([7; 32]);
    let signature = signer.sign(&message);
    let cores = cores();
    let started = Instant::now();
    let valid = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..cores {
            scope.spawn(|| {
                let checked = (0..count_per_core)
                    .filter(|_| key.verifies(&message, &signature))
                    .count() as u64;
                valid.fetch_add(checked, std::sync::atomic::Ordering::Relaxed);
            });
        }
    });
    let elapsed = started.elapsed();
    per_second(valid.into_inner(), elapsed)
}

/// The number of cores the process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `count / elapsed`, 0 for a zero duration.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// Durations in nanoseconds, for percentiles.
#[derive(Debug, Default)]
pub struct Latencies(Vec<u64>);

impl Latencies {
    /// Room for `capacity` samples.
    pub fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    /// Adds one sample.
    pub fn record(&mut self, elapsed: Duration) {
        self.0
            .push(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// Sorts the samples; percentiles need it.
    pub fn sorted(mut self) -> SortedLatencies {
        self.0.sort_unstable();
        SortedLatencies(self.0)
    }
}

/// Sorted durations in nanoseconds.
#[derive(Debug)]
pub struct SortedLatencies(Vec<u64>);

impl SortedLatencies {
    /// The `fraction` percentile (0.5 median, 0.99 p99), nearest rank; 0
    /// without samples.
    pub fn percentile(&self, fraction: f64) -> u64 {
        if self.0.is_empty() {
            return 0;
        }
        let rank = ((self.0.len() as f64 * fraction).ceil() as usize).clamp(1, self.0.len());
        self.0[rank - 1]
    }
}

/// A field of `/proc/self/status` in bytes (`VmHWM`, `VmRSS`); 0 where
/// the file does not exist.
pub fn proc_status_bytes(field: &str) -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut latencies = Latencies::with_capacity(100);
        for n in 1..=100 {
            latencies.record(Duration::from_nanos(n));
        }
        let sorted = latencies.sorted();
        assert_eq!(sorted.percentile(0.5), 50);
        assert_eq!(sorted.percentile(0.99), 99);
        assert_eq!(Latencies::default().sorted().percentile(0.5), 0);
    }

    #[test]
    fn peak_memory_is_read_from_proc() {
        assert!(proc_status_bytes("VmHWM") > 0);
        assert!(proc_status_bytes("NoSuchField") == 0);
    }

    #[test]
    fn signing_rates_are_positive() {
        let signer = AuditSigner::generate();
        assert!(signs_per_s_one_core(&signer, 10) > 0.0);
        assert!(signs_per_s_all_cores(&signer, 10) > 0.0);
        assert!(verifies_per_s_all_cores(&signer, 10) > 0.0);
    }
}
