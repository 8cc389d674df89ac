//! Witness throughput: one witness server on SQLite (WAL,
//! `synchronous=FULL`) and 16 logs sending `add-checkpoint` requests with
//! real consistency proofs over loopback HTTP, all at once, each log one
//! request after the other. Prints requests per second and latency, then
//! checks that no update was lost: the state holds, for every log, the
//! last head the witness accepted.
//!
//! `cargo bench -p audit-witness --bench witness_throughput`
//! (`WITNESS_BENCH_REQUESTS` requests per log, default 400).

use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_core::Digest;
use audit_core::chain::note::{Note, Vkey};
use audit_core::chain::tree::{TreeFrontier, leaf_hash, prove_consistency, tree_hash};
use audit_core::chain::tree_checkpoint::TreeCheckpoint;
use audit_witness::state::{SqliteState, WitnessState};
use audit_witness::{WitnessClient, WitnessConfig, WitnessServer};
use ed25519_dalek::SigningKey;

const LOGS: usize = 16;

/// One request of a log: old size, proof, note; and the head it asks for.
struct Request {
    old: u64,
    proof: Vec<Digest>,
    note: Note,
    size: u64,
    root: Digest,
}

fn log_requests(index: usize, count: usize) -> (Vkey, Vec<Request>) {
    let origin = format!("bench.example/log-{index}");
    let key = SigningKey::from_bytes(&[index as u8 + 1; 32]);
    let vkey = Vkey::ed25519(&origin, &key.verifying_key()).expect("vkey");
    // Sizes grow by 1 to 4 leaves a request.
    let sizes: Vec<u64> = (0..count as u64)
        .scan(0u64, |size, n| {
            *size += 1 + (n * 7 + index as u64) % 4;
            Some(*size)
        })
        .collect();
    let last = *sizes.last().expect("a request");
    let mut stored = Vec::new();
    let mut frontier = TreeFrontier::new();
    for leaf in 0..last {
        stored.extend(frontier.push_stored(leaf_hash(format!("{index}-{leaf}").as_bytes())));
    }
    let mut old = 0;
    let requests = sizes
        .into_iter()
        .map(|size| {
            let root = tree_hash(size, stored.as_slice()).expect("root");
            let note = TreeCheckpoint::new(&origin, size, root)
                .and_then(|checkpoint| Ok(checkpoint.sign(&key)?))
                .expect("note");
            let proof = prove_consistency(old, size, stored.as_slice()).expect("proof");
            let request = Request {
                old,
                proof,
                note,
                size,
                root,
            };
            old = size;
            request
        })
        .collect();
    (vkey, requests)
}

fn main() {
    let per_log: usize = std::env::var("WITNESS_BENCH_REQUESTS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(400);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(per_log));
}

async fn run(per_log: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("witness.db");
    let state: Arc<dyn WitnessState> = Arc::new(SqliteState::open(&path).await.expect("state"));
    let mut logs = Vec::new();
    let mut vkeys = Vec::new();
    for index in 0..LOGS {
        let (vkey, requests) = log_requests(index, per_log);
        vkeys.push(vkey);
        logs.push(requests);
    }
    let config = WitnessConfig::new(
        "bench.example/witness",
        SigningKey::from_bytes(&[0xee; 32]),
        vkeys.clone(),
        state.clone(),
    )
    .expect("config");
    let server = WitnessServer::bind(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("server");
    let client = WitnessClient::new(&server.url(), server.vkey().clone()).expect("client");

    let start = Instant::now();
    let tasks: Vec<_> = logs
        .into_iter()
        .map(|requests| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(requests.len());
                let mut last = None;
                for request in &requests {
                    let sent = Instant::now();
                    client
                        .add_checkpoint(request.old, &request.proof, &request.note)
                        .await
                        .unwrap_or_else(|error| panic!("size {}: {error}", request.size));
                    latencies.push(sent.elapsed());
                    last = Some((request.size, request.root));
                }
                (last, latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut lasts = Vec::new();
    for task in tasks {
        let (last, task_latencies) = task.await.expect("task");
        lasts.push(last.expect("requests"));
        latencies.extend(task_latencies);
    }
    let elapsed = start.elapsed();
    server
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");

    let total = latencies.len();
    latencies.sort();
    let percentile = |p: f64| latencies[((total as f64 * p) as usize).min(total - 1)];
    println!(
        "witness_throughput: {total} add-checkpoint requests from {LOGS} logs in {:.2} s: {:.0} requests/s (latency p50 {:.2} ms, p99 {:.2} ms)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        percentile(0.5).as_secs_f64() * 1e3,
        percentile(0.99).as_secs_f64() * 1e3,
    );

    // No lost update: the file, opened anew, holds each log's last head.
    drop(state);
    let reopened = SqliteState::open(&path).await.expect("reopen");
    for (vkey, (size, root)) in vkeys.iter().zip(lasts) {
        let head = reopened
            .latest(vkey.name())
            .await
            .expect("read")
            .expect("a head");
        assert_eq!(
            (head.size, head.root),
            (size, root),
            "lost update for {}",
            vkey.name()
        );
    }
    println!("witness_throughput: no lost update ({LOGS} logs at their last accepted size)");
}
