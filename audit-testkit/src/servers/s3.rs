//! moto's S3 server, for tests against a real S3 HTTP API.
//!
//! [`MotoServer::start`] runs moto's server (from a Python venv with
//! `moto[server]==5.2.5`, see `scripts/install-moto.sh`), with its object
//! writes made atomic as S3's are (`ATOMIC_WRITES_LAUNCHER` says why), on a
//! free loopback port, waits until it answers, and creates a bucket. The handle gives an
//! [`ObjectStore`] on that bucket (path-style requests, plain HTTP, region
//! `us-east-1`, any credentials), can [`kill`](MotoServer::kill) the server
//! with SIGKILL and [`restart`](MotoServer::restart) it on the same port,
//! and kills it when dropped, even when the test panics.
//!
//! moto keeps its objects in memory: a restarted server is empty (the bucket
//! is created again). Tests that kill the server copy what they need first.
//! Clients reach moto through a loopback relay on the public port, opened
//! only once the bucket exists and closed (connections refused, open ones
//! cut) when the server is killed: a client retrying through a restart never
//! sees the new server without its bucket.
//!
//! The venv is `$AUDIT_MOTO_VENV`, by default
//! `$HOME/.cache/deferred-audit/moto-venv`; when it is missing, starting
//! fails with an error saying to run `scripts/install-moto.sh`.
//!
//! ```no_run
//! use audit_testkit::servers::s3::MotoServer;
//! let server = MotoServer::start()?;
//! let store = server.store("archive");
//! # drop(store);
//! # Ok::<(), audit_testkit::servers::s3::ServerError>(())
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::prefix::PrefixStore;

/// The moto version the venv must hold.
pub const MOTO_VERSION: &str = "5.2.5";

/// How long a starting server may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `moto_server` with its object writes made atomic.
///
/// moto checks `If-None-Match: *` and `If-Match` and then writes, in two
/// steps, on a threaded server: two racing create-only puts of one name can
/// both succeed (under load the conformance suite's concurrent writers saw
/// it about one run in three), where S3 lets exactly one win. One lock
/// around every write of a key (PUT, POST such as a multipart completion,
/// DELETE) makes moto behave as S3 does; reads stay concurrent.
const ATOMIC_WRITES_LAUNCHER: &str = r#"
import sys, threading
from moto.s3.responses import S3Response
from moto.server import main

writes = threading.Lock()

def atomic(method):
    def locked(*args, **kwargs):
        with writes:
            return method(*args, **kwargs)
    return locked

for name in ("_key_response_put", "_key_response_post", "delete_object"):
    setattr(S3Response, name, atomic(getattr(S3Response, name)))

main(sys.argv[1:])
"#;

/// Why moto's server could not be started or driven.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The venv with moto is not installed.
    #[error(
        "moto's S3 server not found at {path}: run scripts/install-moto.sh (or scripts/test.sh), \
         which installs moto[server]=={MOTO_VERSION} into $AUDIT_MOTO_VENV \
         (default $HOME/.cache/deferred-audit/moto-venv)"
    )]
    MissingVenv {
        /// The file looked for (the venv's `moto_server` or its Python).
        path: PathBuf,
    },
    /// Local I/O failed (spawning, sockets).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The server did not answer in time.
    #[error("moto's S3 server on {endpoint} did not answer within {waited:?}: {detail}")]
    NotReady {
        /// Its endpoint.
        endpoint: String,
        /// How long we waited.
        waited: Duration,
        /// The last error or exit status.
        detail: String,
    },
    /// Creating the bucket failed.
    #[error("creating bucket {bucket} on {endpoint}: {detail}")]
    Bucket {
        /// The bucket.
        bucket: String,
        /// The endpoint.
        endpoint: String,
        /// The HTTP status line or error.
        detail: String,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let context = context.into();
    move |source| ServerError::Io { context, source }
}

/// A running moto S3 server with one bucket.
#[derive(Debug)]
pub struct MotoServer {
    program: PathBuf,
    port: u16,
    backend_port: u16,
    bucket: String,
    child: Option<Child>,
    relay: Option<Relay>,
}

impl MotoServer {
    /// Starts a server on a free loopback port and creates bucket `audit`.
    pub fn start() -> Result<Self, ServerError> {
        let program = moto_program()?;
        let port = free_port()?;
        let mut server = Self {
            program,
            port,
            backend_port: 0,
            bucket: "audit".to_owned(),
            child: None,
            relay: None,
        };
        server.spawn_and_prepare()?;
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The bucket created at start.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A builder for the bucket: endpoint, plain HTTP, path-style requests,
    /// region `us-east-1`, test credentials. Add options (retries, timeouts)
    /// and build.
    pub fn store_builder(&self) -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_region("us-east-1")
            .with_bucket_name(&self.bucket)
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
    }

    /// The bucket as an object store, under `prefix` (empty: the root).
    ///
    /// # Panics
    /// If the builder refuses its fixed configuration (a bug).
    #[allow(clippy::expect_used)]
    pub fn store(&self, prefix: &str) -> Arc<dyn ObjectStore> {
        let store = self
            .store_builder()
            .build()
            .expect("a fixed S3 configuration builds");
        if prefix.is_empty() {
            Arc::new(store)
        } else {
            Arc::new(PrefixStore::new(store, Path::from(prefix)))
        }
    }

    /// Kills the server with SIGKILL and waits for it to exit.
    pub fn kill(&mut self) -> Result<(), ServerError> {
        if let Some(relay) = self.relay.take() {
            relay.close(self.port);
        }
        if let Some(mut child) = self.child.take() {
            child.kill().map_err(io_error("killing moto_server"))?;
            child.wait().map_err(io_error("waiting for moto_server"))?;
        }
        Ok(())
    }

    /// Starts the server again on the same port (killing it first if it
    /// runs) and creates the bucket again. moto keeps objects in memory:
    /// the restarted server is empty.
    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.kill()?;
        self.spawn_and_prepare()
    }

    fn spawn_and_prepare(&mut self) -> Result<(), ServerError> {
        self.backend_port = free_port()?;
        let child = Command::new(&self.program)
            .args(["-c", ATOMIC_WRITES_LAUNCHER])
            .args(["-H", "127.0.0.1", "-p", &self.backend_port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io_error(format!("starting {}", self.program.display())))?;
        self.child = Some(child);
        self.wait_until_ready()?;
        self.create_bucket()?;
        self.relay = Some(Relay::open(self.port, self.backend_port)?);
        Ok(())
    }

    fn wait_until_ready(&mut self) -> Result<(), ServerError> {
        let started = Instant::now();
        let mut detail = String::from("no answer yet");
        while started.elapsed() < START_TIMEOUT {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                detail = format!("moto_server exited with {status}");
                break;
            }
            match self.request("GET", "/") {
                Ok(_) => return Ok(()),
                Err(error) => detail = error.to_string(),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(ServerError::NotReady {
            endpoint: self.endpoint(),
            waited: started.elapsed(),
            detail,
        })
    }

    fn create_bucket(&self) -> Result<(), ServerError> {
        let path = format!("/{}", self.bucket);
        let bucket_error = |detail: String| ServerError::Bucket {
            bucket: self.bucket.clone(),
            endpoint: self.endpoint(),
            detail,
        };
        let status = self
            .request("PUT", &path)
            .map_err(|error| bucket_error(error.to_string()))?;
        if status.split_whitespace().nth(1) == Some("200") {
            Ok(())
        } else {
            Err(bucket_error(status))
        }
    }

    /// One HTTP/1.1 request without a body, straight to moto; returns the
    /// status line.
    fn request(&self, method: &str, path: &str) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.backend_port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.backend_port
        );
        stream.write_all(request.as_bytes())?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response);
        let status = text.lines().next().unwrap_or_default().to_owned();
        if status.starts_with("HTTP/") {
            Ok(status)
        } else {
            Err(std::io::Error::other(format!(
                "not an HTTP response: {status:?}"
            )))
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        if let Some(relay) = self.relay.take() {
            relay.close(self.port);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where the venv with moto is.
pub fn moto_venv() -> PathBuf {
    if let Some(dir) = std::env::var_os("AUDIT_MOTO_VENV") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/deferred-audit/moto-venv")
}

/// The venv's Python, which runs moto's server through
/// `ATOMIC_WRITES_LAUNCHER`; the venv counts as installed when its
/// `moto_server` is there too.
fn moto_program() -> Result<PathBuf, ServerError> {
    let venv = moto_venv();
    let (server, python) = (venv.join("bin/moto_server"), venv.join("bin/python"));
    match (server.is_file(), python.is_file()) {
        (true, true) => Ok(python),
        (false, _) => Err(ServerError::MissingVenv { path: server }),
        (true, false) => Err(ServerError::MissingVenv { path: python }),
    }
}

fn free_port() -> Result<u16, ServerError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(io_error("binding 127.0.0.1:0 to find a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io_error("reading the address of a bound socket"))?
        .port())
}

/// Relays connections from the public port to moto's port, byte for byte.
#[derive(Debug)]
struct Relay {
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Relay {
    fn open(public: u16, backend: u16) -> Result<Self, ServerError> {
        let listener = bind_again(public)?;
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let acceptor = std::thread::spawn({
            let stop = stop.clone();
            let open = open.clone();
            move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(client) = client {
                        relay_connection(client, backend, &open);
                    }
                }
            }
        });
        Ok(Self {
            stop,
            open,
            acceptor: Some(acceptor),
        })
    }

    /// Stops accepting (new connections are refused) and cuts open ones.
    fn close(mut self, public: u16) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", public));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let open = std::mem::take(&mut *self.open.lock().unwrap_or_else(|p| p.into_inner()));
        for stream in open {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Binds the public port again after a restart (it may linger briefly).
fn bind_again(port: u16) -> Result<TcpListener, ServerError> {
    let started = Instant::now();
    loop {
        match TcpListener::bind(("127.0.0.1", port)) {
            Ok(listener) => return Ok(listener),
            Err(error) if started.elapsed() < Duration::from_secs(5) => {
                tracing::debug!(port, %error, "public port not free yet");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(source) => {
                return Err(ServerError::Io {
                    context: format!("binding 127.0.0.1:{port} for moto's relay"),
                    source,
                });
            }
        }
    }
}

fn relay_connection(client: TcpStream, backend: u16, open: &Mutex<Vec<TcpStream>>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", backend)) else {
        return;
    };
    let clones = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    );
    let (Ok(client_reader), Ok(server_reader), Ok(client_kept), Ok(server_kept)) = clones else {
        return;
    };
    if let Ok(mut open) = open.lock() {
        open.push(client_kept);
        open.push(server_kept);
    }
    pump(client_reader, server);
    pump(server_reader, client);
}

/// Copies `from` into `to` on a thread until either side closes.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}
