//! A writer process for multi-process tests and the bench: the test (or
//! bench) binary re-executes itself with `AUDIT_PG_CHILD_*` variables set,
//! and the child submits events through its own [`AuditPipeline`] (over
//! `sink_factory`) with `submit_wait`, and writes one line per receipt
//! (`event_id seq already_present`) to a file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_core::chain::SignMode;
use audit_core::keys::AuditSigner;
use audit_core::pipeline::AuditPipeline;
use audit_postgres::{PostgresOptions, sink_factory};
use futures::StreamExt as _;

/// What a writer process does.
pub struct WriterJob {
    pub url: String,
    pub key: PathBuf,
    pub out: PathBuf,
    pub events: usize,
    pub batch: usize,
    pub sign_records: bool,
}

/// Runs the child role when this process was started as a writer; returns
/// false otherwise.
pub fn run_child_if_asked() -> bool {
    let Ok(url) = std::env::var("AUDIT_PG_CHILD_URL") else {
        return false;
    };
    let var = |name: &str| std::env::var(name).unwrap();
    let job = WriterJob {
        url,
        key: var("AUDIT_PG_CHILD_KEY").into(),
        out: var("AUDIT_PG_CHILD_OUT").into(),
        events: var("AUDIT_PG_CHILD_EVENTS").parse().unwrap(),
        batch: var("AUDIT_PG_CHILD_BATCH").parse().unwrap(),
        sign_records: var("AUDIT_PG_CHILD_SIGN") == "1",
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(write_events(&job));
    true
}

/// Starts a writer process running `job` (this executable, re-executed).
pub fn spawn_writer(job: &WriterJob, extra_args: &[&str]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(extra_args)
        .env("AUDIT_PG_CHILD_URL", &job.url)
        .env("AUDIT_PG_CHILD_KEY", &job.key)
        .env("AUDIT_PG_CHILD_OUT", &job.out)
        .env("AUDIT_PG_CHILD_EVENTS", job.events.to_string())
        .env("AUDIT_PG_CHILD_BATCH", job.batch.to_string())
        .env(
            "AUDIT_PG_CHILD_SIGN",
            if job.sign_records { "1" } else { "0" },
        )
        .spawn()
        .unwrap()
}

/// Submits `job.events` events through a pipeline whose batches hold at
/// most `job.batch` events, awaiting every receipt; returns the seconds
/// spent.
pub async fn write_events(job: &WriterJob) -> f64 {
    let signer = Arc::new(AuditSigner::load(&job.key).unwrap());
    let mut options = super::chain_options("shared", &signer);
    if !job.sign_records {
        options = options.with_sign_mode(SignMode::CheckpointsOnly);
    }
    let chain = options.chain().clone();
    let factory = sink_factory(job.url.clone(), options, PostgresOptions::default());
    let pipeline = AuditPipeline::builder(factory)
        .max_batch(job.batch)
        .chain(chain)
        .spawn();
    let queue = pipeline.queue();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&job.out).unwrap());
    let started = Instant::now();
    // Two batches' worth waiting at a time, so that the drainer always
    // finds a full batch.
    let mut receipts = futures::stream::iter(super::events(0, job.events))
        .map(|event| {
            let queue = queue.clone();
            async move {
                let id = event.id().to_owned();
                (id, queue.submit_wait(event).await)
            }
        })
        .buffered(job.batch * 2);
    while let Some((id, receipt)) = receipts.next().await {
        let receipt = receipt.unwrap_or_else(|error| panic!("event {id}: {error}"));
        writeln!(out, "{id} {} {}", receipt.seq, receipt.already_present).unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let report = pipeline.shutdown(Duration::from_secs(30)).await;
    assert!(report.is_clean(), "{:?}", report.errors);
    assert_eq!(report.metrics.appended, job.events as u64);
    out.flush().unwrap();
    seconds
}

/// The acknowledged `(event_id, seq)` pairs a writer wrote to `path`.
pub fn read_acks(path: &Path) -> Vec<(String, u64)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let mut parts = line.split(' ');
            let id = parts.next().unwrap().to_owned();
            let seq = parts.next().unwrap().parse().unwrap();
            (id, seq)
        })
        .collect()
}
