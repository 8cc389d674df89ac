//! The write side: [`PostgresStore`] implements `audit-core`'s
//! [`ChainStore`] over one connection. The core plans and seals every batch
//! ([`BatchPlan`]); this module only reads the head and the ids already
//! present, writes the sealed rows and moves the head, in one transaction.
//! [`crate::PostgresSink`] adds the shared policy (conflict retries,
//! dead-lettering, checkpoints).
//!
//! One append attempt is one transaction: lock the chain's head row, look
//! up the plan's ids ([`BatchPlan::ids`]), seal after the head
//! ([`BatchPlan::seal_streaming_async`]: big batches are hashed and signed
//! on the blocking pool), insert the new records with one binary
//! `COPY … FROM STDIN` per signed chunk, each sent while the next chunk is
//! being signed, move the head, commit.
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
//!
//! A lost connection makes every call fail with
//! [`ErrorClass::Transient`]; the pipeline's supervisor then rebuilds the
//! sink from its factory, which reconnects, with backoff.

use async_trait::async_trait;
use audit_core::chain::tree::TreeFrontier;
use audit_core::chain::tree_rows::TreeGrowth;
use audit_core::chain::{
    BatchPlan, ChainHead, ChainId, Checkpoint, EventColumns, PresentIds, Record, SealedBatch,
};
use audit_core::dead_letter::DeadLetter;
use audit_core::sink::{ErrorClass, SinkError};
use audit_core::store::ChainStore;
use audit_core::{AuditEvent, Digest, SharedStr};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config, IsolationLevel, Row, Socket, Statement, Transaction};

use crate::connect::{Connection, PostgresOptions, connect_tls, connect_url};
use crate::error::PostgresError;
use crate::schema;
use crate::tree;

/// One connection to a PostgreSQL audit database, schema checked: the
/// write side of the backend.
pub struct PostgresStore {
    client: Client,
    target: String,
    statements: Statements,
    options: PostgresOptions,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to `url`, with TLS when its `sslmode` asks for it (with the
    /// crate feature `tls`; see [`connect`](crate::connect) and
    /// [`connect_with_tls`](Self::connect_with_tls)), then checks the
    /// schema, creating or migrating it when allowed by `options`.
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Self, PostgresError> {
        let connection = connect_url(url, &options).await?;
        Self::open(connection, options).await
    }

    /// Connects with a TLS connector: any
    /// [`MakeTlsConnect`], e.g.
    /// `tokio_postgres_rustls::MakeRustlsConnect` or
    /// `postgres_native_tls::MakeTlsConnector`. Parse the URL with
    /// [`parse_url`](crate::parse_url).
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
        Self::open(connection, options).await
    }

    async fn open(connection: Connection, options: PostgresOptions) -> Result<Self, PostgresError> {
        let Connection { mut client, target } = connection;
        if options.create_schema() {
            schema::ensure(&mut client, &target).await?;
        } else {
            schema::require(&client, &target, schema::SCHEMA_VERSION).await?;
        }
        let statements = Statements::prepare(&client, &target).await?;
        let mut store = Self {
            client,
            target,
            statements,
            options,
        };
        store.grow_trees().await?;
        Ok(store)
    }

    /// The server, `postgres://user@host:port/db` (no password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Brings the tree of `chain` up to its head, under the head lock;
    /// returns the frontier.
    async fn grow_tree(&mut self, chain: &ChainId) -> Result<TreeFrontier, PostgresError> {
        let (transaction, statements, target) = self.begin().await?;
        let head = lock_head(&transaction, statements, target, chain).await?;
        let frontier = tree::catch_up(&transaction, target, chain, head.seq).await?;
        transaction
            .commit()
            .await
            .map_err(PostgresError::query(target, "committing the tree"))?;
        Ok(frontier)
    }

    /// Brings every chain's tree up to its head (after a migration from a
    /// version without trees, or appends by `bench`'s raw inserts).
    async fn grow_trees(&mut self) -> Result<(), PostgresError> {
        let rows = self
            .client
            .query(
                "SELECT chain_id FROM audit_heads WHERE tree_size <> seq ORDER BY chain_id",
                &[],
            )
            .await
            .map_err(PostgresError::query(&self.target, "listing trees behind"))?;
        for row in rows {
            let Ok(name) = row.try_get::<_, String>(0) else {
                continue;
            };
            let Ok(chain) = ChainId::new(&name) else {
                continue;
            };
            if let Err(error) = self.grow_tree(&chain).await {
                tracing::warn!(%chain, %error, "the tree of a chain cannot be brought up to date");
            }
        }
        Ok(())
    }

    /// The options this store was opened with.
    pub fn options(&self) -> &PostgresOptions {
        &self.options
    }

    /// The underlying client, for queries of your own.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A READ COMMITTED transaction (see the module docs for why), with
    /// the prepared statements and the target.
    async fn begin(&mut self) -> Result<(Transaction<'_>, &Statements, &str), PostgresError> {
        let transaction = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .await
            .map_err(PostgresError::query(&self.target, "starting a transaction"))?;
        Ok((transaction, &self.statements, &self.target))
    }
}

#[async_trait]
impl ChainStore for PostgresStore {
    async fn append_once(&mut self, plan: &BatchPlan) -> Result<SealedBatch, SinkError> {
        let chain = plan.chain();
        let (transaction, statements, target) = self.begin().await?;
        let head = lock_head(&transaction, statements, target, chain).await?;
        let ids: Vec<&str> = plan.ids().collect();
        let present = present_ids(&transaction, statements, target, chain, &ids).await?;
        let tree = tree::catch_up(&transaction, target, chain, head.seq).await?;
        // Each signed chunk is inserted while the next ones are signed.
        let sealed = plan
            .seal_streaming_async(head, tree, present, |records| {
                let transaction = &transaction;
                async move {
                    insert_records(transaction, statements, target, chain, &records).await?;
                    Ok(())
                }
            })
            .await?;
        if sealed.appends() {
            move_head(&transaction, statements, target, chain, sealed.head()).await?;
            tree::store_tree(
                &transaction,
                target,
                chain,
                sealed.tree_rows(),
                sealed.tree(),
            )
            .await?;
        }
        transaction
            .commit()
            .await
            .map_err(PostgresError::query(target, "committing a batch"))?;
        Ok(sealed)
    }

    async fn import(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let (transaction, statements, target) = self.begin().await?;
        for run in records.chunk_by(|a, b| a.chain == b.chain) {
            let chain = &run[0].chain;
            let head = lock_head(&transaction, statements, target, chain).await?;
            let mut expected = head.seq.checked_add(1);
            for record in run {
                if expected != Some(record.seq) {
                    return Err(SinkError::new(
                        target,
                        ErrorClass::Conflict,
                        format!(
                            "chain {chain}: record at seq {} does not continue the head at seq {}",
                            record.seq, head.seq
                        ),
                    ));
                }
                expected = record.seq.checked_add(1);
            }
            let frontier = tree::catch_up(&transaction, target, chain, head.seq).await?;
            insert_records(&transaction, statements, target, chain, run).await?;
            let last = run[run.len() - 1].head();
            move_head(&transaction, statements, target, chain, last).await?;
            let mut growth = TreeGrowth::new(frontier);
            growth.push_records(run);
            let (rows, frontier) = growth.finish();
            tree::store_tree(&transaction, target, chain, &rows, &frontier).await?;
        }
        transaction
            .commit()
            .await
            .map_err(PostgresError::query(target, "committing an import"))?;
        Ok(())
    }

    async fn dead_letter(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        if letters.is_empty() {
            return Ok(());
        }
        let column = |get: fn(&DeadLetter) -> &str| letters.iter().map(get).collect::<Vec<&str>>();
        let optional = |get: fn(&DeadLetter) -> &Option<String>| {
            letters
                .iter()
                .map(|letter| get(letter).as_deref())
                .collect::<Vec<Option<&str>>>()
        };
        let attempts: Vec<i32> = letters
            .iter()
            .map(|letter| i32::try_from(letter.attempts).unwrap_or(i32::MAX))
            .collect();
        self.client
            .execute(
                INSERT_DEAD_LETTERS,
                &[
                    &column(|l| &l.chain_id),
                    &column(|l| &l.event_id),
                    &column(|l| &l.event_json),
                    &column(|l| &l.failure_reason),
                    &column(|l| &l.failed_at),
                    &attempts,
                    &optional(|l| &l.key_id),
                    &optional(|l| &l.sig),
                ],
            )
            .await
            .map_err(PostgresError::query(&self.target, "storing dead letters"))?;
        Ok(())
    }

    async fn remove_dead_letters(&mut self, keys: &[String]) -> Result<(), SinkError> {
        let ids = keys
            .iter()
            .map(|key| {
                key.parse::<i64>()
                    .map_err(|_| PostgresError::BadDeadLetterKey {
                        target: self.target.clone(),
                        key: key.clone(),
                    })
            })
            .collect::<Result<Vec<i64>, _>>()?;
        if ids.is_empty() {
            return Ok(());
        }
        self.client
            .execute(REMOVE_DEAD_LETTERS, &[&ids])
            .await
            .map_err(PostgresError::query(
                &self.target,
                "removing replayed dead letters",
            ))?;
        Ok(())
    }

    async fn write_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), SinkError> {
        let seq = to_sql_seq(&self.target, checkpoint.seq)?;
        self.client
            .execute(
                INSERT_CHECKPOINT,
                &[
                    &checkpoint.chain.as_str(),
                    &seq,
                    &checkpoint.head.as_bytes().as_slice(),
                    &checkpoint.time,
                    &checkpoint.key_id.as_str(),
                    &checkpoint.sig.as_slice(),
                ],
            )
            .await
            .map_err(PostgresError::query(&self.target, "storing a checkpoint"))?;
        Ok(())
    }

    async fn write_tree_checkpoint(
        &mut self,
        chain: &ChainId,
        size: u64,
        note: &str,
    ) -> Result<(), SinkError> {
        let (transaction, _, target) = self.begin().await?;
        tree::write_checkpoint(&transaction, target, chain, size, note).await?;
        transaction
            .commit()
            .await
            .map_err(PostgresError::query(target, "committing a tree checkpoint"))?;
        Ok(())
    }

    async fn tree(&mut self, chain: &ChainId) -> Result<TreeFrontier, SinkError> {
        Ok(self.grow_tree(chain).await?)
    }

    async fn head(&mut self, chain: &ChainId) -> Result<ChainHead, SinkError> {
        let action = "reading the chain head";
        let mut row = None;
        for statement in [READ_HEAD, LAST_RECORD] {
            row = self
                .client
                .query_opt(statement, &[&chain.as_str()])
                .await
                .map_err(PostgresError::query(&self.target, action))?;
            if row.is_some() {
                break;
            }
        }
        Ok(row.map_or(Ok(ChainHead::EMPTY), |row| {
            decode_head(&self.target, &row, 0)
        })?)
    }

    fn describe(&self) -> String {
        self.target.clone()
    }
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
    decode_head(target, &row, 0)
}

/// The records of `chain` already holding one of `ids`.
async fn present_ids(
    transaction: &Transaction<'_>,
    statements: &Statements,
    target: &str,
    chain: &ChainId,
    ids: &[&str],
) -> Result<PresentIds, PostgresError> {
    let rows = transaction
        .query(&statements.present_ids, &[&chain.as_str(), &ids])
        .await
        .map_err(PostgresError::query(target, "looking up event ids"))?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get(0).map_err(|error| PostgresError::Corrupt {
                target: target.to_owned(),
                detail: format!("event_id: {error}"),
            })?;
            Ok((id, decode_head(target, row, 1)?))
        })
        .collect()
}

/// A `(seq, record_hash)` pair of columns from `first` on, as a head.
fn decode_head(target: &str, row: &Row, first: usize) -> Result<ChainHead, PostgresError> {
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

/// Inserts records of `chain` with one binary `COPY … FROM STDIN`: the
/// rows go to the server in its own storage format, so it parses no SQL
/// values and runs no function scan. A seq or event id already taken
/// fails the whole `COPY` with its SQLSTATE, as an `INSERT` would.
async fn insert_records(
    transaction: &Transaction<'_>,
    statements: &Statements,
    target: &str,
    chain: &ChainId,
    records: &[Record],
) -> Result<(), PostgresError> {
    let sink = transaction
        .copy_in(&statements.copy_records)
        .await
        .map_err(PostgresError::query(target, "starting to copy records"))?;
    let writer = BinaryCopyInWriter::new(sink, &RECORD_COLUMN_TYPES);
    let mut writer = std::pin::pin!(writer);
    for record in records {
        let seq = to_sql_seq(target, record.seq)?;
        let derived;
        let columns = match &record.columns {
            Some(columns) => columns,
            None => {
                derived = columns_of(record);
                &derived
            }
        };
        let sig = record.sig.as_ref().map(|sig| sig.as_slice());
        writer
            .as_mut()
            .write(&[
                &chain.as_str(),
                &seq,
                &columns.id.as_str(),
                &columns.event_type.as_str(),
                &columns.actor.as_str(),
                &columns.time.as_str(),
                &record.event_json.as_str(),
                &record.event_hash.as_bytes().as_slice(),
                &record.prev.as_bytes().as_slice(),
                &record.hash.as_bytes().as_slice(),
                &record.key_id.as_deref(),
                &sig,
            ])
            .await
            .map_err(PostgresError::query(target, "inserting records"))?;
    }
    writer
        .as_mut()
        .finish()
        .await
        .map_err(PostgresError::query(target, "inserting records"))?;
    Ok(())
}

/// Sets the head row of `chain` (locked by [`lock_head`]) to `head`.
async fn move_head(
    transaction: &Transaction<'_>,
    statements: &Statements,
    target: &str,
    chain: &ChainId,
    head: ChainHead,
) -> Result<(), PostgresError> {
    let seq = to_sql_seq(target, head.seq)?;
    transaction
        .execute(
            &statements.update_head,
            &[&chain.as_str(), &seq, &head.hash.as_bytes().as_slice()],
        )
        .await
        .map_err(PostgresError::query(target, "moving the chain head"))?;
    Ok(())
}

/// Column copies parsed from `E`, for a record that carries none (one
/// imported from the JSONL layout). A record whose `E` does not parse
/// gets empty copies, and the verifier reports the mismatch.
fn columns_of(record: &Record) -> EventColumns {
    let event = AuditEvent::from_canonical(&record.event_json).ok();
    let member =
        |get: fn(&AuditEvent) -> &str| SharedStr::from(event.as_ref().map(get).unwrap_or(""));
    EventColumns {
        id: member(AuditEvent::id),
        event_type: member(AuditEvent::event_type),
        actor: member(AuditEvent::actor),
        time: member(AuditEvent::time),
    }
}

/// A seq as a PostgreSQL BIGINT.
fn to_sql_seq(target: &str, seq: u64) -> Result<i64, PostgresError> {
    i64::try_from(seq).map_err(|_| PostgresError::SeqTooLarge {
        target: target.to_owned(),
        seq,
    })
}

/// The statements of an append, prepared once per connection (the
/// others run a few times per checkpoint or dead letter).
struct Statements {
    lock_head: Statement,
    init_head: Statement,
    present_ids: Statement,
    copy_records: Statement,
    update_head: Statement,
}

const LOCK_HEAD: &str =
    "SELECT seq, record_hash FROM audit_heads WHERE chain_id = $1::text FOR UPDATE";

const INIT_HEAD: &str = "INSERT INTO audit_heads (chain_id, seq, record_hash) \
     SELECT $1::text, COALESCE(last.seq, 0), COALESCE(last.record_hash, $2::bytea) \
     FROM (SELECT 1) AS one LEFT JOIN LATERAL \
       (SELECT seq, record_hash FROM audit_records WHERE chain_id = $1::text \
        ORDER BY seq DESC LIMIT 1) AS last ON true \
     ON CONFLICT (chain_id) DO NOTHING";

const READ_HEAD: &str = "SELECT seq, record_hash FROM audit_heads WHERE chain_id = $1::text";

const LAST_RECORD: &str = "SELECT seq, record_hash FROM audit_records WHERE chain_id = $1::text \
     ORDER BY seq DESC LIMIT 1";

const PRESENT_IDS: &str = "SELECT event_id, seq, record_hash FROM audit_records \
     WHERE chain_id = $1::text AND event_id = ANY($2::text[])";

const COPY_RECORDS: &str = "COPY audit_records (chain_id, seq, event_id, event_type, \
       actor, event_time, event_json, event_hash, prev_hash, record_hash, key_id, signature) \
     FROM STDIN (FORMAT binary)";

/// The types of [`COPY_RECORDS`]'s columns, in order.
const RECORD_COLUMN_TYPES: [Type; 12] = [
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::TEXT,
    Type::BYTEA,
];

const UPDATE_HEAD: &str =
    "UPDATE audit_heads SET seq = $2::bigint, record_hash = $3::bytea WHERE chain_id = $1::text";

const INSERT_DEAD_LETTERS: &str = "INSERT INTO audit_dead_letters (chain_id, event_id, \
       event_json, failure_reason, failed_at, attempts, key_id, signature) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int4[], \
       $7::text[], $8::text[])";

const REMOVE_DEAD_LETTERS: &str = "DELETE FROM audit_dead_letters WHERE id = ANY($1::bigint[])";

const INSERT_CHECKPOINT: &str = "INSERT INTO audit_checkpoints (chain_id, seq, head_hash, time, \
       key_id, signature) VALUES ($1::text, $2::bigint, $3::bytea, $4::text, $5::text, $6::bytea) \
     ON CONFLICT (chain_id, seq) DO NOTHING";

impl Statements {
    /// Prepares the statements on `client`.
    async fn prepare(client: &Client, target: &str) -> Result<Self, PostgresError> {
        let prepare = |sql: &'static str| async move {
            client
                .prepare(sql)
                .await
                .map_err(PostgresError::query(target, "preparing statements"))
        };
        Ok(Self {
            lock_head: prepare(LOCK_HEAD).await?,
            init_head: prepare(INIT_HEAD).await?,
            present_ids: prepare(PRESENT_IDS).await?,
            copy_records: prepare(COPY_RECORDS).await?,
            update_head: prepare(UPDATE_HEAD).await?,
        })
    }
}
