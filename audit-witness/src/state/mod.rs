//! Where a witness keeps the latest tree head it cosigned for each log.
//!
//! A witness needs one thing per log origin: the size and root of the
//! latest head it cosigned. Checking a request against it and replacing it
//! must be one atomic step, or two racing requests can roll a log back
//! (tlog-witness, "add-checkpoint"): the witness reads the head with
//! [`WitnessState::latest`], checks the request against it, then calls
//! [`WitnessState::compare_and_swap`], which stores the new head only if
//! the stored one is still the one the request was checked against, and
//! otherwise reports the current one ([`Swap::Conflict`]).
//!
//! Implementations, opened by URL with [`open_state`]:
//!
//! | URL | implementation |
//! |---|---|
//! | `sqlite://PATH` (`sqlite:///abs/w.db`, `sqlite://rel/w.db`) | [`SqliteState`]: one file, WAL, `synchronous=FULL`, group commit |
//! | `postgres://USER@HOST/DB` | [`PostgresState`]: conditional `UPDATE` / `INSERT … ON CONFLICT DO NOTHING` |
//! | `memory://` | [`MemoryState`]: in the process, lost on exit (tests) |
//!
//! What is stored, per origin: the origin, the size, the 32-byte root and
//! the time of the last update. Nothing else: no note, no history.
//!
//! ```
//! use audit_core::Digest;
//! use audit_witness::state::{MemoryState, Swap, WitnessState};
//! use audit_witness::TreeHead;
//!
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let state = MemoryState::new();
//! let head = TreeHead { size: 3, root: Digest([7; 32]) };
//! assert_eq!(state.compare_and_swap("example.org/log", None, head).await?, Swap::Stored);
//! // A request checked against the empty state loses: the head moved on.
//! let later = TreeHead { size: 2, root: Digest([8; 32]) };
//! assert_eq!(
//!     state.compare_and_swap("example.org/log", None, later).await?,
//!     Swap::Conflict { current: Some(head) }
//! );
//! assert_eq!(state.latest("example.org/log").await?, Some(head));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod memory;
mod postgres;
mod sqlite;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use audit_core::store::{StoreUrl, redact_url};

pub use memory::MemoryState;
pub use postgres::PostgresState;
pub use sqlite::SqliteState;

use crate::protocol::TreeHead;

/// The outcome of [`WitnessState::compare_and_swap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Swap {
    /// The new head is stored.
    Stored,
    /// The stored head was not the expected one; nothing changed.
    Conflict {
        /// The head stored now (`None`: none for this origin).
        current: Option<TreeHead>,
    },
}

/// Why the witness state failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The URL names no state a witness can keep.
    #[error(
        "witness state URL {url:?}: {why}; use sqlite://PATH, postgres://USER@HOST/DB or memory://"
    )]
    Url {
        /// The URL, password redacted.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// An SQLite call failed.
    #[error("{describe}: {context}: {source}")]
    Sqlite {
        /// The database.
        describe: String,
        /// What was being done.
        context: &'static str,
        /// The error.
        #[source]
        source: rusqlite::Error,
    },
    /// A PostgreSQL call failed.
    #[error("{describe}: {context}: {source}")]
    Postgres {
        /// The database, password redacted.
        describe: String,
        /// What was being done.
        context: &'static str,
        /// The error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A stored row is not a valid head (size out of range, root not 32 bytes).
    #[error("{describe}: stored head of {origin:?} is corrupt: {detail}")]
    Corrupt {
        /// The database.
        describe: String,
        /// The origin.
        origin: String,
        /// What is wrong.
        detail: String,
    },
    /// A size beyond what the state stores (`i64::MAX`).
    #[error("tree size {size} is beyond what the witness state stores")]
    SizeOutOfRange {
        /// The size.
        size: u64,
    },
    /// The task running database work ended (panicked or was cancelled), or
    /// the state was closed.
    #[error("{describe}: {detail}")]
    Unavailable {
        /// The database.
        describe: String,
        /// What happened.
        detail: String,
    },
}

/// The per-origin tree heads of a witness, with an atomic compare-and-swap.
///
/// Implementations must make [`compare_and_swap`](Self::compare_and_swap)
/// atomic across every task, thread and process sharing the state.
#[async_trait]
pub trait WitnessState: Send + Sync + fmt::Debug {
    /// The latest head stored for `origin`, `None` if there is none.
    async fn latest(&self, origin: &str) -> Result<Option<TreeHead>, StateError>;

    /// Stores `new` for `origin` if the stored head is `expected` (`None`:
    /// no head stored yet); otherwise changes nothing and returns the
    /// current head. A [`Swap::Stored`] is durable when returned.
    async fn compare_and_swap(
        &self,
        origin: &str,
        expected: Option<TreeHead>,
        new: TreeHead,
    ) -> Result<Swap, StateError>;

    /// The state for logs and errors, e.g. `sqlite:///var/lib/w.db`
    /// (passwords redacted).
    fn describe(&self) -> String;
}

/// Opens the state a URL names: `sqlite://PATH` (created if missing),
/// `postgres://…` (the table is created if missing) or `memory://`.
pub async fn open_state(url: &str) -> Result<Arc<dyn WitnessState>, StateError> {
    let parsed = StoreUrl::parse(url).map_err(|error| StateError::Url {
        url: error.url,
        why: error.why,
    })?;
    match parsed {
        StoreUrl::Sqlite(path) => Ok(Arc::new(SqliteState::open(path).await?)),
        StoreUrl::Postgres(connection) => Ok(Arc::new(PostgresState::connect(&connection).await?)),
        StoreUrl::Memory(_) => Ok(Arc::new(MemoryState::new())),
        _ => Err(StateError::Url {
            url: redact_url(url),
            why: "is not a database".into(),
        }),
    }
}

/// A size as the signed 64-bit integer SQL keeps.
fn sql_size(size: u64) -> Result<i64, StateError> {
    i64::try_from(size).map_err(|_| StateError::SizeOutOfRange { size })
}

/// The current time in POSIX seconds.
fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// A head from its stored columns.
fn stored_head(
    describe: &str,
    origin: &str,
    size: i64,
    root: &[u8],
) -> Result<TreeHead, StateError> {
    let corrupt = |detail: String| StateError::Corrupt {
        describe: describe.to_owned(),
        origin: origin.to_owned(),
        detail,
    };
    let size = u64::try_from(size).map_err(|_| corrupt(format!("negative size {size}")))?;
    let root = audit_core::Digest::from_slice(root)
        .map_err(|_| corrupt(format!("root of {} bytes", root.len())))?;
    Ok(TreeHead { size, root })
}
