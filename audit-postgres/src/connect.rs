//! Connection settings: URL parsing, TLS, timeouts, and the description of
//! a server used in logs and errors (never with its password).
//!
//! Any libpq-style URL or key/value string works
//! (`postgres://user:secret@db.example:5432/audit?sslmode=disable`).
//!
//! # TLS
//!
//! [`PostgresStore::connect`](crate::PostgresStore::connect),
//! [`open_source`](crate::open_source) and
//! [`sink_factory`](crate::sink_factory) follow the URL's `sslmode`
//! (libpq's names; [`TlsMode`]):
//!
//! | `sslmode` | connection |
//! |---|---|
//! | `disable`, `allow`, `prefer` (the default) | plain, no TLS |
//! | `require`, `verify-ca` | TLS; the server's certificate chain must lead to a trusted root (its host name is not checked) |
//! | `verify-full` | TLS; chain verified **and** the certificate must name the host of the URL |
//!
//! Unlike libpq, `require` does verify the chain: a TLS connection to an
//! unauthenticated server protects against nobody who can intercept it.
//! The trusted roots ([`RootCerts`]) are the PEM file named by the URL's
//! `sslrootcert=` parameter, else by the `PGSSLROOTCERT` environment
//! variable, else (or with `sslrootcert=system`) the system's trust store.
//!
//! TLS needs the crate feature `tls` (rustls with its `ring` provider;
//! the `deferred-audit` facade's feature `postgres-tls`). Without it, a
//! URL asking for TLS is refused with
//! [`PostgresError::TlsNotConfigured`], which names the feature. Any other
//! connector implementing [`MakeTlsConnect`] (e.g. `postgres-native-tls`)
//! can be passed to
//! [`PostgresStore::connect_with_tls`](crate::PostgresStore::connect_with_tls)
//! (or [`PostgresSource::connect_with_tls`](crate::PostgresSource::connect_with_tls))
//! with the [`Config`] of [`parse_url`].

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use audit_core::store::redact_url;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, Socket};

use crate::error::{PostgresError, detail_of};

/// Options of the PostgreSQL backend: [`Default`], then the `with_*`
/// methods.
///
/// ```
/// use std::time::Duration;
/// use audit_postgres::PostgresOptions;
/// let options = PostgresOptions::default()
///     .with_connect_timeout(Duration::from_secs(3))
///     .with_application_name("billing-audit");
/// assert!(options.create_schema());
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct PostgresOptions {
    connect_timeout: Duration,
    create_schema: bool,
    page_size: usize,
    application_name: String,
}

impl PostgresOptions {
    /// How long to wait for a connection and its authentication (default 10 s).
    pub fn with_connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// Whether to create (or migrate) the schema when missing (default
    /// true); when false a missing schema is an error.
    pub fn with_create_schema(mut self, create_schema: bool) -> Self {
        self.create_schema = create_schema;
        self
    }

    /// Rows per page when reading a chain (default 5,000; at least 1).
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// The `application_name` shown in `pg_stat_activity` (default
    /// `deferred-audit`).
    pub fn with_application_name(mut self, application_name: impl Into<String>) -> Self {
        self.application_name = application_name.into();
        self
    }

    /// How long to wait for a connection.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Whether a missing schema is created.
    pub fn create_schema(&self) -> bool {
        self.create_schema
    }

    /// Rows per page when reading a chain.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The `application_name` of connections.
    pub fn application_name(&self) -> &str {
        &self.application_name
    }
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            create_schema: true,
            page_size: 5_000,
            application_name: "deferred-audit".into(),
        }
    }
}

/// libpq's `sslmode` (see the [module docs](self) for what each does here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TlsMode {
    /// `disable`: never TLS.
    Disable,
    /// `allow`: plain (this crate never falls back to TLS).
    Allow,
    /// `prefer` (libpq's default): plain here; ask for TLS explicitly.
    #[default]
    Prefer,
    /// `require`: TLS, certificate chain verified against the trusted roots.
    Require,
    /// `verify-ca`: TLS, certificate chain verified, host name not checked.
    VerifyCa,
    /// `verify-full`: TLS, certificate chain and host name verified.
    VerifyFull,
}

impl TlsMode {
    /// The mode named by an `sslmode` value, if any.
    pub fn from_sslmode(value: &str) -> Option<Self> {
        Some(match value {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    /// The `sslmode` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// Whether the connection must use TLS.
    pub fn requires_tls(self) -> bool {
        matches!(self, Self::Require | Self::VerifyCa | Self::VerifyFull)
    }

    /// Whether the certificate must also name the host.
    pub fn verifies_host(self) -> bool {
        self == Self::VerifyFull
    }

    fn driver_mode(self) -> SslMode {
        match self {
            Self::Disable => SslMode::Disable,
            Self::Allow | Self::Prefer => SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => SslMode::Require,
        }
    }
}

impl std::fmt::Display for TlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The roots a server certificate is verified against.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RootCerts {
    /// The system's trust store (`sslrootcert=system`, or nothing named).
    #[default]
    System,
    /// The certificates of a PEM file (`sslrootcert=FILE` or `PGSSLROOTCERT`).
    File(PathBuf),
}

impl std::fmt::Display for RootCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::System => f.write_str("the system's trust store"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The TLS settings of a connection URL (which [`Config`] does not carry).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TlsSettings {
    /// The URL's `sslmode` ([`TlsMode::Prefer`] when absent).
    pub mode: TlsMode,
    /// The trusted roots (`sslrootcert=`, `PGSSLROOTCERT`, else the system's).
    pub root_certs: RootCerts,
}

/// A parsed connection URL: the driver's settings and the TLS settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectSettings {
    /// Everything but TLS (its `ssl_mode` is `disable`, `prefer` or
    /// `require` according to [`TlsSettings::mode`]).
    pub config: Config,
    /// `sslmode` and the trusted roots.
    pub tls: TlsSettings,
}

/// Parses a connection URL (or key/value string). When it holds no
/// password, the password comes, as with libpq, from `PGPASSWORD`, else
/// from the password file (`PGPASSFILE`, default `~/.pgpass`; a file that
/// group or others can read is ignored, with a warning).
///
/// `sslmode` may be any of libpq's values; `verify-ca` and `verify-full`
/// become `require` in the returned [`Config`] and `sslrootcert` is
/// dropped: use [`parse_connect_url`] to keep them.
pub fn parse_url(url: &str) -> Result<Config, PostgresError> {
    parse_connect_url(url).map(|settings| settings.config)
}

/// Parses a connection URL like [`parse_url`], keeping its TLS settings:
/// `sslmode` (any of libpq's values) and `sslrootcert` (else
/// `PGSSLROOTCERT`), in both the URL and the key/value forms.
pub fn parse_connect_url(url: &str) -> Result<ConnectSettings, PostgresError> {
    let bad_url = |detail: String| PostgresError::BadUrl {
        url: redact_url(url),
        detail,
    };
    let (rest, tls_params) = split_tls_params(url).map_err(bad_url)?;
    let mut config = Config::from_str(&rest).map_err(|error| bad_url(detail_of(&error)))?;
    let mode = match tls_params.sslmode.as_deref() {
        None => TlsMode::default(),
        Some(value) => TlsMode::from_sslmode(value).ok_or_else(|| {
            bad_url(format!(
                "invalid sslmode {value:?} (disable, allow, prefer, require, verify-ca or verify-full)"
            ))
        })?,
    };
    config.ssl_mode(mode.driver_mode());
    let root_certs = match tls_params.sslrootcert.or_else(|| {
        std::env::var_os("PGSSLROOTCERT").map(|value| value.to_string_lossy().into_owned())
    }) {
        Some(value) if value == "system" => RootCerts::System,
        Some(value) if !value.is_empty() => RootCerts::File(PathBuf::from(value)),
        _ => RootCerts::System,
    };
    if config.get_password().is_none()
        && let Some(password) = password_from_environment(&config)
    {
        config.password(password);
    }
    Ok(ConnectSettings {
        config,
        tls: TlsSettings { mode, root_certs },
    })
}

/// The TLS parameters taken out of a URL.
#[derive(Debug, Default, PartialEq, Eq)]
struct TlsParams {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

/// Parameters handled here rather than by [`Config::from_str`].
const TLS_KEYS: [&str; 2] = ["sslmode", "sslrootcert"];

/// Removes `sslmode` and `sslrootcert` from `url` (URL or key/value form),
/// returning the rest and their values (the last one of each wins).
fn split_tls_params(url: &str) -> Result<(String, TlsParams), String> {
    let mut params = TlsParams::default();
    let mut keep = |key: &str, value: String| {
        match key {
            "sslmode" => params.sslmode = Some(value),
            "sslrootcert" => params.sslrootcert = Some(value),
            _ => return true,
        }
        false
    };
    let trimmed = url.trim_start();
    let rest = if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_owned(), params));
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(key)?;
            if !TLS_KEYS.contains(&key.as_str()) || keep(&key, percent_decode(value)?) {
                kept.push(pair);
            }
        }
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else {
        let mut rest = String::with_capacity(url.len());
        let mut last = 0;
        for (span, key, value) in key_value_pairs(url)? {
            if TLS_KEYS.contains(&key) && !keep(key, value) {
                rest.push_str(&url[last..span.start]);
                last = span.end;
            }
        }
        rest.push_str(&url[last..]);
        rest
    };
    Ok((rest, params))
}

/// `%XX` escapes decoded (libpq URLs do not turn `+` into a space).
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("invalid percent-encoding at byte {i} of the parameters"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoded parameter is not UTF-8".to_owned())
}

/// A `key=value` pair: the bytes it occupies, the key, the unescaped value.
type KeyValue<'a> = (std::ops::Range<usize>, &'a str, String);

/// The `key=value` pairs of a key/value connection string, with the byte
/// range each occupies (libpq's syntax: values unquoted or in single
/// quotes, `\` escaping the next character).
fn key_value_pairs(text: &str) -> Result<Vec<KeyValue<'_>>, String> {
    let bytes = text.as_bytes();
    let mut pairs = Vec::new();
    let mut i = 0;
    let skip_ws = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    loop {
        i = skip_ws(i);
        if i >= bytes.len() {
            return Ok(pairs);
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &text[start..i];
        i = skip_ws(i);
        if bytes.get(i) != Some(&b'=') {
            return Err(format!("expected `=` after {key:?}"));
        }
        i = skip_ws(i + 1);
        let mut value = Vec::new();
        if bytes.get(i) == Some(&b'\'') {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err("unterminated quoted value".to_owned()),
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        if let Some(&next) = bytes.get(i + 1) {
                            value.push(next);
                        }
                        i += 2;
                    }
                    Some(&byte) => {
                        value.push(byte);
                        i += 1;
                    }
                }
            }
        } else {
            while let Some(&byte) = bytes.get(i) {
                if byte.is_ascii_whitespace() {
                    break;
                }
                if byte == b'\\' {
                    if let Some(&next) = bytes.get(i + 1) {
                        value.push(next);
                    }
                    i += 2;
                } else {
                    value.push(byte);
                    i += 1;
                }
            }
        }
        let end = i.min(bytes.len());
        let value =
            String::from_utf8(value).map_err(|_| format!("value of {key:?} is not UTF-8"))?;
        pairs.push((start..end, key, value));
    }
}

fn password_from_environment(config: &Config) -> Option<String> {
    if let Some(password) = std::env::var_os("PGPASSWORD") {
        return Some(password.to_string_lossy().into_owned());
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".pgpass"))
        })?;
    let text = read_private_file(&file)?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(_)) | None => "localhost".to_owned(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or_default();
    let database = config.get_dbname().unwrap_or(user);
    pgpass_lookup(&text, [&host, &port, database, user])
}

/// The file's text, unless group or others may read it (libpq's rule).
fn read_private_file(path: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let metadata = std::fs::metadata(path).ok()?;
    if metadata.permissions().mode() & 0o077 != 0 {
        tracing::warn!(file = %path.display(), "password file has group or world access; ignored (chmod 0600 it)");
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// The password of the first `host:port:database:user:password` line
/// matching `wanted` (`*` matches anything; `\:` and `\\` are escapes).
pub(crate) fn pgpass_lookup(text: &str, wanted: [&str; 4]) -> Option<String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = split_pgpass_line(line);
            if fields.len() != 5 {
                return None;
            }
            let matches = fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, wanted)| field == "*" || field == wanted);
            matches.then(|| fields[4].clone())
        })
}

fn split_pgpass_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(field)) = (chars.next(), fields.last_mut()) {
                    field.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(field) = fields.last_mut() {
                    field.push(c);
                }
            }
        }
    }
    fields
}

/// `postgres://user@host:port/db`: the server, without the password.
pub fn describe(config: &Config) -> String {
    let user = config.get_user().unwrap_or("");
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            Host::Tcp(name) => format!("{name}:{port}"),
            Host::Unix(path) => format!("{}:{port}", path.display()),
        })
        .collect();
    let database = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{}/{database}", hosts.join(","))
}

/// A connected client; its connection task ends when it is dropped.
pub(crate) struct Connection {
    pub(crate) client: Client,
    pub(crate) target: String,
}

/// Connects to `url` as its `sslmode` says (see the [module docs](self)).
pub(crate) async fn connect_url(
    url: &str,
    options: &PostgresOptions,
) -> Result<Connection, PostgresError> {
    let settings = parse_connect_url(url)?;
    if !settings.tls.mode.requires_tls() {
        return connect_tls(settings.config, tokio_postgres::NoTls, options).await;
    }
    connect_rustls(settings, options).await
}

#[cfg(feature = "tls")]
async fn connect_rustls(
    settings: ConnectSettings,
    options: &PostgresOptions,
) -> Result<Connection, PostgresError> {
    let connector = rustls_connector(&settings)?;
    let ConnectSettings { config, tls } = settings;
    connect_tls(config, connector, options)
        .await
        .map_err(|error| rustls_tls::handshake_error(error, &tls))
}

#[cfg(not(feature = "tls"))]
async fn connect_rustls(
    settings: ConnectSettings,
    _options: &PostgresOptions,
) -> Result<Connection, PostgresError> {
    Err(PostgresError::TlsNotConfigured {
        target: describe(&settings.config),
        mode: settings.tls.mode.as_str(),
    })
}

/// The rustls connector for `settings`: its trusted roots loaded, and a
/// verifier checking the host name only for `sslmode=verify-full`. Uses
/// rustls' `ring` provider whatever the process default is.
#[cfg(feature = "tls")]
pub fn rustls_connector(
    settings: &ConnectSettings,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, PostgresError> {
    rustls_tls::connector(&settings.tls).map_err(|detail| PostgresError::TlsConfig {
        target: describe(&settings.config),
        detail,
    })
}

/// Connects with any TLS connector.
pub(crate) async fn connect_tls<T>(
    mut config: Config,
    tls: T,
    options: &PostgresOptions,
) -> Result<Connection, PostgresError>
where
    T: MakeTlsConnect<Socket> + Send + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let target = describe(&config);
    if config.get_application_name().is_none() {
        config.application_name(options.application_name.clone());
    }
    let connecting = config.connect(tls);
    let (client, connection) = tokio::time::timeout(options.connect_timeout, connecting)
        .await
        .map_err(|_| PostgresError::ConnectTimeout {
            target: target.clone(),
            after: options.connect_timeout,
        })?
        .map_err(|source| connect_error(&config, &target, source))?;
    let log_target = target.clone();
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(server = %log_target, error = %detail_of(&error), "PostgreSQL connection lost");
        }
    });
    Ok(Connection { client, target })
}

fn connect_error(config: &Config, target: &str, source: tokio_postgres::Error) -> PostgresError {
    let target = target.to_owned();
    let detail = detail_of(&source);
    match source.code() {
        Some(code)
            if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            PostgresError::AuthenticationFailed {
                target,
                user: config.get_user().unwrap_or("").to_owned(),
                detail,
                source,
            }
        }
        Some(code) if *code == SqlState::INVALID_CATALOG_NAME => PostgresError::MissingDatabase {
            target,
            database: config
                .get_dbname()
                .or(config.get_user())
                .unwrap_or("")
                .to_owned(),
            detail,
            source,
        },
        _ => PostgresError::Connect {
            target,
            detail,
            source,
        },
    }
}

#[cfg(feature = "tls")]
mod rustls_tls {
    use std::sync::Arc;

    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{
        CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    };
    use tokio_postgres_rustls::MakeRustlsConnect;

    use super::{RootCerts, TlsSettings};
    use crate::error::PostgresError;

    /// The connector for `settings` (the error is a sentence for
    /// [`PostgresError::TlsConfig`]).
    pub(super) fn connector(settings: &TlsSettings) -> Result<MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(load_roots(&settings.root_certs)?);
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
            .build()
            .map_err(|error| format!("cannot build the certificate verifier: {error}"))?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("cannot configure rustls: {error}"))?;
        let config = if settings.mode.verifies_host() {
            builder.with_webpki_verifier(verifier)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { inner: verifier }))
        };
        Ok(MakeRustlsConnect::new(config.with_no_client_auth()))
    }

    fn load_roots(roots: &RootCerts) -> Result<RootCertStore, String> {
        let mut store = RootCertStore::empty();
        match roots {
            RootCerts::File(path) => {
                let pem = std::fs::read(path).map_err(|error| {
                    format!(
                        "cannot read the root certificate file {} (sslrootcert): {error}",
                        path.display()
                    )
                })?;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|error| {
                        format!(
                            "{} (sslrootcert) is not a PEM certificate file: {error}",
                            path.display()
                        )
                    })?;
                    store.add(cert).map_err(|error| {
                        format!(
                            "{} (sslrootcert) holds an unusable certificate: {error}",
                            path.display()
                        )
                    })?;
                }
                if store.is_empty() {
                    return Err(format!(
                        "{} (sslrootcert) holds no PEM certificate",
                        path.display()
                    ));
                }
            }
            RootCerts::System => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _ignored) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    let errors: Vec<String> =
                        found.errors.iter().map(ToString::to_string).collect();
                    return Err(format!(
                        "no trusted root certificate in the system's trust store{}; name a CA file with sslrootcert= or PGSSLROOTCERT",
                        if errors.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", errors.join("; "))
                        }
                    ));
                }
            }
        }
        Ok(store)
    }

    /// `require` and `verify-ca`: the chain must lead to a trusted root;
    /// the host name is not checked. rustls checks the chain (signatures,
    /// validity, usage) before the name, so a name mismatch is the only
    /// error forgiven, and only once the chain has been verified.
    #[derive(Debug)]
    struct ChainOnly {
        inner: Arc<WebPkiServerVerifier>,
    }

    impl ServerCertVerifier for ChainOnly {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp_response: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            match self.inner.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ) {
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    }

    /// A connect error caused by rustls (a refused certificate, a failed
    /// handshake) becomes [`PostgresError::TlsHandshake`], a permanent
    /// error naming the trusted roots; any other error is returned as is.
    pub(super) fn handshake_error(error: PostgresError, settings: &TlsSettings) -> PostgresError {
        let PostgresError::Connect {
            target,
            detail,
            source,
        } = error
        else {
            return error;
        };
        match rustls_cause(&source) {
            Some(cause) => PostgresError::TlsHandshake {
                target,
                detail: cause.to_string(),
                mode: settings.mode.as_str(),
                roots: settings.root_certs.to_string(),
                source,
            },
            None => PostgresError::Connect {
                target,
                detail,
                source,
            },
        }
    }

    /// The rustls error in `error`'s chain of causes, if any (tokio-rustls
    /// wraps it in an I/O error).
    fn rustls_cause(error: &tokio_postgres::Error) -> Option<&rustls::Error> {
        let mut cause: Option<&(dyn std::error::Error + 'static)> =
            std::error::Error::source(error);
        while let Some(current) = cause {
            if let Some(found) = current.downcast_ref::<rustls::Error>() {
                return Some(found);
            }
            if let Some(found) = current
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                return Some(found);
            }
            cause = current.source();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_and_errors_never_show_the_password() {
        let config = parse_url("postgres://alice:secret@db.example:6543/audit").unwrap();
        assert_eq!(describe(&config), "postgres://alice@db.example:6543/audit");
        for url in [
            "postgres://alice:secret@db.example/audit?sslmode=bogus",
            "postgres://alice@db.example/audit?password=secret&sslmode=bogus",
            "host=db.example password=secret sslmode=bogus",
        ] {
            let error = parse_url(url).unwrap_err();
            assert!(!error.to_string().contains("secret"), "{error}");
        }
    }

    #[test]
    fn the_password_file_is_matched_like_libpq() {
        let text = "# comment\nother:5432:*:*:wrong\ndb.example:6543:audit:alice:s3cr\\:et\n*:*:*:*:fallback\n";
        assert_eq!(
            pgpass_lookup(text, ["db.example", "6543", "audit", "alice"]).as_deref(),
            Some("s3cr:et")
        );
        assert_eq!(
            pgpass_lookup(text, ["elsewhere", "5432", "x", "bob"]).as_deref(),
            Some("fallback")
        );
        assert_eq!(pgpass_lookup("h:1:d:u\n", ["h", "1", "d", "u"]), None);
    }

    #[test]
    fn a_password_file_others_can_read_is_ignored() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "*:*:*:*:pw\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_private_file(&file), None);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_private_file(&file).as_deref(), Some("*:*:*:*:pw\n"));
    }
}
