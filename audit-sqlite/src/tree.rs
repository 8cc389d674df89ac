//! The chain's tree in SQLite (schema version 3): tree rows, the frontier
//! and tree checkpoint notes, written in the same transaction as the
//! records they cover. What is stored and why is the core's
//! [`tree_rows`](audit_core::chain::tree_rows); this module only moves rows.
//!
//! A file written by an earlier version, or records appended by an
//! earlier writer since, leave the tree behind the records: [`catch_up`]
//! grows it from the records it lacks, at open and before every append,
//! in the caller's transaction.

use audit_core::chain::tree::TreeFrontier;
use audit_core::chain::tree_checkpoint::merge_notes;
use audit_core::chain::tree_rows::{TreeGrowth, TreeRow, decode_frontier, encode_frontier};
use audit_core::chain::{ChainId, Record};
use audit_core::sink::{ErrorClass, SinkError};
use audit_core::store::{SourceTreeCheckpoint, StoredTreeCheckpoint};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params};

use crate::store::sink_error;

/// The DDL of the tree tables (schema version 3).
pub const CREATE_TREE_TABLES: &str = "
CREATE TABLE IF NOT EXISTS audit_tree_nodes (
  chain_id TEXT NOT NULL, seq INTEGER NOT NULL, hashes BLOB NOT NULL,
  PRIMARY KEY (chain_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_tree_heads (
  chain_id TEXT PRIMARY KEY, size INTEGER NOT NULL, frontier BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_tree_checkpoints (
  chain_id TEXT NOT NULL, size INTEGER NOT NULL, note TEXT NOT NULL,
  PRIMARY KEY (chain_id, size)
);
";

/// Records read per step when the tree catches up.
const CATCH_UP_STEP: i64 = 4096;

fn permanent(describe: &str, chain: &ChainId, detail: String) -> SinkError {
    SinkError::new(
        describe,
        ErrorClass::Permanent,
        format!("tree of chain {chain}: {detail}; run `deferred-audit verify`"),
    )
}

fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The stored frontier of `chain` (the empty tree when none is stored).
pub(crate) fn read_frontier(
    connection: &Connection,
    chain: &ChainId,
    describe: &str,
) -> Result<TreeFrontier, SinkError> {
    let row: Option<(i64, Vec<u8>)> = connection
        .prepare_cached("SELECT size, frontier FROM audit_tree_heads WHERE chain_id = ?1")
        .and_then(|mut statement| {
            statement
                .query_row([chain.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(|error| sink_error(describe, "reading the tree head", error))?;
    let Some((size, bytes)) = row else {
        return Ok(TreeFrontier::new());
    };
    let size = u64::try_from(size)
        .map_err(|_| permanent(describe, chain, format!("negative tree size {size}")))?;
    decode_frontier(size, &bytes).map_err(|error| permanent(describe, chain, error.to_string()))
}

/// Tree rows per multi-row `INSERT` statement.
const ROWS_PER_INSERT: usize = 256;

/// The multi-row `INSERT` for `rows` tree rows.
fn insert_rows_sql(rows: usize) -> String {
    let mut sql = String::from("INSERT INTO audit_tree_nodes (chain_id, seq, hashes) VALUES ");
    for row in 0..rows {
        sql.push_str(if row == 0 { "(?,?,?)" } else { ",(?,?,?)" });
    }
    sql
}

/// Stores tree rows and the frontier after them, [`ROWS_PER_INSERT`] rows
/// per prepared (and cached) statement.
pub(crate) fn store_tree(
    connection: &Connection,
    chain: &ChainId,
    rows: &[TreeRow],
    frontier: &TreeFrontier,
    describe: &str,
) -> Result<(), SinkError> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut insert = connection
            .prepare_cached(&insert_rows_sql(chunk.len()))
            .map_err(|error| sink_error(describe, "preparing the tree row insert", error))?;
        for (index, row) in chunk.iter().enumerate() {
            let base = index * 3;
            let bound = insert
                .raw_bind_parameter(base + 1, chain.as_str())
                .and_then(|()| insert.raw_bind_parameter(base + 2, sql_int(row.seq)))
                .and_then(|()| insert.raw_bind_parameter(base + 3, row.encode()));
            bound.map_err(|error| sink_error(describe, "binding a tree row", error))?;
        }
        insert
            .raw_execute()
            .map_err(|error| sink_error(describe, "inserting tree rows", error))?;
    }
    connection
        .prepare_cached(
            "INSERT INTO audit_tree_heads (chain_id, size, frontier) VALUES (?1, ?2, ?3)
             ON CONFLICT (chain_id) DO UPDATE SET size = excluded.size, frontier = excluded.frontier",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                chain.as_str(),
                sql_int(frontier.size()),
                encode_frontier(frontier)
            ])
        })
        .map(drop)
        .map_err(|error| sink_error(describe, "writing the tree head", error))
}

/// Grows the stored tree of `chain` to `head_seq` records from the records
/// it lacks, inside the caller's transaction, and returns the frontier.
pub(crate) fn catch_up(
    connection: &Connection,
    chain: &ChainId,
    head_seq: u64,
    describe: &str,
) -> Result<TreeFrontier, SinkError> {
    let frontier = read_frontier(connection, chain, describe)?;
    if frontier.size() == head_seq {
        return Ok(frontier);
    }
    if frontier.size() > head_seq {
        return Err(permanent(
            describe,
            chain,
            format!(
                "the tree covers {} records but the chain ends at seq {head_seq}",
                frontier.size()
            ),
        ));
    }
    tracing::info!(%chain, from = frontier.size(), to = head_seq, "bringing the chain's tree up to date");
    let mut growth = TreeGrowth::new(frontier);
    let mut statement = connection
        .prepare_cached(
            "SELECT seq, event_json FROM audit_records WHERE chain_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4",
        )
        .map_err(|error| sink_error(describe, "preparing the tree catch-up", error))?;
    while growth.size() < head_seq {
        let mut rows = statement
            .query(params![
                chain.as_str(),
                sql_int(growth.size()),
                sql_int(head_seq),
                CATCH_UP_STEP
            ])
            .map_err(|error| sink_error(describe, "reading records for the tree", error))?;
        let before = growth.size();
        while let Some(row) = rows
            .next()
            .map_err(|error| sink_error(describe, "reading records for the tree", error))?
        {
            let seq = match row.get_ref(0) {
                Ok(ValueRef::Integer(seq)) => u64::try_from(seq).ok(),
                _ => None,
            };
            let event = match row.get_ref(1) {
                Ok(ValueRef::Text(bytes)) => Some(bytes),
                _ => None,
            };
            growth
                .push_next(seq, event)
                .map_err(|error| permanent(describe, chain, error.detail))?;
        }
        if growth.size() == before {
            return Err(permanent(
                describe,
                chain,
                format!("record {} is missing", before + 1),
            ));
        }
    }
    drop(statement);
    let (rows, frontier) = growth.finish();
    store_tree(connection, chain, &rows, &frontier, describe)?;
    Ok(frontier)
}

/// Grows the stored tree by imported `records` (which continue the head).
pub(crate) fn grow_by(
    connection: &Connection,
    records: &[Record],
    describe: &str,
) -> Result<(), SinkError> {
    let Some(first) = records.first() else {
        return Ok(());
    };
    let frontier = catch_up(connection, &first.chain, first.seq - 1, describe)?;
    let mut growth = TreeGrowth::new(frontier);
    growth.push_records(records);
    let (rows, frontier) = growth.finish();
    store_tree(connection, &first.chain, &rows, &frontier, describe)
}

/// Brings the tree of every chain of the file up to date (at open).
pub(crate) fn catch_up_all(connection: &Connection, describe: &str) -> Result<(), SinkError> {
    let heads: Vec<(String, i64)> = connection
        .prepare(
            "SELECT chain_id, MAX(seq) FROM audit_records WHERE typeof(chain_id) = 'text' AND typeof(seq) = 'integer' GROUP BY chain_id",
        )
        .and_then(|mut statement| {
            statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect()
        })
        .map_err(|error| sink_error(describe, "listing chain heads", error))?;
    for (name, last) in heads {
        let (Ok(chain), Ok(last)) = (ChainId::new(&name), u64::try_from(last)) else {
            // Not a chain a writer can append to: the verifier reports it.
            continue;
        };
        if let Err(error) = catch_up(connection, &chain, last, describe) {
            // A damaged chain keeps its tree behind; appends to it fail
            // with this error and `verify` says why. Other chains go on.
            tracing::warn!(%error, "the tree of a chain cannot be brought up to date");
        }
    }
    Ok(())
}

/// Stores a tree checkpoint note, merging signature lines with a note
/// already stored at that size.
pub(crate) fn write_checkpoint(
    connection: &Connection,
    chain: &ChainId,
    size: u64,
    note: &str,
    describe: &str,
) -> Result<(), SinkError> {
    let stored: Option<String> = connection
        .prepare_cached("SELECT note FROM audit_tree_checkpoints WHERE chain_id = ?1 AND size = ?2")
        .and_then(|mut statement| {
            statement
                .query_row(params![chain.as_str(), sql_int(size)], |row| row.get(0))
                .optional()
        })
        .map_err(|error| sink_error(describe, "reading a tree checkpoint", error))?;
    let note = match stored {
        Some(stored) => merge_notes(&stored, note)
            .map_err(|error| permanent(describe, chain, error.to_string()))?,
        None => note.to_owned(),
    };
    connection
        .prepare_cached(
            "INSERT OR REPLACE INTO audit_tree_checkpoints (chain_id, size, note) VALUES (?1, ?2, ?3)",
        )
        .and_then(|mut statement| statement.execute(params![chain.as_str(), sql_int(size), note]))
        .map(drop)
        .map_err(|error| sink_error(describe, "writing a tree checkpoint", error))
}

/// Whether the file has the tree tables (schema version 3).
pub(crate) fn has_tree_tables(connection: &Connection) -> rusqlite::Result<bool> {
    connection
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_tree_checkpoints'",
            [],
            |row| row.get::<_, i64>(0),
        )
        .map(|count| count > 0)
}

/// Every stored tree checkpoint of `chain`, as stored.
pub(crate) fn read_checkpoints(
    connection: &Connection,
    chain: &ChainId,
) -> rusqlite::Result<Vec<SourceTreeCheckpoint>> {
    if !has_tree_tables(connection)? {
        return Ok(Vec::new());
    }
    let mut statement = connection.prepare(
        "SELECT size, note FROM audit_tree_checkpoints WHERE chain_id = ?1 ORDER BY size",
    )?;
    let rows = statement.query_map([chain.as_str()], |row| {
        let size = match row.get_ref(0)? {
            ValueRef::Integer(size) => u64::try_from(size).map_err(|_| i128::from(size)),
            _ => Err(-1),
        };
        let note = match row.get_ref(1)? {
            ValueRef::Text(bytes) => std::str::from_utf8(bytes).ok().map(str::to_owned),
            _ => None,
        };
        Ok(match (size, note) {
            (Ok(size), Some(note)) => Ok(StoredTreeCheckpoint { size, note }),
            (Ok(size), None) => Err((i128::from(size), "note is not UTF-8 text".to_owned())),
            (Err(at), _) => Err((at, "size is not a non-negative integer".to_owned())),
        })
    })?;
    rows.collect()
}

/// The stored tree rows of `chain` for `seqs`; `None` without tree tables.
pub(crate) fn read_rows(
    connection: &Connection,
    chain: &ChainId,
    seqs: &[u64],
) -> rusqlite::Result<Option<audit_core::store::StoredTreeRows>> {
    if !has_tree_tables(connection)? {
        return Ok(None);
    }
    let mut statement = connection
        .prepare_cached("SELECT hashes FROM audit_tree_nodes WHERE chain_id = ?1 AND seq = ?2")?;
    let mut rows = Vec::with_capacity(seqs.len());
    for &seq in seqs {
        let found: Option<Vec<u8>> = statement
            .query_row(params![chain.as_str(), sql_int(seq)], |row| {
                Ok(match row.get_ref(0)? {
                    ValueRef::Blob(bytes) => bytes.to_vec(),
                    _ => Vec::new(),
                })
            })
            .optional()?;
        if let Some(bytes) = found {
            rows.push((seq, bytes));
        }
    }
    Ok(Some(rows))
}
