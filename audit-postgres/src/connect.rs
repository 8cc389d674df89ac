//! Connection settings: URL parsing, TLS, timeouts, and the description of
//! a server used in logs and errors (never with its password).
//!
//! Any libpq-style URL or key/value string works
//! (`postgres://user:secret@db.example:5432/audit?sslmode=disable`).
//! [`PostgresStore::connect`](crate::PostgresStore::connect) connects
//! without TLS (`sslmode=disable` or `prefer`) and refuses
//! `sslmode=require` with an error saying so. For TLS, pass any connector
//! implementing [`MakeTlsConnect`] (e.g. from `tokio-postgres-rustls` or
//! `postgres-native-tls`) to
//! [`PostgresStore::connect_with_tls`](crate::PostgresStore::connect_with_tls)
//! (or [`PostgresSource::connect_with_tls`](crate::PostgresSource::connect_with_tls)).

use std::str::FromStr;
use std::time::Duration;

use audit_core::store::redact_url;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, Socket};

use crate::error::{PostgresError, detail_of};

/// Options of the PostgreSQL backend.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// How long to wait for a connection (and its authentication).
    pub connect_timeout: Duration,
    /// Create (or migrate) the schema when missing. When false a missing
    /// schema is an error.
    pub create_schema: bool,
    /// Rows per page when reading a chain (verification, export).
    pub page_size: usize,
    /// `application_name` shown in `pg_stat_activity`.
    pub application_name: String,
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

/// Parses a connection URL (or key/value string). When it holds no
/// password, the password comes, as with libpq, from `PGPASSWORD`, else
/// from the password file (`PGPASSFILE`, default `~/.pgpass`; a file that
/// group or others can read is ignored, with a warning).
pub fn parse_url(url: &str) -> Result<Config, PostgresError> {
    let mut config = Config::from_str(url).map_err(|error| PostgresError::BadUrl {
        url: redact_url(url),
        detail: detail_of(&error),
    })?;
    if config.get_password().is_none()
        && let Some(password) = password_from_environment(&config)
    {
        config.password(password);
    }
    Ok(config)
}

fn password_from_environment(config: &Config) -> Option<String> {
    if let Some(password) = std::env::var_os("PGPASSWORD") {
        return Some(password.to_string_lossy().into_owned());
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".pgpass")))?;
    let text = read_private_file(&file)?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(_)) | None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432).to_string();
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

/// Connects without TLS (refusing `sslmode=require`).
pub(crate) async fn connect_plain(
    url: &str,
    options: &PostgresOptions,
) -> Result<Connection, PostgresError> {
    let config = parse_url(url)?;
    if config.get_ssl_mode() == SslMode::Require {
        return Err(PostgresError::TlsNotConfigured {
            target: describe(&config),
        });
    }
    connect_tls(config, tokio_postgres::NoTls, options).await
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
