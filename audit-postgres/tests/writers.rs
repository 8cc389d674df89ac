//! Four writer processes append to one chain at once, each through its
//! own `AuditPipeline` with `submit_wait`: the chain verifies (every record
//! signed), holds exactly the acknowledged events, no seq twice, none
//! missing.
//!
//! This test binary has no libtest harness: it re-executes itself as the
//! writer processes (see `common::writer`).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use audit_core::keys::AuditSigner;
use common::writer::{WriterJob, read_acks, run_child_if_asked, spawn_writer};

const WRITERS: usize = 4;
const EVENTS_PER_WRITER: usize = 25_000;
const BATCH: usize = 500;

fn main() {
    if run_child_if_asked() {
        return;
    }
    println!("test four_writer_processes_share_one_chain ...");
    four_writer_processes_share_one_chain();
    println!("test four_writer_processes_share_one_chain ... ok");
}

fn four_writer_processes_share_one_chain() {
    let (server, url) = common::server();
    let dir = tempfile::tempdir().unwrap();
    let signer = AuditSigner::generate();
    let (key, _public) = signer.write_key_files(dir.path()).unwrap();
    let started = Instant::now();
    let jobs: Vec<WriterJob> = (0..WRITERS)
        .map(|writer| WriterJob {
            url: url.clone(),
            key: key.clone(),
            out: dir.path().join(format!("acks-{writer}.txt")),
            events: EVENTS_PER_WRITER,
            batch: BATCH,
            // Every record signed: with dependencies optimised in test
            // builds, signing and verifying 100k records takes ~20 s here.
            sign_records: true,
        })
        .collect();
    let children: Vec<_> = jobs.iter().map(|job| spawn_writer(job, &[])).collect();
    for mut child in children {
        let status = child.wait().unwrap();
        assert!(status.success(), "a writer process failed: {status}");
    }
    let elapsed = started.elapsed();

    let acks: Vec<(String, u64)> = jobs.iter().flat_map(|job| read_acks(&job.out)).collect();
    assert_eq!(acks.len(), WRITERS * EVENTS_PER_WRITER);
    let seqs: BTreeSet<u64> = acks.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(seqs.len(), acks.len(), "a seq was acknowledged twice");
    assert_eq!(seqs.first(), Some(&1));
    assert_eq!(seqs.last(), Some(&(acks.len() as u64)), "a seq is missing");

    let stored: HashMap<String, u64> = server
        .psql(
            "audit",
            "SELECT event_id || ' ' || seq FROM audit_records WHERE chain_id = 'shared'",
        )
        .unwrap()
        .lines()
        .map(|line| {
            let (id, seq) = line.split_once(' ').unwrap();
            (id.to_owned(), seq.parse().unwrap())
        })
        .collect();
    let acknowledged: HashMap<String, u64> = acks.into_iter().collect();
    assert_eq!(
        stored, acknowledged,
        "the chain differs from the acknowledged events"
    );

    let verify_started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let report = runtime.block_on(common::verify_with(&url, &signer, true));
    assert!(report.is_ok(), "{:?}", report.failures.first());
    assert_eq!(report.records, (WRITERS * EVENTS_PER_WRITER) as u64);
    println!(
        "{WRITERS} writer processes x {EVENTS_PER_WRITER} events in {:.1} s; verified in {:.1} s",
        elapsed.as_secs_f64(),
        verify_started.elapsed().as_secs_f64()
    );
}
