//! [`PostgresStore`]: the storage steps of the PostgreSQL chain sink, over
//! one connection. [`crate::PostgresSink`] adds the shared policy of
//! `audit-core` (conflict retries, dead-lettering, checkpoints).
//!
//! A lost connection makes every call fail with
//! [`ErrorClass::Transient`](audit_core::sink::ErrorClass::Transient); the
//! pipeline's supervisor then rebuilds the sink from its factory, which
//! reconnects, with backoff.

use async_trait::async_trait;
use audit_core::AuditEvent;
use audit_core::chain::{ChainHead, ChainId, Checkpoint, Sealer};
use audit_core::chain_writer::ChainStore;
use audit_core::dead_letter::DeadLetter;
use audit_core::sink::{AppendOutcome, SinkError};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, IsolationLevel, Socket, Transaction};

use crate::append::{append_in, decode_head, to_sql_seq};
use crate::connect::{Connection, PostgresOptions, connect_plain, connect_tls};
use crate::error::PostgresError;
use crate::schema;
use crate::statements::Statements;

/// One connection to a PostgreSQL audit database, schema checked.
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
    /// Connects to `url` without TLS (`sslmode=disable` or `prefer`; a URL
    /// with `sslmode=require` is refused, see
    /// [`connect_with_tls`](Self::connect_with_tls)), then checks the
    /// schema, creating or migrating it when allowed by `options`.
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Self, PostgresError> {
        let connection = connect_plain(url, &options).await?;
        Self::open(connection, options).await
    }

    /// Connects with a TLS connector: any
    /// [`MakeTlsConnect`](tokio_postgres::tls::MakeTlsConnect), e.g.
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
        if options.create_schema {
            schema::ensure(&mut client, &target).await?;
        } else {
            require_current_schema(&client, &target).await?;
        }
        let statements = Statements::prepare(&client, &target).await?;
        Ok(Self {
            client,
            target,
            statements,
            options,
        })
    }

    /// The server, `postgres://user@host:port/db` (no password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The options this store was opened with.
    pub fn options(&self) -> &PostgresOptions {
        &self.options
    }

    /// The underlying client, for queries of your own.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Appends `events` to the chain of `sealer` in one transaction; ids
    /// already in the chain get their existing record.
    pub async fn append(
        &mut self,
        sealer: &Sealer,
        events: &[AuditEvent],
    ) -> Result<Vec<AppendOutcome>, PostgresError> {
        let (transaction, statements, target) = self.begin_with_statements().await?;
        let outcomes = append_in(&transaction, statements, target, sealer, events).await?;
        transaction
            .commit()
            .await
            .map_err(PostgresError::query(target, "committing a batch"))?;
        Ok(outcomes)
    }

    /// The current head of `chain` (empty when it has no record).
    pub async fn chain_head(&self, chain: &ChainId) -> Result<ChainHead, PostgresError> {
        let action = "reading the chain head";
        let row = self
            .client
            .query_opt(&self.statements.read_head, &[&chain.as_str()])
            .await
            .map_err(PostgresError::query(&self.target, action))?;
        let row = match row {
            Some(row) => Some(row),
            None => self
                .client
                .query_opt(&self.statements.last_record, &[&chain.as_str()])
                .await
                .map_err(PostgresError::query(&self.target, action))?,
        };
        row.map_or(Ok(ChainHead::EMPTY), |row| decode_head(&self.target, &row))
    }

    /// Stores dead letters (one statement).
    pub async fn insert_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), PostgresError> {
        let column = |get: fn(&DeadLetter) -> &str| letters.iter().map(get).collect::<Vec<&str>>();
        let attempts: Vec<i32> = letters
            .iter()
            .map(|letter| i32::try_from(letter.attempts).unwrap_or(i32::MAX))
            .collect();
        self.client
            .execute(
                &self.statements.insert_dead_letters,
                &[
                    &column(|l| &l.chain_id),
                    &column(|l| &l.event_id),
                    &column(|l| &l.event_json),
                    &column(|l| &l.failure_reason),
                    &column(|l| &l.failed_at),
                    &attempts,
                ],
            )
            .await
            .map_err(PostgresError::query(&self.target, "storing dead letters"))?;
        Ok(())
    }

    /// Stores a checkpoint; a second one at the same seq is ignored.
    pub async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), PostgresError> {
        let seq = to_sql_seq(&self.target, checkpoint.seq)?;
        let key_id = checkpoint.key_id.as_str();
        self.client
            .execute(
                &self.statements.insert_checkpoint,
                &[
                    &checkpoint.chain.as_str(),
                    &seq,
                    &checkpoint.head.as_bytes().as_slice(),
                    &checkpoint.time,
                    &key_id,
                    &checkpoint.sig.as_slice(),
                ],
            )
            .await
            .map_err(PostgresError::query(&self.target, "storing a checkpoint"))?;
        Ok(())
    }

    /// A READ COMMITTED transaction (see [`crate::append`] for why),
    /// with the prepared statements and the target.
    pub(crate) async fn begin_with_statements(
        &mut self,
    ) -> Result<(Transaction<'_>, &Statements, &str), PostgresError> {
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

async fn require_current_schema(client: &Client, target: &str) -> Result<(), PostgresError> {
    match schema::inspect(client, target).await? {
        schema::SchemaState::Version(schema::SCHEMA_VERSION) => Ok(()),
        schema::SchemaState::Empty => Err(PostgresError::ForeignSchema {
            target: target.to_owned(),
            detail: "no audit tables (the schema was not created)".into(),
        }),
        schema::SchemaState::Version(version) => Err(PostgresError::ForeignSchema {
            target: target.to_owned(),
            detail: format!(
                "schema version {version} is older than {}; connect once with create_schema to migrate it",
                schema::SCHEMA_VERSION
            ),
        }),
    }
}

#[async_trait]
impl ChainStore for PostgresStore {
    async fn append_once(
        &mut self,
        sealer: &Sealer,
        events: &[AuditEvent],
    ) -> Result<Vec<AppendOutcome>, SinkError> {
        Ok(self.append(sealer, events).await?)
    }

    async fn dead_letter(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        Ok(self.insert_dead_letters(letters).await?)
    }

    async fn write_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), SinkError> {
        Ok(self.insert_checkpoint(checkpoint).await?)
    }

    async fn head(&mut self, chain: &ChainId) -> Result<ChainHead, SinkError> {
        Ok(self.chain_head(chain).await?)
    }

    fn describe(&self) -> String {
        self.target.clone()
    }
}
