//! Append throughput of the PostgreSQL sink on a throwaway local server:
//! one writer, then four writer processes on one chain.
//!
//! ```text
//! cargo run --release -p audit-postgres --example postgres_bench [EVENTS] [BATCH]
//! ```
//! Records are signed (Ed25519) and the chain is verified afterwards.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use audit_core::keys::AuditSigner;
use common::writer::{WriterJob, run_child_if_asked, spawn_writer, write_events};

fn main() {
    if run_child_if_asked() {
        return;
    }
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().map_or(100_000, |n| n.parse().unwrap());
    let batch: usize = args.next().map_or(1_000, |n| n.parse().unwrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let signer = AuditSigner::generate();
    let (key, _) = signer.write_key_files(dir.path()).unwrap();
    let job = |url: &str, name: &str, events: usize| WriterJob {
        url: url.to_owned(),
        key: key.clone(),
        out: dir.path().join(name),
        events,
        batch,
        sign_records: true,
    };

    let (_one, url) = common::server();
    let seconds = runtime.block_on(write_events(&job(&url, "one.txt", events)));
    let rate = events as f64 / seconds;
    println!("1 writer: {events} events, batch {batch}: {seconds:.2} s, {rate:.0} events/s");
    let verified = Instant::now();
    let report = runtime.block_on(common::verify(&url, &signer));
    assert!(report.is_ok(), "{:?}", report.failures.first());
    let rate = report.records as f64 / verified.elapsed().as_secs_f64();
    println!("verify: {} records, {rate:.0} records/s", report.records);

    let (_four, url) = common::server();
    let started = Instant::now();
    let jobs: Vec<WriterJob> = (0..4)
        .map(|w| job(&url, &format!("w{w}.txt"), events / 4))
        .collect();
    let children: Vec<_> = jobs.iter().map(|j| spawn_writer(j, &[])).collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let seconds = started.elapsed().as_secs_f64();
    let total = events / 4 * 4;
    let rate = total as f64 / seconds;
    println!(
        "4 writer processes: {total} events, batch {batch}: {seconds:.2} s (incl. process start), {rate:.0} events/s"
    );
    let report = runtime.block_on(common::verify(&url, &signer));
    assert!(report.is_ok(), "{:?}", report.failures.first());
    assert_eq!(report.records as usize, total);
}
