//! Events per second into moto's S3 server, alone and as a mirror.
//!
//! `cargo run --release -p audit-s3-jsonl --example moto_throughput [EVENTS] [BATCH]`
//!
//! Every record is signed; every sink starts on an empty prefix.
//!
//! - `local archive alone`: the primary on its own (an archive in a local
//!   folder), for reference;
//! - `moto archive alone`: one archive sink writing into moto (one
//!   create-only PUT per batch);
//! - `tee: local primary + moto mirror`: the core `Tee`, primary a
//!   local-folder archive, mirror the moto archive (both written at once
//!   for each batch);
//! - `pipeline + tee`: the same tee behind an `AuditPipeline` (four
//!   producers submitting, batches of up to BATCH), from the first submit
//!   to a completed shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_core::AuditEvent;
use audit_core::chain_writer::{ChainSinkOptions, CheckpointPolicy};
use audit_core::keys::AuditSigner;
use audit_core::pipeline::AuditPipeline;
use audit_core::sink::{AuditSink, ErrorClass, SinkError};
use audit_core::tee::{MirrorFailures, Tee};
use audit_s3_jsonl::{ArchiveFactory, ArchiveOptions};
use audit_testkit::servers::s3::MotoServer;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

type BoxError = Box<dyn std::error::Error>;

fn events(count: usize) -> Result<Vec<AuditEvent>, BoxError> {
    (0..count)
        .map(|n| {
            AuditEvent::new(
                "bench.write",
                "agent:bench",
                serde_json::json!({ "n": n, "note": "x".repeat(200) }),
            )
            .map_err(BoxError::from)
        })
        .collect()
}

fn options(signer: &Arc<AuditSigner>) -> ChainSinkOptions {
    ChainSinkOptions::signed(signer.clone()).with_checkpoints(CheckpointPolicy {
        every_records: Some(10_000),
        every: None,
    })
}

/// Where the sinks of one measurement write.
struct Stores {
    local: Arc<dyn ObjectStore>,
    moto: Arc<dyn ObjectStore>,
    signer: Arc<AuditSigner>,
}

impl Stores {
    fn archive(&self, store: &Arc<dyn ObjectStore>, prefix: &str) -> ArchiveFactory {
        ArchiveFactory::new(
            store.clone(),
            Path::from(prefix),
            options(&self.signer),
            ArchiveOptions::default(),
        )
    }

    async fn tee(&self, run: &str) -> Result<Tee, BoxError> {
        let primary = self.archive(&self.local, &format!("{run}-primary"));
        let mirror = self.archive(&self.moto, &format!("{run}-mirror"));
        Ok(Tee::new(
            Box::new(primary.open().await?),
            vec![Box::new(mirror.open().await?)],
        ))
    }
}

/// Appends `all` in batches of `batch` straight into `sink`.
async fn direct(
    mut sink: impl AuditSink,
    all: &[AuditEvent],
    batch: usize,
) -> Result<Duration, BoxError> {
    let started = Instant::now();
    for chunk in all.chunks(batch) {
        sink.append_batch(chunk).await?;
    }
    sink.close().await?;
    Ok(started.elapsed())
}

/// Submits `all` from four producers into a pipeline over a tee and shuts
/// it down; returns the time and the mirror failures.
async fn through_pipeline(
    stores: Arc<Stores>,
    all: &[AuditEvent],
    batch: usize,
) -> Result<(Duration, u64), BoxError> {
    let failures = MirrorFailures::default();
    let factory = {
        let (stores, failures) = (stores.clone(), failures.clone());
        move || {
            let (stores, failures) = (stores.clone(), failures.clone());
            async move {
                let tee = stores.tee("pipeline").await.map_err(|error| {
                    SinkError::new("tee", ErrorClass::Transient, error.to_string())
                })?;
                Ok::<_, SinkError>(tee.with_failure_counter(failures))
            }
        }
    };
    let started = Instant::now();
    let pipeline = AuditPipeline::builder(factory).max_batch(batch).spawn();
    let producers: Vec<_> = all
        .chunks(all.len().div_ceil(4).max(1))
        .map(|part| {
            let (queue, part) = (pipeline.queue(), part.to_vec());
            tokio::spawn(async move { part.into_iter().all(|event| queue.submit(event)) })
        })
        .collect();
    for producer in producers {
        if !producer.await? {
            return Err("the pipeline refused an event".into());
        }
    }
    let report = pipeline.shutdown(Duration::from_secs(600)).await;
    let elapsed = started.elapsed();
    if !report.is_clean() || report.metrics.appended != all.len() as u64 {
        return Err(format!("pipeline did not finish cleanly: {report:?}").into());
    }
    Ok((elapsed, failures.get()))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let total: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let server = MotoServer::start()?;
    let dir = tempfile::tempdir()?;
    let stores = Arc::new(Stores {
        local: Arc::new(LocalFileSystem::new_with_prefix(dir.path())?),
        moto: server.store(""),
        signer: Arc::new(AuditSigner::generate()),
    });
    let all = events(total)?;

    let local = direct(
        stores.archive(&stores.local, "alone").open().await?,
        &all,
        batch,
    )
    .await?;
    let moto = direct(
        stores.archive(&stores.moto, "alone").open().await?,
        &all,
        batch,
    )
    .await?;
    let tee = stores.tee("direct").await?;
    let tee_failures = tee.mirror_failure_counter();
    let teed = direct(tee, &all, batch).await?;
    let (piped, pipe_failures) = through_pipeline(stores.clone(), &all, batch).await?;

    let rate = |elapsed: Duration| total as f64 / elapsed.as_secs_f64();
    println!("{total} events, batches of {batch}, every record signed");
    for (name, elapsed) in [
        ("local archive alone", local),
        ("moto archive alone", moto),
        ("tee: local primary + moto mirror", teed),
        ("pipeline + tee (4 producers)", piped),
    ] {
        println!("{name:<34} {:>9.0} events/s ({elapsed:.2?})", rate(elapsed));
    }
    println!(
        "mirror failures: tee {}, pipeline {}",
        tee_failures.get(),
        pipe_failures
    );
    Ok(())
}
