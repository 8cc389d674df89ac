//! The schema of FORMAT.md section 6, how a file is recognised, created and
//! migrated.
//!
//! A file given as the store is first inspected through a **read-only**
//! connection: a file that is not SQLite, a SQLite database of another
//! application, or an audit database of an unknown format or a newer schema
//! version is refused with a [`SqliteError`] naming the file, and never
//! modified. Only an empty database gets the schema; an audit database of
//! format 1 without a `schema_version` row (as written by other
//! implementations of FORMAT.md) is accepted, and a writer records
//! `schema_version` in it.
//!
//! Schema versions: 1 is FORMAT.md section 6 as written; 2 adds the
//! writer's authentication of dead letters (`key_id`, `signature` of
//! `audit_dead_letters`); 3 adds the chain's tree (FORMAT.md section 8:
//! `audit_tree_nodes`, `audit_tree_heads`, `audit_tree_checkpoints`, see
//! [`crate::tree`]). A writer migrates older files in place and grows the
//! tree of every chain; a reader reads every version.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::error::SqliteError;

/// The `format` value of `audit_meta` this build reads and writes.
pub const FORMAT: &str = "1";
/// The `schema_version` value of `audit_meta` this build writes.
pub const SCHEMA_VERSION: &str = "3";
/// Every `schema_version` this build reads.
pub const READABLE_VERSIONS: [&str; 3] = ["1", "2", "3"];

/// Migrates a version-1 database to version 2.
const MIGRATE_1_TO_2: &str = "
ALTER TABLE audit_dead_letters ADD COLUMN key_id TEXT;
ALTER TABLE audit_dead_letters ADD COLUMN signature TEXT;
UPDATE audit_meta SET value = '2' WHERE key = 'schema_version';
";

/// Migrates a version-2 database to version 3 (the tree tables; their
/// rows are grown from the records by the writer that migrates).
fn migrate_2_to_3() -> String {
    format!(
        "{}UPDATE audit_meta SET value = '3' WHERE key = 'schema_version';",
        crate::tree::CREATE_TREE_TABLES
    )
}

/// The tables FORMAT.md section 6 requires.
pub const TABLES: [&str; 4] = [
    "audit_records",
    "audit_checkpoints",
    "audit_dead_letters",
    "audit_meta",
];

/// The DDL of FORMAT.md section 6, with the meta rows of this version.
pub const CREATE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_records (
  chain_id    TEXT    NOT NULL,
  seq         INTEGER NOT NULL,
  event_id    TEXT    NOT NULL,
  event_type  TEXT    NOT NULL,
  actor       TEXT    NOT NULL,
  event_time  TEXT    NOT NULL,
  event_json  TEXT    NOT NULL,
  event_hash  BLOB    NOT NULL,
  prev_hash   BLOB    NOT NULL,
  record_hash BLOB    NOT NULL,
  key_id      TEXT,
  signature   BLOB,
  PRIMARY KEY (chain_id, seq),
  UNIQUE (chain_id, event_id)
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  chain_id  TEXT NOT NULL, seq INTEGER NOT NULL, head_hash BLOB NOT NULL,
  time TEXT NOT NULL, key_id TEXT NOT NULL, signature BLOB NOT NULL,
  PRIMARY KEY (chain_id, seq)
);
CREATE TABLE IF NOT EXISTS audit_dead_letters (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  chain_id TEXT NOT NULL, event_id TEXT NOT NULL, event_json TEXT NOT NULL,
  failure_reason TEXT NOT NULL, failed_at TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 1,
  key_id TEXT, signature TEXT
);
CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO audit_meta (key, value) VALUES ('format', '1');
INSERT OR IGNORE INTO audit_meta (key, value) VALUES ('schema_version', '2');
";

/// What a file holds, once inspected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaState {
    /// A database without any table (or a file of zero bytes).
    Empty,
    /// An audit database of format 1.
    Audit {
        /// Its `schema_version`, absent in files written without one.
        schema_version: Option<String>,
    },
}

/// Inspects `path` through a read-only connection, without modifying it.
/// A missing file is [`SqliteError::NotFound`].
pub fn inspect_file(path: &Path) -> Result<SchemaState, SqliteError> {
    if !path.exists() {
        return Err(SqliteError::NotFound {
            path: path.to_owned(),
        });
    }
    let connection = open_read_only(path)?;
    inspect(&connection, path)
}

/// Opens `path` read-only (never creating it).
pub fn open_read_only(path: &Path) -> Result<Connection, SqliteError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(path, flags)
        .map_err(|error| not_sqlite_or(path, "opening read-only", error))
}

/// Inspects the database behind `connection` (of the file `path`).
pub fn inspect(connection: &Connection, path: &Path) -> Result<SchemaState, SqliteError> {
    let tables = table_names(connection, path)?;
    if tables.is_empty() {
        return Ok(SchemaState::Empty);
    }
    if !tables.iter().any(|table| table == "audit_meta") {
        return Err(SqliteError::Foreign {
            path: path.to_owned(),
            tables: tables.join(", "),
        });
    }
    let format = meta_value(connection, path, "format")?;
    if format.as_deref() != Some(FORMAT) {
        return Err(SqliteError::UnsupportedVersion {
            path: path.to_owned(),
            key: "format",
            value: format.unwrap_or_else(|| "(absent)".into()),
        });
    }
    let schema_version = meta_value(connection, path, "schema_version")?;
    if let Some(version) = schema_version
        .as_deref()
        .filter(|v| !READABLE_VERSIONS.contains(v))
    {
        return Err(SqliteError::UnsupportedVersion {
            path: path.to_owned(),
            key: "schema_version",
            value: version.to_owned(),
        });
    }
    let missing: Vec<&str> = TABLES
        .iter()
        .copied()
        .filter(|table| !tables.iter().any(|found| found == table))
        .collect();
    if !missing.is_empty() {
        return Err(SqliteError::MissingTables {
            path: path.to_owned(),
            missing: missing.join(", "),
        });
    }
    Ok(SchemaState::Audit { schema_version })
}

/// Creates the schema in an empty database, or records `schema_version` in
/// a format-1 database that lacks it; refuses anything else. Runs in one
/// `BEGIN IMMEDIATE` transaction, so concurrent openers agree.
pub fn create_or_migrate(connection: &mut Connection, path: &Path) -> Result<(), SqliteError> {
    let transaction = connection
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(SqliteError::sqlite(
            path,
            "locking the database to create its schema",
        ))?;
    match inspect(&transaction, path)? {
        SchemaState::Audit {
            schema_version: Some(version),
        } if version == SCHEMA_VERSION => return Ok(()),
        SchemaState::Audit {
            schema_version: Some(version),
        } => {
            if version == "1" {
                migrate(&transaction, path, MIGRATE_1_TO_2, 2)?;
            }
            migrate(&transaction, path, &migrate_2_to_3(), 3)?;
        }
        SchemaState::Audit {
            schema_version: None,
        } => {
            transaction
                .execute_batch(CREATE_SCHEMA)
                .map_err(SqliteError::sqlite(path, "recording the schema version"))?;
            migrate(&transaction, path, MIGRATE_1_TO_2, 2)?;
            migrate(&transaction, path, &migrate_2_to_3(), 3)?;
        }
        SchemaState::Empty => {
            transaction
                .execute_batch(CREATE_SCHEMA)
                .map_err(SqliteError::sqlite(path, "creating the audit schema"))?;
            migrate(&transaction, path, &migrate_2_to_3(), 3)?;
        }
    }
    transaction
        .commit()
        .map_err(SqliteError::sqlite(path, "committing the audit schema"))
}

fn migrate(
    transaction: &rusqlite::Transaction<'_>,
    path: &Path,
    sql: &str,
    version: u32,
) -> Result<(), SqliteError> {
    let context = match version {
        2 => "migrating the schema to version 2",
        _ => "migrating the schema to version 3",
    };
    transaction
        .execute_batch(sql)
        .map_err(SqliteError::sqlite(path, context))
}

fn table_names(connection: &Connection, path: &Path) -> Result<Vec<String>, SqliteError> {
    let query = || -> rusqlite::Result<Vec<String>> {
        let mut statement = connection.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )?;
        let names = statement.query_map([], |row| row.get::<_, String>(0))?;
        names.collect()
    };
    query().map_err(|error| not_sqlite_or(path, "reading the table list", error))
}

fn meta_value(
    connection: &Connection,
    path: &Path,
    key: &str,
) -> Result<Option<String>, SqliteError> {
    connection
        .query_row(
            "SELECT value FROM audit_meta WHERE key = ?1",
            [key],
            |row| row.get::<_, String>(0),
        )
        .optional()
        .map_err(SqliteError::sqlite(path, "reading audit_meta"))
}

fn not_sqlite_or(path: &Path, context: &'static str, error: rusqlite::Error) -> SqliteError {
    let not_a_database = error
        .sqlite_error_code()
        .is_some_and(|code| code == rusqlite::ErrorCode::NotADatabase);
    if not_a_database {
        SqliteError::NotSqlite {
            path: path.to_owned(),
            detail: error.to_string(),
        }
    } else {
        SqliteError::sqlite(path, context)(error)
    }
}
