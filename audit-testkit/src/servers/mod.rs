//! Real servers for tests: throwaway instances on free loopback ports,
//! stopped (and their files removed) when the handle is dropped, even when
//! the test panics.
//!
//! A server whose binaries are missing does not make a test skip: starting
//! it fails with a [`ServerError`] that says what to install.

pub mod postgres;
pub mod s3;

use std::net::TcpListener;
use std::path::PathBuf;

/// Why a test server could not be started or driven.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// A program the server needs is not installed.
    MissingBinary {
        /// The program, e.g. `initdb`.
        program: String,
        /// Where it was looked for.
        searched: String,
        /// How to install it.
        install: String,
    },
    /// A command ran but failed.
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed (stderr, stdout, and the server log if any).
        output: String,
    },
    /// Local I/O failed (temp dir, permissions, spawning).
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::MissingBinary {
                program,
                searched,
                install,
            } => write!(f, "{program} not found (looked in {searched}); {install}"),
            ServerError::CommandFailed {
                command,
                status,
                output,
            } => write!(f, "`{command}` failed ({status}): {output}"),
            ServerError::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl ServerError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| ServerError::Io { context, source }
    }
}

/// A loopback TCP port that was free a moment ago (never 5432).
pub fn free_port() -> Result<u16, ServerError> {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(ServerError::io("binding 127.0.0.1:0 to find a free port"))?;
        let port = listener
            .local_addr()
            .map_err(ServerError::io("reading the address of a bound socket"))?
            .port();
        if port != 5432 {
            return Ok(port);
        }
    }
}

/// Whether this process runs as root (the owner of `/proc/self` is the
/// effective user).
pub(crate) fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// The first `program` found on `PATH`, then in `extra` directories.
pub(crate) fn find_program(program: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().cloned())
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
