//! `deferred-audit dlq list|replay URL`: the dead letters of a store.
//!
//! Each backend keeps its own dead letters (a table in SQLite and
//! PostgreSQL); this module reads them through the backend crate and prints
//! them one way.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use audit_core::chain::ChainId;
use audit_core::chain_writer::ChainSinkOptions;
use audit_core::dead_letter::DeadLetter;
use audit_core::keys::AuditSigner;
use audit_postgres::{PostgresOptions, PostgresStore};
use audit_sqlite::SqliteOptions;

use crate::error::{CliError, OK, block_on};
use crate::store_url::{Access, StoreUrl};

/// A dead letter as listed: the store's name for it and the letter.
struct Listed {
    id: String,
    letter: DeadLetter,
}

/// What a replay did, whatever the backend.
struct Replayed {
    appended: u64,
    already_present: u64,
    kept: Vec<(String, String)>,
    other_chains: Option<u64>,
}

/// Lists the dead letters, as text or one JSON object.
pub fn list(url: &StoreUrl, json: bool) -> Result<ExitCode, CliError> {
    let letters = read_letters(url)?;
    if json {
        let items: Vec<serde_json::Value> = letters.iter().map(letter_json).collect();
        println!(
            "{}",
            serde_json::json!({"count": letters.len(), "dead_letters": items})
        );
        return Ok(OK);
    }
    for Listed { id, letter } in &letters {
        println!(
            "#{id} chain {} event {} failed at {} after {} attempt(s): {}",
            letter.chain_id,
            letter.event_id,
            letter.failed_at,
            letter.attempts,
            letter.failure_reason
        );
    }
    println!("{} dead letter(s) in {url}", letters.len());
    Ok(OK)
}

fn read_letters(url: &StoreUrl) -> Result<Vec<Listed>, CliError> {
    match url {
        StoreUrl::Sqlite(path) => Ok(audit_sqlite::list_dead_letters(path)?
            .into_iter()
            .map(|stored| Listed {
                id: stored.id.to_string(),
                letter: stored.letter,
            })
            .collect()),
        StoreUrl::Postgres(url) => block_on(async {
            let store = PostgresStore::connect(url, PostgresOptions::default()).await?;
            let letters = store.list_dead_letters(None).await?;
            Ok::<_, CliError>(
                letters
                    .into_iter()
                    .map(|stored| Listed {
                        id: stored.id.to_string(),
                        letter: stored.letter,
                    })
                    .collect(),
            )
        })?,
        StoreUrl::File(_) | StoreUrl::S3 { .. } => {
            let (store, prefix) = url.object_store(Access::Read, "dlq list")?;
            block_on(archive_letters(store.as_ref(), &prefix))?
        }
    }
}

/// The dead-letter objects of every chain under `prefix`, numbered per chain.
async fn archive_letters(
    store: &dyn object_store::ObjectStore,
    prefix: &object_store::path::Path,
) -> Result<Vec<Listed>, CliError> {
    let mut all = Vec::new();
    for chain in audit_s3_jsonl::verify::list_chains(store, prefix).await? {
        let letters =
            audit_s3_jsonl::dead_letters::read_dead_letters(store, prefix, &chain).await?;
        all.extend(letters.into_iter().enumerate().map(|(n, letter)| Listed {
            id: format!("{chain}/{}", n + 1),
            letter,
        }));
    }
    Ok(all)
}

fn letter_json(listed: &Listed) -> serde_json::Value {
    let letter = &listed.letter;
    serde_json::json!({
        "id": listed.id,
        "chain": letter.chain_id,
        "event_id": letter.event_id,
        "event": serde_json::from_str::<serde_json::Value>(&letter.event_json).unwrap_or(serde_json::Value::Null),
        "failure_reason": letter.failure_reason,
        "failed_at": letter.failed_at,
        "attempts": letter.attempts,
    })
}

/// Replays the dead letters of `chain` into the chain, signing with `key`.
pub fn replay(url: &StoreUrl, key: Option<&Path>, chain: &str) -> Result<ExitCode, CliError> {
    let options = ChainSinkOptions {
        chain: ChainId::new(chain).map_err(|error| CliError::usage(error.to_string()))?,
        signer: key.map(AuditSigner::load).transpose()?.map(Arc::new),
        ..ChainSinkOptions::default()
    };
    let report = match url {
        StoreUrl::Sqlite(path) => replay_sqlite(url, path, &options)?,
        StoreUrl::Postgres(text) => block_on(replay_postgres(text, &options))??,
        StoreUrl::File(_) | StoreUrl::S3 { .. } => {
            return Err(CliError::usage(format!(
                "`dlq replay` does not serve archives ({url}): their dead-letter objects are listed by `dlq list`; append them through a pipeline into the archive, then delete the objects"
            )));
        }
    };
    let other_chains = report
        .other_chains
        .map(|count| format!(", {count} of other chains (kept)"))
        .unwrap_or_default();
    println!(
        "replayed into {url} chain {chain}: {} appended, {} already in the chain, {} unreadable (kept){other_chains}",
        report.appended,
        report.already_present,
        report.kept.len(),
    );
    for (id, why) in &report.kept {
        println!("  dead letter #{id} kept: {why}");
    }
    Ok(OK)
}

fn replay_sqlite(
    url: &StoreUrl,
    path: &Path,
    options: &ChainSinkOptions,
) -> Result<Replayed, CliError> {
    if !path.exists() {
        return Err(CliError::usage(format!(
            "{} does not exist; check the store URL {url}",
            path.display()
        )));
    }
    let report = audit_sqlite::replay_dead_letters(path, options, SqliteOptions::default())?;
    Ok(Replayed {
        appended: report.appended,
        already_present: report.already_present,
        kept: report
            .unreadable
            .into_iter()
            .map(|(id, why)| (id.to_string(), why))
            .collect(),
        other_chains: Some(report.other_chains),
    })
}

async fn replay_postgres(url: &str, options: &ChainSinkOptions) -> Result<Replayed, CliError> {
    let mut store = PostgresStore::connect(url, PostgresOptions::default()).await?;
    let report = store.replay_dead_letters(&options.sealer()).await?;
    Ok(Replayed {
        appended: report.appended,
        already_present: report.already_present,
        kept: report
            .invalid
            .into_iter()
            .map(|(id, why)| (id.to_string(), why))
            .collect(),
        other_chains: None,
    })
}
