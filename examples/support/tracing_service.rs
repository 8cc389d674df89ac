//! The service of `examples/tracing_service.rs`, kept in its own file so
//! that the facade's test `tests/tracing_service.rs` runs the same code.
//!
//! A small request loop guarded by a governance policy: the service logs
//! what it does through `tracing` as any service would, and the audit
//! trail is nothing more than its events of target `audit`, which the
//! [`AuditLayer`] turns into signed records of a SQLite chain.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deferred_audit::core::chain::VerifyReport;
use deferred_audit::prelude::*;
use deferred_audit::sqlite::SqliteSource;
use deferred_audit::tracing_layer::AuditLayerCounters;
use tracing_subscriber::layer::SubscriberExt as _;

/// One request to the service.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    /// Who asks.
    pub agent: &'static str,
    /// What they ask for.
    pub action: Action,
    /// On which path.
    pub path: &'static str,
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read a file.
    Read,
    /// Write a file.
    Write,
    /// Delete a file.
    Delete,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Delete => "delete",
        }
    }
}

/// The requests the example serves.
pub const REQUESTS: &[Request] = &[
    Request {
        agent: "agent:planner",
        action: Action::Read,
        path: "notes/plan.md",
    },
    Request {
        agent: "agent:planner",
        action: Action::Write,
        path: "secrets/api-keys.env",
    },
    Request {
        agent: "agent:coder",
        action: Action::Write,
        path: "src/main.rs",
    },
    Request {
        agent: "agent:coder",
        action: Action::Delete,
        path: "src/lib.rs",
    },
    Request {
        agent: "admin:root",
        action: Action::Delete,
        path: "tmp/cache",
    },
    Request {
        agent: "agent:intern",
        action: Action::Read,
        path: "secrets/prod.pem",
    },
    Request {
        agent: "agent:intern",
        action: Action::Write,
        path: "notes/todo.md",
    },
];

/// What [`run`] did.
#[derive(Debug)]
pub struct Outcome {
    /// Requests served.
    pub served: usize,
    /// Requests refused (each audited).
    pub refused: usize,
    /// The layer's counters.
    pub counters: AuditLayerCounters,
    /// Records the pipeline appended.
    pub appended: u64,
    /// The verification of the chain with the public key alone.
    pub verified: VerifyReport,
}

/// The policy: a rule that refuses the request, if any.
fn policy(request: &Request) -> Option<&'static str> {
    if request.path.starts_with("secrets/") {
        return Some("R001");
    }
    if request.action == Action::Delete && !request.agent.starts_with("admin:") {
        return Some("R002");
    }
    None
}

/// Handles one request; an audited refusal is an ordinary `tracing` event.
fn handle(request: &Request) -> Result<(), &'static str> {
    if let Some(rule) = policy(request) {
        tracing::info!(
            target: "audit",
            actor = request.agent,
            event_type = "governance.refusal",
            rule,
            action = request.action.as_str(),
            path = request.path,
        );
        return Err(rule);
    }
    // Not an audit event: the layer leaves it alone.
    tracing::debug!(agent = request.agent, path = request.path, "served");
    Ok(())
}

/// Runs the service over [`REQUESTS`] with its chain in `dir/audit.db`,
/// shuts the pipeline down and verifies the chain.
pub async fn run(dir: &Path) -> Result<Outcome, Box<dyn std::error::Error>> {
    let db = dir.join("audit.db");
    let signer = Arc::new(AuditSigner::generate()); // or AuditSigner::load(path)
    let url: StoreUrl = format!("sqlite://{}", db.display()).parse()?;
    let factory = sink_factory(&url, ChainSinkOptions::signed(signer.clone()))?;
    let pipeline = AuditPipeline::builder(move || {
        let factory = factory.clone();
        async move { factory.create().await }
    })
    .backpressure(Backpressure::Unbounded)
    .fallback_path(dir.join("fallback-dead-letters.jsonl"))
    .spawn();

    let layer = AuditLayer::new(pipeline.queue()).target("audit");
    let counters = layer.counters();
    // A service installs its subscriber once, with
    // `tracing::subscriber::set_global_default` (next to its fmt layer);
    // the example scopes it to this thread so that tests can run it twice.
    let subscriber = tracing_subscriber::registry().with(layer);
    let (mut served, mut refused) = (0, 0);
    {
        let _default = tracing::subscriber::set_default(subscriber);
        tracing::info!(target: "audit", actor = "admin:root", role = "ops", grantee = "agent:coder", "role.granted");
        for request in REQUESTS {
            match handle(request) {
                Ok(()) => served += 1,
                Err(rule) => {
                    refused += 1;
                    println!(
                        "refused {} {} {} ({rule})",
                        request.agent,
                        request.action.as_str(),
                        request.path
                    );
                }
            }
        }
    }

    // On exit: stop intake, drain, checkpoint and close the sink.
    let report = pipeline.shutdown(Duration::from_secs(10)).await;
    if !report.is_clean() {
        return Err(format!("the pipeline did not shut down cleanly: {report:?}").into());
    }

    // Verify with the public key alone, as an auditor would.
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    let source = SqliteSource::open(&db)?;
    let verified = verify_source(&source, &keyring, SourceVerifyOptions::default()).await?;
    Ok(Outcome {
        served,
        refused,
        counters,
        appended: report.metrics.appended,
        verified,
    })
}
