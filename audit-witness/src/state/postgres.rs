//! [`PostgresState`]: tree heads in a PostgreSQL table.
//!
//! The compare-and-swap is one statement, atomic by itself under any
//! isolation level, whoever else writes the table:
//!
//! - from no head: `INSERT … ON CONFLICT (origin) DO NOTHING`;
//! - from a head: `UPDATE … WHERE origin = $1 AND size = $old AND root = $old_root`;
//!
//! one row affected means stored; none means another request got there
//! first, and the current head is read back for the answer. One client
//! connection carries every call (tokio-postgres pipelines concurrent
//! queries on it); when it breaks, the next call connects again.
//!
//! Connections are plain TCP (`NoTls`): use a local socket, a loopback
//! address or a private network for the witness's database.

use async_trait::async_trait;
use audit_core::store::redact_url;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, Statement};

use super::{StateError, Swap, WitnessState, sql_size, stored_head};
use crate::protocol::TreeHead;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS witness_heads (
    origin TEXT PRIMARY KEY,
    size BIGINT NOT NULL CHECK (size >= 0),
    root BYTEA NOT NULL CHECK (length(root) = 32),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

/// A connected client with its prepared statements.
#[derive(Debug)]
struct Connected {
    client: Client,
    select: Statement,
    insert: Statement,
    update: Statement,
}

/// Tree heads in a PostgreSQL database (table `witness_heads`).
#[derive(Debug)]
pub struct PostgresState {
    url: String,
    describe: String,
    connection: Mutex<Option<std::sync::Arc<Connected>>>,
}

impl PostgresState {
    /// Connects to the database of a `postgres://` URL and creates the
    /// table if missing.
    pub async fn connect(url: &str) -> Result<Self, StateError> {
        let state = Self {
            url: url.to_owned(),
            describe: redact_url(url),
            connection: Mutex::new(None),
        };
        state.connected().await?;
        Ok(state)
    }

    fn error(&self, context: &'static str) -> impl Fn(tokio_postgres::Error) -> StateError + '_ {
        move |source| StateError::Postgres {
            describe: self.describe.clone(),
            context,
            source,
        }
    }

    /// The open connection, connecting first if there is none or it broke.
    async fn connected(&self) -> Result<std::sync::Arc<Connected>, StateError> {
        let mut slot = self.connection.lock().await;
        if let Some(connected) = slot.as_ref().filter(|c| !c.client.is_closed()) {
            return Ok(connected.clone());
        }
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .map_err(self.error("connecting"))?;
        let describe = self.describe.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(describe, %error, "witness state connection closed");
            }
        });
        client
            .batch_execute(SCHEMA)
            .await
            .map_err(self.error("creating the table"))?;
        let select = client
            .prepare("SELECT size, root FROM witness_heads WHERE origin = $1")
            .await
            .map_err(self.error("preparing the read"))?;
        let insert = client
            .prepare(
                "INSERT INTO witness_heads (origin, size, root) VALUES ($1, $2, $3)
                 ON CONFLICT (origin) DO NOTHING",
            )
            .await
            .map_err(self.error("preparing the insert"))?;
        let update = client
            .prepare(
                "UPDATE witness_heads SET size = $2, root = $3, updated_at = now()
                 WHERE origin = $1 AND size = $4 AND root = $5",
            )
            .await
            .map_err(self.error("preparing the update"))?;
        let connected = std::sync::Arc::new(Connected {
            client,
            select,
            insert,
            update,
        });
        *slot = Some(connected.clone());
        Ok(connected)
    }

    async fn read(
        &self,
        connected: &Connected,
        origin: &str,
    ) -> Result<Option<TreeHead>, StateError> {
        let row = connected
            .client
            .query_opt(&connected.select, &[&origin])
            .await
            .map_err(self.error("reading a head"))?;
        row.map(|row| {
            let size: i64 = row.try_get(0).map_err(self.error("reading the size"))?;
            let root: Vec<u8> = row.try_get(1).map_err(self.error("reading the root"))?;
            stored_head(&self.describe, origin, size, &root)
        })
        .transpose()
    }
}

#[async_trait]
impl WitnessState for PostgresState {
    async fn latest(&self, origin: &str) -> Result<Option<TreeHead>, StateError> {
        let connected = self.connected().await?;
        self.read(&connected, origin).await
    }

    async fn compare_and_swap(
        &self,
        origin: &str,
        expected: Option<TreeHead>,
        new: TreeHead,
    ) -> Result<Swap, StateError> {
        let connected = self.connected().await?;
        let size = sql_size(new.size)?;
        let root = new.root.as_bytes().as_slice();
        let changed = match expected {
            None => connected
                .client
                .execute(&connected.insert, &[&origin, &size, &root])
                .await
                .map_err(self.error("inserting a head"))?,
            Some(old) => {
                let old_size = sql_size(old.size)?;
                let old_root = old.root.as_bytes().as_slice();
                connected
                    .client
                    .execute(
                        &connected.update,
                        &[&origin, &size, &root, &old_size, &old_root],
                    )
                    .await
                    .map_err(self.error("updating a head"))?
            }
        };
        if changed == 1 {
            return Ok(Swap::Stored);
        }
        let current = self.read(&connected, origin).await?;
        Ok(Swap::Conflict { current })
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}
