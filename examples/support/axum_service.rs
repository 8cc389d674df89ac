//! The service of `examples/axum_service.rs`, which the facade's test
//! `tests/example_axum.rs` runs too.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use deferred_audit::core::chain::VerifyReport;
use deferred_audit::prelude::*;
use deferred_audit::sqlite::{SqliteOptions, SqliteSource, sink_factory as sqlite_sink_factory};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// What the run served and kept.
#[derive(Debug)]
pub struct Outcome {
    /// Each request sent (`METHOD PATH as AGENT`) and its status.
    pub responses: Vec<(String, u16)>,
    /// The audit chain's verification.
    pub report: VerifyReport,
}

/// The handlers' state: the audit queue (a cheap clone per request).
#[derive(Clone)]
struct App {
    audit: AuditQueue,
}

/// The payload of the service's audit events.
#[derive(serde::Serialize)]
struct FileAction<'a> {
    method: &'a str,
    path: &'a str,
    reason: Option<&'a str>,
}

impl App {
    /// Records `event_type` by `agent` on `path`; `Err(503)` when the
    /// pipeline cannot take it, so that the caller fails closed.
    fn audit(
        &self,
        event_type: &str,
        agent: &str,
        action: FileAction<'_>,
    ) -> Result<(), StatusCode> {
        let event = AuditEvent::from_serialize(event_type, agent, &action)
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        self.audit
            .try_submit(event)
            .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)
    }
}

/// The principal of a request. The example takes it from a header to stay
/// short; a real service takes it from its authentication (a verified
/// token or client certificate), never from a header the caller chooses.
fn agent(headers: &HeaderMap) -> Result<String, StatusCode> {
    headers
        .get("x-agent")
        .and_then(|value| value.to_str().ok())
        .filter(|agent| !agent.is_empty())
        .map(str::to_owned)
        .ok_or(StatusCode::UNAUTHORIZED)
}

async fn read_file(UrlPath(path): UrlPath<String>) -> String {
    format!("contents of {path}\n")
}

/// Writes are privileged: audited when done, refused (and audited) under
/// `secrets/`.
async fn write_file(
    State(app): State<App>,
    headers: HeaderMap,
    UrlPath(path): UrlPath<String>,
) -> Result<StatusCode, StatusCode> {
    let agent = agent(&headers)?;
    if path.starts_with("secrets/") {
        let reason = Some("agents may not write under secrets/");
        app.audit(
            "governance.refusal",
            &agent,
            FileAction {
                method: "PUT",
                path: &path,
                reason,
            },
        )?;
        return Err(StatusCode::FORBIDDEN);
    }
    // Audited before acting: a change the trail cannot record is not made.
    app.audit(
        "file.written",
        &agent,
        FileAction {
            method: "PUT",
            path: &path,
            reason: None,
        },
    )?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes are for `admin:` principals only.
async fn delete_file(
    State(app): State<App>,
    headers: HeaderMap,
    UrlPath(path): UrlPath<String>,
) -> Result<StatusCode, StatusCode> {
    let agent = agent(&headers)?;
    if !agent.starts_with("admin:") {
        let reason = Some("only administrators delete files");
        app.audit(
            "governance.refusal",
            &agent,
            FileAction {
                method: "DELETE",
                path: &path,
                reason,
            },
        )?;
        return Err(StatusCode::FORBIDDEN);
    }
    app.audit(
        "file.deleted",
        &agent,
        FileAction {
            method: "DELETE",
            path: &path,
            reason: None,
        },
    )?;
    Ok(StatusCode::NO_CONTENT)
}

/// The requests the run sends: `(method, path, agent)`.
pub const REQUESTS: &[(&str, &str, &str)] = &[
    ("GET", "/files/notes/plan.md", "agent:planner"),
    ("PUT", "/files/secrets/api-keys.env", "agent:planner"),
    ("PUT", "/files/src/main.rs", "agent:coder"),
    ("DELETE", "/files/src/lib.rs", "agent:coder"),
    ("DELETE", "/files/tmp/cache", "admin:root"),
];

/// Serves on a local port with a SQLite audit chain in `dir`, sends
/// [`REQUESTS`], shuts down and verifies the chain with the public key.
pub async fn run(dir: &Path) -> Result<Outcome, Box<dyn std::error::Error>> {
    let signer = Arc::new(AuditSigner::generate());
    let database = dir.join("audit.db");
    let pipeline = AuditPipeline::builder(sqlite_sink_factory(
        &database,
        ChainSinkOptions::signed(signer.clone()),
        SqliteOptions::default(),
    ))
    .fallback_path(dir.join("fallback-dead-letters.jsonl"))
    .dead_letter_signer(signer.clone())
    .spawn();
    let app = Router::new()
        .route(
            "/files/{*path}",
            get(read_file).put(write_file).delete(delete_file),
        )
        .with_state(App {
            audit: pipeline.queue(),
        });
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });

    let mut responses = Vec::new();
    for (method, path, agent) in REQUESTS {
        let status = request(address, method, path, agent).await?;
        responses.push((format!("{method} {path} as {agent}"), status));
    }

    let _ = stop.send(());
    server.await??; // the router (and its queue handles) is dropped here
    let shutdown = pipeline.shutdown(Duration::from_secs(30)).await;
    if !shutdown.is_clean() {
        return Err(format!("the audit pipeline did not drain: {shutdown:?}").into());
    }
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    let source = SqliteSource::open(&database)?;
    let report = verify_source(&source, &keyring, SourceVerifyOptions::default()).await?;
    Ok(Outcome { responses, report })
}

/// One HTTP/1.1 request, answered by its status code.
async fn request(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    agent: &str,
) -> Result<u16, Box<dyn std::error::Error>> {
    let mut stream = TcpStream::connect(address).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {address}\r\nx-agent: {agent}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .ok_or("an empty HTTP answer")?
        .parse()?;
    Ok(status)
}
