//! Errors of the PostgreSQL backend, and their classification for the
//! retry policy by SQLSTATE (never by message text).
//!
//! | SQLSTATE / condition | class |
//! |---|---|
//! | `23505` unique violation, `40001` serialization failure, `40P01` deadlock | [`ErrorClass::Conflict`] |
//! | class `08` (connection exception), `57P01` admin shutdown, `57P02` crash shutdown, `57P03` cannot connect now, `57P05` idle session timeout, `57014` query canceled, `53300` too many connections, `55P03` lock not available | [`ErrorClass::Transient`] |
//! | connection closed, I/O error, connect timeout | [`ErrorClass::Transient`] |
//! | anything else (permissions, authentication, missing database, schema, TLS setup and handshake) | [`ErrorClass::Permanent`] |
//!
//! A transient error reaches the pipeline's supervisor, which rebuilds the
//! sink from its factory (that is, reconnects) with backoff. On the read
//! side every error becomes a [`SourceError`] (an I/O error, exit 2); what
//! is wrong *in* the stored rows is never an error there but a finding of
//! the verifier (see [`crate::read`]).
//!
//! No error and no description ever carries a password: servers are named
//! by [`describe`](crate::describe) (`postgres://user@host:port/db`) and an
//! unparsable URL by [`redact_url`](audit_core::store::redact_url).

use std::error::Error as _;
use std::time::Duration;

use audit_core::sink::{ErrorClass, SinkError};
use audit_core::store::SourceError;
use tokio_postgres::error::SqlState;

/// What went wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The connection URL does not parse.
    #[error("invalid PostgreSQL URL {url}: {detail}")]
    BadUrl {
        /// The URL, its password removed.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// The URL asks for TLS (`sslmode=require`, `verify-ca` or
    /// `verify-full`) but this build has no TLS: the crate feature `tls`
    /// is off.
    #[error(
        "{target}: sslmode={mode} needs TLS, which this build lacks: enable the cargo feature `tls` of audit-postgres (`postgres-tls` of deferred-audit), or connect with `PostgresStore::connect_with_tls` (any `tokio_postgres::tls::MakeTlsConnect`)"
    )]
    TlsNotConfigured {
        /// The server.
        target: String,
        /// The URL's `sslmode`.
        mode: &'static str,
    },
    /// TLS cannot be set up: the trusted roots (`sslrootcert`,
    /// `PGSSLROOTCERT`, the system's store) are missing or unreadable.
    #[error("{target}: TLS setup failed: {detail}")]
    TlsConfig {
        /// The server.
        target: String,
        /// What is wrong.
        detail: String,
    },
    /// The TLS handshake failed: typically the server's certificate is
    /// not signed by a trusted root, has expired, or (`verify-full`) does
    /// not name the host.
    #[error("{target}: TLS handshake failed (sslmode={mode}, trusted roots: {roots}): {detail}")]
    TlsHandshake {
        /// The server.
        target: String,
        /// rustls' reason.
        detail: String,
        /// The URL's `sslmode`.
        mode: &'static str,
        /// Where the trusted roots came from.
        roots: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The server did not answer within the connect timeout.
    #[error("{target}: no connection within {after:?}")]
    ConnectTimeout {
        /// The server.
        target: String,
        /// The timeout.
        after: Duration,
    },
    /// The server refused the credentials.
    #[error("{target}: authentication failed for user {user:?}: {detail}")]
    AuthenticationFailed {
        /// The server.
        target: String,
        /// The user.
        user: String,
        /// The server's message.
        detail: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The database named in the URL does not exist.
    #[error("{target}: database {database:?} does not exist: {detail}")]
    MissingDatabase {
        /// The server.
        target: String,
        /// The database.
        database: String,
        /// The server's message.
        detail: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Connecting failed otherwise (server down, refused, TLS).
    #[error("{target}: cannot connect: {detail}")]
    Connect {
        /// The server.
        target: String,
        /// What went wrong.
        detail: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A statement failed.
    #[error("{target}: {action} failed: {detail}")]
    Query {
        /// The server.
        target: String,
        /// What was being done, e.g. `appending a batch`.
        action: &'static str,
        /// What went wrong.
        detail: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The database holds audit tables of another format.
    #[error(
        "{target}: audit_meta says format {found:?}; this library reads format 1 only and leaves the database untouched"
    )]
    UnknownFormat {
        /// The server.
        target: String,
        /// The stored format.
        found: String,
    },
    /// The schema is newer than this library.
    #[error(
        "{target}: schema version {found} is newer than the supported version {supported}; upgrade the library (the database was not modified)"
    )]
    NewerSchema {
        /// The server.
        target: String,
        /// The stored version.
        found: String,
        /// The newest version this library knows.
        supported: u32,
    },
    /// Tables that are not ours (or a damaged schema) are in the way.
    #[error("{target}: not a deferred-audit database: {detail} (the database was not modified)")]
    ForeignSchema {
        /// The server.
        target: String,
        /// What was found.
        detail: String,
    },
    /// The schema is missing and this user may not create it.
    #[error(
        "{target}: the audit schema is missing and could not be created ({detail}); create it once as a user with CREATE privilege, then grant this user SELECT, INSERT, UPDATE, DELETE on the audit_* tables"
    )]
    CannotCreateSchema {
        /// The server.
        target: String,
        /// The server's message.
        detail: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A stored value the writer needs cannot be decoded (e.g. a head row
    /// of the wrong shape). Readers report such rows to the verifier
    /// instead.
    #[error("{target}: corrupt data: {detail}")]
    Corrupt {
        /// The server.
        target: String,
        /// What is wrong.
        detail: String,
    },
    /// A seq beyond PostgreSQL's BIGINT (a record to import, a checkpoint).
    #[error("{target}: seq {seq} does not fit a BIGINT (the largest seq is 9223372036854775807)")]
    SeqTooLarge {
        /// The server.
        target: String,
        /// The seq.
        seq: u64,
    },
    /// A dead-letter key that is not an `audit_dead_letters.id` (decimal
    /// text), e.g. a key read from another store.
    #[error("{target}: {key:?} is not a dead-letter key of this store (an audit_dead_letters id)")]
    BadDeadLetterKey {
        /// The server.
        target: String,
        /// The key given.
        key: String,
    },
}

impl PostgresError {
    /// How the retry policy treats this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            PostgresError::ConnectTimeout { .. } => ErrorClass::Transient,
            PostgresError::Connect { source, .. } | PostgresError::Query { source, .. } => {
                classify(source)
            }
            _ => ErrorClass::Permanent,
        }
    }

    /// The server this error is about (`postgres://user@host:port/db`).
    pub fn target(&self) -> &str {
        match self {
            PostgresError::BadUrl { url, .. } => url,
            PostgresError::TlsNotConfigured { target, .. }
            | PostgresError::TlsConfig { target, .. }
            | PostgresError::TlsHandshake { target, .. }
            | PostgresError::ConnectTimeout { target, .. }
            | PostgresError::AuthenticationFailed { target, .. }
            | PostgresError::MissingDatabase { target, .. }
            | PostgresError::Connect { target, .. }
            | PostgresError::Query { target, .. }
            | PostgresError::UnknownFormat { target, .. }
            | PostgresError::NewerSchema { target, .. }
            | PostgresError::ForeignSchema { target, .. }
            | PostgresError::CannotCreateSchema { target, .. }
            | PostgresError::Corrupt { target, .. }
            | PostgresError::SeqTooLarge { target, .. }
            | PostgresError::BadDeadLetterKey { target, .. } => target,
        }
    }

    /// A [`PostgresError::Query`] for `action`.
    pub(crate) fn query(
        target: &str,
        action: &'static str,
    ) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let target = target.to_owned();
        move |source| PostgresError::Query {
            target,
            action,
            detail: detail_of(&source),
            source,
        }
    }
}

impl From<PostgresError> for SinkError {
    fn from(error: PostgresError) -> Self {
        SinkError::from_error(error.target().to_owned(), error.class(), error)
    }
}

impl From<PostgresError> for SourceError {
    fn from(error: PostgresError) -> Self {
        SourceError::new(error.target().to_owned(), error.to_string()).with_source(error)
    }
}

/// The class of a driver error: by SQLSTATE for server errors, by kind
/// (closed connection, I/O) for the others.
pub fn classify(error: &tokio_postgres::Error) -> ErrorClass {
    if let Some(code) = error.code() {
        return classify_sqlstate(code);
    }
    let io_error = error
        .source()
        .is_some_and(|source| source.is::<std::io::Error>());
    if error.is_closed() || io_error {
        ErrorClass::Transient
    } else {
        ErrorClass::Permanent
    }
}

/// The class of a SQLSTATE (see the module docs for the table).
pub fn classify_sqlstate(code: &SqlState) -> ErrorClass {
    const CONFLICTS: [SqlState; 3] = [
        SqlState::UNIQUE_VIOLATION,
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
    ];
    const TRANSIENT: [SqlState; 7] = [
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::IDLE_SESSION_TIMEOUT,
        SqlState::QUERY_CANCELED,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::LOCK_NOT_AVAILABLE,
    ];
    if CONFLICTS.contains(code) {
        ErrorClass::Conflict
    } else if TRANSIENT.contains(code) || code.code().starts_with("08") {
        ErrorClass::Transient
    } else {
        ErrorClass::Permanent
    }
}

/// A readable description of a driver error: the server's message (with
/// SQLSTATE, detail and hint) or the driver's error and its cause.
pub(crate) fn detail_of(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!("{} ({}): {}", db.severity(), db.code().code(), db.message());
        if let Some(detail) = db.detail() {
            text.push_str(&format!("; detail: {detail}"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        return text;
    }
    match error.source() {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_the_documented_classes() {
        assert_eq!(
            classify_sqlstate(&SqlState::UNIQUE_VIOLATION),
            ErrorClass::Conflict
        );
        assert_eq!(
            classify_sqlstate(&SqlState::T_R_DEADLOCK_DETECTED),
            ErrorClass::Conflict
        );
        assert_eq!(
            classify_sqlstate(&SqlState::ADMIN_SHUTDOWN),
            ErrorClass::Transient
        );
        assert_eq!(
            classify_sqlstate(&SqlState::CONNECTION_FAILURE),
            ErrorClass::Transient
        );
        assert_eq!(
            classify_sqlstate(&SqlState::INSUFFICIENT_PRIVILEGE),
            ErrorClass::Permanent
        );
        assert_eq!(
            classify_sqlstate(&SqlState::INVALID_PASSWORD),
            ErrorClass::Permanent
        );
    }

    #[test]
    fn a_sink_error_names_its_target_once() {
        let target = "postgres://audit@db/audit";
        let error = SinkError::from(PostgresError::SeqTooLarge {
            target: target.to_owned(),
            seq: u64::MAX,
        });
        let shown = error.to_string();
        assert_eq!(shown.matches(target).count(), 1, "{shown}");
        assert!(
            shown.starts_with("postgres://audit@db/audit: seq 18446744073709551615"),
            "{shown}"
        );
    }
}
