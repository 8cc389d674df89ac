//! Streaming verification of a SQLite chain through the core
//! [`Verifier`].
//!
//! Each chain of the file is verified on its own: its checkpoints (those of
//! `audit_checkpoints` and any given from outside) first, then its records
//! through a cursor over `ORDER BY seq`, so memory stays constant whatever
//! the chain's length. Rows that cannot be decoded (a hash blob of the
//! wrong length, a text column holding a blob) are reported as
//! `malformed`.
//!
//! Event-id uniqueness is checked with one SQL query per chain instead of
//! the verifier's in-memory set (which grows with the chain): the query
//! compares the `event_id` column, and the verifier checks that column
//! against `E` on every row, so a duplicate inside `E` cannot hide behind
//! distinct columns without a `column_mismatch` failure.
//!
//! The function blocks; call it from `spawn_blocking` in async code.

use std::path::Path;

use audit_core::Digest;
use audit_core::chain::{
    ChainHead, ChainId, Checkpoint, EventColumns, Failure, FailureKind, Record, Verifier,
    VerifyOptions, VerifyReport,
};
use audit_core::keys::Keyring;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::SqliteError;
use crate::schema;

/// How often (in records) the progress callback is called.
const PROGRESS_EVERY: u64 = 1_000;

/// Options of [`verify_sqlite`].
#[derive(Default)]
pub struct SqliteVerifyOptions {
    /// The core verifier's options (`start` and `skip_unique_ids` are set
    /// by this module).
    pub verify: VerifyOptions,
    /// Verify from this seq on (each chain), trusting the stored
    /// `record_hash` of the record before it.
    pub from_seq: Option<u64>,
    /// Called with the number of records read so far, every thousand
    /// records and at the end.
    pub progress: Option<Box<dyn FnMut(u64) + Send>>,
}

impl std::fmt::Debug for SqliteVerifyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteVerifyOptions")
            .field("verify", &self.verify)
            .field("from_seq", &self.from_seq)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Number of records in the file (for a progress bar's length).
pub fn count_records(path: &Path) -> Result<u64, SqliteError> {
    schema::inspect_file(path)?;
    let connection = schema::open_read_only(path)?;
    connection
        .query_row("SELECT COUNT(*) FROM audit_records", [], |row| {
            row.get::<_, i64>(0)
        })
        .map(|count| u64::try_from(count).unwrap_or_default())
        .map_err(SqliteError::sqlite(path, "counting records"))
}

/// Reads every chain of the file in seq order, without verifying, and
/// hands each record to `each` (e.g. to export it). Undecodable rows are
/// returned as errors.
pub fn for_each_record<E: From<SqliteError>>(
    path: &Path,
    mut each: impl FnMut(&Record) -> Result<(), E>,
) -> Result<(), E> {
    schema::inspect_file(path)?;
    let connection = schema::open_read_only(path)?;
    for chain_name in chain_names(&connection, path)? {
        let chain =
            ChainId::new(&chain_name).map_err(|error| malformed_error(path, &error.to_string()))?;
        let mut statement = connection
            .prepare(RECORDS_QUERY)
            .map_err(SqliteError::sqlite(path, "reading records"))?;
        let mut rows = statement
            .query(params![chain_name, 0i64])
            .map_err(SqliteError::sqlite(path, "reading records"))?;
        while let Some(row) = rows
            .next()
            .map_err(SqliteError::sqlite(path, "reading records"))?
        {
            let record = decode_record(&chain, row)
                .map_err(|(seq, detail)| malformed_error(path, &format!("seq {seq}: {detail}")))?;
            each(&record)?;
        }
    }
    Ok(())
}

/// Every checkpoint stored in the file, in (chain, seq) order.
pub fn read_checkpoints(path: &Path) -> Result<Vec<Checkpoint>, SqliteError> {
    schema::inspect_file(path)?;
    let connection = schema::open_read_only(path)?;
    let mut all = Vec::new();
    for chain_name in checkpoint_chain_names(&connection, path)? {
        let chain =
            ChainId::new(&chain_name).map_err(|error| malformed_error(path, &error.to_string()))?;
        for checkpoint in chain_checkpoints(&connection, path, &chain, 0)? {
            all.push(checkpoint.map_err(|(seq, detail)| {
                malformed_error(path, &format!("checkpoint at seq {seq}: {detail}"))
            })?);
        }
    }
    Ok(all)
}

/// Verifies every chain of the SQLite file at `path` (opened read-only)
/// against `keyring`, with the file's checkpoints and `extra_checkpoints`
/// (e.g. published off-box).
pub fn verify_sqlite(
    path: &Path,
    keyring: &Keyring,
    mut options: SqliteVerifyOptions,
    extra_checkpoints: &[Checkpoint],
) -> Result<VerifyReport, SqliteError> {
    schema::inspect_file(path)?;
    let connection = schema::open_read_only(path)?;
    let mut names = chain_names(&connection, path)?;
    for checkpoint in extra_checkpoints {
        if !names.iter().any(|name| name == checkpoint.chain.as_str()) {
            names.push(checkpoint.chain.as_str().to_owned());
        }
    }
    let mut total = VerifyReport {
        records: 0,
        checkpoints: 0,
        chains: Default::default(),
        failures: Vec::new(),
    };
    let mut done = 0u64;
    for name in names {
        let report = verify_chain(
            &connection,
            path,
            keyring,
            &mut options,
            &name,
            extra_checkpoints,
            &mut done,
        )?;
        total.records += report.records;
        total.checkpoints += report.checkpoints;
        total.chains.extend(report.chains);
        total.failures.extend(report.failures);
    }
    if let Some(progress) = options.progress.as_mut() {
        progress(done);
    }
    total
        .failures
        .sort_by(|a, b| (&a.chain, a.seq).cmp(&(&b.chain, b.seq)));
    Ok(total)
}

const RECORDS_QUERY: &str = "SELECT seq, event_id, event_type, actor, event_time, event_json, event_hash, prev_hash, record_hash, key_id, signature FROM audit_records WHERE chain_id = ?1 AND seq >= ?2 ORDER BY seq";

fn verify_chain(
    connection: &Connection,
    path: &Path,
    keyring: &Keyring,
    options: &mut SqliteVerifyOptions,
    name: &str,
    extra_checkpoints: &[Checkpoint],
    done: &mut u64,
) -> Result<VerifyReport, SqliteError> {
    let Ok(chain) = ChainId::new(name) else {
        let mut verifier = Verifier::new(keyring.clone(), options.verify.clone());
        verifier.malformed(
            name,
            0,
            format!("chain_id {name:?} is not a valid chain name"),
        );
        return Ok(verifier.finish());
    };
    let from = options.from_seq.unwrap_or(1).max(1);
    let mut verify = options.verify.clone();
    verify.skip_unique_ids = true;
    verify.start = Some(start_head(connection, path, &chain, from)?);
    let mut verifier = Verifier::new(keyring.clone(), verify);
    for checkpoint in chain_checkpoints(connection, path, &chain, from)? {
        match checkpoint {
            Ok(checkpoint) => verifier.checkpoint(&checkpoint),
            Err((seq, detail)) => verifier.malformed(name, seq, format!("checkpoint: {detail}")),
        }
    }
    for checkpoint in extra_checkpoints
        .iter()
        .filter(|checkpoint| checkpoint.chain == chain && checkpoint.seq >= from)
    {
        verifier.checkpoint(checkpoint);
    }
    let mut statement = connection
        .prepare(RECORDS_QUERY)
        .map_err(SqliteError::sqlite(path, "reading records"))?;
    let mut rows = statement
        .query(params![name, i64::try_from(from).unwrap_or(i64::MAX)])
        .map_err(SqliteError::sqlite(path, "reading records"))?;
    while let Some(row) = rows
        .next()
        .map_err(SqliteError::sqlite(path, "reading records"))?
    {
        match decode_record(&chain, row) {
            Ok(record) => verifier.record(&record),
            Err((seq, detail)) => verifier.malformed(name, seq, detail),
        }
        *done += 1;
        if (*done).is_multiple_of(PROGRESS_EVERY)
            && let Some(progress) = options.progress.as_mut()
        {
            progress(*done);
        }
    }
    let mut report = verifier.finish();
    if options.verify.check_unique_ids() {
        report
            .failures
            .extend(duplicate_ids(connection, path, &chain, from)?);
    }
    Ok(report)
}

fn start_head(
    connection: &Connection,
    path: &Path,
    chain: &ChainId,
    from: u64,
) -> Result<ChainHead, SqliteError> {
    if from <= 1 {
        return Ok(ChainHead::EMPTY);
    }
    let previous = from - 1;
    let hash: Option<Vec<u8>> = connection
        .query_row(
            "SELECT record_hash FROM audit_records WHERE chain_id = ?1 AND seq = ?2",
            params![chain.as_str(), i64::try_from(previous).unwrap_or(i64::MAX)],
            |row| row.get(0),
        )
        .optional()
        .map_err(SqliteError::sqlite(
            path,
            "reading the record before the start seq",
        ))?;
    let Some(hash) = hash else {
        return Err(malformed_error(
            path,
            &format!(
                "cannot start at seq {from} of chain {chain}: there is no record at seq {previous}"
            ),
        ));
    };
    let hash = Digest::from_slice(&hash).map_err(|error| {
        malformed_error(
            path,
            &format!("record_hash at seq {previous}: {}", error.detail),
        )
    })?;
    Ok(ChainHead {
        seq: previous,
        hash,
    })
}

fn malformed_error(path: &Path, detail: &str) -> SqliteError {
    SqliteError::Malformed {
        path: path.to_owned(),
        detail: detail.to_owned(),
    }
}

fn chain_names(connection: &Connection, path: &Path) -> Result<Vec<String>, SqliteError> {
    text_column(
        connection,
        path,
        "SELECT DISTINCT chain_id FROM audit_records ORDER BY chain_id",
    )
}

fn checkpoint_chain_names(
    connection: &Connection,
    path: &Path,
) -> Result<Vec<String>, SqliteError> {
    text_column(
        connection,
        path,
        "SELECT DISTINCT chain_id FROM audit_checkpoints ORDER BY chain_id",
    )
}

fn text_column(
    connection: &Connection,
    path: &Path,
    sql: &str,
) -> Result<Vec<String>, SqliteError> {
    let read = || -> rusqlite::Result<Vec<String>> {
        let mut statement = connection.prepare(sql)?;
        let names = statement.query_map([], |row| row.get::<_, String>(0))?;
        names.collect()
    };
    read().map_err(SqliteError::sqlite(path, "listing chains"))
}

type Decoded<T> = Result<T, (u64, String)>;

fn chain_checkpoints(
    connection: &Connection,
    path: &Path,
    chain: &ChainId,
    from: u64,
) -> Result<Vec<Decoded<Checkpoint>>, SqliteError> {
    let read = || -> rusqlite::Result<Vec<Decoded<Checkpoint>>> {
        let mut statement = connection.prepare(
            "SELECT seq, head_hash, time, key_id, signature FROM audit_checkpoints WHERE chain_id = ?1 AND seq >= ?2 ORDER BY seq",
        )?;
        let rows = statement.query_map(
            params![chain.as_str(), i64::try_from(from).unwrap_or(i64::MAX)],
            |row| Ok(decode_checkpoint(chain, row)),
        )?;
        rows.collect()
    };
    read().map_err(SqliteError::sqlite(path, "reading checkpoints"))
}

fn decode_checkpoint(chain: &ChainId, row: &Row<'_>) -> Decoded<Checkpoint> {
    let seq = integer(row, 0, 0)?;
    Ok(Checkpoint {
        chain: chain.clone(),
        seq,
        head: digest(row, 1, seq, "head_hash")?,
        time: text(row, 2, seq, "time")?,
        key_id: text(row, 3, seq, "key_id")?,
        sig: signature(row, 4, seq)?.ok_or((seq, "signature is NULL".to_owned()))?,
    })
}

fn decode_record(chain: &ChainId, row: &Row<'_>) -> Decoded<Record> {
    let seq = integer(row, 0, 0)?;
    let key_id = match row.get_ref(9) {
        Ok(ValueRef::Null) => None,
        _ => Some(text(row, 9, seq, "key_id")?),
    };
    Ok(Record {
        chain: chain.clone(),
        seq,
        columns: Some(EventColumns {
            id: text(row, 1, seq, "event_id")?,
            event_type: text(row, 2, seq, "event_type")?,
            actor: text(row, 3, seq, "actor")?,
            time: text(row, 4, seq, "event_time")?,
        }),
        event_json: text(row, 5, seq, "event_json")?,
        event_hash: digest(row, 6, seq, "event_hash")?,
        prev: digest(row, 7, seq, "prev_hash")?,
        hash: digest(row, 8, seq, "record_hash")?,
        key_id,
        sig: signature(row, 10, seq)?,
    })
}

fn integer(row: &Row<'_>, index: usize, seq: u64) -> Decoded<u64> {
    match row.get_ref(index) {
        Ok(ValueRef::Integer(value)) => {
            u64::try_from(value).map_err(|_| (seq, format!("seq {value} is negative")))
        }
        other => Err((seq, format!("seq is not an integer: {other:?}"))),
    }
}

fn text(row: &Row<'_>, index: usize, seq: u64, name: &str) -> Decoded<String> {
    match row.get_ref(index) {
        Ok(ValueRef::Text(bytes)) => String::from_utf8(bytes.to_vec())
            .map_err(|_| (seq, format!("column {name} is not UTF-8"))),
        Ok(other) => Err((
            seq,
            format!("column {name} holds {:?}, expected text", other.data_type()),
        )),
        Err(error) => Err((seq, format!("column {name}: {error}"))),
    }
}

fn blob<'row>(
    row: &'row Row<'_>,
    index: usize,
    seq: u64,
    name: &str,
) -> Decoded<Option<&'row [u8]>> {
    match row.get_ref(index) {
        Ok(ValueRef::Blob(bytes)) => Ok(Some(bytes)),
        Ok(ValueRef::Null) => Ok(None),
        Ok(other) => Err((
            seq,
            format!(
                "column {name} holds {:?}, expected a blob",
                other.data_type()
            ),
        )),
        Err(error) => Err((seq, format!("column {name}: {error}"))),
    }
}

fn digest(row: &Row<'_>, index: usize, seq: u64, name: &str) -> Decoded<Digest> {
    let bytes = blob(row, index, seq, name)?.ok_or((seq, format!("column {name} is NULL")))?;
    Digest::from_slice(bytes).map_err(|_| {
        (
            seq,
            format!("column {name} holds {} bytes, expected 32", bytes.len()),
        )
    })
}

fn signature(row: &Row<'_>, index: usize, seq: u64) -> Decoded<Option<[u8; 64]>> {
    let Some(bytes) = blob(row, index, seq, "signature")? else {
        return Ok(None);
    };
    <[u8; 64]>::try_from(bytes).map(Some).map_err(|_| {
        (
            seq,
            format!("column signature holds {} bytes, expected 64", bytes.len()),
        )
    })
}

fn duplicate_ids(
    connection: &Connection,
    path: &Path,
    chain: &ChainId,
    from: u64,
) -> Result<Vec<Failure>, SqliteError> {
    let read = || -> rusqlite::Result<Vec<Failure>> {
        let mut statement = connection.prepare(
            "SELECT event_id, seq FROM audit_records AS later WHERE chain_id = ?1 AND seq >= ?2 AND EXISTS (SELECT 1 FROM audit_records AS earlier WHERE earlier.chain_id = later.chain_id AND earlier.event_id = later.event_id AND earlier.seq < later.seq AND earlier.seq >= ?2) ORDER BY seq",
        )?;
        let rows = statement.query_map(
            params![chain.as_str(), i64::try_from(from).unwrap_or(i64::MAX)],
            |row| {
                let id: String = row.get(0)?;
                let seq: i64 = row.get(1)?;
                Ok(Failure {
                    chain: chain.as_str().to_owned(),
                    seq: u64::try_from(seq).unwrap_or_default(),
                    kind: FailureKind::DuplicateEventId,
                    detail: format!("event id {id} appears earlier in the chain"),
                })
            },
        )?;
        rows.collect()
    };
    read().map_err(SqliteError::sqlite(path, "checking event id uniqueness"))
}
