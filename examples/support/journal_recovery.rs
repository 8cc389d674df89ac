//! The code of `examples/journal.rs`, which the facade's test
//! `tests/example_journal.rs` runs too.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deferred_audit::SinkError;
use deferred_audit::core::chain::VerifyReport;
use deferred_audit::core::journal::JournalConfig;
use deferred_audit::core::sink::ErrorClass;
use deferred_audit::prelude::*;
use deferred_audit::sqlite::{SqliteOptions, SqliteSource, sink_factory as sqlite_sink_factory};

/// What the two runs did.
#[derive(Debug)]
pub struct Outcome {
    /// Events `submit_durable` acknowledged before the crash.
    pub acknowledged_before_crash: u64,
    /// Events the second run found in the journal.
    pub recovered: u64,
    /// Events in the chain at the end.
    pub appended: u64,
    /// The chain's verification.
    pub report: VerifyReport,
}

fn refusal(n: u64) -> Result<AuditEvent, deferred_audit::core::EventError> {
    AuditEvent::new(
        "governance.refusal",
        "agent:example",
        serde_json::json!({ "rule": "no-secrets", "request": n }),
    )
}

/// Runs `before` events into a pipeline whose store is down, drops it as
/// a crash would, then restarts on the same journal with the real store
/// and submits `after` more.
pub fn run(dir: &Path, before: u64, after: u64) -> Result<Outcome, Box<dyn std::error::Error>> {
    let journal = dir.join("journal");
    let database = dir.join("audit.db");
    let signer = Arc::new(AuditSigner::generate());

    // First run: every attempt to reach the store fails, so nothing
    // leaves the journal; the runtime is then torn down mid-retry.
    let crashed = tokio::runtime::Runtime::new()?;
    crashed.block_on(async {
        let down = || async {
            Err::<Box<dyn AuditSink>, _>(SinkError::new(
                "audit database",
                ErrorClass::Transient,
                "connection refused",
            ))
        };
        let pipeline = AuditPipeline::builder(down)
            .journal(JournalConfig::new(&journal))?
            .spawn();
        let queue = pipeline.queue();
        for n in 0..before {
            // Returns once the event is fsync'd in the journal.
            queue.submit_durable(refusal(n)?).await?;
        }
        // Crash: no shutdown, no drain (dropping the pipeline logs that
        // events were left in flight; the runtime's end stops the drainer).
        drop(queue);
        drop(pipeline);
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    crashed.shutdown_timeout(Duration::from_secs(5));

    // Second run: the journal's events go to the store before new ones.
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let factory = sqlite_sink_factory(
            &database,
            ChainSinkOptions::signed(signer.clone()),
            SqliteOptions::default(),
        );
        let pipeline = AuditPipeline::builder(factory)
            .journal(JournalConfig::new(&journal))?
            .spawn();
        let recovered = pipeline.metrics().snapshot().submitted;
        let queue = pipeline.queue();
        for n in before..before + after {
            queue.submit_durable(refusal(n)?).await?;
        }
        drop(queue);
        let shutdown = pipeline.shutdown(Duration::from_secs(30)).await;
        let mut keyring = Keyring::new();
        keyring.insert(signer.public_key());
        let source = SqliteSource::open(&database)?;
        let report = verify_source(&source, &keyring, SourceVerifyOptions::default()).await?;
        Ok(Outcome {
            acknowledged_before_crash: before,
            recovered,
            appended: shutdown.metrics.appended,
            report,
        })
    })
}
