//! A writer process for multi-process tests and the bench: the test (or
//! bench) binary re-executes itself with `AUDIT_PG_CHILD_*` variables set,
//! and the child appends events with its own sink and writes one line per
//! acknowledged event (`event_id seq already_present`) to a file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Instant;

use audit_core::chain::SignMode;
use audit_core::keys::AuditSigner;
use audit_core::sink::{AppendOutcome, AuditSink};

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

/// Appends `job.events` events in batches; returns the seconds spent.
pub async fn write_events(job: &WriterJob) -> f64 {
    let signer = Arc::new(AuditSigner::load(&job.key).unwrap());
    let mut options = super::chain_options("shared", &signer);
    if !job.sign_records {
        options.sign_mode = SignMode::CheckpointsOnly;
    }
    let mut sink = super::sink(&job.url, options).await;
    let mut out = std::io::BufWriter::new(std::fs::File::create(&job.out).unwrap());
    let started = Instant::now();
    let mut written = 0;
    while written < job.events {
        let n = job.batch.min(job.events - written);
        let batch = super::events(written, n);
        let outcomes = sink.append_batch(&batch).await.unwrap();
        for (event, outcome) in batch.iter().zip(&outcomes) {
            match outcome {
                AppendOutcome::Appended(receipt) => writeln!(
                    out,
                    "{} {} {}",
                    event.id(),
                    receipt.seq,
                    receipt.already_present
                )
                .unwrap(),
                AppendOutcome::DeadLettered { reason } => panic!("dead-lettered: {reason}"),
            }
        }
        written += n;
    }
    let seconds = started.elapsed().as_secs_f64();
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
