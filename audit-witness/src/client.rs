//! One witness over HTTP: [`WitnessClient::add_checkpoint`] sends a C2SP
//! tlog-witness `add-checkpoint` request and returns the witness's
//! cosignature lines, verified under its cosigner vkey, or a typed
//! [`WitnessError`] per status code.
//!
//! The client is reqwest (HTTP/1.1 with keep-alive, rustls on the `ring`
//! provider with the system's root certificates for `https://` witnesses);
//! every request has a timeout (default 10 s), so a call never hangs.
//!
//! ```no_run
//! use audit_core::chain::note::{Note, Vkey};
//! use audit_witness::{WitnessClient, WitnessError};
//!
//! # async fn run(note: Note) -> Result<(), Box<dyn std::error::Error>> {
//! let witness = Vkey::parse("witness.example/w1+2a3b4c5d+BHc…")?;
//! let client = WitnessClient::new("https://witness.example/w1", witness)?;
//! match client.add_checkpoint(0, &[], &note).await {
//!     Ok(cosignatures) => println!("{}", cosignatures[0]),
//!     // The witness has cosigned size `latest_size` before: send a proof from there.
//!     Err(WitnessError::Conflict { latest_size }) => println!("retry from {latest_size}"),
//!     Err(other) => return Err(other.into()),
//! }
//! # Ok(())
//! # }
//! ```

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use audit_core::Digest;
use audit_core::chain::note::{Note, NoteError, NoteSignature, Vkey};
use audit_core::chain::proof::ConsistencyProof;

use crate::protocol::{ADD_CHECKPOINT_PATH, SIZE_CONTENT_TYPE, parse_size};
use crate::witnesses::SourceError;

/// The default time a request may take, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest response body read, in bytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The most characters of an error body kept in an error.
const MAX_MESSAGE_CHARS: usize = 300;

/// Why a witness did not cosign.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    /// The witness URL is not an `http://` or `https://` URL.
    #[error("witness URL {url:?}: {detail}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("building the HTTP client: {detail}")]
    Client {
        /// What failed.
        detail: String,
    },
    /// The request failed: connection refused or reset, TLS, protocol.
    #[error("request to {url} failed: {source}")]
    Http {
        /// The endpoint.
        url: String,
        /// The error.
        #[source]
        source: reqwest::Error,
    },
    /// No complete answer within the timeout.
    #[error("witness {url} did not answer within {after:?}")]
    Timeout {
        /// The endpoint.
        url: String,
        /// The timeout.
        after: Duration,
    },
    /// 400: the witness found the request malformed or the old size beyond
    /// the checkpoint's.
    #[error("witness refused the request as malformed (400): {message}")]
    BadRequest {
        /// The witness's message.
        message: String,
    },
    /// 403: the witness found no valid signature of the log key it knows.
    #[error("witness does not accept the log's signature (403): {message}")]
    Forbidden {
        /// The witness's message.
        message: String,
    },
    /// 404: the witness does not know the log's origin.
    #[error("witness does not know this log's origin (404): {message}")]
    UnknownOrigin {
        /// The witness's message.
        message: String,
    },
    /// 409: the old size is not the size the witness last cosigned.
    #[error("witness last cosigned size {latest_size} (409)")]
    Conflict {
        /// The witness's latest cosigned size (`text/x.tlog.size`).
        latest_size: u64,
    },
    /// 422: the witness found the consistency proof invalid.
    #[error("witness refused the consistency proof (422): {message}")]
    InconsistentProof {
        /// The witness's message.
        message: String,
    },
    /// Another status code.
    #[error("witness answered {status}: {message}")]
    UnexpectedStatus {
        /// The status code.
        status: u16,
        /// The witness's message.
        message: String,
    },
    /// The answer is not what the protocol says.
    #[error("witness answer is malformed: {detail}")]
    MalformedResponse {
        /// What is wrong.
        detail: String,
    },
    /// A returned cosignature of the witness's key does not verify.
    #[error("witness returned an invalid cosignature: {0}")]
    InvalidCosignature(#[source] NoteError),
    /// The 200 answer carries no cosignature of the witness's key.
    #[error("witness answer carries no cosignature of its key {vkey}")]
    NoCosignature {
        /// The witness's vkey.
        vkey: String,
    },
    /// The witness holds the checkpoint's size with another root: it has
    /// cosigned a different tree of the same size (a fork, or a log that
    /// rewrote its history).
    #[error("witness cosigned another tree of size {size}: a fork")]
    Fork {
        /// The size.
        size: u64,
    },
    /// The witness has cosigned a larger tree than the checkpoint's.
    #[error("witness cosigned size {latest_size}, beyond the checkpoint's size {size}")]
    WitnessAhead {
        /// The witness's latest size.
        latest_size: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// The consistency proof for the witness could not be obtained.
    #[error("consistency proof from {old_size} unavailable: {source}")]
    ProofUnavailable {
        /// The old size.
        old_size: u64,
        /// Why.
        #[source]
        source: SourceError,
    },
    /// The checkpoint note is not a tree checkpoint.
    #[error("not a tree checkpoint: {detail}")]
    InvalidCheckpoint {
        /// What is wrong.
        detail: String,
    },
}

impl WitnessError {
    /// Whether asking again later may succeed (transport failures,
    /// timeouts, 5xx, 409). A refusal of the request itself (400, 403, 404,
    /// 422, a fork, a bad cosignature) is not.
    pub fn is_transient(&self) -> bool {
        match self {
            WitnessError::Http { .. }
            | WitnessError::Timeout { .. }
            | WitnessError::Conflict { .. }
            | WitnessError::ProofUnavailable { .. } => true,
            WitnessError::UnexpectedStatus { status, .. } => *status >= 500 || *status == 408,
            _ => false,
        }
    }

    /// A short name for logs and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            WitnessError::InvalidUrl { .. } => "invalid_url",
            WitnessError::Client { .. } => "client",
            WitnessError::Http { .. } => "http",
            WitnessError::Timeout { .. } => "timeout",
            WitnessError::BadRequest { .. } => "bad_request",
            WitnessError::Forbidden { .. } => "forbidden",
            WitnessError::UnknownOrigin { .. } => "unknown_origin",
            WitnessError::Conflict { .. } => "conflict",
            WitnessError::InconsistentProof { .. } => "inconsistent_proof",
            WitnessError::UnexpectedStatus { .. } => "unexpected_status",
            WitnessError::MalformedResponse { .. } => "malformed_response",
            WitnessError::InvalidCosignature(_) => "invalid_cosignature",
            WitnessError::NoCosignature { .. } => "no_cosignature",
            WitnessError::Fork { .. } => "fork",
            WitnessError::WitnessAhead { .. } => "witness_ahead",
            WitnessError::ProofUnavailable { .. } => "proof_unavailable",
            WitnessError::InvalidCheckpoint { .. } => "invalid_checkpoint",
        }
    }
}

/// The shared HTTP client: one connection pool for every witness client
/// built without [`WitnessClient::with_http_client`].
pub fn shared_http_client() -> Result<reqwest::Client, WitnessError> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| build_http_client().map_err(|error| error.to_string()))
        .clone()
        .map_err(|detail| WitnessError::Client { detail })
}

/// A new HTTP client: rustls with the `ring` provider and the system's
/// root certificates, no proxy, HTTP/1.1 keep-alive.
pub fn build_http_client() -> Result<reqwest::Client, WitnessError> {
    let client_error = |detail: String| WitnessError::Client { detail };
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "a system root certificate could not be loaded");
    }
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        tracing::warn!("no system root certificates: https:// witnesses will fail");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| client_error(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .connect_timeout(DEFAULT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|error| client_error(error.to_string()))
}

/// A client of one witness: its submission URL and cosigner vkey.
#[derive(Debug, Clone)]
pub struct WitnessClient {
    url: String,
    endpoint: String,
    vkey: Vkey,
    http: reqwest::Client,
    timeout: Duration,
}

impl WitnessClient {
    /// A client of the witness whose submission prefix is `url`
    /// (`http://host:port` or `https://host/prefix`; the client posts to
    /// `url + "/add-checkpoint"`) and whose cosigner vkey (type 0x04) is
    /// `vkey`. Uses the [`shared_http_client`].
    pub fn new(url: &str, vkey: Vkey) -> Result<Self, WitnessError> {
        let invalid = |detail: &str| WitnessError::InvalidUrl {
            url: url.to_owned(),
            detail: detail.to_owned(),
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid("must start with http:// or https://"));
        }
        if vkey.key_type() != audit_core::chain::note::KeyType::Cosignature {
            return Err(invalid(&format!(
                "the witness key {vkey} is not a cosignature key (type 0x04)"
            )));
        }
        let url = url.trim_end_matches('/').to_owned();
        let endpoint = format!("{url}{ADD_CHECKPOINT_PATH}");
        reqwest::Url::parse(&endpoint).map_err(|error| invalid(&error.to_string()))?;
        Ok(Self {
            url,
            endpoint,
            vkey,
            http: shared_http_client()?,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Parses `URL,VKEY` (the form of the CLI's `--witness`).
    pub fn parse(spec: &str) -> Result<Self, WitnessError> {
        let (url, vkey) = spec
            .split_once(',')
            .ok_or_else(|| WitnessError::InvalidUrl {
                url: spec.to_owned(),
                detail: "expected URL,VKEY".into(),
            })?;
        let vkey = Vkey::parse(vkey.trim()).map_err(|error| WitnessError::InvalidUrl {
            url: spec.to_owned(),
            detail: error.to_string(),
        })?;
        Self::new(url.trim(), vkey)
    }

    /// Gives every request at most `timeout`, connection included.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Uses this HTTP client (its pool, TLS and proxy settings).
    pub fn with_http_client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// The submission prefix.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The witness's cosigner vkey.
    pub fn vkey(&self) -> &Vkey {
        &self.vkey
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Asks the witness to cosign `note` (a signed tree checkpoint) given a
    /// consistency proof from `old_size`, the size the witness last
    /// cosigned (0 if it never did, or to learn it from the 409). Returns
    /// the witness's cosignature lines, each verified under its vkey, ready
    /// to push onto the note ([`Note::push_signature`]).
    pub async fn add_checkpoint(
        &self,
        old_size: u64,
        proof: &[Digest],
        note: &Note,
    ) -> Result<Vec<NoteSignature>, WitnessError> {
        let body = ConsistencyProof::new(old_size, proof.to_vec(), note.clone()).to_string();
        let timed_out = || WitnessError::Timeout {
            url: self.endpoint.clone(),
            after: self.timeout,
        };
        let http_error = |source: reqwest::Error| {
            if source.is_timeout() {
                timed_out()
            } else {
                WitnessError::Http {
                    url: self.endpoint.clone(),
                    source,
                }
            }
        };
        let exchange = async {
            let mut response = self
                .http
                .post(&self.endpoint)
                .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(body)
                .send()
                .await
                .map_err(http_error)?;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(http_error)? {
                if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(WitnessError::MalformedResponse {
                        detail: format!("answer over {MAX_RESPONSE_BYTES} bytes"),
                    });
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok((status, content_type, bytes))
        };
        let (status, content_type, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| timed_out())??;
        let message = || message(&bytes);
        match status {
            200 => self.verify_answer(note, &bytes),
            400 => Err(WitnessError::BadRequest { message: message() }),
            403 => Err(WitnessError::Forbidden { message: message() }),
            404 => Err(WitnessError::UnknownOrigin { message: message() }),
            409 => {
                let media_type = content_type.split(';').next().unwrap_or("").trim();
                if !media_type.eq_ignore_ascii_case(SIZE_CONTENT_TYPE) {
                    return Err(WitnessError::MalformedResponse {
                        detail: format!(
                            "409 with Content-Type {content_type:?}, not {SIZE_CONTENT_TYPE}"
                        ),
                    });
                }
                let latest_size = std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|text| text.strip_suffix('\n'))
                    .and_then(parse_size)
                    .ok_or_else(|| WitnessError::MalformedResponse {
                        detail: format!("409 body {:?} is not a size and a newline", message()),
                    })?;
                Err(WitnessError::Conflict { latest_size })
            }
            422 => Err(WitnessError::InconsistentProof { message: message() }),
            status => Err(WitnessError::UnexpectedStatus {
                status,
                message: message(),
            }),
        }
    }

    /// Verifies a 200 answer: signature lines that, appended to the
    /// checkpoint body, make a note with a valid cosignature of this
    /// witness; lines of other keys are ignored.
    fn verify_answer(&self, note: &Note, bytes: &[u8]) -> Result<Vec<NoteSignature>, WitnessError> {
        let malformed = |detail: String| WitnessError::MalformedResponse { detail };
        let text =
            std::str::from_utf8(bytes).map_err(|_| malformed("answer is not UTF-8".into()))?;
        if text.is_empty() {
            return Err(malformed("200 with an empty body".into()));
        }
        let combined = format!("{}\n{text}", note.body());
        let answered = Note::parse(combined.as_bytes())
            .map_err(|error| malformed(format!("signature lines: {error}")))?;
        match answered.verify(std::slice::from_ref(&self.vkey)) {
            Ok(_) => {}
            Err(NoteError::NoKnownSignature) => {
                return Err(WitnessError::NoCosignature {
                    vkey: self.vkey.to_string(),
                });
            }
            Err(error) => return Err(WitnessError::InvalidCosignature(error)),
        }
        Ok(answered
            .signatures()
            .iter()
            .filter(|signature| self.vkey.matches(signature))
            .cloned()
            .collect())
    }
}

/// The start of an error body, as text.
fn message(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim();
    match trimmed.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_owned(),
    }
}
