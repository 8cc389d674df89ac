//! [`SqliteState`]: tree heads in one SQLite file, with group commit.
//!
//! One task owns the connection. Calls are queued to it; it takes every
//! queued call (up to [`MAX_BATCH`]), moves the connection into
//! `spawn_blocking`, runs them one after the other inside one
//! `BEGIN IMMEDIATE` transaction, commits, and only then answers them.
//! A compare-and-swap inside a batch sees the effects of the ones before
//! it, exactly as if each had its own transaction; the write lock taken by
//! `BEGIN IMMEDIATE` makes the read-compare-write atomic against other
//! processes on the same file too. With `synchronous=FULL` a commit costs
//! one `fsync` of the WAL, so sharing it among all the requests that
//! arrived meanwhile is what lets one file hold thousands of requests a
//! second. When the commit fails, every call of the batch fails and
//! nothing of it is stored.
//!
//! The connection moves into the blocking task and back out with the
//! results, so it needs no lock; should a blocking task panic, the
//! connection is lost and reopened for the next batch.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::{StateError, Swap, WitnessState, now_seconds, sql_size, stored_head};
use crate::protocol::TreeHead;

/// The most calls one transaction carries.
pub const MAX_BATCH: usize = 512;

/// Calls waiting for the connection task, at most.
const QUEUE: usize = 4096;

/// How long a writer waits for another process's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS witness_heads (
    origin TEXT PRIMARY KEY NOT NULL,
    size INTEGER NOT NULL CHECK (size >= 0),
    root BLOB NOT NULL CHECK (length(root) = 32),
    updated_at INTEGER NOT NULL
) STRICT;
";

enum Call {
    Latest {
        origin: String,
        reply: oneshot::Sender<Result<Option<TreeHead>, StateError>>,
    },
    Swap {
        origin: String,
        expected: Option<TreeHead>,
        new: TreeHead,
        reply: oneshot::Sender<Result<Swap, StateError>>,
    },
}

/// What a call produced inside the transaction, before the commit.
enum Answer {
    Latest(Option<TreeHead>),
    Swap(Swap),
}

/// Tree heads in an SQLite file (WAL, `synchronous=FULL`).
#[derive(Debug)]
pub struct SqliteState {
    calls: mpsc::Sender<Call>,
    describe: String,
}

impl SqliteState {
    /// Opens (or creates) the file at `path` and starts its connection
    /// task on the current tokio runtime.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self, StateError> {
        let path = path.into();
        let describe = format!("sqlite://{}", path.display());
        let task_path = path.clone();
        let task_describe = describe.clone();
        let connection =
            tokio::task::spawn_blocking(move || open_connection(&task_path, &task_describe))
                .await
                .map_err(|error| StateError::Unavailable {
                    describe: describe.clone(),
                    detail: format!("opening task failed: {error}"),
                })??;
        let (calls, queue) = mpsc::channel(QUEUE);
        tokio::spawn(drive(path, describe.clone(), connection, queue));
        Ok(Self { calls, describe })
    }

    fn closed(&self) -> StateError {
        StateError::Unavailable {
            describe: self.describe.clone(),
            detail: "the connection task has stopped".into(),
        }
    }
}

#[async_trait]
impl WitnessState for SqliteState {
    async fn latest(&self, origin: &str) -> Result<Option<TreeHead>, StateError> {
        let (reply, answer) = oneshot::channel();
        let call = Call::Latest {
            origin: origin.to_owned(),
            reply,
        };
        self.calls.send(call).await.map_err(|_| self.closed())?;
        answer.await.map_err(|_| self.closed())?
    }

    async fn compare_and_swap(
        &self,
        origin: &str,
        expected: Option<TreeHead>,
        new: TreeHead,
    ) -> Result<Swap, StateError> {
        sql_size(new.size)?;
        let (reply, answer) = oneshot::channel();
        let call = Call::Swap {
            origin: origin.to_owned(),
            expected,
            new,
            reply,
        };
        self.calls.send(call).await.map_err(|_| self.closed())?;
        answer.await.map_err(|_| self.closed())?
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

fn sqlite_error(describe: &str, context: &'static str) -> impl Fn(rusqlite::Error) -> StateError {
    let describe = describe.to_owned();
    move |source| StateError::Sqlite {
        describe: describe.clone(),
        context,
        source,
    }
}

fn open_connection(path: &Path, describe: &str) -> Result<Connection, StateError> {
    let connection = Connection::open(path).map_err(sqlite_error(describe, "opening"))?;
    connection
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(sqlite_error(describe, "setting the busy timeout"))?;
    let mode: String = connection
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(sqlite_error(describe, "switching to WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(describe, mode, "SQLite refused WAL mode");
    }
    connection
        .pragma_update(None, "synchronous", "FULL")
        .map_err(sqlite_error(describe, "setting synchronous"))?;
    connection
        .execute_batch(SCHEMA)
        .map_err(sqlite_error(describe, "creating the table"))?;
    Ok(connection)
}

/// The connection task: batches of queued calls, one transaction each.
async fn drive(
    path: PathBuf,
    describe: String,
    connection: Connection,
    mut queue: mpsc::Receiver<Call>,
) {
    let mut connection = Some(connection);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let calls = std::mem::take(&mut batch);
        let held = connection.take();
        let task_path = path.clone();
        let task_describe = describe.clone();
        let task = tokio::task::spawn_blocking(move || {
            let opened = match held {
                Some(connection) => Ok(connection),
                None => open_connection(&task_path, &task_describe),
            };
            match opened {
                Ok(mut connection) => {
                    let answers = run_batch(&mut connection, &task_describe, &calls);
                    (Some(connection), calls, answers)
                }
                Err(error) => (None, calls, Err(error)),
            }
        });
        match task.await {
            Ok((back, calls, answers)) => {
                connection = back;
                reply(calls, answers, &describe);
            }
            Err(error) => {
                // The calls went down with the task: their senders are
                // dropped and each caller sees the state as unavailable.
                tracing::error!(describe, %error, "witness state task failed; reopening");
            }
        }
    }
}

fn reply(calls: Vec<Call>, answers: Result<Vec<Answer>, StateError>, describe: &str) {
    match answers {
        Ok(answers) => {
            for (call, answer) in calls.into_iter().zip(answers) {
                match (call, answer) {
                    (Call::Latest { reply, .. }, Answer::Latest(head)) => {
                        let _ = reply.send(Ok(head));
                    }
                    (Call::Swap { reply, .. }, Answer::Swap(swap)) => {
                        let _ = reply.send(Ok(swap));
                    }
                    // run_batch answers each call in kind; a mismatch drops
                    // the reply and the caller sees the state unavailable.
                    _ => {}
                }
            }
        }
        Err(error) => {
            let detail = error.to_string();
            let failed = || StateError::Unavailable {
                describe: describe.to_owned(),
                detail: format!("batch failed: {detail}"),
            };
            for call in calls {
                match call {
                    Call::Latest { reply, .. } => {
                        let _ = reply.send(Err(failed()));
                    }
                    Call::Swap { reply, .. } => {
                        let _ = reply.send(Err(failed()));
                    }
                }
            }
        }
    }
}

fn run_batch(
    connection: &mut Connection,
    describe: &str,
    calls: &[Call],
) -> Result<Vec<Answer>, StateError> {
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error(describe, "beginning a transaction"))?;
    let mut answers = Vec::with_capacity(calls.len());
    {
        let mut select = transaction
            .prepare_cached("SELECT size, root FROM witness_heads WHERE origin = ?1")
            .map_err(sqlite_error(describe, "preparing the read"))?;
        let mut upsert = transaction
            .prepare_cached(
                "INSERT INTO witness_heads (origin, size, root, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root,
                 updated_at = excluded.updated_at",
            )
            .map_err(sqlite_error(describe, "preparing the write"))?;
        for call in calls {
            let origin = match call {
                Call::Latest { origin, .. } | Call::Swap { origin, .. } => origin,
            };
            let row: Option<(i64, Vec<u8>)> = select
                .query_row(params![origin], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
                .map_err(sqlite_error(describe, "reading a head"))?;
            let current = row
                .map(|(size, root)| stored_head(describe, origin, size, &root))
                .transpose()?;
            match call {
                Call::Latest { .. } => answers.push(Answer::Latest(current)),
                Call::Swap { expected, new, .. } => {
                    if current != *expected {
                        answers.push(Answer::Swap(Swap::Conflict { current }));
                        continue;
                    }
                    upsert
                        .execute(params![
                            origin,
                            sql_size(new.size)?,
                            new.root.as_bytes().as_slice(),
                            now_seconds()
                        ])
                        .map_err(sqlite_error(describe, "writing a head"))?;
                    answers.push(Answer::Swap(Swap::Stored));
                }
            }
        }
    }
    transaction
        .commit()
        .map_err(sqlite_error(describe, "committing"))?;
    Ok(answers)
}
