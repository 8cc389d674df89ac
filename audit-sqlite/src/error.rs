//! The errors of the SQLite store: each names the database file and says
//! what to do.

use std::path::PathBuf;

use audit_core::sink::{ErrorClass, SinkError};

/// Why a SQLite chain file could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// The file exists but is not a SQLite database.
    #[error(
        "{path} is not a SQLite database ({detail}); give the path of an audit database or of a file that does not exist yet"
    )]
    NotSqlite {
        /// The file.
        path: PathBuf,
        /// SQLite's message.
        detail: String,
    },
    /// A SQLite database that holds other tables and no audit chain.
    #[error(
        "{path} is a SQLite database of another application (tables: {tables}); it was left untouched: give a new file for the audit chain"
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// The tables found, comma-separated.
        tables: String,
    },
    /// An audit database of a format or schema version this build does not know.
    #[error(
        "{path} has audit_meta {key} = {value:?}, which this build does not support (it knows {key} 1); use a newer deferred-audit; the file was left untouched"
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// `format` or `schema_version`.
        key: &'static str,
        /// The value found.
        value: String,
    },
    /// An audit database that lacks tables of FORMAT.md section 6.
    #[error("{path} is an incomplete audit database: table(s) {missing} missing")]
    MissingTables {
        /// The file.
        path: PathBuf,
        /// The missing tables, comma-separated.
        missing: String,
    },
    /// The file does not exist (when reading).
    #[error("{path} does not exist; check the path of the audit database")]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// The chain's tree could not be grown from its records on open.
    #[error("{path}: growing the chains' trees after a migration: {detail}")]
    Tree {
        /// The file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// A SQLite call failed.
    #[error("{path}: {context}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What was being done.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored row or checkpoint cannot be decoded.
    #[error("{path}: malformed audit data: {detail}; run `deferred-audit verify` on it")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A chain write failed (replay).
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// Blocking work on the database panicked or was cancelled.
    #[error("{path}: background database task failed: {detail}")]
    Task {
        /// The file.
        path: PathBuf,
        /// What happened.
        detail: String,
    },
}

impl SqliteError {
    /// Wraps a driver error with the file and what was being done.
    pub(crate) fn sqlite(
        path: &std::path::Path,
        context: &'static str,
    ) -> impl FnOnce(rusqlite::Error) -> Self {
        let path = path.to_owned();
        move |source| Self::Sqlite {
            path,
            context,
            source,
        }
    }

    /// How a sink should treat this error: busy or locked files may open
    /// later; anything else will not fix itself.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Sqlite { source, .. } => classify(source),
            Self::Sink(error) => error.class,
            Self::Task { .. } => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }

    /// This error as a [`SinkError`] of the sink `describe`.
    pub fn into_sink_error(self, describe: &str) -> SinkError {
        match self {
            Self::Sink(error) => error,
            other => {
                let class = other.class();
                SinkError::from_error(describe, class, other)
            }
        }
    }
}

/// Classifies a driver error by its typed (extended) result code, never by
/// its message: a PRIMARY KEY or UNIQUE violation is a lost race
/// ([`ErrorClass::Conflict`]); busy or locked past the busy timeout is
/// [`ErrorClass::Transient`]; anything else (disk full, I/O error, corrupt
/// file, read-only file) is [`ErrorClass::Permanent`].
pub fn classify(error: &rusqlite::Error) -> ErrorClass {
    use rusqlite::ffi;
    let Some(code) = error.sqlite_error() else {
        return ErrorClass::Permanent;
    };
    match code.code {
        ffi::ErrorCode::ConstraintViolation
            if code.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                || code.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            ErrorClass::Conflict
        }
        ffi::ErrorCode::DatabaseBusy | ffi::ErrorCode::DatabaseLocked => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}
