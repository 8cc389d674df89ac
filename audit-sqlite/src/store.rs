//! The SQLite [`ChainStore`]: one connection, one transaction per batch.
//!
//! Every append runs in `BEGIN IMMEDIATE`, so the write lock is taken
//! before the head is read: two writers (threads or processes) on one file
//! take turns, each sealing after the other's head. Should a seq or event
//! id be taken anyway, the PRIMARY KEY / UNIQUE violation is classified by
//! its extended result code as a conflict and [`ChainWriter`] retries with a
//! fresh head.
//!
//! Events already in the chain are found by the UNIQUE constraint rather
//! than by looking every id up first: an attempt that meets one is rolled
//! back and made again with the lookups (see `IdCheck`), so a repeat still
//! gets the receipt of its stored record and is never stored twice.
//!
//! Blocking work runs on tokio's blocking pool: the connection is *moved*
//! into `spawn_blocking` and back out with the result. The store is used by
//! one drainer at a time (`&mut self`), so exclusive ownership needs no
//! lock, no lock can be poisoned, and a panic in the blocking task simply
//! loses the connection: the store reports a transient error and the
//! supervisor rebuilds it. Moving a connection costs microseconds, nothing
//! beside a batch of thousands of rows.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use audit_core::Digest;
use audit_core::chain::tree::TreeFrontier;
use audit_core::chain::{
    BatchPlan, ChainHead, ChainId, Checkpoint, PresentIds, Record, SealedBatch,
};
use audit_core::chain_writer::{ChainSinkOptions, ChainStore, ChainWriter};
use audit_core::dead_letter::DeadLetter;
use audit_core::sink::{ErrorClass, SinkError, SinkFactory};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::error::{SqliteError, classify};
use crate::schema;
use crate::wal_checkpointer::{BACKSTOP_PAGES, WalCheckpointer};

/// How hard a commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// `synchronous=FULL`: a commit survives power loss (the default).
    #[default]
    Full,
    /// `synchronous=NORMAL`: with WAL, a commit survives a crash of the
    /// process but the last commits may be lost on power loss.
    Normal,
}

/// Options of the SQLite store: [`Default`] (full durability, 5 s busy
/// timeout), then the `with_*` methods.
///
/// ```
/// use std::time::Duration;
/// use audit_sqlite::{Durability, SqliteOptions};
/// let options = SqliteOptions::default().with_busy_timeout(Duration::from_secs(1));
/// assert_eq!(options.durability(), Durability::Full);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct SqliteOptions {
    durability: Durability,
    busy_timeout: Duration,
}

impl SqliteOptions {
    /// Commit durability (default [`Durability::Full`]).
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How long a writer waits for another one's lock before the attempt
    /// fails as transient (default 5 s).
    pub fn with_busy_timeout(mut self, busy_timeout: Duration) -> Self {
        self.busy_timeout = busy_timeout;
        self
    }

    /// Commit durability.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// How long a writer waits for another one's lock.
    pub fn busy_timeout(&self) -> Duration {
        self.busy_timeout
    }
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Full,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// The SQLite chain sink: [`ChainWriter`] over a [`SqliteStore`].
pub type SqliteSink = ChainWriter<SqliteStore>;

/// A chain in one SQLite file (FORMAT.md section 6).
pub struct SqliteStore {
    path: PathBuf,
    describe: String,
    connection: Option<Connection>,
    /// Checkpoints the WAL off the commit path (`None`: commits do).
    checkpointer: Option<WalCheckpointer>,
    /// Appends left that look their event ids up before inserting, since
    /// the last batch that held an id already stored (see [`IdCheck`]).
    lookups_left: u32,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("open", &self.connection.is_some())
            .finish()
    }
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` on the blocking pool.
    pub async fn open(
        path: impl Into<PathBuf>,
        options: SqliteOptions,
    ) -> Result<Self, SqliteError> {
        let path = path.into();
        let task_path = path.clone();
        tokio::task::spawn_blocking(move || Self::open_blocking(task_path, options))
            .await
            .map_err(|error| SqliteError::Task {
                path,
                detail: error.to_string(),
            })?
    }

    /// Opens (or creates) the database at `path`, blocking the thread.
    pub fn open_blocking(
        path: impl Into<PathBuf>,
        options: SqliteOptions,
    ) -> Result<Self, SqliteError> {
        let path = path.into();
        let connection = open_writer(&path, options)?;
        let checkpointer = WalCheckpointer::start(&path, synchronous_pragma(options.durability));
        Ok(Self {
            describe: describe(&path),
            path,
            connection: Some(connection),
            checkpointer,
            lookups_left: 0,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn run<T, F>(&mut self, work: F) -> Result<T, SinkError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &str) -> Result<T, SinkError> + Send + 'static,
    {
        let Some(mut connection) = self.connection.take() else {
            return Err(SinkError::new(
                &self.describe,
                ErrorClass::Transient,
                "the connection was lost when a database task failed; the sink must be reopened",
            ));
        };
        let describe = self.describe.clone();
        let task = tokio::task::spawn_blocking(move || {
            let result = work(&mut connection, &describe);
            (connection, result)
        });
        match task.await {
            Ok((connection, result)) => {
                self.connection = Some(connection);
                result
            }
            Err(error) => Err(SinkError::new(
                &self.describe,
                ErrorClass::Transient,
                format!("database task failed: {error}"),
            )),
        }
    }
}

/// `sqlite://PATH`, as stores are named in logs and errors.
pub fn describe(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// Opens the chain sink at `path`: [`SqliteStore::open`] wrapped in
/// [`ChainWriter`].
pub async fn open_sink(
    path: impl Into<PathBuf>,
    chain: ChainSinkOptions,
    options: SqliteOptions,
) -> Result<SqliteSink, SqliteError> {
    Ok(ChainWriter::new(
        SqliteStore::open(path, options).await?,
        chain,
    ))
}

/// A [`SinkFactory`] that opens the chain sink at `path` (the supervisor
/// calls it at start and after each failure).
pub fn sink_factory(
    path: impl Into<PathBuf>,
    chain: ChainSinkOptions,
    options: SqliteOptions,
) -> impl SinkFactory {
    let path: PathBuf = path.into();
    move || {
        let path = path.clone();
        let chain = chain.clone();
        async move {
            let describe = describe(&path);
            open_sink(path, chain, options)
                .await
                .map_err(|error| error.into_sink_error(&describe))
        }
    }
}

/// Opens a read-write connection after checking the file read-only first,
/// then sets WAL, durability and busy timeout and creates or migrates the
/// schema.
pub(crate) fn open_writer(path: &Path, options: SqliteOptions) -> Result<Connection, SqliteError> {
    let current = if path.exists() {
        Some(schema::inspect_file(path)?)
    } else {
        None
    };
    let mut connection =
        Connection::open(path).map_err(SqliteError::sqlite(path, "opening read-write"))?;
    configure(&connection, path, options)?;
    let up_to_date = matches!(
        &current,
        Some(schema::SchemaState::Audit {
            schema_version: Some(version)
        }) if version == schema::SCHEMA_VERSION
    );
    if !up_to_date {
        schema::create_or_migrate(&mut connection, path)?;
        grow_trees(&mut connection, path)?;
    }
    connection.set_prepared_statement_cache_capacity(32);
    Ok(connection)
}

/// Grows the tree of every chain of a migrated file (one transaction).
fn grow_trees(connection: &mut Connection, path: &Path) -> Result<(), SqliteError> {
    let describe = describe(path);
    let into_error = |error: SinkError| SqliteError::Tree {
        path: path.to_owned(),
        detail: error.to_string(),
    };
    let transaction = begin(connection, &describe).map_err(into_error)?;
    crate::tree::catch_up_all(&transaction, &describe).map_err(into_error)?;
    commit(transaction, &describe).map_err(into_error)
}

fn configure(
    connection: &Connection,
    path: &Path,
    options: SqliteOptions,
) -> Result<(), SqliteError> {
    connection
        .busy_timeout(options.busy_timeout)
        .map_err(SqliteError::sqlite(path, "setting the busy timeout"))?;
    let mode: String = connection
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(SqliteError::sqlite(path, "switching to WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "SQLite refused WAL mode");
    }
    connection
        .pragma_update(None, "synchronous", synchronous_pragma(options.durability))
        .map_err(SqliteError::sqlite(path, "setting synchronous"))?;
    connection
        .pragma_update(None, "wal_autocheckpoint", BACKSTOP_PAGES)
        .map_err(SqliteError::sqlite(
            path,
            "setting the WAL checkpoint backstop",
        ))
}

/// The `synchronous` setting of `durability`.
fn synchronous_pragma(durability: Durability) -> &'static str {
    match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    }
}

pub(crate) fn sink_error(describe: &str, context: &str, error: rusqlite::Error) -> SinkError {
    SinkError::new(describe, classify(&error), format!("{context}: {error}")).with_source(error)
}

/// Reads the head of `chain` inside a transaction.
pub(crate) fn read_head(
    connection: &Connection,
    chain: &ChainId,
    describe: &str,
) -> Result<ChainHead, SinkError> {
    let row: Option<(i64, Vec<u8>)> = connection
        .prepare_cached(
            "SELECT seq, record_hash FROM audit_records WHERE chain_id = ?1 ORDER BY seq DESC LIMIT 1",
        )
        .and_then(|mut statement| {
            statement
                .query_row([chain.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(|error| sink_error(describe, "reading the chain head", error))?;
    let Some((seq, hash)) = row else {
        return Ok(ChainHead::EMPTY);
    };
    let corrupt = |detail: String| {
        SinkError::new(
            describe,
            ErrorClass::Permanent,
            format!("head of chain {chain} is unreadable: {detail}; run `deferred-audit verify`"),
        )
    };
    let seq = u64::try_from(seq).map_err(|_| corrupt(format!("negative seq {seq}")))?;
    let hash = Digest::from_slice(&hash)
        .map_err(|error| corrupt(format!("record_hash at seq {seq}: {}", error.detail)))?;
    Ok(ChainHead { seq, hash })
}

/// Event ids looked up per query.
const IDS_PER_LOOKUP: usize = 256;

/// The records already in `chain` for any of `ids`, looked up
/// [`IDS_PER_LOOKUP`] ids per query.
fn present_ids<'a>(
    transaction: &Transaction<'_>,
    chain: &ChainId,
    ids: impl Iterator<Item = &'a str>,
    describe: &str,
) -> Result<PresentIds, SinkError> {
    let ids: Vec<&str> = ids.collect();
    let mut found = PresentIds::new();
    for chunk in ids.chunks(IDS_PER_LOOKUP) {
        let mut sql = String::from(
            "SELECT event_id, seq, record_hash FROM audit_records WHERE chain_id = ?1 AND event_id IN (",
        );
        for index in 0..chunk.len() {
            if index > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("?{}", index + 2));
        }
        sql.push(')');
        let mut statement = transaction
            .prepare_cached(&sql)
            .map_err(|error| sink_error(describe, "preparing the event id lookup", error))?;
        let params = std::iter::once(chain.as_str()).chain(chunk.iter().copied());
        let mut rows = statement
            .query(rusqlite::params_from_iter(params))
            .map_err(|error| sink_error(describe, "looking up event ids", error))?;
        while let Some(row) = rows
            .next()
            .map_err(|error| sink_error(describe, "looking up event ids", error))?
        {
            let read = |row: &rusqlite::Row<'_>| -> rusqlite::Result<(String, i64, Vec<u8>)> {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            };
            let (id, seq, hash) =
                read(row).map_err(|error| sink_error(describe, "reading an event id", error))?;
            let corrupt = || {
                SinkError::new(
                    describe,
                    ErrorClass::Permanent,
                    format!(
                        "the record of event {id} in chain {chain} is unreadable; run `deferred-audit verify`"
                    ),
                )
            };
            let seq = u64::try_from(seq).map_err(|_| corrupt())?;
            let hash = Digest::from_slice(&hash).map_err(|_| corrupt())?;
            found.insert(id, ChainHead { seq, hash });
        }
    }
    Ok(found)
}

/// Rows per multi-row `INSERT` statement: 12 parameters each, well under
/// SQLite's limit of 32,766 parameters per statement.
const ROWS_PER_INSERT: usize = 256;

/// The multi-row `INSERT` for `rows` records.
fn insert_sql(rows: usize) -> String {
    const ROW: &str = "(?,?,?,?,?,?,?,?,?,?,?,?)";
    let mut sql = String::with_capacity(200 + rows * (ROW.len() + 1));
    sql.push_str("INSERT INTO audit_records (chain_id, seq, event_id, event_type, actor, event_time, event_json, event_hash, prev_hash, record_hash, key_id, signature) VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        sql.push_str(ROW);
    }
    sql
}

/// Inserts sealed `records` inside `transaction`, [`ROWS_PER_INSERT`] rows
/// per prepared (and cached) multi-row statement.
pub(crate) fn insert_records(
    transaction: &Transaction<'_>,
    records: &[Record],
    describe: &str,
) -> Result<(), SinkError> {
    for chunk in records.chunks(ROWS_PER_INSERT) {
        let mut statement = transaction
            .prepare_cached(&insert_sql(chunk.len()))
            .map_err(|error| sink_error(describe, "preparing the record insert", error))?;
        for (row, record) in chunk.iter().enumerate() {
            bind_record(&mut statement, row * 12, record, describe)?;
        }
        statement
            .raw_execute()
            .map_err(|error| sink_error(describe, "inserting records", error))?;
    }
    Ok(())
}

/// Binds the 12 columns of `record` at parameters `base + 1 ..= base + 12`.
fn bind_record(
    statement: &mut rusqlite::CachedStatement<'_>,
    base: usize,
    record: &Record,
    describe: &str,
) -> Result<(), SinkError> {
    let columns = record.columns.as_ref();
    let seq = i64::try_from(record.seq).map_err(|_| {
        SinkError::new(
            describe,
            ErrorClass::Permanent,
            format!("seq {} exceeds SQLite's integer range", record.seq),
        )
    })?;
    let bind = |statement: &mut rusqlite::CachedStatement<'_>,
                index: usize,
                value: &dyn rusqlite::ToSql| {
        statement
            .raw_bind_parameter(base + index, value)
            .map_err(|error| sink_error(describe, "binding a record column", error))
    };
    bind(statement, 1, &record.chain.as_str())?;
    bind(statement, 2, &seq)?;
    bind(statement, 3, &columns.map(|c| c.id.as_str()))?;
    bind(statement, 4, &columns.map(|c| c.event_type.as_str()))?;
    bind(statement, 5, &columns.map(|c| c.actor.as_str()))?;
    bind(statement, 6, &columns.map(|c| c.time.as_str()))?;
    bind(statement, 7, &record.event_json.as_str())?;
    bind(statement, 8, &record.event_hash.as_bytes().as_slice())?;
    bind(statement, 9, &record.prev.as_bytes().as_slice())?;
    bind(statement, 10, &record.hash.as_bytes().as_slice())?;
    bind(statement, 11, &record.key_id.as_deref())?;
    bind(
        statement,
        12,
        &record.sig.as_ref().map(|sig| sig.as_slice()),
    )
}

/// Writes already sealed `records` in one transaction, with no head read
/// and no duplicate check: what the file can absorb at most, for
/// `deferred-audit bench`. The records must continue the chain; nothing
/// here checks it.
pub fn insert_sealed_blocking(
    store: &mut SqliteStore,
    records: &[Record],
) -> Result<(), SinkError> {
    let describe = store.describe.clone();
    let Some(connection) = store.connection.as_mut() else {
        return Err(SinkError::new(
            &describe,
            ErrorClass::Transient,
            "the connection was lost; the store must be reopened",
        ));
    };
    let transaction = begin(connection, &describe)?;
    insert_records(&transaction, records, &describe)?;
    commit(transaction, &describe)?;
    if let Some(checkpointer) = &store.checkpointer {
        checkpointer.nudge();
    }
    Ok(())
}

/// How an append finds the batch's events already in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdCheck {
    /// Looks every id up before sealing: already stored events get their
    /// stored receipt.
    LookUpFirst,
    /// Seals and inserts without a lookup, leaving it to the
    /// `UNIQUE (chain_id, event_id)` constraint: any constraint violation
    /// fails the attempt as a [`ErrorClass::Conflict`], and the caller rolls
    /// back and appends again with [`IdCheck::LookUpFirst`]. Under
    /// `BEGIN IMMEDIATE` no other writer can take a seq meanwhile, so in a
    /// chain whose events arrive once (the common case) this saves the
    /// lookups and costs nothing else.
    ByConstraint,
}

/// Batches that look their ids up first after one that held an id already
/// stored: a writer replaying a journal after a crash meets them in runs.
const LOOKUP_BATCHES_AFTER_REPEAT: u32 = 16;

/// One append attempt in its own transaction, committed; with
/// [`IdCheck::ByConstraint`] first when `optimistic`, falling back to
/// [`IdCheck::LookUpFirst`] on a constraint violation. Also says whether it
/// fell back.
fn append_committed(
    connection: &mut Connection,
    plan: &BatchPlan,
    optimistic: bool,
    describe: &str,
) -> Result<(SealedBatch, bool), SinkError> {
    if optimistic {
        let transaction = begin(connection, describe)?;
        match append_in(&transaction, plan, IdCheck::ByConstraint, describe) {
            Ok(sealed) => {
                commit(transaction, describe)?;
                return Ok((sealed, false));
            }
            // Dropping the transaction rolls it back.
            Err(error) if error.class == ErrorClass::Conflict => drop(transaction),
            Err(error) => return Err(error),
        }
    }
    let transaction = begin(connection, describe)?;
    let sealed = append_in(&transaction, plan, IdCheck::LookUpFirst, describe)?;
    commit(transaction, describe)?;
    Ok((sealed, optimistic))
}

/// The body of one append, inside `transaction`: read the head and (per
/// `ids`) the ids already present, seal with the core's plan, insert. The
/// caller commits.
pub(crate) fn append_in(
    transaction: &Transaction<'_>,
    plan: &BatchPlan,
    ids: IdCheck,
    describe: &str,
) -> Result<SealedBatch, SinkError> {
    let head = read_head(transaction, plan.chain(), describe)?;
    let tree = crate::tree::catch_up(transaction, plan.chain(), head.seq, describe)?;
    let present = match ids {
        IdCheck::LookUpFirst => present_ids(transaction, plan.chain(), plan.ids(), describe)?,
        IdCheck::ByConstraint => PresentIds::new(),
    };
    // Each chunk of records is inserted while the next is being signed.
    let sealed = plan.seal_streaming(head, &tree, &present, |records| {
        insert_records(transaction, records, describe)
    })?;
    if sealed.appends() {
        crate::tree::store_tree(
            transaction,
            plan.chain(),
            sealed.tree_rows(),
            sealed.tree(),
            describe,
        )?;
    }
    Ok(sealed)
}

/// Inserts verbatim `records` that must continue the head of their chain.
fn import_in(
    transaction: &Transaction<'_>,
    records: &[Record],
    describe: &str,
) -> Result<(), SinkError> {
    let Some(first) = records.first() else {
        return Ok(());
    };
    let head = read_head(transaction, &first.chain, describe)?;
    if head.seq.checked_add(1) != Some(first.seq) {
        return Err(SinkError::new(
            describe,
            ErrorClass::Conflict,
            format!(
                "imported records start at seq {} but chain {} ends at seq {}",
                first.seq, first.chain, head.seq
            ),
        ));
    }
    insert_records(transaction, records, describe)?;
    crate::tree::grow_by(transaction, records, describe)
}

/// Deletes dead letters by row id.
fn delete_dead_letters(
    transaction: &Transaction<'_>,
    keys: &[String],
    describe: &str,
) -> Result<(), SinkError> {
    let mut statement = transaction
        .prepare_cached("DELETE FROM audit_dead_letters WHERE id = ?1")
        .map_err(|error| sink_error(describe, "preparing the dead-letter delete", error))?;
    for key in keys {
        let id: i64 = key.parse().map_err(|_| {
            SinkError::new(
                describe,
                ErrorClass::Permanent,
                format!("{key:?} is not a dead-letter row id"),
            )
        })?;
        statement
            .execute([id])
            .map_err(|error| sink_error(describe, "deleting a replayed dead letter", error))?;
    }
    Ok(())
}

/// Inserts dead letters inside `transaction`.
pub(crate) fn insert_dead_letters(
    transaction: &Transaction<'_>,
    letters: &[DeadLetter],
    describe: &str,
) -> Result<(), SinkError> {
    let mut statement = transaction
        .prepare_cached(
            "INSERT INTO audit_dead_letters (chain_id, event_id, event_json, failure_reason, failed_at, attempts, key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(|error| sink_error(describe, "preparing the dead-letter insert", error))?;
    for letter in letters {
        statement
            .execute(params![
                letter.chain_id,
                letter.event_id,
                letter.event_json,
                letter.failure_reason,
                letter.failed_at,
                letter.attempts,
                letter.key_id,
                letter.sig
            ])
            .map_err(|error| sink_error(describe, "inserting a dead letter", error))?;
    }
    Ok(())
}

/// Stores a checkpoint; a second one at the same seq is ignored.
pub(crate) fn insert_checkpoint(
    connection: &Connection,
    checkpoint: &Checkpoint,
    describe: &str,
) -> Result<(), SinkError> {
    let seq = i64::try_from(checkpoint.seq).unwrap_or(i64::MAX);
    connection
        .prepare_cached(
            "INSERT OR IGNORE INTO audit_checkpoints (chain_id, seq, head_hash, time, key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                checkpoint.chain.as_str(),
                seq,
                checkpoint.head.as_bytes().as_slice(),
                checkpoint.time,
                checkpoint.key_id,
                checkpoint.sig.as_slice(),
            ])
        })
        .map(drop)
        .map_err(|error| sink_error(describe, "writing a checkpoint", error))
}

pub(crate) fn begin<'c>(
    connection: &'c mut Connection,
    describe: &str,
) -> Result<Transaction<'c>, SinkError> {
    connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|error| sink_error(describe, "BEGIN IMMEDIATE", error))
}

pub(crate) fn commit(transaction: Transaction<'_>, describe: &str) -> Result<(), SinkError> {
    transaction
        .commit()
        .map_err(|error| sink_error(describe, "COMMIT", error))
}

#[async_trait]
impl ChainStore for SqliteStore {
    async fn append_once(&mut self, plan: &BatchPlan) -> Result<SealedBatch, SinkError> {
        let plan = plan.clone();
        let optimistic = self.lookups_left == 0;
        let (sealed, fell_back) = self
            .run(move |connection, describe| {
                append_committed(connection, &plan, optimistic, describe)
            })
            .await?;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.nudge();
        }
        self.lookups_left = if fell_back {
            LOOKUP_BATCHES_AFTER_REPEAT
        } else {
            self.lookups_left.saturating_sub(1)
        };
        Ok(sealed)
    }

    async fn import(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let records = records.to_vec();
        self.run(move |connection, describe| {
            let transaction = begin(connection, describe)?;
            import_in(&transaction, &records, describe)?;
            commit(transaction, describe)
        })
        .await
    }

    async fn dead_letter(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        let letters = letters.to_vec();
        self.run(move |connection, describe| {
            let transaction = begin(connection, describe)?;
            insert_dead_letters(&transaction, &letters, describe)?;
            commit(transaction, describe)
        })
        .await
    }

    async fn remove_dead_letters(&mut self, keys: &[String]) -> Result<(), SinkError> {
        let keys = keys.to_vec();
        self.run(move |connection, describe| {
            let transaction = begin(connection, describe)?;
            delete_dead_letters(&transaction, &keys, describe)?;
            commit(transaction, describe)
        })
        .await
    }

    async fn write_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), SinkError> {
        let checkpoint = checkpoint.clone();
        self.run(move |connection, describe| insert_checkpoint(connection, &checkpoint, describe))
            .await
    }

    async fn write_tree_checkpoint(
        &mut self,
        chain: &ChainId,
        size: u64,
        note: &str,
    ) -> Result<(), SinkError> {
        let (chain, note) = (chain.clone(), note.to_owned());
        self.run(move |connection, describe| {
            let transaction = begin(connection, describe)?;
            crate::tree::write_checkpoint(&transaction, &chain, size, &note, describe)?;
            commit(transaction, describe)
        })
        .await
    }

    async fn head(&mut self, chain: &ChainId) -> Result<ChainHead, SinkError> {
        let chain = chain.clone();
        self.run(move |connection, describe| read_head(connection, &chain, describe))
            .await
    }

    async fn tree(&mut self, chain: &ChainId) -> Result<TreeFrontier, SinkError> {
        let chain = chain.clone();
        self.run(move |connection, describe| {
            let transaction = begin(connection, describe)?;
            let head = read_head(&transaction, &chain, describe)?;
            let tree = crate::tree::catch_up(&transaction, &chain, head.seq, describe)?;
            commit(transaction, describe)?;
            Ok(tree)
        })
        .await
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}
