//! The chain's tree in PostgreSQL (schema version 3): tree rows in
//! `audit_tree_nodes`, the frontier in the chain's `audit_heads` row
//! (`tree_size`, `tree_frontier`), tree checkpoint notes in
//! `audit_tree_checkpoints`. They are written in the append's transaction,
//! under the head row's lock. What is stored and why is the core's
//! [`tree_rows`](audit_core::chain::tree_rows); this module only moves rows.
//!
//! A database migrated from version 2 has every tree at size 0: the first
//! append to each chain (or [`crate::PostgresStore`]'s open, which walks
//! every chain) grows it from the records, [`CATCH_UP_STEP`] records per
//! query, inside the transaction that holds the head lock.

use audit_core::chain::ChainId;
use audit_core::chain::tree::TreeFrontier;
use audit_core::chain::tree_checkpoint::merge_notes;
use audit_core::chain::tree_rows::{TreeGrowth, TreeRow, decode_frontier, encode_frontier};
use audit_core::store::{SourceTreeCheckpoint, StoredTreeCheckpoint};
use tokio_postgres::{GenericClient, Transaction};

use crate::error::PostgresError;

/// Records read per query when a tree catches up.
pub const CATCH_UP_STEP: i64 = 4096;

/// Migration 3: the tree tables and the frontier columns.
pub const MIGRATION: &str = r#"
ALTER TABLE audit_heads
  ADD COLUMN tree_size BIGINT NOT NULL DEFAULT 0,
  ADD COLUMN tree_frontier BYTEA NOT NULL DEFAULT '\x'::bytea;
CREATE TABLE audit_tree_nodes (
  chain_id TEXT   NOT NULL,
  seq      BIGINT NOT NULL,
  hashes   BYTEA  NOT NULL,
  PRIMARY KEY (chain_id, seq)
);
CREATE TABLE audit_tree_checkpoints (
  chain_id TEXT   NOT NULL,
  size     BIGINT NOT NULL,
  note     TEXT   NOT NULL,
  PRIMARY KEY (chain_id, size)
);
"#;

const READ_FRONTIER: &str =
    "SELECT tree_size, tree_frontier FROM audit_heads WHERE chain_id = $1::text";

const RECORDS_FOR_TREE: &str = "SELECT seq, event_json FROM audit_records \
     WHERE chain_id = $1::text AND seq > $2::bigint AND seq <= $3::bigint ORDER BY seq LIMIT $4::bigint";

const INSERT_ROWS: &str = "INSERT INTO audit_tree_nodes (chain_id, seq, hashes) \
     SELECT $1::text, r.* FROM unnest($2::bigint[], $3::bytea[]) AS r";

const UPDATE_FRONTIER: &str = "UPDATE audit_heads SET tree_size = $2::bigint, \
     tree_frontier = $3::bytea WHERE chain_id = $1::text";

const READ_CHECKPOINT: &str = "SELECT note FROM audit_tree_checkpoints WHERE chain_id = $1::text AND size = $2::bigint FOR UPDATE";

const UPSERT_CHECKPOINT: &str = "INSERT INTO audit_tree_checkpoints (chain_id, size, note) \
     VALUES ($1::text, $2::bigint, $3::text) \
     ON CONFLICT (chain_id, size) DO UPDATE SET note = excluded.note";

const CHECKPOINTS: &str =
    "SELECT size, note FROM audit_tree_checkpoints WHERE chain_id = $1::text ORDER BY size";

const ROWS: &str = "SELECT seq, hashes FROM audit_tree_nodes WHERE chain_id = $1::text AND seq = ANY($2::bigint[])";

fn corrupt(target: &str, chain: &ChainId, detail: String) -> PostgresError {
    PostgresError::Corrupt {
        target: target.to_owned(),
        detail: format!("tree of chain {chain}: {detail}"),
    }
}

fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The frontier stored in the (locked) head row of `chain`.
async fn read_frontier(
    transaction: &Transaction<'_>,
    target: &str,
    chain: &ChainId,
) -> Result<TreeFrontier, PostgresError> {
    let Some(row) = transaction
        .query_opt(READ_FRONTIER, &[&chain.as_str()])
        .await
        .map_err(PostgresError::query(target, "reading the tree head"))?
    else {
        return Ok(TreeFrontier::new());
    };
    let size: i64 = row
        .try_get(0)
        .map_err(|error| corrupt(target, chain, format!("tree_size: {error}")))?;
    let bytes: Vec<u8> = row
        .try_get(1)
        .map_err(|error| corrupt(target, chain, format!("tree_frontier: {error}")))?;
    let size = u64::try_from(size)
        .map_err(|_| corrupt(target, chain, format!("negative tree size {size}")))?;
    decode_frontier(size, &bytes).map_err(|error| corrupt(target, chain, error.to_string()))
}

/// Stores tree rows and the frontier after them in the head row.
pub(crate) async fn store_tree(
    transaction: &Transaction<'_>,
    target: &str,
    chain: &ChainId,
    rows: &[TreeRow],
    frontier: &TreeFrontier,
) -> Result<(), PostgresError> {
    if !rows.is_empty() {
        let seqs: Vec<i64> = rows.iter().map(|row| sql_int(row.seq)).collect();
        let hashes: Vec<Vec<u8>> = rows.iter().map(TreeRow::encode).collect();
        transaction
            .execute(INSERT_ROWS, &[&chain.as_str(), &seqs, &hashes])
            .await
            .map_err(PostgresError::query(target, "inserting tree rows"))?;
    }
    transaction
        .execute(
            UPDATE_FRONTIER,
            &[
                &chain.as_str(),
                &sql_int(frontier.size()),
                &encode_frontier(frontier),
            ],
        )
        .await
        .map_err(PostgresError::query(target, "writing the tree head"))?;
    Ok(())
}

/// Grows the tree of `chain` (whose head row the transaction holds
/// locked) to `head_seq` records from the records it lacks; returns the
/// frontier.
pub(crate) async fn catch_up(
    transaction: &Transaction<'_>,
    target: &str,
    chain: &ChainId,
    head_seq: u64,
) -> Result<TreeFrontier, PostgresError> {
    let frontier = read_frontier(transaction, target, chain).await?;
    if frontier.size() == head_seq {
        return Ok(frontier);
    }
    if frontier.size() > head_seq {
        return Err(corrupt(
            target,
            chain,
            format!(
                "the tree covers {} records but the head is at seq {head_seq}",
                frontier.size()
            ),
        ));
    }
    tracing::info!(%chain, from = frontier.size(), to = head_seq, "bringing the chain's tree up to date");
    let mut growth = TreeGrowth::new(frontier);
    while growth.size() < head_seq {
        let rows = transaction
            .query(
                RECORDS_FOR_TREE,
                &[
                    &chain.as_str(),
                    &sql_int(growth.size()),
                    &sql_int(head_seq),
                    &CATCH_UP_STEP,
                ],
            )
            .await
            .map_err(PostgresError::query(target, "reading records for the tree"))?;
        let before = growth.size();
        for row in &rows {
            let seq: Option<i64> = row.try_get(0).ok();
            let event: Option<&str> = row.try_get(1).ok();
            growth
                .push_next(
                    seq.and_then(|seq| u64::try_from(seq).ok()),
                    event.map(str::as_bytes),
                )
                .map_err(|error| corrupt(target, chain, error.detail))?;
        }
        if growth.size() == before {
            return Err(corrupt(
                target,
                chain,
                format!("record {} is missing", before + 1),
            ));
        }
    }
    let (rows, frontier) = growth.finish();
    store_tree(transaction, target, chain, &rows, &frontier).await?;
    Ok(frontier)
}

/// Stores a tree checkpoint note, merging its signature lines with a note
/// already stored at that size.
pub(crate) async fn write_checkpoint(
    transaction: &Transaction<'_>,
    target: &str,
    chain: &ChainId,
    size: u64,
    note: &str,
) -> Result<(), PostgresError> {
    let stored: Option<String> = transaction
        .query_opt(READ_CHECKPOINT, &[&chain.as_str(), &sql_int(size)])
        .await
        .map_err(PostgresError::query(target, "reading a tree checkpoint"))?
        .and_then(|row| row.try_get(0).ok());
    let note = match stored {
        Some(stored) => {
            merge_notes(&stored, note).map_err(|error| corrupt(target, chain, error.to_string()))?
        }
        None => note.to_owned(),
    };
    transaction
        .execute(UPSERT_CHECKPOINT, &[&chain.as_str(), &sql_int(size), &note])
        .await
        .map_err(PostgresError::query(target, "writing a tree checkpoint"))?;
    Ok(())
}

/// Every stored tree checkpoint of `chain`, as stored.
pub(crate) async fn read_checkpoints<C: GenericClient + Sync>(
    client: &C,
    target: &str,
    chain: &ChainId,
) -> Result<Vec<SourceTreeCheckpoint>, PostgresError> {
    let rows = client
        .query(CHECKPOINTS, &[&chain.as_str()])
        .await
        .map_err(PostgresError::query(target, "reading tree checkpoints"))?;
    Ok(rows
        .iter()
        .map(|row| {
            let size: i64 = row
                .try_get(0)
                .map_err(|_| (-1, "size is unreadable".to_owned()))?;
            let size = u64::try_from(size)
                .map_err(|_| (i128::from(size), "size is negative".to_owned()))?;
            let note: String = row
                .try_get(1)
                .map_err(|_| (i128::from(size), "note is unreadable".to_owned()))?;
            Ok(StoredTreeCheckpoint { size, note })
        })
        .collect())
}

/// The stored tree rows of `chain` for `seqs`.
pub(crate) async fn read_rows<C: GenericClient + Sync>(
    client: &C,
    target: &str,
    chain: &ChainId,
    seqs: &[u64],
) -> Result<Vec<(u64, Vec<u8>)>, PostgresError> {
    let seqs: Vec<i64> = seqs.iter().map(|&seq| sql_int(seq)).collect();
    let rows = client
        .query(ROWS, &[&chain.as_str(), &seqs])
        .await
        .map_err(PostgresError::query(target, "reading tree rows"))?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let seq: i64 = row.try_get(0).ok()?;
            let hashes: Vec<u8> = row.try_get(1).ok()?;
            Some((u64::try_from(seq).ok()?, hashes))
        })
        .collect())
}
