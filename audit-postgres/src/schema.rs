//! The schema of FORMAT.md section 6 with PostgreSQL types, and its
//! creation and migration.
//!
//! `audit_meta` holds `('format', '1')` and `('schema_version', N)`. On
//! connect the schema is inspected first, with reads only:
//!
//! - current version: nothing is written (so a user without the CREATE
//!   privilege can write to a schema created by someone else);
//! - no audit tables at all: the schema is created in one transaction,
//!   under an advisory lock so that writers starting together do not race;
//! - an older version: the missing migrations run, same transaction;
//! - another format, a newer version, or audit tables without `audit_meta`:
//!   refused with an error, and the database is never modified.
//!
//! Readers ([`crate::PostgresSource`]) and writers opened without
//! `create_schema` only inspect and never write (see [`require`]): a writer
//! needs the current version, a reader reads every version.
//!
//! Versions: 1 is FORMAT.md section 6 as written; 2 adds the writer's
//! authentication of dead letters (`key_id`, `signature` of
//! `audit_dead_letters`, see [`DeadLetter::authenticate`](audit_core::dead_letter::DeadLetter::authenticate));
//! 3 adds the chain's tree (FORMAT.md section 8, see [`crate::tree`]).
//!
//! Beyond section 6 there is one extra table, `audit_heads` (one row per
//! chain: its last seq and record hash), locked by writers to serialise
//! appends (see [`crate::write`]). Verification reads it too: a head row
//! beyond the chain's last record means records were deleted.

use tokio_postgres::{Client, GenericClient};

use crate::error::PostgresError;

/// The format this library writes (FORMAT.md).
pub const FORMAT: &str = "1";

/// The newest schema version this library knows.
pub const SCHEMA_VERSION: u32 = 3;

/// Every table of the schema.
pub const TABLES: [&str; 7] = [
    "audit_meta",
    "audit_records",
    "audit_checkpoints",
    "audit_dead_letters",
    "audit_heads",
    "audit_tree_nodes",
    "audit_tree_checkpoints",
];

/// Migration `n` (1-based) brings the schema from version `n - 1` to `n`.
const MIGRATIONS: [&str; 3] = [
    r#"
CREATE TABLE audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE audit_records (
  chain_id    TEXT   NOT NULL,
  seq         BIGINT NOT NULL,
  event_id    TEXT   NOT NULL,
  event_type  TEXT   NOT NULL,
  actor       TEXT   NOT NULL,
  event_time  TEXT   NOT NULL,
  event_json  TEXT   NOT NULL,
  event_hash  BYTEA  NOT NULL,
  prev_hash   BYTEA  NOT NULL,
  record_hash BYTEA  NOT NULL,
  key_id      TEXT,
  signature   BYTEA,
  PRIMARY KEY (chain_id, seq),
  UNIQUE (chain_id, event_id)
);
CREATE TABLE audit_checkpoints (
  chain_id  TEXT   NOT NULL,
  seq       BIGINT NOT NULL,
  head_hash BYTEA  NOT NULL,
  time      TEXT   NOT NULL,
  key_id    TEXT   NOT NULL,
  signature BYTEA  NOT NULL,
  PRIMARY KEY (chain_id, seq)
);
CREATE TABLE audit_dead_letters (
  id             BIGSERIAL PRIMARY KEY,
  chain_id       TEXT    NOT NULL,
  event_id       TEXT    NOT NULL,
  event_json     TEXT    NOT NULL,
  failure_reason TEXT    NOT NULL,
  failed_at      TEXT    NOT NULL,
  attempts       INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX audit_dead_letters_by_chain ON audit_dead_letters (chain_id, id);
CREATE TABLE audit_heads (
  chain_id    TEXT   PRIMARY KEY,
  seq         BIGINT NOT NULL,
  record_hash BYTEA  NOT NULL
);
INSERT INTO audit_meta (key, value) VALUES ('format', '1'), ('schema_version', '0');
"#,
    "ALTER TABLE audit_dead_letters ADD COLUMN key_id TEXT, ADD COLUMN signature TEXT;",
    crate::tree::MIGRATION,
];

/// Key of the advisory lock taken while creating or migrating the schema.
const SCHEMA_LOCK: i64 = 0x6175_6469_7473_6368; // "auditsch"

/// What the database holds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaState {
    /// No audit table at all.
    Empty,
    /// Our format at this version (possibly older than [`SCHEMA_VERSION`]).
    Version(u32),
}

/// Reads the state of the schema, refusing anything that is not ours.
pub async fn inspect<C: GenericClient + Sync>(
    client: &C,
    target: &str,
) -> Result<SchemaState, PostgresError> {
    let present = existing_tables(client, target).await?;
    if !present.contains(&"audit_meta") {
        if let Some(table) = present.first() {
            return Err(PostgresError::ForeignSchema {
                target: target.to_owned(),
                detail: format!("table {table} exists but audit_meta does not"),
            });
        }
        return Ok(SchemaState::Empty);
    }
    let rows = client
        .query(
            "SELECT key, value FROM audit_meta WHERE key IN ('format', 'schema_version')",
            &[],
        )
        .await
        .map_err(PostgresError::query(target, "reading audit_meta"))?;
    let value = |key: &str| {
        rows.iter()
            .find(|row| row.try_get::<_, &str>(0).is_ok_and(|stored| stored == key))
            .and_then(|row| row.try_get::<_, String>(1).ok())
    };
    let format = value("format").ok_or_else(|| PostgresError::ForeignSchema {
        target: target.to_owned(),
        detail: "audit_meta has no 'format' row".into(),
    })?;
    if format != FORMAT {
        return Err(PostgresError::UnknownFormat {
            target: target.to_owned(),
            found: format,
        });
    }
    let version_text = value("schema_version").unwrap_or_default();
    let version: u32 = version_text
        .parse()
        .map_err(|_| PostgresError::NewerSchema {
            target: target.to_owned(),
            found: version_text.clone(),
            supported: SCHEMA_VERSION,
        })?;
    if version > SCHEMA_VERSION {
        return Err(PostgresError::NewerSchema {
            target: target.to_owned(),
            found: version_text,
            supported: SCHEMA_VERSION,
        });
    }
    if version == SCHEMA_VERSION
        && let Some(missing) = TABLES.iter().find(|table| !present.contains(table))
    {
        return Err(PostgresError::ForeignSchema {
            target: target.to_owned(),
            detail: format!("schema version {version} but table {missing} is missing"),
        });
    }
    Ok(SchemaState::Version(version))
}

/// Checks that the schema is ours, at version `oldest` or newer (up to
/// [`SCHEMA_VERSION`]), writing nothing; returns the version. Writers that
/// may not create the schema need [`SCHEMA_VERSION`], readers any version.
pub async fn require<C: GenericClient + Sync>(
    client: &C,
    target: &str,
    oldest: u32,
) -> Result<u32, PostgresError> {
    match inspect(client, target).await? {
        SchemaState::Version(version) if version >= oldest => Ok(version),
        SchemaState::Empty => Err(PostgresError::ForeignSchema {
            target: target.to_owned(),
            detail: "no audit tables in this database (nothing was ever written here, or the schema was not created)".into(),
        }),
        SchemaState::Version(version) => Err(PostgresError::ForeignSchema {
            target: target.to_owned(),
            detail: format!(
                "schema version {version} is older than {oldest}; connect once as a writer with create_schema to migrate it"
            ),
        }),
    }
}

/// Creates or migrates the schema when needed; writes nothing when it is current.
pub async fn ensure(client: &mut Client, target: &str) -> Result<(), PostgresError> {
    if inspect(client, target).await? == SchemaState::Version(SCHEMA_VERSION) {
        return Ok(());
    }
    let cannot_create = |source: tokio_postgres::Error| PostgresError::CannotCreateSchema {
        target: target.to_owned(),
        detail: crate::error::detail_of(&source),
        source,
    };
    let transaction = client.transaction().await.map_err(cannot_create)?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(cannot_create)?;
    // Another writer may have created it while we waited for the lock.
    let from = match inspect(&transaction, target).await? {
        SchemaState::Empty => 0,
        SchemaState::Version(version) => version,
    };
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        let version = (index + 1).to_string();
        transaction
            .batch_execute(migration)
            .await
            .map_err(cannot_create)?;
        transaction
            .execute(
                "UPDATE audit_meta SET value = $1 WHERE key = 'schema_version'",
                &[&version],
            )
            .await
            .map_err(cannot_create)?;
    }
    transaction.commit().await.map_err(cannot_create)?;
    if from < SCHEMA_VERSION {
        tracing::info!(server = %target, from, to = SCHEMA_VERSION, "audit schema created or migrated");
    }
    Ok(())
}

/// Which of our tables exist in the current schema (the first of `search_path`).
async fn existing_tables<C: GenericClient + Sync>(
    client: &C,
    target: &str,
) -> Result<Vec<&'static str>, PostgresError> {
    let names: Vec<&str> = TABLES.to_vec();
    // A scan of pg_class sees tables committed by other sessions at once
    // (to_regclass may answer from a stale cache while we hold only an
    // advisory lock).
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relname = ANY($1::text[])",
            &[&names],
        )
        .await
        .map_err(PostgresError::query(target, "inspecting the schema"))?;
    let found: Vec<String> = rows
        .iter()
        .filter_map(|row| row.try_get::<_, String>(0).ok())
        .collect();
    Ok(TABLES
        .iter()
        .filter(|table| found.iter().any(|name| name == *table))
        .copied()
        .collect())
}
