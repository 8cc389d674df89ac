//! The CLI's errors and exit codes: 0 all good, 1 a verification failed,
//! 2 usage or I/O errors.

use std::process::ExitCode;

/// A command that could not run; exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    message: String,
}

impl CliError {
    /// A usage or I/O error with a message that names what is wrong.
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Errors that become a usage or I/O error (exit 2) with their message.
macro_rules! usage_errors {
    ($($error:ty),* $(,)?) => {
        $(impl From<$error> for CliError {
            fn from(error: $error) -> Self {
                Self::usage(error.to_string())
            }
        })*
    };
}

usage_errors!(
    audit_core::KeyError,
    audit_core::sink::SinkError,
    audit_core::store::SourceError,
    audit_core::store::StoreUrlError,
    audit_core::export::ExportError,
    audit_core::replay::ReplayError,
    deferred_audit::OpenError,
    audit_sqlite::SqliteError,
);

/// Exit code 0: every check held.
pub const OK: ExitCode = ExitCode::SUCCESS;

/// Exit code 1: a check failed.
pub fn failed() -> ExitCode {
    ExitCode::from(1)
}

/// Exit code 2: usage or I/O error.
pub fn usage_error() -> ExitCode {
    ExitCode::from(2)
}

/// Runs `future` to completion on a fresh single-threaded runtime (the
/// commands are synchronous; the PostgreSQL and object-store clients are
/// async).
pub fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| CliError::usage(format!("starting the async runtime: {error}")))?;
    Ok(runtime.block_on(future))
}
