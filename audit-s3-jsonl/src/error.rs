//! Errors of the archive, and how object-store errors are classified for
//! the retry policy.
//!
//! Classification goes by type, never by message text:
//! `AlreadyExists`/`Precondition` is a lost race ([`ErrorClass::Conflict`]);
//! connection, request and timeout errors of the HTTP client, and I/O errors
//! such as a refused or reset connection, are [`ErrorClass::Transient`];
//! a missing object, a bad path, refused credentials or permissions, an
//! unsupported operation, a full disk are [`ErrorClass::Permanent`]. An
//! error the store reports only generically (HTTP 5xx and throttling after
//! the client's own retries) counts as transient: the supervisor retries it
//! and, past its budget, the batch lands in the fallback file, so nothing is
//! lost either way. The archive's own errors (an object not in the format,
//! records that do not continue the head, a dead-letter key outside the
//! chain's folder) are permanent; an interrupted indexing task is transient.

use audit_core::sink::{ErrorClass, SinkError};
use audit_core::store::SourceError;

/// What went wrong in the archive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// An object-store operation failed.
    #[error("{operation} {path} in {store}: {source}")]
    Store {
        /// The store (its description).
        store: String,
        /// What was being done, e.g. `listing`.
        operation: &'static str,
        /// The object or prefix.
        path: String,
        /// The error (boxed: it is large).
        #[source]
        source: Box<object_store::Error>,
    },
    /// The store accepted a second create-only put of the same object.
    #[error(
        "{store} does not enforce create-only puts (If-None-Match: *): a second create of {path} \
         succeeded ({detail}); concurrent writers could overwrite each other's segments. Use a store \
         that honours conditional puts, or set ArchiveOptions::assume_single_writer if exactly one \
         writer ever writes this prefix"
    )]
    NotCreateOnly {
        /// The store.
        store: String,
        /// The probe object.
        path: String,
        /// What the second put did.
        detail: String,
    },
    /// An object is not in the format.
    #[error("{path}, line {line}: {detail}")]
    Malformed {
        /// The object.
        path: String,
        /// 1-based line (0 for the whole object).
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// Two checkpoints at the same seq state different heads.
    #[error("checkpoint {path} already exists with another head ({detail})")]
    CheckpointConflict {
        /// The checkpoint object.
        path: String,
        /// The two heads.
        detail: String,
    },
    /// Records given to import do not continue the chain's head.
    #[error("cannot import into chain {chain}: {detail}")]
    DoesNotContinue {
        /// The chain.
        chain: String,
        /// What does not fit.
        detail: String,
    },
    /// A chain store was asked about another chain than its own.
    #[error("this archive store writes chain {store_chain}, not chain {asked}")]
    OtherChain {
        /// The store's chain.
        store_chain: String,
        /// The chain asked for.
        asked: String,
    },
    /// A dead-letter key that is not an object of the chain's dead-letter folder.
    #[error("dead-letter key {key:?} is not an object under {folder}")]
    ForeignDeadLetterKey {
        /// The key given.
        key: String,
        /// The chain's dead-letter folder.
        folder: String,
    },
    /// A task of the archive was cancelled or panicked.
    #[error("{what} was interrupted: {detail}")]
    Interrupted {
        /// What the task was doing.
        what: &'static str,
        /// Why it stopped.
        detail: String,
    },
    /// A store URL could not be used.
    #[error("store URL {url}: {detail}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
}

impl ArchiveError {
    pub(crate) fn store(
        store: &dyn object_store::ObjectStore,
        operation: &'static str,
        path: impl ToString,
    ) -> impl FnOnce(object_store::Error) -> Self {
        let store = store.to_string();
        let path = path.to_string();
        move |source| ArchiveError::Store {
            store,
            operation,
            path,
            source: Box::new(source),
        }
    }

    /// How the retry policy should treat this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            ArchiveError::Store { source, .. } => classify(source),
            ArchiveError::Interrupted { .. } => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }

    /// This error as a sink error of `sink`, classified.
    pub fn into_sink_error(self, sink: &str) -> SinkError {
        let class = self.class();
        SinkError::from_error(sink, class, self)
    }

    /// This error as a read error of `source`.
    pub fn into_source_error(self, source: &str) -> SourceError {
        SourceError::new(source, self.to_string()).with_source(self)
    }
}

/// How the retry policy should treat an object-store error.
pub fn classify(error: &object_store::Error) -> ErrorClass {
    use object_store::Error as E;
    match error {
        E::AlreadyExists { .. } | E::Precondition { .. } => ErrorClass::Conflict,
        E::NotFound { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::NotModified { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::UnknownConfigurationKey { .. } => ErrorClass::Permanent,
        E::Generic { source, .. } => classify_source(source.as_ref()),
        _ => ErrorClass::Transient,
    }
}

/// Walks the source chain for a typed cause.
fn classify_source(error: &(dyn std::error::Error + 'static)) -> ErrorClass {
    let mut current = Some(error);
    while let Some(error) = current {
        if error
            .downcast_ref::<object_store::client::HttpError>()
            .is_some()
        {
            return ErrorClass::Transient;
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return classify_io(io.kind());
        }
        current = error.source();
    }
    ErrorClass::Transient
}

fn classify_io(kind: std::io::ErrorKind) -> ErrorClass {
    use std::io::ErrorKind as K;
    match kind {
        K::NotFound
        | K::PermissionDenied
        | K::AlreadyExists
        | K::InvalidInput
        | K::InvalidData
        | K::StorageFull
        | K::ReadOnlyFilesystem
        | K::IsADirectory
        | K::NotADirectory
        | K::FileTooLarge
        | K::Unsupported => ErrorClass::Permanent,
        _ => ErrorClass::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_put_failures_are_conflicts() {
        let error = object_store::Error::AlreadyExists {
            path: "p".into(),
            source: "exists".into(),
        };
        assert_eq!(classify(&error), ErrorClass::Conflict);
        let error = object_store::Error::Precondition {
            path: "p".into(),
            source: "412".into(),
        };
        assert_eq!(classify(&error), ErrorClass::Conflict);
    }

    #[test]
    fn io_causes_are_classified_by_kind() {
        let refused = object_store::Error::Generic {
            store: "S3",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        };
        assert_eq!(classify(&refused), ErrorClass::Transient);
        let full = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::StorageFull)),
        };
        assert_eq!(classify(&full), ErrorClass::Permanent);
        let denied = object_store::Error::PermissionDenied {
            path: "p".into(),
            source: "403".into(),
        };
        assert_eq!(classify(&denied), ErrorClass::Permanent);
    }
}
