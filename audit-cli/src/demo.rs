//! `deferred-audit demo`: the main job.
//!
//! A governance engine refuses agents' writes (an agent writes to
//! `secrets/*`, rule R001 refuses): `--producers` tasks each play an
//! engine and submit `governance.refusal` events through the pipeline
//! (non-blocking queue, batching drainer, supervisor) into a signed chain;
//! then the pipeline shuts down with a bounded drain, the chain is verified,
//! and a summary is printed. Run twice, it appends to the same chain.
//!
//! By default events are admitted durably through a journal
//! (`journal/` beside the database, or `--journal DIR`): each submit
//! resolves once the event is fsync'd there, and the producers keep many
//! submits in flight so that one fsync covers a whole group. `--no-journal`
//! queues in memory only.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_core::AuditEvent;
use audit_core::chain::{ChainId, VerifyReport};
use audit_core::chain_writer::ChainSinkOptions;
use audit_core::journal::JournalConfig;
use audit_core::keys::{AuditSigner, Keyring};
use audit_core::pipeline::{AuditPipeline, Backpressure, ShutdownReport};
use audit_core::tee::MirrorFailures;
use audit_core::verification::SourceVerifyOptions;
use futures::StreamExt;

use crate::error::{CliError, OK, failed};
use crate::progress;
use crate::sinks;
use crate::store_url::StoreUrl;

/// The store used without `--store`.
const DEFAULT_STORE: &str = "sqlite://demo-data/audit.db";
/// Largest batch handed to the sink: one transaction each.
const MAX_BATCH: usize = 8_192;
/// Events waiting in the queue at most (producers wait for room beyond).
const QUEUE_CAPACITY: usize = 65_536;
/// Submits each producer keeps in flight (they share the journal's fsyncs).
const IN_FLIGHT: usize = 256;
/// How long shutdown may drain.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// Arguments of the demo.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the chain goes.
    #[arg(long, value_name = "URL", default_value = DEFAULT_STORE)]
    store: StoreUrl,
    /// Events to submit.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Producer tasks submitting concurrently.
    #[arg(long, default_value_t = 8)]
    producers: u64,
    /// The signing key (PKCS#8 PEM); default: audit-key.pem beside the
    /// database, generated when absent.
    #[arg(long, value_name = "PEM")]
    key: Option<PathBuf>,
    /// Also publish every checkpoint of the chain to this archive
    /// (s3://BUCKET/PREFIX or file:///DIR), for `verify --checkpoints`.
    #[arg(long, value_name = "URL")]
    publish_checkpoints: Option<StoreUrl>,
    /// Also write every batch to this store (s3://, file://, sqlite://,
    /// postgres://) through a tee; its failures never fail the primary and
    /// are counted in the summary.
    #[arg(long, value_name = "URL")]
    mirror: Option<StoreUrl>,
    /// The journal directory for durable admission; default: journal/
    /// beside the database.
    #[arg(long, value_name = "DIR", conflicts_with = "no_journal")]
    journal: Option<PathBuf>,
    /// Queue in memory only: no journal, no durable admission.
    #[arg(long)]
    no_journal: bool,
    /// The origin (log name) of the chain's tree checkpoints; default
    /// deferred-audit/<key_id>/<chain>.
    #[arg(long, value_parser = crate::witness::parse_origin)]
    origin: Option<String>,
    /// Witnesses asked to cosign the chain's tree checkpoints.
    #[command(flatten)]
    witnesses: crate::witness::WitnessArgs,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

impl DemoArgs {
    /// The journal directory, unless `--no-journal`.
    fn journal_dir(&self, folder: &Path) -> Option<PathBuf> {
        if self.no_journal {
            return None;
        }
        Some(
            self.journal
                .clone()
                .unwrap_or_else(|| folder.join("journal")),
        )
    }
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<ExitCode, CliError> {
    let folder = demo_folder(&args.store);
    std::fs::create_dir_all(&folder).map_err(|error| {
        CliError::usage(format!("creating folder {}: {error}", folder.display()))
    })?;
    let (signer, key_note) = load_or_create_key(args.key.as_deref(), &folder)?;
    if !args.json {
        println!("{key_note}");
        println!(
            "demo: {} producers submit {} governance.refusal events into {}",
            args.producers, args.events, args.store
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| CliError::usage(format!("starting the async runtime: {error}")))?;
    let outcome = runtime.block_on(submit_all(&args, &folder, signer.clone()))?;
    let verify_started = Instant::now();
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    let report = runtime.block_on(async {
        let outside_checkpoints = match &args.publish_checkpoints {
            Some(url) => crate::verify::load_checkpoints(url).await?,
            None => Vec::new(),
        };
        let options = SourceVerifyOptions::default().with_outside_checkpoints(outside_checkpoints);
        crate::verify::verify_store(&args.store, &keyring, options, args.json).await
    })?;
    let summary = Summary {
        args: &args,
        outcome: &outcome,
        report: &report,
        verify_elapsed: verify_started.elapsed(),
    };
    if args.json {
        println!("{}", summary.json());
    } else {
        summary.print();
    }
    let complete = report.is_ok()
        && outcome.submit_errors == 0
        && outcome.shutdown.metrics.lost == 0
        && outcome.shutdown.metrics.appended + outcome.shutdown.metrics.dead_lettered
            == args.events + outcome.recovered;
    Ok(if complete { OK } else { failed() })
}

/// Where the key and the fallback file live: beside a SQLite database,
/// `demo-data/` otherwise.
fn demo_folder(store: &StoreUrl) -> PathBuf {
    match store {
        StoreUrl::Sqlite(path) => path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned(),
        _ => PathBuf::from("demo-data"),
    }
}

fn load_or_create_key(
    key: Option<&Path>,
    folder: &Path,
) -> Result<(Arc<AuditSigner>, String), CliError> {
    if let Some(path) = key {
        let signer = AuditSigner::load(path)?;
        let note = format!(
            "signing with key {} from {}",
            signer.key_id(),
            path.display()
        );
        return Ok((Arc::new(signer), note));
    }
    let path = folder.join("audit-key.pem");
    if path.exists() {
        let signer = AuditSigner::load(&path)?;
        let note = format!(
            "signing with key {} from {}",
            signer.key_id(),
            path.display()
        );
        return Ok((Arc::new(signer), note));
    }
    let signer = AuditSigner::generate();
    let (secret, public) = signer.write_key_files(folder)?;
    let note = format!(
        "generated key {}: {} (secret, 0600) and {} (public)",
        signer.key_id(),
        secret.display(),
        public.display()
    );
    Ok((Arc::new(signer), note))
}

struct Outcome {
    shutdown: ShutdownReport,
    elapsed: Duration,
    submit_errors: u64,
    mirror_failures: u64,
    /// Events replayed from the journal before the new ones.
    recovered: u64,
    /// The journal used, if any.
    journal: Option<PathBuf>,
}

async fn submit_all(
    args: &DemoArgs,
    folder: &Path,
    signer: Arc<AuditSigner>,
) -> Result<Outcome, CliError> {
    let chain = ChainId::default();
    let publisher = match &args.publish_checkpoints {
        Some(url) => Some(deferred_audit::checkpoint_publisher(url)?),
        None => None,
    };
    let mut mirror_options = ChainSinkOptions::signed(signer).for_chain(chain.clone());
    if let Some(origin) = &args.origin {
        mirror_options = mirror_options
            .with_origin(origin)
            .map_err(|error| CliError::usage(format!("--origin: {error}")))?;
    }
    if let Some(cosigner) = args.witnesses.cosigner(&args.store).await? {
        mirror_options = mirror_options.with_cosigner(cosigner);
    }
    let sink_options = match publisher {
        Some(publisher) => mirror_options.clone().with_publisher(publisher),
        None => mirror_options.clone(),
    };
    let factory = opened(
        &args.store,
        sinks::chain_factory(&args.store, sink_options.clone())?,
    )
    .await?;
    let mirror_failures = MirrorFailures::default();
    let builder = match &args.mirror {
        Some(url) => {
            let mirror = opened(url, sinks::chain_factory(url, mirror_options)?).await?;
            AuditPipeline::builder(sinks::mirrored_factory(
                factory,
                mirror,
                mirror_failures.clone(),
            ))
        }
        None => AuditPipeline::builder(sinks::pipeline_factory(factory)),
    };
    let mut builder = builder
        .max_batch(MAX_BATCH)
        .backpressure(Backpressure::Block {
            capacity: QUEUE_CAPACITY,
        })
        .fallback_path(folder.join("fallback-dead-letters.jsonl"))
        .chain(chain)
        .name("demo");
    let journal = args.journal_dir(folder);
    if let Some(dir) = &journal {
        builder = builder
            .journal(JournalConfig::new(dir))
            .map_err(|error| CliError::usage(error.to_string()))?;
    }
    let pipeline = builder.spawn();
    let recovered = pipeline.metrics().snapshot().submitted;
    let bar = progress::bar(args.events, "appended", args.json);
    let metrics = pipeline.metrics();
    let ticker_bar = bar.clone();
    let ticker = tokio::spawn(async move {
        loop {
            let snapshot = metrics.snapshot();
            ticker_bar.set_position(snapshot.appended + snapshot.dead_lettered + snapshot.lost);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let started = Instant::now();
    let producers = args.producers.max(1);
    let mut tasks = Vec::new();
    for producer in 0..producers {
        let share = args.events / producers + u64::from(producer < args.events % producers);
        let queue = pipeline.queue();
        let durable = journal.is_some();
        tasks.push(tokio::spawn(async move {
            let submits = futures::stream::iter(0..share)
                .map(|n| {
                    let queue = queue.clone();
                    async move {
                        let Ok(event) = refusal(producer, n) else {
                            return false;
                        };
                        if durable {
                            queue.submit_durable(event).await.is_ok()
                        } else {
                            queue.submit_async(event).await.is_ok()
                        }
                    }
                })
                .buffer_unordered(IN_FLIGHT);
            futures::pin_mut!(submits);
            let mut errors = 0u64;
            while let Some(admitted) = submits.next().await {
                errors += u64::from(!admitted);
            }
            errors
        }));
    }
    let mut submit_errors = 0;
    for task in tasks {
        submit_errors += task
            .await
            .map_err(|error| CliError::usage(format!("a producer task failed: {error}")))?;
    }
    let shutdown = pipeline.shutdown(DRAIN_TIMEOUT).await;
    let elapsed = started.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    Ok(Outcome {
        shutdown,
        elapsed,
        submit_errors,
        mirror_failures: mirror_failures.get(),
        recovered,
        journal,
    })
}

/// `factory`, once it opened a sink: a wrong store is reported before any work.
async fn opened(
    url: &StoreUrl,
    factory: sinks::SharedFactory,
) -> Result<sinks::SharedFactory, CliError> {
    factory
        .create()
        .await
        .map_err(|error| CliError::usage(format!("opening {url}: {error}")))?;
    Ok(factory)
}

const AGENTS: [&str; 6] = [
    "agent:planner",
    "agent:coder",
    "agent:researcher",
    "agent:reviewer",
    "agent:ops",
    "agent:intern",
];
const ACTIONS: [&str; 4] = ["write", "append", "delete", "rename"];
const FILES: [&str; 5] = [
    "api-keys.env",
    "prod.pem",
    "db-password.txt",
    "oauth.json",
    "ssh/id_ed25519",
];

/// One refusal by the governance engine of producer `engine`.
pub(crate) fn refusal(engine: u64, n: u64) -> Result<AuditEvent, audit_core::EventError> {
    let pick = |list: &[&'static str], salt: u64| {
        list[((n * 7 + engine * 13 + salt) % list.len() as u64) as usize]
    };
    let agent = pick(&AGENTS, 0);
    let action = pick(&ACTIONS, 1);
    let path = format!("secrets/{}", pick(&FILES, 2));
    AuditEvent::new(
        "governance.refusal",
        agent,
        serde_json::json!({
            "rule": "R001",
            "decision": "refuse",
            "action": action,
            "path": path,
            "reason": "agents may not write under secrets/",
            "engine": format!("engine-{engine}"),
            "request": n,
        }),
    )
}

struct Summary<'a> {
    args: &'a DemoArgs,
    outcome: &'a Outcome,
    report: &'a VerifyReport,
    verify_elapsed: Duration,
}

impl Summary<'_> {
    fn events_per_s(&self) -> f64 {
        let seconds = self.outcome.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.outcome.shutdown.metrics.appended as f64 / seconds
        } else {
            0.0
        }
    }

    fn json(&self) -> serde_json::Value {
        let metrics = &self.outcome.shutdown.metrics;
        let chain = self.report.chains.get("default");
        serde_json::json!({
            "store": self.args.store.to_string(),
            "events": self.args.events,
            "producers": self.args.producers,
            "journal": self.outcome.journal.as_ref().map(|dir| dir.display().to_string()),
            "recovered": self.outcome.recovered,
            "submitted": metrics.submitted,
            "submit_errors": self.outcome.submit_errors,
            "appended": metrics.appended,
            "dead_lettered": metrics.dead_lettered,
            "lost": metrics.lost,
            "batches": metrics.batches,
            "max_batch_size": metrics.max_batch_size,
            "restarts": metrics.restarts,
            "mirror": self.args.mirror.as_ref().map(|url| url.to_string()),
            "mirror_failures": self.outcome.mirror_failures,
            "drain_timed_out": self.outcome.shutdown.timed_out,
            "shutdown_errors": self.outcome.shutdown.errors,
            "checkpoint_seq": self.outcome.shutdown.checkpoint.as_ref().map(|checkpoint| checkpoint.seq),
            "elapsed_s": self.outcome.elapsed.as_secs_f64(),
            "events_per_s": self.events_per_s(),
            "verify": {
                "ok": self.report.is_ok(),
                "records": self.report.records,
                "checkpoints": self.report.checkpoints,
                "head_seq": chain.map(|chain| chain.head_seq),
                "head_hash": chain.map(|chain| chain.head_hash.clone()),
                "failures": self.report.failures.iter().take(10).collect::<Vec<_>>(),
                "elapsed_s": self.verify_elapsed.as_secs_f64(),
            },
        })
    }

    fn print(&self) {
        let metrics = &self.outcome.shutdown.metrics;
        match &self.outcome.journal {
            Some(dir) => println!(
                "journal        {} (durable admission; {} recovered)",
                dir.display(),
                self.outcome.recovered
            ),
            None => println!("journal        none (--no-journal: in memory only)"),
        }
        println!("events         {}", self.args.events);
        println!("appended       {}", metrics.appended);
        println!("dead-lettered  {}", metrics.dead_lettered);
        println!("lost           {}", metrics.lost);
        println!(
            "elapsed        {:.3} s ({} batches, largest {})",
            self.outcome.elapsed.as_secs_f64(),
            metrics.batches,
            metrics.max_batch_size
        );
        println!("events/s       {:.0}", self.events_per_s());
        if let Some(mirror) = &self.args.mirror {
            println!(
                "mirror         {mirror}: {} failure(s)",
                self.outcome.mirror_failures
            );
        }
        if self.outcome.shutdown.timed_out {
            println!("warning: the drain timed out after {DRAIN_TIMEOUT:?}");
        }
        for error in &self.outcome.shutdown.errors {
            println!("shutdown error: {error}");
        }
        match self.report.first_failure() {
            None => println!(
                "verify         OK: {} records, {} checkpoints, head seq {} ({:.3} s)",
                self.report.records,
                self.report.checkpoints,
                self.report
                    .chains
                    .get("default")
                    .map_or(0, |chain| chain.head_seq),
                self.verify_elapsed.as_secs_f64()
            ),
            Some(first) => println!(
                "verify         FAILED at chain {} seq {}: {} ({}); {} failure(s)",
                first.chain,
                first.seq,
                first.kind,
                first.detail,
                self.report.failures.len()
            ),
        }
        println!(
            "check it yourself: deferred-audit verify {} --pubkey {}",
            self.args.store,
            self.public_key_hint()
        );
        println!(
            "  (`cargo install --path audit-cli` puts deferred-audit on your PATH; or run it as `cargo run --release --bin deferred-audit -- verify …`)"
        );
    }

    fn public_key_hint(&self) -> String {
        match &self.args.key {
            None => demo_folder(&self.args.store)
                .join("audit-key.pub.pem")
                .display()
                .to_string(),
            Some(_) => "PUBLIC-KEY.pem".into(),
        }
    }
}
