//! The SQLite sink alone (no queue, no drainer) against raw batched
//! inserts of the same records, in one run: the sink's share of what the
//! file can absorb, and a target for `perf record`.
//!
//! ```text
//! cargo run --release -p audit-sqlite --example sqlite_bench [EVENTS] [every|checkpoints] [ROUNDS]
//! ```
//! Batches of 8,192 events, `synchronous=FULL`, a fresh file per round;
//! rounds alternate raw and sink so that both see the same machine.

use std::sync::Arc;
use std::time::Instant;

use audit_core::AuditEvent;
use audit_core::chain::{ChainHead, Record, SignMode};
use audit_core::chain_writer::ChainSinkOptions;
use audit_core::keys::AuditSigner;
use audit_core::sink::AuditSink;
use audit_sqlite::{SqliteOptions, SqliteStore, insert_sealed_blocking, open_sink};

/// Events per batch (one transaction each), as in `deferred-audit bench`.
const BATCH: usize = 8_192;

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().map_or(Ok(200_000), |n| n.parse())?;
    let sign_mode = match args.next().as_deref() {
        None | Some("checkpoints") => SignMode::CheckpointsOnly,
        Some("every") => SignMode::EveryRecord,
        Some(other) => return Err(format!("sign mode {other:?}: every or checkpoints").into()),
    };
    let rounds: usize = args.next().map_or(Ok(3), |n| n.parse())?;
    let built = build_events(events)?;
    let options =
        ChainSinkOptions::signed(Arc::new(AuditSigner::generate())).with_sign_mode(sign_mode);
    let sealed = seal_all(&options, &built);
    let runtime = tokio::runtime::Runtime::new()?;
    let (mut raw_best, mut sink_best) = (0f64, 0f64);
    for round in 1..=rounds {
        let dir = tempfile::tempdir()?;
        let raw = raw_rate(&dir.path().join("raw.db"), &sealed)?;
        let sink = runtime.block_on(sink_rate(&dir.path().join("sink.db"), &options, &built))?;
        println!(
            "round {round}: raw {raw:.0} rows/s, sink {sink:.0} events/s, ratio {:.2}",
            sink / raw
        );
        raw_best = raw_best.max(raw);
        sink_best = sink_best.max(sink);
    }
    println!(
        "best of {rounds}: raw {raw_best:.0}, sink {sink_best:.0}, ratio {:.2} ({events} events, {sign_mode:?})",
        sink_best / raw_best
    );
    Ok(())
}

/// Events of about 300 bytes of payload, as `deferred-audit bench` builds.
fn build_events(events: usize) -> Result<Vec<AuditEvent>, Error> {
    let event = |n: usize| {
        AuditEvent::new(
            "governance.refusal",
            "agent:bench",
            serde_json::json!({
                "rule": "R001", "decision": "refuse", "action": "write",
                "path": "secrets/api-keys.env", "engine": 1, "request": n,
                "reason": "agents may not write under secrets/; the write was refused before it reached the file system and the agent was told why, so that it can ask a human operator for the change it needs",
            }),
        )
    };
    Ok((0..events).map(event).collect::<Result<_, _>>()?)
}

/// The records the sink would write, sealed ahead (signed per the options).
fn seal_all(options: &ChainSinkOptions, events: &[AuditEvent]) -> Vec<Vec<Record>> {
    let sealer = options.sealer();
    let mut head = ChainHead::EMPTY;
    events
        .chunks(BATCH)
        .map(|batch| {
            let records = sealer.seal_batch(head, batch);
            head = records.last().map_or(head, Record::head);
            records
        })
        .collect()
}

/// Pre-sealed records inserted batch by batch: what the file absorbs.
fn raw_rate(path: &std::path::Path, sealed: &[Vec<Record>]) -> Result<f64, Error> {
    let mut store = SqliteStore::open_blocking(path, SqliteOptions::default())?;
    let started = Instant::now();
    for records in sealed {
        insert_sealed_blocking(&mut store, records)?;
    }
    let rows: usize = sealed.iter().map(Vec::len).sum();
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// The chain sink appending the same events batch by batch.
async fn sink_rate(
    path: &std::path::Path,
    options: &ChainSinkOptions,
    events: &[AuditEvent],
) -> Result<f64, Error> {
    let mut sink = open_sink(path, options.clone(), SqliteOptions::default()).await?;
    let started = Instant::now();
    for batch in events.chunks(BATCH) {
        sink.append_batch(batch).await?;
    }
    Ok(events.len() as f64 / started.elapsed().as_secs_f64())
}
