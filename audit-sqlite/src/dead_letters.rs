//! Dead letters in `audit_dead_letters`: listing them, and replaying them
//! into the chain.
//!
//! Replay is idempotent: each chunk of letters is appended (an event whose
//! id is already in the chain keeps its existing record) and the letters
//! are deleted **in the same transaction**, so a crash mid-replay leaves
//! every letter either still queued or in the chain, never both lost and
//! never appended twice. Letters whose event cannot be parsed stay in the
//! table and are reported.
//!
//! These functions block; call them from `spawn_blocking` in async code.

use std::path::Path;

use audit_core::chain::Checkpoint;
use audit_core::chain_writer::ChainSinkOptions;
use audit_core::dead_letter::DeadLetter;
use audit_core::sink::AppendOutcome;
use rusqlite::{Connection, Transaction, params};

use crate::error::SqliteError;
use crate::schema;
use crate::store::{
    SqliteOptions, append_in, begin, commit, describe, insert_checkpoint, open_writer, read_head,
};

/// Letters replayed per transaction.
const REPLAY_CHUNK: i64 = 5_000;

/// A dead letter with its row id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeadLetter {
    /// The `id` column.
    pub id: i64,
    /// The letter.
    pub letter: DeadLetter,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Letters appended to the chain now.
    pub appended: u64,
    /// Letters whose event was already in the chain (removed as well).
    pub already_present: u64,
    /// Letters kept because their event could not be parsed: row id and why.
    pub unreadable: Vec<(i64, String)>,
    /// Letters of other chains, left in the table.
    pub other_chains: u64,
}

/// Lists every dead letter of the database at `path`, oldest first,
/// through a read-only connection.
pub fn list_dead_letters(path: &Path) -> Result<Vec<StoredDeadLetter>, SqliteError> {
    schema::inspect_file(path)?;
    let connection = schema::open_read_only(path)?;
    let read = || -> rusqlite::Result<Vec<StoredDeadLetter>> {
        let mut statement = connection.prepare(
            "SELECT id, chain_id, event_id, event_json, failure_reason, failed_at, attempts FROM audit_dead_letters ORDER BY id",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(StoredDeadLetter {
                id: row.get(0)?,
                letter: DeadLetter {
                    chain_id: row.get(1)?,
                    event_id: row.get(2)?,
                    event_json: row.get(3)?,
                    failure_reason: row.get(4)?,
                    failed_at: row.get(5)?,
                    attempts: row.get(6)?,
                },
            })
        })?;
        rows.collect()
    };
    read().map_err(SqliteError::sqlite(path, "reading audit_dead_letters"))
}

/// Replays the dead letters of `options.chain` into the chain of the
/// database at `path`, deleting each chunk in the transaction that appends
/// it; writes a checkpoint afterwards when `options` has a key.
pub fn replay_dead_letters(
    path: &Path,
    options: &ChainSinkOptions,
    sqlite: SqliteOptions,
) -> Result<ReplayReport, SqliteError> {
    let mut connection = open_writer(path, sqlite)?;
    let describe = describe(path);
    let mut report = ReplayReport {
        other_chains: count_other_chains(&connection, path, options)?,
        ..ReplayReport::default()
    };
    let mut after_id = 0i64;
    loop {
        let transaction = begin(&mut connection, &describe)?;
        let chunk = read_chunk(&transaction, path, options, after_id)?;
        let Some(last) = chunk.last() else {
            break;
        };
        after_id = last.id;
        let mut events = Vec::with_capacity(chunk.len());
        let mut replayed_ids = Vec::with_capacity(chunk.len());
        for stored in chunk {
            match stored.letter.event() {
                Ok(event) => {
                    events.push(event);
                    replayed_ids.push(stored.id);
                }
                Err(error) => report.unreadable.push((stored.id, error.to_string())),
            }
        }
        count_outcomes(
            &mut report,
            &append_in(&transaction, &options.sealer(), &events, &describe)?,
        );
        delete_letters(&transaction, path, &replayed_ids)?;
        commit(transaction, &describe)?;
    }
    checkpoint_after_replay(&connection, path, options)?;
    Ok(report)
}

fn count_outcomes(report: &mut ReplayReport, outcomes: &[AppendOutcome]) {
    for outcome in outcomes {
        match outcome {
            AppendOutcome::Appended(receipt) if receipt.already_present => {
                report.already_present += 1
            }
            AppendOutcome::Appended(_) => report.appended += 1,
            AppendOutcome::DeadLettered { .. } => {}
        }
    }
}

fn count_other_chains(
    connection: &Connection,
    path: &Path,
    options: &ChainSinkOptions,
) -> Result<u64, SqliteError> {
    connection
        .query_row(
            "SELECT COUNT(*) FROM audit_dead_letters WHERE chain_id <> ?1",
            [options.chain.as_str()],
            |row| row.get::<_, i64>(0),
        )
        .map(|count| u64::try_from(count).unwrap_or_default())
        .map_err(SqliteError::sqlite(path, "counting dead letters"))
}

fn read_chunk(
    transaction: &Transaction<'_>,
    path: &Path,
    options: &ChainSinkOptions,
    after_id: i64,
) -> Result<Vec<StoredDeadLetter>, SqliteError> {
    let read = || -> rusqlite::Result<Vec<StoredDeadLetter>> {
        let mut statement = transaction.prepare_cached(
            "SELECT id, chain_id, event_id, event_json, failure_reason, failed_at, attempts FROM audit_dead_letters WHERE chain_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )?;
        let rows = statement.query_map(
            params![options.chain.as_str(), after_id, REPLAY_CHUNK],
            |row| {
                Ok(StoredDeadLetter {
                    id: row.get(0)?,
                    letter: DeadLetter {
                        chain_id: row.get(1)?,
                        event_id: row.get(2)?,
                        event_json: row.get(3)?,
                        failure_reason: row.get(4)?,
                        failed_at: row.get(5)?,
                        attempts: row.get(6)?,
                    },
                })
            },
        )?;
        rows.collect()
    };
    read().map_err(SqliteError::sqlite(path, "reading dead letters to replay"))
}

fn delete_letters(
    transaction: &Transaction<'_>,
    path: &Path,
    ids: &[i64],
) -> Result<(), SqliteError> {
    let mut statement = transaction
        .prepare_cached("DELETE FROM audit_dead_letters WHERE id = ?1")
        .map_err(SqliteError::sqlite(
            path,
            "preparing the dead-letter delete",
        ))?;
    for id in ids {
        statement
            .execute([id])
            .map_err(SqliteError::sqlite(path, "deleting a replayed dead letter"))?;
    }
    Ok(())
}

fn checkpoint_after_replay(
    connection: &Connection,
    path: &Path,
    options: &ChainSinkOptions,
) -> Result<(), SqliteError> {
    let Some(signer) = &options.signer else {
        return Ok(());
    };
    let head = read_head(connection, &options.chain, &describe(path))?;
    if head.seq == 0 {
        return Ok(());
    }
    let checkpoint = Checkpoint::sign(&options.chain, head, signer);
    insert_checkpoint(connection, &checkpoint, &describe(path)).map_err(SqliteError::from)
}
