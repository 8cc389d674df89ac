//! The read side: [`PostgresSource`] implements `audit-core`'s
//! [`ChainSource`], so the one verifier
//! ([`verify_source`](audit_core::verification::verify_source)), the one
//! export and the one dead-letter replay of the core read a PostgreSQL
//! database like any other store.
//!
//! Every trace is returned, as stored:
//!
//! - [`inventory`](ChainSource::inventory) names every chain found in *any*
//!   table (`audit_records`, `audit_checkpoints`, `audit_heads`,
//!   `audit_dead_letters`), so a chain whose records were all deleted is
//!   still verified against its checkpoints and head row. A `chain_id`
//!   that is NULL or not a valid chain name, and a head row that cannot be
//!   decoded, are [`Stray`]s: verification failures, never errors.
//! - [`records`](ChainSource::records) returns every row of the chain in
//!   seq order, whatever its seq: with `from <= 1` there is no lower bound
//!   at all, so rows forged at seq 0, -1 or `i64::MIN` come back (as
//!   [`SourceRecord::Malformed`], which the verifier reports as out of
//!   range). A NULL column, a hash that is not 32 bytes or a signature
//!   that is not 64 is malformed too. A half-signed row (a key id without
//!   a signature or the reverse) is returned as stored: judging it is the
//!   verifier's job.
//! - [`anchors`](ChainSource::anchors) is the chain's `audit_heads` row: a
//!   head row beyond the last record means records were deleted.
//!
//! ## Reading in pages
//! Records are read by keyset pages (`WHERE seq >= $next ORDER BY seq
//! LIMIT n`, served by the primary key; the next page starts at the last
//! seq read plus one), so memory stays bounded by
//! [`PostgresOptions::page_size`] whatever the chain's length, and no row
//! is ever skipped, `i64::MIN` included. Each page is one statement with a
//! snapshot of its own, on the source's one connection, rather than one
//! long transaction: a source may live long (a service's verifier) and be
//! used by several tasks at once, and must see what was written since.
//! This is sound because the library only appends, and appends to a chain
//! commit in seq order under its head lock, so every page continues what
//! the previous one saw; and the verifier reads the head row and the
//! checkpoints *before* the records, so a writer appending meanwhile can
//! only make the records reach further than the head row or checkpoints
//! it checks them against. The connection is read-only
//! (`SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY`).
//!
//! ```no_run
//! use audit_core::keys::Keyring;
//! use audit_core::verification::{SourceVerifyOptions, verify_source};
//! use audit_postgres::{PostgresOptions, open_source};
//!
//! # async fn run(keyring: Keyring) -> Result<(), Box<dyn std::error::Error>> {
//! let source = open_source("postgres://audit@db.example/audit", PostgresOptions::default()).await?;
//! let report = verify_source(&source, &keyring, SourceVerifyOptions::default()).await?;
//! println!("{} records, ok: {}", report.records, report.is_ok());
//! # Ok(())
//! # }
//! ```

use async_trait::async_trait;
use audit_core::chain::{ChainId, Checkpoint, EventColumns, Record};
use audit_core::dead_letter::DeadLetter;
use audit_core::store::{
    Anchor, ChainSource, Inventory, RecordStream, SourceCheckpoint, SourceError, SourceRecord,
    SourceTreeCheckpoint, StoredDeadLetter, Stray,
};
use audit_core::{Digest, SharedStr};
use futures::{StreamExt, TryStreamExt};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::FromSql;
use tokio_postgres::{Client, Config, Row, Socket, Statement};

use crate::connect::{Connection, PostgresOptions, connect_tls, connect_url};
use crate::error::PostgresError;
use crate::schema;

/// Where an `audit_heads` row is reported from.
const HEADS: &str = "audit_heads";

/// One page of records, from seq `$2` on.
const RECORDS_PAGE: &str = "SELECT seq, event_id, event_type, actor, event_time, event_json, \
     event_hash, prev_hash, record_hash, key_id, signature FROM audit_records \
     WHERE chain_id = $1::text AND seq >= $2::bigint ORDER BY seq LIMIT $3::bigint";

/// Every chain name of every table, with the lowest seq where there is one.
const CHAINS: &str = "SELECT 'audit_records'::text, chain_id::text, min(seq) \
       FROM audit_records GROUP BY chain_id \
     UNION ALL SELECT 'audit_checkpoints', chain_id::text, min(seq) \
       FROM audit_checkpoints GROUP BY chain_id \
     UNION ALL SELECT 'audit_dead_letters', chain_id::text, NULL::bigint \
       FROM audit_dead_letters GROUP BY chain_id";

const HEAD_ROWS: &str = "SELECT chain_id::text, seq, record_hash FROM audit_heads";

const HEAD_ROW: &str = "SELECT chain_id::text, seq, record_hash FROM audit_heads \
     WHERE chain_id = $1::text";

const CHECKPOINTS: &str = "SELECT seq, head_hash, time, key_id, signature \
     FROM audit_checkpoints WHERE chain_id = $1::text ORDER BY seq";

/// The dead letters of chain `$1` (of all when NULL); schema version 1
/// has no authentication columns.
const DEAD_LETTERS: [&str; 2] = [
    "SELECT id, chain_id, event_id, event_json, failure_reason, failed_at, attempts, \
       NULL::text, NULL::text FROM audit_dead_letters \
     WHERE $1::text IS NULL OR chain_id = $1::text ORDER BY id",
    "SELECT id, chain_id, event_id, event_json, failure_reason, failed_at, attempts, \
       key_id, signature FROM audit_dead_letters \
     WHERE $1::text IS NULL OR chain_id = $1::text ORDER BY id",
];

/// A read-only view of a PostgreSQL audit database: the read side of the
/// backend. Cheap to share (`Arc`); every call runs on its one connection.
pub struct PostgresSource {
    client: Client,
    target: String,
    page_size: i64,
    records_page: Statement,
    dead_letters: &'static str,
    /// Whether the schema has the tree tables (version 3).
    has_tree: bool,
}

impl std::fmt::Debug for PostgresSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSource")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// Opens the PostgreSQL audit database at `url` for reading, with TLS when
/// its `sslmode` asks for it (with the crate feature `tls`; see
/// [`connect`](crate::connect) and [`PostgresSource::connect_with_tls`]).
/// It checks the schema and never creates, migrates or writes anything.
pub async fn open_source(
    url: &str,
    options: PostgresOptions,
) -> Result<PostgresSource, PostgresError> {
    let connection = connect_url(url, &options).await?;
    PostgresSource::open(connection, &options).await
}

impl PostgresSource {
    /// Connects with a TLS connector (see
    /// [`PostgresStore::connect_with_tls`](crate::PostgresStore::connect_with_tls)).
    pub async fn connect_with_tls<T>(
        config: Config,
        tls: T,
        options: PostgresOptions,
    ) -> Result<Self, PostgresError>
    where
        T: MakeTlsConnect<Socket> + Send + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let connection = connect_tls(config, tls, &options).await?;
        Self::open(connection, &options).await
    }

    async fn open(
        connection: Connection,
        options: &PostgresOptions,
    ) -> Result<Self, PostgresError> {
        let Connection { client, target } = connection;
        let version = schema::require(&client, &target, 1).await?;
        client
            .batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            .await
            .map_err(PostgresError::query(
                &target,
                "making the session read-only",
            ))?;
        let records_page = client
            .prepare(RECORDS_PAGE)
            .await
            .map_err(PostgresError::query(&target, "preparing statements"))?;
        Ok(Self {
            client,
            page_size: i64::try_from(options.page_size().max(1)).unwrap_or(i64::MAX),
            target,
            records_page,
            dead_letters: DEAD_LETTERS[usize::from(version >= 2)],
            has_tree: version >= 3,
        })
    }

    /// The server, `postgres://user@host:port/db` (no password).
    pub fn target(&self) -> &str {
        &self.target
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        action: &'static str,
    ) -> Result<Vec<Row>, SourceError> {
        Ok(self
            .client
            .query(sql, params)
            .await
            .map_err(PostgresError::query(&self.target, action))?)
    }

    /// One page of `chain` from seq `lower` on: the rows, and where the
    /// next page starts (`None` after the last).
    async fn page(
        &self,
        chain: &ChainId,
        lower: i64,
    ) -> Result<(Vec<SourceRecord>, Option<i64>), SourceError> {
        let rows = self
            .client
            .query(
                &self.records_page,
                &[&chain.as_str(), &lower, &self.page_size],
            )
            .await
            .map_err(PostgresError::query(&self.target, "reading records"))?;
        let mut page = Vec::with_capacity(rows.len());
        let mut last = None;
        for row in &rows {
            // The primary key: never NULL, always BIGINT in this schema.
            let seq: i64 = row.try_get(0).map_err(|error| {
                SourceError::new(&self.target, "audit_records.seq is not a BIGINT")
                    .with_source(error)
            })?;
            last = Some(seq);
            page.push(decode_record(chain, seq, row));
        }
        let full = i64::try_from(rows.len()).is_ok_and(|count| count >= self.page_size);
        let next = last.filter(|_| full).and_then(|seq| seq.checked_add(1));
        Ok((page, next))
    }
}

#[async_trait]
impl ChainSource for PostgresSource {
    fn describe(&self) -> String {
        self.target.clone()
    }

    async fn inventory(&self) -> Result<Inventory, SourceError> {
        let mut inventory = Inventory::default();
        for row in self.query(CHAINS, &[], "listing chains").await? {
            let table: String = row.try_get(0).unwrap_or_default();
            let lowest: Option<i64> = row.try_get(2).unwrap_or(None);
            let seq = lowest.and_then(|seq| u64::try_from(seq).ok()).unwrap_or(0);
            match chain_of(&row, 1, &table, seq) {
                Ok(chain) => inventory.add_chain(chain),
                Err(stray) => inventory.strays.push(stray),
            }
        }
        for row in self.query(HEAD_ROWS, &[], "listing chain heads").await? {
            let seq = row.try_get::<_, i64>(1).ok();
            let seq = seq.and_then(|seq| u64::try_from(seq).ok()).unwrap_or(0);
            match chain_of(&row, 0, HEADS, seq) {
                Ok(chain) => {
                    if let Err(detail) = decode_anchor(&row) {
                        inventory.strays.push(Stray {
                            chain: chain.to_string(),
                            seq,
                            detail: format!("the {HEADS} row of chain {chain} {detail}"),
                        });
                    }
                    inventory.add_chain(chain);
                }
                Err(stray) => inventory.strays.push(stray),
            }
        }
        Ok(inventory)
    }

    async fn records(&self, chain: &ChainId, from: u64) -> Result<RecordStream<'_>, SourceError> {
        let first = if from <= 1 {
            Some(i64::MIN)
        } else {
            i64::try_from(from).ok()
        };
        let chain = chain.clone();
        let pages = futures::stream::try_unfold(first, move |lower| {
            let chain = chain.clone();
            async move {
                let Some(lower) = lower else {
                    return Ok::<_, SourceError>(None);
                };
                let (page, next) = self.page(&chain, lower).await?;
                Ok(Some((page, next)))
            }
        });
        Ok(pages
            .map_ok(|page| futures::stream::iter(page.into_iter().map(Ok)))
            .try_flatten()
            .boxed())
    }

    async fn tree_checkpoints(
        &self,
        chain: &ChainId,
    ) -> Result<Vec<SourceTreeCheckpoint>, SourceError> {
        if !self.has_tree {
            return Ok(Vec::new());
        }
        Ok(crate::tree::read_checkpoints(&self.client, &self.target, chain).await?)
    }

    async fn tree_rows(
        &self,
        chain: &ChainId,
        seqs: &[u64],
    ) -> Result<Option<audit_core::store::StoredTreeRows>, SourceError> {
        if !self.has_tree {
            return Ok(None);
        }
        Ok(Some(
            crate::tree::read_rows(&self.client, &self.target, chain, seqs).await?,
        ))
    }

    async fn checkpoints(&self, chain: &ChainId) -> Result<Vec<SourceCheckpoint>, SourceError> {
        let rows = self
            .query(CHECKPOINTS, &[&chain.as_str()], "reading checkpoints")
            .await?;
        Ok(rows
            .iter()
            .map(|row| decode_checkpoint(chain, row))
            .collect())
    }

    /// The chain's `audit_heads` row. A row that cannot be decoded is not
    /// an anchor: [`inventory`](ChainSource::inventory) reports it as a
    /// stray.
    async fn anchors(&self, chain: &ChainId) -> Result<Vec<Anchor>, SourceError> {
        let rows = self
            .query(HEAD_ROW, &[&chain.as_str()], "reading the chain head")
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| decode_anchor(row).ok())
            .collect())
    }

    /// The letters in `audit_dead_letters.id` order; the key is the id. A
    /// row with a NULL or mistyped column is listed all the same, with
    /// what cannot be read in its failure reason (and an empty event when
    /// the event is what cannot be read, so replay keeps it).
    async fn dead_letters(
        &self,
        chain: Option<&ChainId>,
    ) -> Result<Vec<StoredDeadLetter>, SourceError> {
        let chain = chain.map(ChainId::as_str);
        let rows = self
            .query(self.dead_letters, &[&chain], "listing dead letters")
            .await?;
        rows.iter()
            .map(|row| decode_letter(&self.target, row))
            .collect()
    }

    async fn count_records(&self) -> Result<Option<u64>, SourceError> {
        let sql = "SELECT count(*) FROM audit_records";
        let rows = self.query(sql, &[], "counting records").await?;
        let count: Option<i64> = rows.first().and_then(|row| row.try_get(0).ok());
        Ok(count.and_then(|count| u64::try_from(count).ok()))
    }
}

/// The chain named in column `index` (text), or the stray it is.
fn chain_of(row: &Row, index: usize, table: &str, seq: u64) -> Result<ChainId, Stray> {
    let stray = |chain: String, detail: String| Stray { chain, seq, detail };
    match row.try_get::<_, Option<String>>(index) {
        Ok(Some(name)) => ChainId::new(&name).map_err(|error| {
            stray(
                format!("{name:?}"),
                format!("{table} holds rows of {name:?}, which is not a valid chain name: {error}"),
            )
        }),
        Ok(None) => Err(stray(
            "NULL".into(),
            format!("{table} holds rows whose chain_id is NULL"),
        )),
        Err(error) => Err(stray(
            "?".into(),
            format!("{table} holds a chain_id that cannot be read: {error}"),
        )),
    }
}

/// A column that must be present, or what is wrong with it.
fn column<'a, T: FromSql<'a>>(row: &'a Row, index: usize, name: &str) -> Result<T, String> {
    match row.try_get::<_, Option<T>>(index) {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err(format!("{name} is NULL")),
        Err(error) => Err(format!("{name} cannot be read: {error}")),
    }
}

/// A 32-byte hash column.
fn digest(row: &Row, index: usize, name: &str) -> Result<Digest, String> {
    let bytes: &[u8] = column(row, index, name)?;
    Digest::from_slice(bytes).map_err(|error| format!("{name}: {error}"))
}

/// A 64-byte signature.
fn signature(bytes: &[u8], name: &str) -> Result<[u8; 64], String> {
    <[u8; 64]>::try_from(bytes).map_err(|_| format!("{name} has {} bytes, not 64", bytes.len()))
}

/// One `audit_records` row as the source reports it.
fn decode_record(chain: &ChainId, seq: i64, row: &Row) -> SourceRecord {
    let decoded = u64::try_from(seq)
        .ok()
        .filter(|&seq| seq >= 1)
        .ok_or_else(|| {
            let id = column::<String>(row, 1, "event_id").unwrap_or_else(|error| error);
            format!("stored at seq {seq}, outside 1.. (event_id {id})")
        })
        .and_then(|seq| decode_columns(chain, seq, row));
    match decoded {
        Ok(record) => SourceRecord::Record(record),
        Err(detail) => SourceRecord::Malformed {
            seq: i128::from(seq),
            detail,
        },
    }
}

fn decode_columns(chain: &ChainId, seq: u64, row: &Row) -> Result<Record, String> {
    let key_id: Option<&str> = row
        .try_get(9)
        .map_err(|error| format!("key_id cannot be read: {error}"))?;
    let sig: Option<&[u8]> = row
        .try_get(10)
        .map_err(|error| format!("signature cannot be read: {error}"))?;
    Ok(Record {
        chain: chain.clone(),
        seq,
        columns: Some(EventColumns {
            id: SharedStr::from(column::<&str>(row, 1, "event_id")?),
            event_type: SharedStr::from(column::<&str>(row, 2, "event_type")?),
            actor: SharedStr::from(column::<&str>(row, 3, "actor")?),
            time: SharedStr::from(column::<&str>(row, 4, "event_time")?),
        }),
        event_json: SharedStr::from(column::<&str>(row, 5, "event_json")?),
        event_hash: digest(row, 6, "event_hash")?,
        prev: digest(row, 7, "prev_hash")?,
        hash: digest(row, 8, "record_hash")?,
        key_id: key_id.map(SharedStr::from),
        sig: sig.map(|bytes| signature(bytes, "signature")).transpose()?,
    })
}

fn decode_checkpoint(chain: &ChainId, row: &Row) -> SourceCheckpoint {
    let seq: i64 = column(row, 0, "seq").map_err(|detail| (0, detail))?;
    let fail = |detail: String| (i128::from(seq), detail);
    let positive = u64::try_from(seq)
        .ok()
        .filter(|&seq| seq >= 1)
        .ok_or_else(|| fail(format!("stored at seq {seq}, outside 1..")))?;
    let sig: &[u8] = column(row, 4, "signature").map_err(fail)?;
    Ok(Checkpoint {
        chain: chain.clone(),
        seq: positive,
        head: digest(row, 1, "head_hash").map_err(fail)?,
        time: column(row, 2, "time").map_err(fail)?,
        key_id: column(row, 3, "key_id").map_err(fail)?,
        sig: signature(sig, "signature").map_err(fail)?,
    })
}

/// A `(chain_id, seq, record_hash)` head row as an anchor, or what is
/// wrong with it (completing "the head row …").
fn decode_anchor(row: &Row) -> Result<Anchor, String> {
    let seq: i64 = column(row, 1, "seq").map_err(|detail| format!("cannot be read: {detail}"))?;
    let seq = u64::try_from(seq).map_err(|_| format!("states the negative seq {seq}"))?;
    let hash =
        digest(row, 2, "record_hash").map_err(|detail| format!("cannot be read: {detail}"))?;
    Ok(Anchor {
        seq,
        hash,
        what: HEADS.to_owned(),
    })
}

fn decode_letter(target: &str, row: &Row) -> Result<StoredDeadLetter, SourceError> {
    let id: i64 = row.try_get(0).map_err(|error| {
        SourceError::new(target, "audit_dead_letters.id is not a BIGINT").with_source(error)
    })?;
    let mut unreadable = Vec::new();
    let mut text = |index: usize, name: &str| {
        column::<String>(row, index, name).unwrap_or_else(|detail| {
            unreadable.push(detail);
            String::new()
        })
    };
    let chain_id = text(1, "chain_id");
    let event_id = text(2, "event_id");
    let event_json = text(3, "event_json");
    let mut failure_reason = text(4, "failure_reason");
    let failed_at = text(5, "failed_at");
    let mut optional = |index: usize, name: &str| {
        row.try_get::<_, Option<String>>(index)
            .unwrap_or_else(|error| {
                unreadable.push(format!("{name} cannot be read: {error}"));
                None
            })
    };
    let key_id = optional(7, "key_id");
    let sig = optional(8, "signature");
    let attempts = match column::<i32>(row, 6, "attempts") {
        Ok(attempts) => u32::try_from(attempts).unwrap_or(0),
        Err(detail) => {
            unreadable.push(detail);
            0
        }
    };
    if !unreadable.is_empty() {
        failure_reason = format!(
            "{failure_reason} [row {id} of audit_dead_letters cannot be read: {}]",
            unreadable.join("; ")
        );
    }
    Ok(StoredDeadLetter {
        key: id.to_string(),
        letter: DeadLetter {
            chain_id,
            event_id,
            event_json,
            failure_reason,
            failed_at,
            attempts,
            key_id,
            sig,
        },
    })
}
