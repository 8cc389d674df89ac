//! The read side of a SQLite chain file: [`SqliteSource`], the
//! [`ChainSource`] the core's verifier, export and replay read.
//!
//! Every row is accounted for. Chains are listed from every table
//! (`audit_records`, `audit_checkpoints`, `audit_dead_letters`) with the
//! storage type of `chain_id`: a NULL, a blob or an invalid name is a
//! [`Stray`], never an error. Records are read with no lower bound on
//! `seq` (from seq 1), so rows at seq 0 or below, and rows whose columns
//! hold the wrong type, come back as [`SourceRecord::Malformed`].
//!
//! Reading runs on tokio's blocking pool with a read-only connection per
//! call; records are streamed over a bounded channel, so memory stays
//! constant whatever the chain's length.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use audit_core::chain::{ChainId, Checkpoint, EventColumns, Record};
use audit_core::dead_letter::DeadLetter;
use audit_core::store::{
    ChainSource, Inventory, RecordStream, SourceCheckpoint, SourceError, SourceRecord,
    SourceTreeCheckpoint, StoredDeadLetter, Stray,
};
use audit_core::{Digest, SharedStr};
use futures::StreamExt;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row, params};

use crate::error::SqliteError;
use crate::schema;
use crate::store::describe;

/// Rows sent over the channel at a time.
const ROWS_PER_SEND: usize = 256;
/// Sends in flight between the reading thread and the stream.
const SENDS_IN_FLIGHT: usize = 8;

/// Read-only connections kept open between calls.
const IDLE_CONNECTIONS: usize = 4;

/// A SQLite chain file, read-only.
#[derive(Debug, Clone)]
pub struct SqliteSource {
    path: PathBuf,
    describe: String,
    /// Whether `audit_dead_letters` has the authentication columns
    /// (schema version 2).
    letter_auth: bool,
    /// Idle read-only connections, reused by short reads (a proof makes a
    /// few; opening a connection costs more than the reads).
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl SqliteSource {
    /// Checks that `path` is an audit database of a known version (without
    /// writing to it) and returns its source.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, SqliteError> {
        let path = path.into();
        let state = schema::inspect_file(&path)?;
        let letter_auth = matches!(
            state,
            schema::SchemaState::Audit { schema_version: Some(ref version) } if version != "1"
        );
        Ok(Self {
            describe: describe(&path),
            path,
            letter_auth,
            idle: Arc::default(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, context: &str, detail: impl std::fmt::Display) -> SourceError {
        SourceError::new(&self.describe, format!("{context}: {detail}"))
    }

    /// Runs `work` with a read-only connection on the blocking pool.
    async fn read<T, F>(&self, context: &'static str, work: F) -> Result<T, SourceError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let path = self.path.clone();
        let idle = self.idle.clone();
        let result = tokio::task::spawn_blocking(move || {
            let taken = idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let connection = match taken {
                Some(connection) => connection,
                None => schema::open_read_only(&path)?,
            };
            let result = work(&connection).map_err(SqliteError::sqlite(&path, context));
            let mut idle = idle.lock().unwrap_or_else(|p| p.into_inner());
            if result.is_ok() && idle.len() < IDLE_CONNECTIONS {
                idle.push(connection);
            }
            result
        })
        .await
        .map_err(|error| self.error(context, error))?;
        result.map_err(|error| self.error(context, error))
    }
}

#[async_trait]
impl ChainSource for SqliteSource {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn inventory(&self) -> Result<Inventory, SourceError> {
        self.read("listing chains", |connection| {
            let mut inventory = Inventory::default();
            let mut sql = String::from(
                "SELECT chain_id, 'audit_records', COUNT(*), MIN(seq) FROM audit_records GROUP BY chain_id
                 UNION ALL SELECT chain_id, 'audit_checkpoints', COUNT(*), MIN(seq) FROM audit_checkpoints GROUP BY chain_id
                 UNION ALL SELECT chain_id, 'audit_dead_letters', COUNT(*), NULL FROM audit_dead_letters GROUP BY chain_id",
            );
            if crate::tree::has_tree_tables(connection)? {
                sql.push_str(
                    " UNION ALL SELECT chain_id, 'audit_tree_checkpoints', COUNT(*), MIN(size) FROM audit_tree_checkpoints GROUP BY chain_id",
                );
            }
            let mut statement = connection.prepare(&sql)?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                let table: String = row.get(1)?;
                let count: i64 = row.get(2)?;
                let valid = match row.get_ref(0)? {
                    ValueRef::Text(bytes) => std::str::from_utf8(bytes)
                        .ok()
                        .and_then(|name| ChainId::new(name).ok()),
                    _ => None,
                };
                match valid {
                    Some(chain) => inventory.add_chain(chain),
                    None => {
                        let seq = match row.get_ref(3)? {
                            ValueRef::Integer(seq) => u64::try_from(seq).unwrap_or(0),
                            _ => 0,
                        };
                        inventory.strays.push(Stray {
                            chain: describe_value(row.get_ref(0)?),
                            seq,
                            detail: format!(
                                "{count} row(s) of {table} under chain_id {}, which is not a valid chain name",
                                describe_value(row.get_ref(0)?)
                            ),
                        });
                    }
                }
            }
            Ok(inventory)
        })
        .await
    }

    async fn records(&self, chain: &ChainId, from: u64) -> Result<RecordStream<'_>, SourceError> {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Vec<SourceRecord>>(SENDS_IN_FLIGHT);
        let path = self.path.clone();
        let chain = chain.clone();
        let reader = tokio::task::spawn_blocking(move || -> Result<(), SqliteError> {
            let connection = schema::open_read_only(&path)?;
            stream_records(&connection, &chain, from, &sender)
                .map_err(SqliteError::sqlite(&path, "reading records"))
        });
        let describe = self.describe.clone();
        let rows = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|batch| (batch, receiver))
        })
        .flat_map(|batch| futures::stream::iter(batch.into_iter().map(Ok)));
        let end = futures::stream::once(async move {
            match reader.await {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(Err(SourceError::new(&describe, error.to_string()))),
                Err(error) => Some(Err(SourceError::new(
                    &describe,
                    format!("reading records: {error}"),
                ))),
            }
        })
        .filter_map(std::future::ready);
        Ok(rows.chain(end).boxed())
    }

    async fn records_at(
        &self,
        chain: &ChainId,
        seqs: &[u64],
    ) -> Result<Vec<SourceRecord>, SourceError> {
        let (chain, seqs) = (chain.clone(), seqs.to_vec());
        self.read("reading records", move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "{RECORD_COLUMNS} WHERE chain_id = ?1 AND seq = ?2"
            ))?;
            let mut found = Vec::with_capacity(seqs.len());
            for seq in seqs {
                let mut rows =
                    statement.query(params![chain.as_str(), i64::try_from(seq).unwrap_or(-1)])?;
                if let Some(row) = rows.next()? {
                    let mut last_seq = 0;
                    found.push(decode_record(&chain, row, &mut last_seq));
                }
            }
            Ok(found)
        })
        .await
    }

    async fn checkpoints(&self, chain: &ChainId) -> Result<Vec<SourceCheckpoint>, SourceError> {
        let chain = chain.clone();
        self.read("reading checkpoints", move |connection| {
            let mut statement = connection.prepare(
                "SELECT seq, head_hash, time, key_id, signature FROM audit_checkpoints WHERE chain_id = ?1 ORDER BY seq",
            )?;
            let rows = statement.query_map([chain.as_str()], |row| Ok(decode_checkpoint(&chain, row)))?;
            rows.collect()
        })
        .await
    }

    async fn tree_checkpoints(
        &self,
        chain: &ChainId,
    ) -> Result<Vec<SourceTreeCheckpoint>, SourceError> {
        let chain = chain.clone();
        self.read("reading tree checkpoints", move |connection| {
            crate::tree::read_checkpoints(connection, &chain)
        })
        .await
    }

    async fn tree_rows(
        &self,
        chain: &ChainId,
        seqs: &[u64],
    ) -> Result<Option<audit_core::store::StoredTreeRows>, SourceError> {
        let (chain, seqs) = (chain.clone(), seqs.to_vec());
        self.read("reading tree rows", move |connection| {
            crate::tree::read_rows(connection, &chain, &seqs)
        })
        .await
    }

    async fn dead_letters(
        &self,
        chain: Option<&ChainId>,
    ) -> Result<Vec<StoredDeadLetter>, SourceError> {
        let chain = chain.map(|chain| chain.as_str().to_owned());
        let auth_columns = if self.letter_auth {
            "key_id, signature"
        } else {
            "NULL, NULL"
        };
        self.read("reading audit_dead_letters", move |connection| {
            let mut statement = connection.prepare(&format!(
                "SELECT id, chain_id, event_id, event_json, failure_reason, failed_at, attempts, {auth_columns} FROM audit_dead_letters WHERE ?1 IS NULL OR chain_id = ?1 ORDER BY id"
            ))?;
            let rows = statement.query_map([chain], |row| {
                Ok(StoredDeadLetter {
                    key: lossy(row.get_ref(0)?),
                    letter: DeadLetter {
                        chain_id: lossy(row.get_ref(1)?),
                        event_id: lossy(row.get_ref(2)?),
                        event_json: lossy(row.get_ref(3)?),
                        failure_reason: lossy(row.get_ref(4)?),
                        failed_at: lossy(row.get_ref(5)?),
                        attempts: match row.get_ref(6)? {
                            ValueRef::Integer(n) => u32::try_from(n).unwrap_or(0),
                            _ => 0,
                        },
                        key_id: optional_text(row.get_ref(7)?),
                        sig: optional_text(row.get_ref(8)?),
                    },
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn duplicate_ids(
        &self,
        chain: &ChainId,
        from: u64,
    ) -> Result<Option<Vec<(u64, String)>>, SourceError> {
        let chain = chain.clone();
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        self.read("checking event id uniqueness", move |connection| {
            let mut statement = connection.prepare(
                "SELECT later.seq, later.event_id FROM audit_records AS later WHERE later.chain_id = ?1 AND later.seq >= ?2 AND EXISTS (SELECT 1 FROM audit_records AS earlier WHERE earlier.chain_id = later.chain_id AND earlier.event_id = later.event_id AND earlier.seq < later.seq AND earlier.seq >= ?2) ORDER BY later.seq",
            )?;
            let rows = statement.query_map(params![chain.as_str(), from], |row| {
                let seq = match row.get_ref(0)? {
                    ValueRef::Integer(seq) => u64::try_from(seq).unwrap_or(0),
                    _ => 0,
                };
                Ok((seq, lossy(row.get_ref(1)?)))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map(Some)
        })
        .await
    }

    async fn last_seq(&self, chain: &ChainId) -> Result<Option<u64>, SourceError> {
        let chain = chain.clone();
        self.read("reading the head seq", move |connection| {
            connection.query_row(
                "SELECT MAX(seq) FROM audit_records WHERE chain_id = ?1 AND typeof(seq) = 'integer'",
                [chain.as_str()],
                |row| match row.get_ref(0)? {
                    ValueRef::Integer(seq) => Ok(u64::try_from(seq).ok()),
                    _ => Ok(None),
                },
            )
        })
        .await
    }

    async fn count_records(&self) -> Result<Option<u64>, SourceError> {
        self.read("counting records", |connection| {
            connection
                .query_row("SELECT COUNT(*) FROM audit_records", [], |row| {
                    row.get::<_, i64>(0)
                })
                .map(|count| Some(u64::try_from(count).unwrap_or(0)))
        })
        .await
    }
}

/// The columns of a record row, in the order [`decode_record`] reads them.
const RECORD_COLUMNS: &str = "SELECT seq, event_id, event_type, actor, event_time, event_json, event_hash, prev_hash, record_hash, key_id, signature FROM audit_records";

/// Reads the rows of `chain` in seq order and sends them in batches.
fn stream_records(
    connection: &Connection,
    chain: &ChainId,
    from: u64,
    sender: &tokio::sync::mpsc::Sender<Vec<SourceRecord>>,
) -> rusqlite::Result<()> {
    const COLUMNS: &str = RECORD_COLUMNS;
    let mut statement;
    let mut rows = if from <= 1 {
        statement = connection.prepare(&format!("{COLUMNS} WHERE chain_id = ?1 ORDER BY seq"))?;
        statement.query([chain.as_str()])?
    } else {
        statement = connection.prepare(&format!(
            "{COLUMNS} WHERE chain_id = ?1 AND seq >= ?2 ORDER BY seq"
        ))?;
        statement.query(params![
            chain.as_str(),
            i64::try_from(from).unwrap_or(i64::MAX)
        ])?
    };
    let mut batch = Vec::with_capacity(ROWS_PER_SEND);
    let mut last_seq: i128 = 0;
    while let Some(row) = rows.next()? {
        let decoded = decode_record(chain, row, &mut last_seq);
        batch.push(decoded);
        if batch.len() >= ROWS_PER_SEND {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(ROWS_PER_SEND));
            if sender.blocking_send(full).is_err() {
                return Ok(()); // the reader stopped listening
            }
        }
    }
    if !batch.is_empty() {
        let _ = sender.blocking_send(batch);
    }
    Ok(())
}

type Decoded<T> = Result<T, String>;

fn decode_record(chain: &ChainId, row: &Row<'_>, last_seq: &mut i128) -> SourceRecord {
    let seq = match row.get_ref(0) {
        Ok(ValueRef::Integer(seq)) => seq,
        Ok(other) => {
            return SourceRecord::Malformed {
                seq: *last_seq,
                detail: format!(
                    "a row after seq {last_seq} has a seq of type {} ({})",
                    type_name(other),
                    describe_value(other)
                ),
            };
        }
        Err(error) => {
            return SourceRecord::Malformed {
                seq: *last_seq,
                detail: format!("column seq: {error}"),
            };
        }
    };
    *last_seq = i128::from(seq);
    let malformed = |detail: String| SourceRecord::Malformed {
        seq: i128::from(seq),
        detail,
    };
    let Ok(seq_u64) = u64::try_from(seq) else {
        return malformed(format!("seq {seq} is negative"));
    };
    if seq_u64 == 0 {
        return malformed("seq 0".to_owned());
    }
    match try_decode_record(chain, seq_u64, row) {
        Ok(record) => SourceRecord::Record(record),
        Err(detail) => malformed(detail),
    }
}

fn try_decode_record(chain: &ChainId, seq: u64, row: &Row<'_>) -> Decoded<Record> {
    let key_id = match row.get_ref(9) {
        Ok(ValueRef::Null) => None,
        _ => Some(shared_text(row, 9, "key_id")?),
    };
    Ok(Record {
        chain: chain.clone(),
        seq,
        columns: Some(EventColumns {
            id: shared_text(row, 1, "event_id")?,
            event_type: shared_text(row, 2, "event_type")?,
            actor: shared_text(row, 3, "actor")?,
            time: shared_text(row, 4, "event_time")?,
        }),
        event_json: shared_text(row, 5, "event_json")?,
        event_hash: digest(row, 6, "event_hash")?,
        prev: digest(row, 7, "prev_hash")?,
        hash: digest(row, 8, "record_hash")?,
        key_id,
        sig: signature(row, 10)?,
    })
}

fn decode_checkpoint(chain: &ChainId, row: &Row<'_>) -> SourceCheckpoint {
    let seq = match row.get_ref(0) {
        Ok(ValueRef::Integer(seq)) => seq,
        Ok(other) => return Err((0, format!("seq of type {}", type_name(other)))),
        Err(error) => return Err((0, format!("column seq: {error}"))),
    };
    let at = |detail: String| (i128::from(seq), detail);
    let Ok(seq_u64) = u64::try_from(seq) else {
        return Err(at(format!("seq {seq} is negative")));
    };
    Ok(Checkpoint {
        chain: chain.clone(),
        seq: seq_u64,
        head: digest(row, 1, "head_hash").map_err(at)?,
        time: text(row, 2, "time").map_err(at)?,
        key_id: text(row, 3, "key_id").map_err(at)?,
        sig: signature(row, 4)
            .map_err(at)?
            .ok_or_else(|| at("signature is NULL".to_owned()))?,
    })
}

/// A text column, borrowed from the row.
fn text_ref<'row>(row: &'row Row<'_>, index: usize, name: &str) -> Decoded<&'row str> {
    match row.get_ref(index) {
        Ok(ValueRef::Text(bytes)) => {
            std::str::from_utf8(bytes).map_err(|_| format!("column {name} is not UTF-8"))
        }
        Ok(other) => Err(format!(
            "column {name} holds {}, expected text",
            type_name(other)
        )),
        Err(error) => Err(format!("column {name}: {error}")),
    }
}

fn text(row: &Row<'_>, index: usize, name: &str) -> Decoded<String> {
    text_ref(row, index, name).map(str::to_owned)
}

/// A text column read straight into a [`SharedStr`] (one allocation).
fn shared_text(row: &Row<'_>, index: usize, name: &str) -> Decoded<SharedStr> {
    text_ref(row, index, name).map(SharedStr::from)
}

fn blob<'row>(row: &'row Row<'_>, index: usize, name: &str) -> Decoded<Option<&'row [u8]>> {
    match row.get_ref(index) {
        Ok(ValueRef::Blob(bytes)) => Ok(Some(bytes)),
        Ok(ValueRef::Null) => Ok(None),
        Ok(other) => Err(format!(
            "column {name} holds {}, expected a blob",
            type_name(other)
        )),
        Err(error) => Err(format!("column {name}: {error}")),
    }
}

fn digest(row: &Row<'_>, index: usize, name: &str) -> Decoded<Digest> {
    let bytes = blob(row, index, name)?.ok_or_else(|| format!("column {name} is NULL"))?;
    Digest::from_slice(bytes)
        .map_err(|_| format!("column {name} holds {} bytes, expected 32", bytes.len()))
}

fn signature(row: &Row<'_>, index: usize) -> Decoded<Option<[u8; 64]>> {
    let Some(bytes) = blob(row, index, "signature")? else {
        return Ok(None);
    };
    <[u8; 64]>::try_from(bytes)
        .map(Some)
        .map_err(|_| format!("column signature holds {} bytes, expected 64", bytes.len()))
}

fn type_name(value: ValueRef<'_>) -> &'static str {
    match value {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    }
}

/// A stored value for a report: text quoted, a blob in hex, NULL.
fn describe_value(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Null => "NULL".to_owned(),
        ValueRef::Integer(n) => n.to_string(),
        ValueRef::Real(x) => x.to_string(),
        ValueRef::Text(bytes) => format!("{:?}", String::from_utf8_lossy(bytes)),
        ValueRef::Blob(bytes) => format!("x'{}'", hex_prefix(bytes)),
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    let shown: String = bytes.iter().take(32).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 32 {
        format!("{shown}…")
    } else {
        shown
    }
}

/// NULL as `None`, anything else as text.
fn optional_text(value: ValueRef<'_>) -> Option<String> {
    match value {
        ValueRef::Null => None,
        other => Some(lossy(other)),
    }
}

/// Any stored value as text (for dead letters, whose content is listed and
/// whose parse, at replay, says what is wrong).
fn lossy(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Null => String::new(),
        ValueRef::Integer(n) => n.to_string(),
        ValueRef::Real(x) => x.to_string(),
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
            String::from_utf8_lossy(bytes).into_owned()
        }
    }
}
