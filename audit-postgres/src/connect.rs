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

/// Parses a connection URL (or key/value string).
pub fn parse_url(url: &str) -> Result<Config, PostgresError> {
    Config::from_str(url).map_err(|error| PostgresError::BadUrl {
        url: redact_url(url),
        detail: detail_of(&error),
    })
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
}
