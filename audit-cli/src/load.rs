//! `deferred-audit load`: submit N events and record which were acknowledged.
//!
//! With `--journal DIR` every event is admitted with
//! [`AuditQueue::submit_durable`] and counts as acknowledged once that call
//! returned `Ok` (it is fsync'd in the journal); without, with
//! [`AuditQueue::submit_wait`] and acknowledged once its receipt arrived
//! (it is in the store). The id of every acknowledged event is appended to
//! `--acked FILE`, one per line, written as it goes, so that a process
//! killed at any moment leaves a file that claims only acknowledged events.
//!
//! Built with the same journal again, the pipeline first replays what the
//! journal holds (a crash's leftovers, or events the store could not take
//! last time). With a journal there is no fallback file: events the store
//! cannot take stay in the journal for the next start. Prints one JSON
//! summary; exit 0 when every event was acknowledged and nothing was lost,
//! 1 otherwise, 2 on usage or I/O errors.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use audit_core::chain::ChainId;
use audit_core::chain_writer::ChainSinkOptions;
use audit_core::journal::{JournalConfig, WhenFull};
use audit_core::keys::AuditSigner;
use audit_core::pipeline::{AuditPipeline, AuditQueue, Backpressure, SubmitError};
use futures::StreamExt;

use crate::error::{CliError, OK, failed};
use crate::store_url::StoreUrl;

/// Ids written to the acked file in one `write` at most.
const ACK_GROUP: usize = 1024;

/// What a full journal does, as a flag value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JournalFull {
    /// Submits wait until the sink catches up.
    Block,
    /// Submits fail at once (fail closed).
    Reject,
}

/// Arguments of `load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Where the chain goes (any store URL).
    #[arg(long, value_name = "URL")]
    store: StoreUrl,
    /// Events to submit (0: only replay what the journal holds).
    #[arg(long)]
    events: u64,
    /// Admit events durably through this journal directory (0700).
    #[arg(long, value_name = "DIR")]
    journal: Option<PathBuf>,
    /// Append the id of every acknowledged event to this file.
    #[arg(long, value_name = "FILE")]
    acked: Option<PathBuf>,
    /// Producer tasks submitting concurrently.
    #[arg(long, default_value_t = 4)]
    producers: u64,
    /// Submits each producer keeps in flight at once.
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    /// The signing key (PKCS#8 PEM); records are unsigned without one.
    #[arg(long, value_name = "PEM")]
    key: Option<PathBuf>,
    /// What submits do when the journal is full.
    #[arg(long, value_enum, default_value = "block")]
    journal_full: JournalFull,
    /// Most bytes the journal may hold.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 30)]
    journal_max_bytes: u64,
    /// Sink rebuilds allowed for one batch before it is given up (it stays
    /// in the journal when there is one).
    #[arg(long, default_value_t = 3)]
    max_restarts: u32,
    /// Largest batch handed to the sink.
    #[arg(long, default_value_t = 1024)]
    max_batch: usize,
    /// Seconds the final drain may take.
    #[arg(long, default_value_t = 60)]
    drain_timeout: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// The origin (log name) of the chain's tree checkpoints; default
    /// deferred-audit/<key_id>/<chain>.
    #[arg(long, value_parser = crate::witness::parse_origin)]
    origin: Option<String>,
    /// Witnesses asked to cosign the chain's tree checkpoints.
    #[command(flatten)]
    witnesses: crate::witness::WitnessArgs,
}

/// Runs `load`.
pub fn run(args: LoadArgs) -> Result<ExitCode, CliError> {
    let signer = match &args.key {
        Some(key) => Some(Arc::new(AuditSigner::load(key)?)),
        None => None,
    };
    let acked = match &args.acked {
        Some(file) => Some(AckLog::open(file)?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| CliError::usage(format!("starting the async runtime: {error}")))?;
    let outcome = runtime.block_on(load(&args, signer, acked.as_ref()))?;
    let acked_written = match acked {
        Some(log) => log.finish()?,
        None => outcome.acknowledged,
    };
    if args.json {
        println!("{}", outcome.json(&args, acked_written));
    } else {
        print!("{}", outcome.text(&args, acked_written));
    }
    let complete = outcome.acknowledged == args.events
        && outcome.shutdown.metrics.lost == 0
        && outcome.shutdown.metrics.dead_lettered == 0
        && !outcome.shutdown.timed_out;
    Ok(if complete { OK } else { failed() })
}

/// The pipeline for `args`: the store's sink, optional journal (recovered now).
fn pipeline(
    args: &LoadArgs,
    signer: Option<Arc<AuditSigner>>,
    cosigner: Option<Arc<dyn audit_core::chain_writer::Cosigner>>,
) -> Result<AuditPipeline, CliError> {
    let chain = ChainId::default();
    let mut sink_options = match signer {
        Some(signer) => ChainSinkOptions::signed(signer),
        None => ChainSinkOptions::unsigned(),
    }
    .for_chain(chain.clone());
    if let Some(cosigner) = cosigner {
        sink_options = sink_options.with_cosigner(cosigner);
    }
    if let Some(origin) = &args.origin {
        sink_options = sink_options
            .with_origin(origin)
            .map_err(|error| CliError::usage(format!("--origin: {error}")))?;
    }
    let factory =
        crate::sinks::pipeline_factory(crate::sinks::chain_factory(&args.store, sink_options)?);
    let mut builder = AuditPipeline::builder(factory)
        .max_batch(args.max_batch)
        .max_restarts(args.max_restarts)
        .backpressure(Backpressure::Block {
            capacity: args.max_batch.saturating_mul(4),
        })
        .chain(chain)
        .name("load");
    if let Some(dir) = &args.journal {
        builder = builder
            .journal(journal_config(dir, args))
            .map_err(|error| CliError::usage(error.to_string()))?;
    }
    Ok(builder.spawn())
}

/// The journal's configuration: segments of at most a quarter of the byte
/// bound, so closed segments free space as the sink catches up.
fn journal_config(dir: &Path, args: &LoadArgs) -> JournalConfig {
    let config = JournalConfig::new(dir).with_max_bytes(args.journal_max_bytes);
    let segment_bytes = config
        .segment_bytes()
        .min(args.journal_max_bytes / 4)
        .max(1);
    config
        .with_segment_bytes(segment_bytes)
        .with_when_full(match args.journal_full {
            JournalFull::Block => WhenFull::Block,
            JournalFull::Reject => WhenFull::Reject,
        })
}

struct Outcome {
    recovered: u64,
    acknowledged: u64,
    submit_errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    shutdown: audit_core::pipeline::ShutdownReport,
}

/// What one producer did.
#[derive(Default)]
struct ProducerTally {
    acknowledged: u64,
    errors: u64,
    first_error: Option<String>,
}

async fn load(
    args: &LoadArgs,
    signer: Option<Arc<AuditSigner>>,
    acked: Option<&AckLog>,
) -> Result<Outcome, CliError> {
    let cosigner = args.witnesses.cosigner(&args.store).await?;
    let pipeline = pipeline(args, signer, cosigner)?;
    let recovered = pipeline.metrics().snapshot().submitted;
    let started = Instant::now();
    let producers = args.producers.max(1);
    let mut tasks = Vec::new();
    for producer in 0..producers {
        let share = args.events / producers + u64::from(producer < args.events % producers);
        let queue = pipeline.queue();
        let durable = args.journal.is_some();
        let sender = acked.map(AckLog::sender);
        let in_flight = args.in_flight.max(1);
        tasks.push(tokio::spawn(async move {
            produce(queue, producer, share, durable, in_flight, sender).await
        }));
    }
    let mut tally = ProducerTally::default();
    for task in tasks {
        let done = task
            .await
            .map_err(|error| CliError::usage(format!("a producer task failed: {error}")))?;
        tally.acknowledged += done.acknowledged;
        tally.errors += done.errors;
        tally.first_error = tally.first_error.or(done.first_error);
    }
    let shutdown = pipeline
        .shutdown(Duration::from_secs(args.drain_timeout))
        .await;
    Ok(Outcome {
        recovered,
        acknowledged: tally.acknowledged,
        submit_errors: tally.errors,
        first_error: tally.first_error,
        elapsed: started.elapsed(),
        shutdown,
    })
}

/// Submits `share` events, `in_flight` at a time, recording each
/// acknowledged id.
async fn produce(
    queue: AuditQueue,
    producer: u64,
    share: u64,
    durable: bool,
    in_flight: usize,
    acked: Option<Sender<String>>,
) -> ProducerTally {
    let submits = futures::stream::iter(0..share)
        .map(|n| {
            let queue = queue.clone();
            async move {
                let event = crate::demo::refusal(producer, n)
                    .map_err(|error| format!("building an event: {error}"))?;
                let id = event.id().to_owned();
                let result: Result<(), SubmitError> = if durable {
                    queue.submit_durable(event).await
                } else {
                    queue.submit_wait(event).await.map(|_| ())
                };
                result.map(|()| id).map_err(|error| error.to_string())
            }
        })
        .buffer_unordered(in_flight);
    futures::pin_mut!(submits);
    let mut tally = ProducerTally::default();
    while let Some(result) = submits.next().await {
        match result {
            Ok(id) => {
                tally.acknowledged += 1;
                if let Some(sender) = &acked {
                    let _ = sender.send(id);
                }
            }
            Err(error) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(error);
            }
        }
    }
    tally
}

impl Outcome {
    fn text(&self, args: &LoadArgs, acked_written: u64) -> String {
        let metrics = &self.shutdown.metrics;
        let seconds = self.elapsed.as_secs_f64();
        let rate = if seconds > 0.0 {
            (self.acknowledged as f64 / seconds).round() as u64
        } else {
            0
        };
        let mut text = format!(
            "load into {}: {} of {} events acknowledged ({} recovered from the journal first), {acked_written} ids written\n",
            args.store, self.acknowledged, args.events, self.recovered
        );
        text.push_str(&format!(
            "appended {}, dead-lettered {}, lost {}, in {seconds:.3} s ({rate} acknowledged/s)\n",
            metrics.appended, metrics.dead_lettered, metrics.lost
        ));
        if let Some(error) = &self.first_error {
            text.push_str(&format!(
                "{} submit(s) refused; first: {error}\n",
                self.submit_errors
            ));
        }
        if self.shutdown.timed_out {
            text.push_str("the final drain timed out: events are still in the journal\n");
        }
        text
    }

    fn json(&self, args: &LoadArgs, acked_written: u64) -> serde_json::Value {
        let metrics = &self.shutdown.metrics;
        let seconds = self.elapsed.as_secs_f64();
        let rate = if seconds > 0.0 {
            self.acknowledged as f64 / seconds
        } else {
            0.0
        };
        serde_json::json!({
            "store": args.store.to_string(),
            "journal": args.journal.as_ref().map(|dir| dir.display().to_string()),
            "events": args.events,
            "recovered": self.recovered,
            "acknowledged": self.acknowledged,
            "acked_written": acked_written,
            "submit_errors": self.submit_errors,
            "first_error": self.first_error,
            "submitted": metrics.submitted,
            "appended": metrics.appended,
            "dead_lettered": metrics.dead_lettered,
            "lost": metrics.lost,
            "terminal": metrics.terminal,
            "drain_timed_out": self.shutdown.timed_out,
            "shutdown_errors": self.shutdown.errors,
            "elapsed_s": seconds,
            "acknowledged_per_s": rate,
        })
    }
}

/// The acked-ids file: a thread appends ids as they arrive, one `write` per
/// group of lines, so the file never claims an id that was not acknowledged.
struct AckLog {
    sender: Sender<String>,
    thread: JoinHandle<Result<u64, String>>,
}

impl AckLog {
    fn open(path: &Path) -> Result<Self, CliError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|error| {
                CliError::usage(format!("opening acked file {}: {error}", path.display()))
            })?;
        let (sender, receiver) = std::sync::mpsc::channel();
        let path = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("acked-ids".into())
            .spawn(move || write_acks(file, &path, &receiver))
            .map_err(|error| CliError::usage(format!("starting the acked-ids writer: {error}")))?;
        Ok(Self { sender, thread })
    }

    fn sender(&self) -> Sender<String> {
        self.sender.clone()
    }

    /// Waits for every id to be written; how many were.
    fn finish(self) -> Result<u64, CliError> {
        drop(self.sender);
        self.thread
            .join()
            .map_err(|_| CliError::usage("the acked-ids writer panicked"))?
            .map_err(CliError::usage)
    }
}

fn write_acks(mut file: File, path: &Path, receiver: &Receiver<String>) -> Result<u64, String> {
    let mut written = 0u64;
    let mut lines = String::new();
    while let Ok(first) = receiver.recv() {
        lines.clear();
        lines.push_str(&first);
        lines.push('\n');
        let mut count = 1u64;
        while count < ACK_GROUP as u64 {
            let Ok(id) = receiver.try_recv() else { break };
            lines.push_str(&id);
            lines.push('\n');
            count += 1;
        }
        file.write_all(lines.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|error| format!("writing acked file {}: {error}", path.display()))?;
        written += count;
    }
    Ok(written)
}
