//! Events per second into moto's S3 server, alone and as a mirror.
//!
//! `cargo run --release -p audit-s3-jsonl --example moto_throughput [EVENTS] [BATCH]`
//!
//! - `archive`: one archive sink writing into moto (one create-only PUT per
//!   batch, every record signed);
//! - `primary + mirror`: each batch written first to a primary (an archive
//!   in a local folder) then to the moto archive, one after the other, as a
//!   fan-out sink does.

use std::sync::Arc;
use std::time::Instant;

use audit_core::chain_writer::{ChainSinkOptions, CheckpointPolicy};
use audit_core::keys::AuditSigner;
use audit_core::sink::AuditSink;
use audit_core::{AuditEvent, ChainId};
use audit_s3_jsonl::{ArchiveOptions, ArchiveSink};
use audit_testkit::servers::s3::MotoServer;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

fn events(count: usize) -> Vec<AuditEvent> {
    (0..count)
        .map(|n| {
            AuditEvent::new(
                "bench.write",
                "agent:bench",
                serde_json::json!({ "n": n, "note": "x".repeat(200) }),
            )
            .map_err(|error| error.to_string())
        })
        .collect::<Result<_, _>>()
        .unwrap_or_default()
}

fn options(signer: &Arc<AuditSigner>) -> ChainSinkOptions {
    ChainSinkOptions {
        chain: ChainId::default(),
        signer: Some(signer.clone()),
        checkpoints: CheckpointPolicy {
            every_records: Some(10_000),
            every: None,
        },
        ..ChainSinkOptions::default()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let server = MotoServer::start()?;
    let signer = Arc::new(AuditSigner::generate());
    let all = events(total);

    let mut archive = ArchiveSink::open(
        server.store(""),
        Path::from("alone"),
        options(&signer),
        ArchiveOptions::default(),
    )
    .await?;
    let started = Instant::now();
    for chunk in all.chunks(batch) {
        archive.append_batch(chunk).await?;
    }
    let alone = started.elapsed();

    let dir = tempfile::tempdir()?;
    let mut primary = ArchiveSink::open(
        Arc::new(LocalFileSystem::new_with_prefix(dir.path())?),
        Path::from("primary"),
        options(&signer),
        ArchiveOptions::default(),
    )
    .await?;
    let mut mirror = ArchiveSink::open(
        server.store(""),
        Path::from("mirror"),
        options(&signer),
        ArchiveOptions::default(),
    )
    .await?;
    let started = Instant::now();
    for chunk in all.chunks(batch) {
        primary.append_batch(chunk).await?;
        mirror.append_batch(chunk).await?;
    }
    let mirrored = started.elapsed();

    let rate = |elapsed: std::time::Duration| total as f64 / elapsed.as_secs_f64();
    println!("{total} events, batches of {batch}, every record signed");
    println!(
        "archive into moto:            {:>9.0} events/s ({alone:.2?})",
        rate(alone)
    );
    println!(
        "local primary + moto mirror:  {:>9.0} events/s ({mirrored:.2?})",
        rate(mirrored)
    );
    Ok(())
}
