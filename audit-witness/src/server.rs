//! The witness's HTTP server: `POST <prefix>/add-checkpoint` (C2SP
//! tlog-witness) on axum's router, served by hyper's HTTP/1 connection
//! builder with keep-alive.
//!
//! Limits, all in [`WitnessLimits`]:
//!
//! - the request body is read up to `max_body_bytes` (413 beyond);
//! - at most `max_proof_lines` consistency proof lines (400 beyond);
//! - a client has `header_timeout` to send its request head (the
//!   connection is closed otherwise, also when idle between requests) and
//!   `request_timeout` to send its body (408 otherwise);
//! - the state has `request_timeout` to answer (503 otherwise);
//! - at most `max_connections` connections at once; further ones are
//!   closed as soon as accepted.
//!
//! [`WitnessServer::bind`] starts the server on a tokio task and returns a
//! [`WitnessHandle`]: its address, URL and cosigner vkey, and an explicit
//! [`shutdown`](WitnessHandle::shutdown) that stops accepting, lets the
//! requests in flight finish within a timeout and reports whether they did.
//!
//! ```no_run
//! use std::sync::Arc;
//! use audit_core::chain::note::Vkey;
//! use audit_witness::{open_state, WitnessConfig, WitnessServer};
//! use audit_core::keys::AuditSigner;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let key = AuditSigner::load("witness-key.pem".as_ref())?;
//! let log = Vkey::parse("example.org/log+1f2e3d4c+AW1eJJ…")?;
//! let state = open_state("sqlite:///var/lib/witness/state.db").await?;
//! let config = WitnessConfig::new("witness.example/w1", key, vec![log], state)?;
//! let server = WitnessServer::bind(config, "0.0.0.0:7380".parse()?).await?;
//! println!("vkey {}", server.vkey());
//! tokio::signal::ctrl_c().await?;
//! server.shutdown(std::time::Duration::from_secs(10)).await?;
//! # Ok(())
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use audit_core::chain::note::{NoteSigningKey, Vkey};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt as _;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

use crate::protocol::{ADD_CHECKPOINT_PATH, MAX_PROOF_LINES, Refusal, SIZE_CONTENT_TYPE, Witness};
use crate::state::WitnessState;

/// Why a witness server could not be configured, started or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is invalid (witness name, log keys, prefix).
    #[error("witness configuration: {detail}")]
    Config {
        /// What is wrong.
        detail: String,
    },
    /// The listening socket could not be opened.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Requests were still running when the shutdown timeout passed; they
    /// were cut off.
    #[error("witness server shutdown: requests still running after {timeout:?} were cut off")]
    ShutdownTimeout {
        /// The timeout.
        timeout: Duration,
    },
    /// The server task failed.
    #[error("witness server task failed: {detail}")]
    Task {
        /// What happened.
        detail: String,
    },
}

/// The server's limits; see the [module documentation](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WitnessLimits {
    /// The largest request body, in bytes (default 64 KiB: a checkpoint
    /// with a hundred signature lines and 63 proof lines is under 20 KiB).
    pub max_body_bytes: usize,
    /// The most consistency proof lines (default and most: 63).
    pub max_proof_lines: usize,
    /// Time to send a request head, and most idle time between requests
    /// on a kept-alive connection (default 10 s).
    pub header_timeout: Duration,
    /// Time to send the body, and time the state has to answer (default 10 s).
    pub request_timeout: Duration,
    /// The most connections at once (default 1024).
    pub max_connections: usize,
}

impl Default for WitnessLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_proof_lines: MAX_PROOF_LINES,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

/// What a witness server needs: its name and key, the logs it serves, its
/// state, the submission prefix and limits.
pub struct WitnessConfig {
    /// The witness's key name `W` (e.g. `witness.example/w1`).
    pub(crate) name: String,
    /// The witness's Ed25519 key (a key of its own; see [`crate::keys`]).
    pub(crate) key: Arc<dyn NoteSigningKey + Send + Sync>,
    /// The logs' verifier keys (`origin+hash+base64(0x01 || pk)`).
    pub(crate) logs: Vec<Vkey>,
    /// Where the latest cosigned heads are kept.
    pub(crate) state: Arc<dyn WitnessState>,
    /// The submission prefix (`""`, or e.g. `/witness`: no trailing `/`).
    pub(crate) prefix: String,
    /// Limits.
    pub(crate) limits: WitnessLimits,
}

impl std::fmt::Debug for WitnessConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WitnessConfig")
            .field("name", &self.name)
            .field(
                "logs",
                &self
                    .logs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
            )
            .field("state", &self.state)
            .field("prefix", &self.prefix)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl WitnessConfig {
    /// A configuration with an empty prefix and default limits.
    pub fn new(
        name: &str,
        key: impl NoteSigningKey + Send + Sync + 'static,
        logs: Vec<Vkey>,
        state: Arc<dyn WitnessState>,
    ) -> Result<Self, ServerError> {
        audit_core::chain::note::check_key_name(name).map_err(|error| ServerError::Config {
            detail: error.to_string(),
        })?;
        Ok(Self {
            name: name.to_owned(),
            key: Arc::new(key),
            logs,
            state,
            prefix: String::new(),
            limits: WitnessLimits::default(),
        })
    }

    /// Serves under `prefix` (e.g. `/witness`; a trailing `/` is dropped).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.trim_end_matches('/').to_owned();
        self
    }

    /// Uses these limits.
    pub fn with_limits(mut self, limits: WitnessLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The witness's cosigner vkey (type 0x04), to give to the logs.
    pub fn vkey(&self) -> Result<Vkey, ServerError> {
        Vkey::cosignature(&self.name, &self.key.verifying_key()).map_err(|error| {
            ServerError::Config {
                detail: error.to_string(),
            }
        })
    }
}

#[derive(Clone)]
struct Shared {
    witness: Arc<Witness>,
    limits: WitnessLimits,
}

/// Builds witness routers and runs witness servers.
#[derive(Debug, Clone, Copy)]
pub struct WitnessServer;

impl WitnessServer {
    /// The axum router serving `POST <prefix>/add-checkpoint`, to mount in
    /// an application of one's own (its connections then get the limits of
    /// that application's server; the body, proof and request limits apply
    /// anyway).
    pub fn router(witness: Arc<Witness>, prefix: &str, limits: WitnessLimits) -> Router {
        let path = format!("{}{ADD_CHECKPOINT_PATH}", prefix.trim_end_matches('/'));
        Router::new()
            .route(&path, post(add_checkpoint))
            .with_state(Shared { witness, limits })
    }

    /// Opens `listen` (port 0 picks a free port) and serves the witness
    /// on a tokio task.
    pub async fn bind(
        config: WitnessConfig,
        listen: SocketAddr,
    ) -> Result<WitnessHandle, ServerError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: listen,
                source,
            })?;
        Self::serve(config, listener)
    }

    /// Serves the witness on an open listener, on a tokio task.
    pub fn serve(
        config: WitnessConfig,
        listener: TcpListener,
    ) -> Result<WitnessHandle, ServerError> {
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        let limits = config.limits;
        let prefix = config.prefix.trim_end_matches('/').to_owned();
        let witness = Arc::new(
            Witness::new(&config.name, config.key, config.logs, config.state)?
                .with_max_proof_lines(limits.max_proof_lines),
        );
        let router = Self::router(witness.clone(), &prefix, limits);
        let (stop, stopped) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, router, limits, stopped, done_tx));
        tracing::info!(%addr, vkey = %witness.vkey(), "witness serving");
        Ok(WitnessHandle {
            addr,
            url: format!("http://{addr}{prefix}"),
            witness,
            stop: Some(stop),
            done: Some(done),
            task: Some(task),
        })
    }
}

/// A running witness server; stop it with [`shutdown`](Self::shutdown).
/// Dropped without it, the server is aborted and says so in the logs.
#[derive(Debug)]
pub struct WitnessHandle {
    addr: SocketAddr,
    url: String,
    witness: Arc<Witness>,
    stop: Option<oneshot::Sender<Duration>>,
    done: Option<oneshot::Receiver<bool>>,
    task: Option<JoinHandle<()>>,
}

impl WitnessHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR<prefix>`: the URL to give clients (the submission
    /// prefix; the client appends `/add-checkpoint`).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The cosigner vkey.
    pub fn vkey(&self) -> &Vkey {
        self.witness.vkey()
    }

    /// The witness it serves.
    pub fn witness(&self) -> &Arc<Witness> {
        &self.witness
    }

    /// Stops accepting connections, closes idle ones, and waits up to
    /// `timeout` for the requests in flight; those still running then are
    /// cut off and reported as [`ServerError::ShutdownTimeout`].
    pub async fn shutdown(mut self, timeout: Duration) -> Result<(), ServerError> {
        let (Some(stop), Some(done), Some(task)) =
            (self.stop.take(), self.done.take(), self.task.take())
        else {
            return Ok(());
        };
        let _ = stop.send(timeout);
        let finished = done.await.unwrap_or(false);
        task.await.map_err(|error| ServerError::Task {
            detail: error.to_string(),
        })?;
        if finished {
            Ok(())
        } else {
            Err(ServerError::ShutdownTimeout { timeout })
        }
    }
}

impl Drop for WitnessHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            tracing::warn!(
                addr = %self.addr,
                "witness server handle dropped without shutdown(): aborting the server and its requests"
            );
            task.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    limits: WitnessLimits,
    mut stop: oneshot::Receiver<Duration>,
    done: oneshot::Sender<bool>,
) {
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let timeout = loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(error) => {
                        // Out of file descriptors and the like: wait a little.
                        tracing::warn!(%error, "witness server could not accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    tracing::warn!(limit = limits.max_connections, "witness server at its connection limit");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_timeout)
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "witness connection ended with an error");
                    }
                });
            }
            requested = &mut stop => break requested.unwrap_or(Duration::ZERO),
        }
    };
    drop(listener);
    let finished = tokio::time::timeout(timeout, graceful.shutdown())
        .await
        .is_ok();
    let _ = done.send(finished);
}

async fn add_checkpoint(State(shared): State<Shared>, body: Body) -> Response {
    let limits = shared.limits;
    let result = match tokio::time::timeout(limits.request_timeout, read_body(body, limits)).await {
        Err(_) => Err(Refusal::Timeout),
        Ok(Err(refusal)) => Err(refusal),
        Ok(Ok(bytes)) => {
            match tokio::time::timeout(
                limits.request_timeout,
                shared.witness.add_checkpoint(&bytes),
            )
            .await
            {
                Ok(result) => result,
                Err(_) => Err(Refusal::State(crate::state::StateError::Unavailable {
                    describe: shared.witness.state().describe(),
                    detail: format!("no answer within {:?}", limits.request_timeout),
                })),
            }
        }
    };
    let status = match &result {
        Ok(_) => 200,
        Err(refusal) => refusal.status(),
    };
    metrics::counter!("audit_witness_server_requests_total", "status" => status.to_string())
        .increment(1);
    match result {
        Ok(signatures) => {
            let mut text = String::new();
            for signature in signatures {
                text.push_str(&signature.to_string());
                text.push('\n');
            }
            text_response(StatusCode::OK, "text/plain; charset=utf-8", text)
        }
        Err(refusal) => {
            let code =
                StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if code.is_server_error() {
                tracing::error!(%refusal, "witness could not answer a request");
            } else {
                tracing::debug!(%refusal, status = code.as_u16(), "witness refused a request");
            }
            match refusal.latest_size() {
                Some(size) => text_response(code, SIZE_CONTENT_TYPE, format!("{size}\n")),
                None => text_response(code, "text/plain; charset=utf-8", format!("{refusal}\n")),
            }
        }
    }
}

fn text_response(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// Reads the body, refusing it as soon as it grows over the limit.
async fn read_body(body: Body, limits: WitnessLimits) -> Result<Vec<u8>, Refusal> {
    let mut chunks = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|error| Refusal::Malformed {
            detail: format!("reading the body: {error}"),
        })?;
        if bytes.len() + chunk.len() > limits.max_body_bytes {
            return Err(Refusal::TooLarge {
                limit: limits.max_body_bytes,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
