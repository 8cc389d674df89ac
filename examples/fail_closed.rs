//! A service that fails closed: it deletes a customer record only once the
//! audit record of the deletion is in the chain. The audit queue is bounded
//! in `Reject` mode (a full queue answers at once), and each deletion waits
//! for its receipt under a deadline; an error or the deadline passing
//! refuses the deletion, so nothing happens that the audit trail misses.
//!
//! The example runs the service twice: against a store that cannot be
//! opened (its path is a directory), where every deletion is refused, and
//! against a working SQLite file, where they go through.
//!
//! Run it with `cargo run --example fail_closed`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use deferred_audit::AuditEvent;
use deferred_audit::core::chain_writer::ChainSinkOptions;
use deferred_audit::core::pipeline::{AuditPipeline, AuditQueue, Backpressure};
use deferred_audit::core::retry::RetryPolicy;
use deferred_audit::sqlite::{SqliteOptions, sink_factory};

/// How long a deletion may wait for its audit record.
const AUDIT_DEADLINE: Duration = Duration::from_secs(2);

/// The customer records, and the audit queue that guards their deletion.
struct Records {
    ids: BTreeSet<u64>,
    audit: AuditQueue,
}

impl Records {
    /// Deletes `id` only when the audit record is kept; says why not otherwise.
    async fn delete(&mut self, id: u64, by: &str) -> Result<(), String> {
        let record = AuditEvent::new("records.delete", by, serde_json::json!({ "record": id }))
            .map_err(|error| format!("audit record not built: {error}"))?;
        match tokio::time::timeout(AUDIT_DEADLINE, self.audit.submit_wait(record)).await {
            Ok(Ok(receipt)) => {
                self.ids.remove(&id);
                println!("  deleted record {id} (audited at seq {})", receipt.seq);
                Ok(())
            }
            Ok(Err(error)) => Err(format!("refused: the audit record was not kept ({error})")),
            Err(_) => Err(format!(
                "refused: no audit receipt within {AUDIT_DEADLINE:?}"
            )),
        }
    }
}

/// The audit pipeline over the SQLite file at `store`: bounded, rejecting
/// when full, giving a failing store a short budget of retries.
fn audit_pipeline(store: &Path) -> AuditPipeline {
    let factory = sink_factory(
        store,
        ChainSinkOptions::unsigned(),
        SqliteOptions::default(),
    );
    AuditPipeline::builder(factory)
        .backpressure(Backpressure::Reject { capacity: 1_000 })
        .max_restarts(2)
        .retry(RetryPolicy {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
            max_retries: 2,
        })
        .name("fail-closed")
        .spawn()
}

async fn run_service(label: &str, store: &Path) -> usize {
    println!("{label}: store {}", store.display());
    let pipeline = audit_pipeline(store);
    let mut records = Records {
        ids: (1..=3).collect(),
        audit: pipeline.queue(),
    };
    for id in 1..=3 {
        if let Err(why) = records.delete(id, "admin:ops").await {
            println!("  record {id}: {why}");
        }
    }
    let left = records.ids.len();
    drop(records);
    let _ = pipeline.shutdown(Duration::from_secs(5)).await;
    println!("  {left} record(s) left");
    left
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let broken = dir.path().join("unusable.db");
    std::fs::create_dir(&broken)?; // a directory cannot be opened as a database
    let left = run_service("store down", &broken).await;
    assert_eq!(left, 3, "a deletion went through without its audit record");
    let left = run_service("store up", &dir.path().join("audit.db")).await;
    assert_eq!(left, 0, "a deletion was refused although the store works");
    Ok(())
}
