//! A storage layer with a governance hook, the scenario this library grew
//! from: the store holds its write lock (a `Mutex` around its own SQLite
//! connection) while the hook checks each write; a write under `secrets/`
//! is refused by rule R001 and the refusal is submitted to the audit queue
//! from inside the hook: `submit` never blocks and never touches the
//! store's connection (the chain lives in its own file, written by the
//! pipeline's drainer), so the lock is never held waiting on audit I/O and
//! cannot deadlock. At exit the service drains the pipeline and prints the
//! refusals found in the verified chain.
//!
//! Run it with `cargo run --example governance_hook`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deferred_audit::AuditEvent;
use deferred_audit::core::chain_writer::ChainSinkOptions;
use deferred_audit::core::keys::{AuditSigner, Keyring};
use deferred_audit::core::pipeline::{AuditPipeline, AuditQueue};
use deferred_audit::core::verification::{SourceVerifyOptions, verify_source};
use deferred_audit::sqlite::{SqliteOptions, SqliteSource, sink_factory};

/// Why a write was refused.
#[derive(Debug)]
struct Refusal {
    rule: &'static str,
    path: String,
}

/// The governance hook: decides, and audits refusals without blocking.
struct GovernanceHook {
    audit: AuditQueue,
}

impl GovernanceHook {
    fn check(&self, agent: &str, path: &str) -> Result<(), Refusal> {
        if !path.starts_with("secrets/") {
            return Ok(());
        }
        let payload = serde_json::json!({"rule": "R001", "action": "write", "path": path, "decision": "refuse"});
        match AuditEvent::new("governance.refusal", agent, payload) {
            // Never blocks: the event is queued for the drainer.
            Ok(event) => {
                self.audit.submit(event);
            }
            Err(error) => eprintln!("audit event refused: {error}"),
        }
        Err(Refusal {
            rule: "R001",
            path: path.to_owned(),
        })
    }
}

/// The application's store: one connection behind its write lock.
struct Store {
    connection: Mutex<rusqlite::Connection>,
    hook: GovernanceHook,
}

impl Store {
    fn open(path: &Path, hook: GovernanceHook) -> rusqlite::Result<Self> {
        let connection = rusqlite::Connection::open(path)?;
        connection.execute_batch("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, body TEXT NOT NULL, author TEXT NOT NULL)")?;
        Ok(Self {
            connection: Mutex::new(connection),
            hook,
        })
    }

    /// Writes a file, holding the write lock while the hook decides.
    fn write(&self, agent: &str, path: &str, body: &str) -> Result<(), String> {
        let connection = self
            .connection
            .lock()
            .map_err(|_| "store lock poisoned".to_owned())?;
        self.hook
            .check(agent, path)
            .map_err(|refusal| format!("refused by {} ({})", refusal.rule, refusal.path))?;
        connection
            .execute(
                "INSERT OR REPLACE INTO files (path, body, author) VALUES (?1, ?2, ?3)",
                [path, body, agent],
            )
            .map(drop)
            .map_err(|error| error.to_string())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let audit_path = dir.path().join("audit.db");
    let signer = Arc::new(AuditSigner::generate());
    let options = ChainSinkOptions::signed(signer.clone());
    let pipeline =
        AuditPipeline::builder(sink_factory(&audit_path, options, SqliteOptions::default()))
            .fallback_path(dir.path().join("fallback.jsonl"))
            .spawn();
    let store = Arc::new(Store::open(
        &dir.path().join("app.db"),
        GovernanceHook {
            audit: pipeline.queue(),
        },
    )?);

    // Agents write from plain threads, as a synchronous storage layer would.
    let writers: Vec<_> = ["agent:planner", "agent:coder", "agent:intern"]
        .into_iter()
        .map(|agent| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut refused = 0;
                for (n, path) in [
                    "notes/plan.md",
                    "secrets/api-keys.env",
                    "src/main.rs",
                    "secrets/prod.pem",
                ]
                .into_iter()
                .enumerate()
                {
                    match store.write(agent, path, &format!("draft {n}")) {
                        Ok(()) => println!("{agent} wrote {path}"),
                        Err(why) => {
                            refused += 1;
                            println!("{agent} {why}");
                        }
                    }
                }
                refused
            })
        })
        .collect();
    let mut refused = 0;
    for writer in writers {
        refused += writer.join().map_err(|_| "a writer thread panicked")?;
    }
    drop(store);

    let report = pipeline.shutdown(Duration::from_secs(10)).await;
    println!(
        "pipeline drained: {} appended, {} dead-lettered, {} lost",
        report.metrics.appended, report.metrics.dead_lettered, report.metrics.lost
    );
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    let source = SqliteSource::open(&audit_path)?;
    let verified = verify_source(&source, &keyring, SourceVerifyOptions::default()).await?;
    println!(
        "chain verified: {} ({} records)",
        verified.is_ok(),
        verified.records
    );
    for record in audit_testkit::read_all_records(&source).await? {
        println!("  seq {} {}", record.seq, record.event_json);
    }
    assert!(verified.is_ok());
    assert_eq!(verified.records, refused);
    Ok(())
}
