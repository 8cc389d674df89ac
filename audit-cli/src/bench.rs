//! `deferred-audit bench`: how fast the pipeline writes on this machine,
//! against the machine's own limits and against the original daemon.
//!
//! In one run, on the same store kind and durability:
//! 1. the machine's limits: Ed25519 signatures per second on one core and
//!    on all cores, and the store's raw batched insert rate for rows of the
//!    same size (pre-sealed rows, multi-row inserts, one transaction per
//!    chunk of [`MAX_BATCH`]);
//! 2. the pipeline as shipped (batches up to [`MAX_BATCH`]);
//! 3. the baseline, done as the original daemon did it: the same sink with
//!    one event per transaction and one signature per event, on
//!    `events / 20` events;
//! 4. verification of the pipeline's chain.
//!
//! Producers are OS threads calling [`AuditQueue::submit`]; each call is
//! timed, and in the paced run so is the request path (building the event
//! plus submitting it). Memory per queued event is measured first, in the
//! fresh process, by queueing events behind a sink that takes none of them
//! (see [`queue_memory`]); the report also gives the peak resident size.

mod measure;
mod queue_memory;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use audit_core::chain::{ChainHead, ChainId, SignMode};
use audit_core::chain_writer::ChainSinkOptions;
use audit_core::keys::{AuditSigner, Keyring};
use audit_core::pipeline::{AuditPipeline, AuditQueue};
use audit_core::verification::{SourceVerifyOptions, verify_source};
use audit_core::{AuditEvent, EventError};
use audit_sqlite::{SqliteOptions, SqliteStore};
use measure::{Latencies, per_second, proc_status_bytes};

use crate::error::{CliError, OK, block_on, failed};
use crate::store_url::StoreUrl;

/// Largest batch of the pipeline run (one transaction each).
pub const MAX_BATCH: usize = 8_192;
/// How long the pipeline may take to drain at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);
/// The producer number of the raw-insert rows.
const RAW_PRODUCER: u64 = 9_999;
/// Events queued behind a held sink to measure memory per queued event.
const QUEUE_MEMORY_EVENTS: u64 = 50_000;
/// The producer number of the memory measurement's events.
const QUEUE_MEMORY_PRODUCER: u64 = 9_998;
/// Signatures per core when measuring the signing rate.
const SIGNS_PER_CORE: u64 = 4_000;

/// Which records the bench signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SignChoice {
    /// Every record signed: the limit is the all-core signing rate.
    Every,
    /// Only checkpoints signed: the limit is the raw insert rate.
    Checkpoints,
}

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The store to measure (default: a SQLite file in a temporary folder).
    /// The baseline and the raw inserts use sibling files
    /// (`PATH.baseline`, `PATH.raw`).
    #[arg(long, value_name = "URL")]
    store: Option<StoreUrl>,
    /// Events through the pipeline (the baseline gets a twentieth).
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Producer threads submitting concurrently.
    #[arg(long, default_value_t = 4)]
    producers: u64,
    /// Which records are signed.
    #[arg(long, value_enum, default_value = "every")]
    sign: SignChoice,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs the bench.
pub fn run(args: BenchArgs) -> Result<ExitCode, CliError> {
    let temp = tempfile::tempdir()
        .map_err(|error| CliError::usage(format!("creating a temporary folder: {error}")))?;
    let path = match &args.store {
        None => temp.path().join("bench.db"),
        Some(StoreUrl::Sqlite(path)) => path.clone(),
        Some(other) => {
            return Err(CliError::usage(format!(
                "`bench` measures a SQLite file against its raw insert rate; give sqlite://PATH, not {other}"
            )));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| CliError::usage(format!("starting the async runtime: {error}")))?;
    let signer = Arc::new(AuditSigner::generate());
    let sign_mode = match args.sign {
        SignChoice::Every => SignMode::EveryRecord,
        SignChoice::Checkpoints => SignMode::CheckpointsOnly,
    };
    let events = args.events.max(1);
    let producers = args.producers.max(1);
    let queue_memory =
        queue_memory::measure(&runtime, events.clamp(1_000, QUEUE_MEMORY_EVENTS), |n| {
            bench_event(QUEUE_MEMORY_PRODUCER, n)
        })?;
    let pipeline = run_pipeline(
        &runtime,
        &path,
        &signer,
        sign_mode,
        RunSpec {
            max_batch: MAX_BATCH,
            events,
            producers,
            mode: Producers::Burst,
        },
    )?;
    let paced = run_pipeline(
        &runtime,
        &sibling(&path, "paced"),
        &signer,
        sign_mode,
        RunSpec {
            max_batch: MAX_BATCH,
            events: (events / 4).max(100),
            producers,
            mode: Producers::Paced,
        },
    )?;
    let verify = verify_rate(&path, &signer)?;
    let baseline_events = (events / 20).max(50);
    let baseline = run_pipeline(
        &runtime,
        &sibling(&path, "baseline"),
        &signer,
        SignMode::EveryRecord,
        RunSpec {
            max_batch: 1,
            events: baseline_events,
            producers,
            mode: Producers::Paced,
        },
    )?;
    let limits = Limits {
        signs_one_core: measure::signs_per_s_one_core(&signer, SIGNS_PER_CORE),
        signs_all_cores: measure::signs_per_s_all_cores(&signer, SIGNS_PER_CORE),
        verifies_all_cores: measure::verifies_per_s_all_cores(&signer, SIGNS_PER_CORE / 2),
        raw_insert: raw_insert_rate(&sibling(&path, "raw"), &signer, sign_mode, events)?,
    };
    let report = Report {
        args: &args,
        store: StoreUrl::Sqlite(path.clone()),
        limits,
        pipeline,
        paced,
        baseline,
        verify,
        queue_memory,
    };
    if args.json {
        println!("{}", report.json());
    } else {
        report.print();
    }
    let complete = report.pipeline.appended == events && report.verify.ok;
    Ok(if complete { OK } else { failed() })
}

/// `PATH.suffix`, beside `path`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// A governance refusal with a payload of about 300 bytes.
fn bench_event(producer: u64, n: u64) -> Result<AuditEvent, EventError> {
    AuditEvent::new(
        "governance.refusal",
        "agent:bench",
        serde_json::json!({
            "rule": "R001",
            "decision": "refuse",
            "action": "write",
            "path": "secrets/api-keys.env",
            "engine": producer,
            "request": n,
            "reason": "agents may not write under secrets/; the write was refused before it reached the file system and the agent was told why, so that it can ask a human operator for the change it needs",
        }),
    )
}

/// What one pipeline run measured.
struct PipelineRun {
    events: u64,
    appended: u64,
    elapsed: Duration,
    submit: measure::SortedLatencies,
    /// Building plus submitting each event (paced runs only).
    request_path: measure::SortedLatencies,
    submit_failures: u64,
    peak_queue_depth: u64,
    batches: u64,
    /// CPU time to build one event (canonical bytes and hash), producer side.
    build_ns_per_event: f64,
}

impl PipelineRun {
    fn events_per_s(&self) -> f64 {
        per_second(self.appended, self.elapsed)
    }
}

/// Runs `events` events from `producers` threads through a pipeline into a
/// SQLite chain at `path` (`synchronous=FULL`), batches up to `max_batch`.
fn run_pipeline(
    runtime: &tokio::runtime::Runtime,
    path: &Path,
    signer: &Arc<AuditSigner>,
    sign_mode: SignMode,
    spec: RunSpec,
) -> Result<PipelineRun, CliError> {
    let RunSpec {
        max_batch,
        events,
        producers,
        mode,
    } = spec;
    let sink_options = ChainSinkOptions::signed(signer.clone()).with_sign_mode(sign_mode);
    drop(SqliteStore::open_blocking(path, SqliteOptions::default())?);
    let factory = audit_sqlite::sink_factory(path, sink_options, SqliteOptions::default());
    let pipeline = {
        let _context = runtime.enter();
        AuditPipeline::builder(factory)
            .max_batch(max_batch)
            .name("bench")
            .spawn()
    };
    let metrics = pipeline.metrics();
    let (sources, build_elapsed): (Vec<Source>, Duration) = match mode {
        Producers::Burst => {
            let (built, elapsed) = build_events(events, producers)?;
            (built.into_iter().map(Source::Built).collect(), elapsed)
        }
        Producers::Paced => {
            let sources: Vec<Source> = (0..producers)
                .map(|producer| Source::Build {
                    producer,
                    share: share_of(events, producers, producer),
                })
                .collect();
            (sources, Duration::ZERO)
        }
    };
    let started = Instant::now();
    let done = AtomicBool::new(false);
    let peak_queue_depth = AtomicU64::new(0);
    let (latencies, request_path, submit_failures) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                peak_queue_depth.fetch_max(metrics.snapshot().queue_depth, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let workers: Vec<_> = sources
            .into_iter()
            .map(|source| {
                let queue = pipeline.queue();
                scope.spawn(move || produce(&queue, source))
            })
            .collect();
        let mut latencies = Latencies::with_capacity(events as usize);
        let mut request_path = Latencies::default();
        let mut failures = 0;
        for worker in workers {
            let produced = worker.join().unwrap_or_default();
            latencies.merge(produced.submit);
            request_path.merge(produced.request_path);
            failures += produced.failures;
        }
        done.store(true, Ordering::Relaxed);
        let _ = sampler.join();
        (latencies, request_path, failures)
    });
    let shutdown = runtime.block_on(pipeline.shutdown(DRAIN_TIMEOUT));
    let elapsed = started.elapsed();
    if let Some(error) = shutdown.errors.first() {
        return Err(CliError::usage(format!(
            "the pipeline into {} failed at shutdown: {error}",
            path.display()
        )));
    }
    Ok(PipelineRun {
        events,
        appended: shutdown.metrics.appended,
        elapsed,
        submit: latencies.sorted(),
        request_path: request_path.sorted(),
        submit_failures,
        peak_queue_depth: peak_queue_depth
            .into_inner()
            .max(shutdown.metrics.max_batch_size),
        batches: shutdown.metrics.batches,
        build_ns_per_event: build_elapsed.as_nanos() as f64 * producers as f64
            / events.max(1) as f64,
    })
}

/// Builds every producer's events before the clock starts (in a service
/// events are built over time by request handlers; building is the
/// producer's cost, reported apart as `build_ns_per_event`).
fn build_events(events: u64, producers: u64) -> Result<(Vec<Vec<AuditEvent>>, Duration), CliError> {
    let started = Instant::now();
    let built: Vec<Result<Vec<AuditEvent>, EventError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..producers)
            .map(|producer| {
                let share = share_of(events, producers, producer);
                scope.spawn(move || (0..share).map(|n| bench_event(producer, n)).collect())
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap_or_else(|_| Ok(Vec::new())))
            .collect()
    });
    let elapsed = started.elapsed();
    let built = built
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| CliError::usage(format!("building a bench event: {error}")))?;
    Ok((built, elapsed))
}

/// The shape of one pipeline run.
#[derive(Debug, Clone, Copy)]
struct RunSpec {
    max_batch: usize,
    events: u64,
    producers: u64,
    mode: Producers,
}

/// How producers feed the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Producers {
    /// Events built before the clock starts, then submitted back to back:
    /// the pipeline's throughput, and `submit` under contention.
    Burst,
    /// Each event built just before it is submitted, as a service does:
    /// `submit` latency as a service sees it.
    Paced,
}

/// What one producer submits.
enum Source {
    Built(Vec<AuditEvent>),
    Build { producer: u64, share: u64 },
}

/// Events of `producer` when `events` are spread over `producers`.
fn share_of(events: u64, producers: u64, producer: u64) -> u64 {
    events / producers + u64::from(producer < events % producers)
}

/// What one producer measured.
#[derive(Default)]
struct Produced {
    /// Each `submit` call.
    submit: Latencies,
    /// Each event's build plus `submit`, when the producer builds them.
    request_path: Latencies,
    failures: u64,
}

/// One producer: submits its events, timing each `submit` call, and when
/// it builds them as it goes, each build plus submit (the request path).
fn produce(queue: &AuditQueue, source: Source) -> Produced {
    let mut produced = Produced::default();
    match source {
        Source::Built(events) => {
            for event in events {
                submit_timed(queue, event, &mut produced);
            }
        }
        Source::Build { producer, share } => {
            for n in 0..share {
                let started = Instant::now();
                match bench_event(producer, n) {
                    Ok(event) => submit_timed(queue, event, &mut produced),
                    Err(_) => produced.failures += 1,
                }
                produced.request_path.record(started.elapsed());
            }
        }
    }
    produced
}

fn submit_timed(queue: &AuditQueue, event: AuditEvent, produced: &mut Produced) {
    let started = Instant::now();
    let queued = queue.submit(event);
    produced.submit.record(started.elapsed());
    produced.failures += u64::from(!queued);
}

/// The machine's limits.
struct Limits {
    signs_one_core: f64,
    signs_all_cores: f64,
    /// Strict signature verifications per second on all cores.
    verifies_all_cores: f64,
    raw_insert: f64,
}

impl Limits {
    /// The pipeline's ceiling when every record is signed and the store's
    /// work overlaps perfectly with signing: per event, signing takes
    /// `cores / signs_all_cores` core-seconds and the insert at most
    /// `1 / raw_insert` (one thread, its fsync counted as work), so no
    /// schedule on `cores` cores beats `cores / (cores / S + 1 / I)`.
    fn overlapped(&self) -> f64 {
        let cores = measure::cores() as f64;
        if self.signs_all_cores <= 0.0 || self.raw_insert <= 0.0 {
            return 0.0;
        }
        cores / (cores / self.signs_all_cores + 1.0 / self.raw_insert)
    }
}

/// Rows per second the store absorbs: `events` pre-sealed rows (signature
/// columns filled when records are signed) written [`MAX_BATCH`] per
/// transaction by multi-row inserts; only the writes are timed.
fn raw_insert_rate(
    path: &Path,
    signer: &Arc<AuditSigner>,
    sign_mode: SignMode,
    events: u64,
) -> Result<f64, CliError> {
    let mut store = SqliteStore::open_blocking(path, SqliteOptions::default())?;
    let sealer =
        audit_core::chain::Sealer::new(ChainId::default(), None, SignMode::CheckpointsOnly);
    let key_id = audit_core::SharedStr::from(signer.key_id().to_string());
    let mut head = ChainHead::EMPTY;
    let mut written = 0u64;
    let mut writing = Duration::ZERO;
    while written < events {
        let chunk = (events - written).min(MAX_BATCH as u64);
        let batch: Vec<AuditEvent> = (written..written + chunk)
            .map(|n| bench_event(RAW_PRODUCER, n))
            .collect::<Result<_, _>>()
            .map_err(|error| CliError::usage(format!("building a bench event: {error}")))?;
        let mut records = sealer.seal_batch(head, &batch);
        if sign_mode == SignMode::EveryRecord {
            for record in &mut records {
                record.key_id = Some(key_id.clone());
                record.sig = Some([0x5a; 64]);
            }
        }
        let started = Instant::now();
        audit_sqlite::insert_sealed_blocking(&mut store, &records)
            .map_err(|error| CliError::usage(error.to_string()))?;
        writing += started.elapsed();
        head = records.last().map_or(head, |record| record.head());
        written += chunk;
    }
    Ok(per_second(written, writing))
}

/// What verifying the pipeline's chain measured.
struct VerifyRun {
    ok: bool,
    records: u64,
    elapsed: Duration,
}

fn verify_rate(path: &Path, signer: &AuditSigner) -> Result<VerifyRun, CliError> {
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    // Checkpoint-only runs leave records unsigned: accepted here, on purpose.
    let options = SourceVerifyOptions::default().with_allow_unsigned(true);
    let source = audit_sqlite::SqliteSource::open(path)?;
    let started = Instant::now();
    let report = block_on(verify_source(&source, &keyring, options))??;
    Ok(VerifyRun {
        ok: report.is_ok(),
        records: report.records,
        elapsed: started.elapsed(),
    })
}

struct Report<'a> {
    args: &'a BenchArgs,
    store: StoreUrl,
    limits: Limits,
    /// The pipeline with prebuilt events (throughput).
    pipeline: PipelineRun,
    /// The pipeline with producers building as they go (submit latency).
    paced: PipelineRun,
    baseline: PipelineRun,
    verify: VerifyRun,
    queue_memory: queue_memory::QueueMemory,
}

impl Report<'_> {
    fn ratio(&self) -> f64 {
        let baseline = self.baseline.events_per_s();
        if baseline > 0.0 {
            self.pipeline.events_per_s() / baseline
        } else {
            0.0
        }
    }

    /// The limit that applies: all-core signing when every record is
    /// signed, the raw insert rate otherwise.
    fn limit(&self) -> (f64, &'static str) {
        match self.args.sign {
            SignChoice::Every => (self.limits.signs_all_cores, "all-core signing rate"),
            SignChoice::Checkpoints => (self.limits.raw_insert, "raw batched insert rate"),
        }
    }

    /// The overlap limit, which applies when every record is signed.
    fn overlapped_limit(&self) -> Option<f64> {
        (self.args.sign == SignChoice::Every).then(|| self.limits.overlapped())
    }

    fn limit_fraction(&self) -> f64 {
        self.fraction_of(self.limit().0)
    }

    /// The pipeline's rate over `limit` (0 for no limit).
    fn fraction_of(&self, limit: f64) -> f64 {
        if limit > 0.0 {
            self.pipeline.events_per_s() / limit
        } else {
            0.0
        }
    }

    fn verify_per_s(&self) -> f64 {
        per_second(self.verify.records, self.verify.elapsed)
    }

    fn json(&self) -> serde_json::Value {
        let (_, limit_name) = self.limit();
        serde_json::json!({
            "store": self.store.to_string(),
            "sign": match self.args.sign { SignChoice::Every => "every", SignChoice::Checkpoints => "checkpoints" },
            "durability": "synchronous=FULL",
            "cores": measure::cores(),
            "events": self.pipeline.events,
            "producers": self.args.producers.max(1),
            "signs_per_s_one_core": self.limits.signs_one_core,
            "signs_per_s_all_cores": self.limits.signs_all_cores,
            "verify_strict_per_s_all_cores": self.limits.verifies_all_cores,
            "overlapped_limit_events_per_s": self.overlapped_limit(),
            "overlapped_limit_fraction": self.overlapped_limit().map(|limit| self.fraction_of(limit)),
            "raw_insert_rows_per_s": self.limits.raw_insert,
            "pipeline_events_per_s": self.pipeline.events_per_s(),
            "pipeline_appended": self.pipeline.appended,
            "pipeline_batches": self.pipeline.batches,
            "pipeline_elapsed_s": self.pipeline.elapsed.as_secs_f64(),
            "baseline_events": self.baseline.events,
            "baseline_events_per_s": self.baseline.events_per_s(),
            "ratio": self.ratio(),
            "limit": limit_name,
            "limit_fraction": self.limit_fraction(),
            "request_path_ns_median": self.paced.request_path.percentile(0.5),
            "request_path_ns_p99": self.paced.request_path.percentile(0.99),
            "submit_ns_median": self.paced.submit.percentile(0.5),
            "submit_ns_p99": self.paced.submit.percentile(0.99),
            "burst_submit_ns_median": self.pipeline.submit.percentile(0.5),
            "burst_submit_ns_p99": self.pipeline.submit.percentile(0.99),
            "paced_events_per_s": self.paced.events_per_s(),
            "submit_failures": self.pipeline.submit_failures,
            "build_ns_per_event": self.pipeline.build_ns_per_event,
            "verify_ok": self.verify.ok,
            "verify_records_per_s": self.verify_per_s(),
            "verify_fraction_of_signature_limit": if self.limits.verifies_all_cores > 0.0 {
                self.verify_per_s() / self.limits.verifies_all_cores
            } else {
                0.0
            },
            "peak_memory_bytes": proc_status_bytes("VmHWM"),
            "peak_queue_depth": self.pipeline.peak_queue_depth,
            "bytes_per_queued_event": self.queue_memory.bytes_per_event(),
            "queue_memory_events": self.queue_memory.queued,
        })
    }

    fn print(&self) {
        let (limit, limit_name) = self.limit();
        println!(
            "store            {} (synchronous=FULL), {} cores",
            self.store,
            measure::cores()
        );
        println!(
            "signing          {:>10.0} signs/s on one core, {:.0} on all cores",
            self.limits.signs_one_core, self.limits.signs_all_cores
        );
        println!(
            "raw inserts      {:>10.0} rows/s ({MAX_BATCH} rows per transaction)",
            self.limits.raw_insert
        );
        if let Some(limit) = self.overlapped_limit() {
            println!(
                "overlap limit    {:>10.0} events/s (signing and inserts perfectly overlapped on every core; the pipeline is at {:.1}%)",
                limit,
                self.fraction_of(limit) * 100.0
            );
        }
        println!(
            "verify limit     {:>10.0} strict signature checks/s on all cores",
            self.limits.verifies_all_cores
        );
        println!(
            "baseline         {:>10.0} events/s ({} events, one per transaction, each signed)",
            self.baseline.events_per_s(),
            self.baseline.events
        );
        println!(
            "pipeline         {:>10.0} events/s ({} events, {} batches)",
            self.pipeline.events_per_s(),
            self.pipeline.events,
            self.pipeline.batches
        );
        println!("ratio            {:>10.1}x the baseline", self.ratio());
        println!(
            "limit            {:>10.1}% of the {limit_name} ({limit:.0}/s)",
            self.limit_fraction() * 100.0
        );
        println!(
            "request path     {:>10} ns median, {} ns p99 (build one event and submit it, while the pipeline runs)",
            self.paced.request_path.percentile(0.5),
            self.paced.request_path.percentile(0.99)
        );
        println!(
            "submit           {:>10} ns median, {} ns p99 (producers build each event, then submit it: {:.0} events/s)",
            self.paced.submit.percentile(0.5),
            self.paced.submit.percentile(0.99),
            self.paced.events_per_s()
        );
        println!(
            "submit (burst)   {:>10} ns median, {} ns p99 (prebuilt events submitted back to back)",
            self.pipeline.submit.percentile(0.5),
            self.pipeline.submit.percentile(0.99)
        );
        println!(
            "build            {:>10.0} ns per event on the producer side (before the clock starts)",
            self.pipeline.build_ns_per_event
        );
        println!(
            "verify           {:>10.0} records/s ({} records, {})",
            self.verify_per_s(),
            self.verify.records,
            if self.verify.ok { "OK" } else { "FAILED" }
        );
        println!(
            "memory           {:>10.0} bytes per queued event ({} events held in the queue), {} KiB peak, deepest queue {}",
            self.queue_memory.bytes_per_event(),
            self.queue_memory.queued,
            proc_status_bytes("VmHWM") / 1024,
            self.pipeline.peak_queue_depth
        );
    }
}
