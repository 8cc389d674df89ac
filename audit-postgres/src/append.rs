//! One batch, one transaction: lock the chain's head row, find ids already
//! in the chain, seal the others after the head, insert them with one
//! statement, move the head.
//!
//! ## Why a locked head row
//! Many writers (processes, machines) append to one chain. Each
//! transaction starts with `SELECT … FROM audit_heads WHERE chain_id = $1
//! FOR UPDATE`, so writers of one chain take turns: the second waits for
//! the first to commit, then reads the head the first left. Compared with
//! optimistic inserts (`ON CONFLICT DO NOTHING`, re-read, retry), this
//! never wastes a sealed-and-signed batch on a lost race, needs no retry
//! budget under heavy contention (4 writers would otherwise lose most
//! races), and cannot fork: the primary key `(chain_id, seq)` would still
//! refuse a second record at a seq (UNIQUE violation, retried as a
//! conflict by the shared policy) should anyone write without the lock.
//! The lock is held only for the length of one batch transaction, and is
//! released by the server if the writer's connection dies. Appends to one
//! chain are serial anyway (each record commits to the one before it); the
//! row lock makes that explicit and cheap. Different chains do not block
//! each other.
//!
//! Transactions run at READ COMMITTED, so the ids looked up after taking
//! the lock include everything committed before it: an event whose id is
//! already in the chain gets its existing record (`already_present`).

use std::collections::HashMap;

use audit_core::chain::{ChainHead, ChainId, Record, Sealer};
use audit_core::sink::{AppendOutcome, Receipt};
use audit_core::{AuditEvent, Digest};
use tokio_postgres::{Row, Transaction};

use crate::error::PostgresError;
use crate::statements::Statements;

/// Batches at least this large are sealed on the blocking pool.
const BLOCKING_SEAL_THRESHOLD: usize = 64;

/// What became of each event of the batch, before outcomes are built.
enum Slot {
    /// Already in the chain at this seq.
    Existing(u64, Digest),
    /// New: index into the sealed records.
    New(usize),
    /// Same id as a new event earlier in this batch.
    Repeat(usize),
}

/// Appends `events` within `transaction` (the caller commits).
pub(crate) async fn append_in(
    transaction: &Transaction<'_>,
    statements: &Statements,
    target: &str,
    sealer: &Sealer,
    events: &[AuditEvent],
) -> Result<Vec<AppendOutcome>, PostgresError> {
    let chain = sealer.chain();
    let head = lock_head(transaction, statements, target, chain).await?;
    let known = existing_ids(transaction, statements, target, chain, events).await?;
    let mut fresh: Vec<AuditEvent> = Vec::new();
    let mut first_of_id: HashMap<&str, usize> = HashMap::new();
    let slots: Vec<Slot> = events
        .iter()
        .map(|event| {
            if let Some(&(seq, hash)) = known.get(event.id()) {
                Slot::Existing(seq, hash)
            } else if let Some(&index) = first_of_id.get(event.id()) {
                Slot::Repeat(index)
            } else {
                first_of_id.insert(event.id(), fresh.len());
                fresh.push(event.clone());
                Slot::New(fresh.len() - 1)
            }
        })
        .collect();
    let records = seal(target, sealer, head, fresh).await?;
    if let Some(last) = records.last() {
        insert_records(transaction, statements, target, chain, &records).await?;
        let seq = to_sql_seq(target, last.seq)?;
        transaction
            .execute(
                &statements.update_head,
                &[&chain.as_str(), &seq, &last.hash.as_bytes().as_slice()],
            )
            .await
            .map_err(PostgresError::query(target, "moving the chain head"))?;
    }
    let receipt = |seq: u64, record_hash: Digest, already_present: bool| {
        AppendOutcome::Appended(Receipt {
            chain: chain.clone(),
            seq,
            record_hash,
            already_present,
        })
    };
    Ok(slots
        .into_iter()
        .filter_map(|slot| match slot {
            Slot::Existing(seq, hash) => Some(receipt(seq, hash, true)),
            Slot::New(index) => records.get(index).map(|r| receipt(r.seq, r.hash, false)),
            Slot::Repeat(index) => records.get(index).map(|r| receipt(r.seq, r.hash, true)),
        })
        .collect())
}

/// Locks the head row of `chain` (creating it from the records if missing).
async fn lock_head(
    transaction: &Transaction<'_>,
    statements: &Statements,
    target: &str,
    chain: &ChainId,
) -> Result<ChainHead, PostgresError> {
    let locked = transaction
        .query_opt(&statements.lock_head, &[&chain.as_str()])
        .await
        .map_err(PostgresError::query(target, "locking the chain head"))?;
    let row = match locked {
        Some(row) => row,
        None => {
            transaction
                .execute(
                    &statements.init_head,
                    &[&chain.as_str(), &Digest::ZERO.as_bytes().as_slice()],
                )
                .await
                .map_err(PostgresError::query(target, "creating the chain head"))?;
            transaction
                .query_one(&statements.lock_head, &[&chain.as_str()])
                .await
                .map_err(PostgresError::query(target, "locking the chain head"))?
        }
    };
    decode_head(target, &row)
}

/// A `(seq, record_hash)` row as a head.
pub(crate) fn decode_head(target: &str, row: &Row) -> Result<ChainHead, PostgresError> {
    decode_head_at(target, row, 0)
}

/// The ids of `events` already in `chain`, with their seq and record hash.
async fn existing_ids(
    transaction: &Transaction<'_>,
    statements: &Statements,
    target: &str,
    chain: &ChainId,
    events: &[AuditEvent],
) -> Result<HashMap<String, (u64, Digest)>, PostgresError> {
    let ids: Vec<&str> = events.iter().map(AuditEvent::id).collect();
    let rows = transaction
        .query(&statements.existing_ids, &[&chain.as_str(), &ids])
        .await
        .map_err(PostgresError::query(target, "looking up event ids"))?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get(0).map_err(|error| PostgresError::Corrupt {
                target: target.to_owned(),
                detail: format!("event id: {error}"),
            })?;
            let head = decode_head_at(target, row, 1)?;
            Ok((id, (head.seq, head.hash)))
        })
        .collect()
}

fn decode_head_at(target: &str, row: &Row, first: usize) -> Result<ChainHead, PostgresError> {
    let corrupt = |detail: String| PostgresError::Corrupt {
        target: target.to_owned(),
        detail,
    };
    let seq: i64 = row
        .try_get(first)
        .map_err(|error| corrupt(format!("seq: {error}")))?;
    let hash: Vec<u8> = row
        .try_get(first + 1)
        .map_err(|error| corrupt(format!("record_hash: {error}")))?;
    Ok(ChainHead {
        seq: u64::try_from(seq).map_err(|_| corrupt(format!("negative seq {seq}")))?,
        hash: Digest::from_slice(&hash)
            .map_err(|error| corrupt(format!("record_hash: {error}")))?,
    })
}

/// Seals `events` after `head`; big batches on the blocking pool so that
/// hashing and signing do not stall the async runtime.
async fn seal(
    target: &str,
    sealer: &Sealer,
    head: ChainHead,
    events: Vec<AuditEvent>,
) -> Result<Vec<Record>, PostgresError> {
    if events.len() < BLOCKING_SEAL_THRESHOLD {
        return Ok(sealer.seal_batch(head, &events));
    }
    let sealer = sealer.clone();
    tokio::task::spawn_blocking(move || sealer.seal_batch(head, &events))
        .await
        .map_err(|error| PostgresError::Sealing {
            target: target.to_owned(),
            detail: error.to_string(),
        })
}

/// Inserts sealed records with one statement (`INSERT … SELECT … unnest`).
async fn insert_records(
    transaction: &Transaction<'_>,
    statements: &Statements,
    target: &str,
    chain: &ChainId,
    records: &[Record],
) -> Result<(), PostgresError> {
    let seqs = records
        .iter()
        .map(|record| to_sql_seq(target, record.seq))
        .collect::<Result<Vec<i64>, _>>()?;
    let columns: Vec<_> = records
        .iter()
        .map(|record| record.columns.clone().unwrap_or_else(|| columns_of(record)))
        .collect();
    let ids: Vec<&str> = columns.iter().map(|c| c.id.as_str()).collect();
    let types: Vec<&str> = columns.iter().map(|c| c.event_type.as_str()).collect();
    let actors: Vec<&str> = columns.iter().map(|c| c.actor.as_str()).collect();
    let times: Vec<&str> = columns.iter().map(|c| c.time.as_str()).collect();
    let jsons: Vec<&str> = records.iter().map(|r| r.event_json.as_str()).collect();
    let event_hashes: Vec<&[u8]> = records
        .iter()
        .map(|r| r.event_hash.as_bytes().as_slice())
        .collect();
    let prevs: Vec<&[u8]> = records
        .iter()
        .map(|r| r.prev.as_bytes().as_slice())
        .collect();
    let hashes: Vec<&[u8]> = records
        .iter()
        .map(|r| r.hash.as_bytes().as_slice())
        .collect();
    let key_ids: Vec<Option<&str>> = records.iter().map(|r| r.key_id.as_deref()).collect();
    let sigs: Vec<Option<&[u8]>> = records
        .iter()
        .map(|r| r.sig.as_ref().map(|sig| sig.as_slice()))
        .collect();
    transaction
        .execute(
            &statements.insert_records,
            &[
                &chain.as_str(),
                &seqs,
                &ids,
                &types,
                &actors,
                &times,
                &jsons,
                &event_hashes,
                &prevs,
                &hashes,
                &key_ids,
                &sigs,
            ],
        )
        .await
        .map_err(PostgresError::query(target, "inserting records"))?;
    Ok(())
}

/// Column copies parsed from `E`, for a record sealed without them.
fn columns_of(record: &Record) -> audit_core::chain::EventColumns {
    let event = AuditEvent::from_canonical(&record.event_json).ok();
    let member = |get: fn(&AuditEvent) -> &str| event.as_ref().map(get).unwrap_or("").to_owned();
    audit_core::chain::EventColumns {
        id: member(AuditEvent::id),
        event_type: member(AuditEvent::event_type),
        actor: member(AuditEvent::actor),
        time: member(AuditEvent::time),
    }
}

/// A seq as a PostgreSQL BIGINT.
pub(crate) fn to_sql_seq(target: &str, seq: u64) -> Result<i64, PostgresError> {
    i64::try_from(seq).map_err(|_| PostgresError::Corrupt {
        target: target.to_owned(),
        detail: format!("seq {seq} does not fit a BIGINT"),
    })
}
