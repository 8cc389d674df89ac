//! Files that are not ours are refused, named, and left untouched.

use std::path::Path;

use audit_sqlite::{SqliteError, SqliteOptions, SqliteStore, schema};

fn open(path: &Path) -> Result<SqliteStore, SqliteError> {
    SqliteStore::open_blocking(path, SqliteOptions::default())
}

fn assert_untouched(path: &Path, before: &[u8]) {
    assert_eq!(
        std::fs::read(path).unwrap(),
        before,
        "{} was modified",
        path.display()
    );
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    for suffix in ["-wal", "-shm", "-journal"] {
        let side = path.with_file_name(format!("{name}{suffix}"));
        assert!(!side.exists(), "{} was created", side.display());
    }
}

#[test]
fn a_new_file_gets_the_schema_and_meta_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    drop(open(&path).unwrap());
    let connection = rusqlite::Connection::open(&path).unwrap();
    let mut meta: Vec<(String, String)> = connection
        .prepare("SELECT key, value FROM audit_meta ORDER BY key")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    meta.sort();
    assert_eq!(
        meta,
        [
            ("format".into(), "1".into()),
            ("schema_version".into(), "3".into())
        ]
    );
    let mode: String = connection
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(
        schema::inspect_file(&path).unwrap(),
        schema::SchemaState::Audit {
            schema_version: Some("3".into())
        }
    );
    drop(open(&path).unwrap());
}

#[test]
fn a_file_without_schema_version_is_migrated_by_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain.sqlite");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/vectors/good/chain.sqlite"),
        &path,
    )
    .unwrap();
    assert_eq!(
        schema::inspect_file(&path).unwrap(),
        schema::SchemaState::Audit {
            schema_version: None
        }
    );
    drop(open(&path).unwrap());
    assert_eq!(
        schema::inspect_file(&path).unwrap(),
        schema::SchemaState::Audit {
            schema_version: Some("3".into())
        }
    );
    // The migration grew the chain's tree from its records.
    let connection = rusqlite::Connection::open(&path).unwrap();
    let (records, tree_size): (i64, i64) = connection
        .query_row(
            "SELECT (SELECT COUNT(*) FROM audit_records), (SELECT size FROM audit_tree_heads)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert!(records > 0);
    assert_eq!(tree_size, records);
}

#[test]
fn a_newer_schema_version_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    drop(open(&path).unwrap());
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute(
                "UPDATE audit_meta SET value = '4' WHERE key = 'schema_version'",
                [],
            )
            .unwrap();
        connection
            .pragma_update(None, "journal_mode", "DELETE")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let error = open(&path).unwrap_err();
    assert!(
        matches!(&error, SqliteError::UnsupportedVersion { key: "schema_version", value, .. } if value == "4"),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("future.db") && message.contains("schema_version"),
        "{message}"
    );
    assert_untouched(&path, &before);
}

#[test]
fn an_unknown_format_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("format2.db");
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute_batch("CREATE TABLE audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); INSERT INTO audit_meta VALUES ('format', '2');")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let error = open(&path).unwrap_err();
    assert!(
        matches!(
            &error,
            SqliteError::UnsupportedVersion { key: "format", .. }
        ),
        "{error:?}"
    );
    assert_untouched(&path, &before);
}

#[test]
fn a_foreign_sqlite_file_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'ada');")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let error = open(&path).unwrap_err();
    assert!(
        matches!(&error, SqliteError::Foreign { tables, .. } if tables == "users"),
        "{error:?}"
    );
    assert!(error.to_string().contains("app.db"));
    assert_untouched(&path, &before);
    let error = audit_sqlite::SqliteSource::open(&path).unwrap_err();
    assert!(matches!(error, SqliteError::Foreign { .. }), "{error:?}");
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let before =
        b"these are my notes, not a database; they are long enough to fill a header page......."
            .repeat(20);
    std::fs::write(&path, &before).unwrap();
    let error = open(&path).unwrap_err();
    assert!(matches!(&error, SqliteError::NotSqlite { .. }), "{error:?}");
    assert!(error.to_string().contains("notes.txt"), "{error}");
    assert_untouched(&path, &before);
    let error = audit_sqlite::SqliteSource::open(&path).unwrap_err();
    assert!(matches!(error, SqliteError::NotSqlite { .. }), "{error:?}");
    assert_untouched(&path, &before);
}

#[test]
fn reading_a_missing_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.db");
    let error = audit_sqlite::SqliteSource::open(&path).unwrap_err();
    assert!(matches!(error, SqliteError::NotFound { .. }), "{error:?}");
    assert!(error.to_string().contains("absent.db"));
    assert!(!path.exists());
}
