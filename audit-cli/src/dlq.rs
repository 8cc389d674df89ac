//! `deferred-audit dlq list|replay URL`: the dead letters of a store.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use audit_core::chain::ChainId;
use audit_core::chain_writer::ChainSinkOptions;
use audit_core::keys::AuditSigner;
use audit_sqlite::SqliteOptions;

use crate::error::{CliError, OK};
use crate::store_url::StoreUrl;

/// Lists the dead letters, as text or one JSON object.
pub fn list(url: &StoreUrl, json: bool) -> Result<ExitCode, CliError> {
    let StoreUrl::Sqlite(path) = url else {
        return Err(url.unsupported("dlq list"));
    };
    let letters = audit_sqlite::list_dead_letters(path)?;
    if json {
        let items: Vec<serde_json::Value> = letters
            .iter()
            .map(|stored| {
                serde_json::json!({
                    "id": stored.id,
                    "chain": stored.letter.chain_id,
                    "event_id": stored.letter.event_id,
                    "event": serde_json::from_str::<serde_json::Value>(&stored.letter.event_json).unwrap_or(serde_json::Value::Null),
                    "failure_reason": stored.letter.failure_reason,
                    "failed_at": stored.letter.failed_at,
                    "attempts": stored.letter.attempts,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"count": letters.len(), "dead_letters": items})
        );
        return Ok(OK);
    }
    for stored in &letters {
        let letter = &stored.letter;
        println!(
            "#{} chain {} event {} failed at {} after {} attempt(s): {}",
            stored.id,
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

/// Replays the dead letters of `chain` into the chain, signing with `key`.
pub fn replay(url: &StoreUrl, key: Option<&Path>, chain: &str) -> Result<ExitCode, CliError> {
    let StoreUrl::Sqlite(path) = url else {
        return Err(url.unsupported("dlq replay"));
    };
    let options = ChainSinkOptions {
        chain: ChainId::new(chain).map_err(|error| CliError::usage(error.to_string()))?,
        signer: key.map(AuditSigner::load).transpose()?.map(Arc::new),
        ..ChainSinkOptions::default()
    };
    if !path.exists() {
        return Err(CliError::usage(format!(
            "{} does not exist; check the store URL {url}",
            path.display()
        )));
    }
    let report = audit_sqlite::replay_dead_letters(path, &options, SqliteOptions::default())?;
    println!(
        "replayed into {url} chain {chain}: {} appended, {} already in the chain, {} unreadable (kept), {} of other chains (kept)",
        report.appended,
        report.already_present,
        report.unreadable.len(),
        report.other_chains
    );
    for (id, why) in &report.unreadable {
        println!("  dead letter #{id} kept: {why}");
    }
    Ok(OK)
}
