//! `deferred-audit dlq list|replay URL`: the dead letters of a store, read
//! and replayed by the core for every backend through one code path.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use audit_core::chain::ChainId;
use audit_core::chain_writer::ChainSinkOptions;
use audit_core::keys::AuditSigner;
use audit_core::replay::replay_dead_letters;
use audit_core::store::StoredDeadLetter;
use deferred_audit::{open_source, open_writer};

use crate::error::{CliError, OK, block_on};
use crate::store_url::StoreUrl;
use crate::verify::print_out;

/// Lists the dead letters with their events' content, as text or one JSON object.
pub fn list(url: &StoreUrl, json: bool) -> Result<ExitCode, CliError> {
    let letters = block_on(async {
        let source = open_source(url).await?;
        Ok::<_, CliError>(source.dead_letters(None).await?)
    })??;
    if json {
        let items: Vec<serde_json::Value> = letters.iter().map(letter_json).collect();
        print_out(&format!(
            "{}\n",
            serde_json::json!({"count": letters.len(), "dead_letters": items})
        ))?;
        return Ok(OK);
    }
    let mut text = String::new();
    for StoredDeadLetter { key, letter } in &letters {
        text.push_str(&format!(
            "#{key} chain {} event {} failed at {} after {} attempt(s): {}\n  event: {}\n",
            letter.chain_id,
            letter.event_id,
            letter.failed_at,
            letter.attempts,
            letter.failure_reason,
            letter.event_json
        ));
    }
    text.push_str(&format!("{} dead letter(s) in {url}\n", letters.len()));
    print_out(&text)?;
    Ok(OK)
}

fn letter_json(stored: &StoredDeadLetter) -> serde_json::Value {
    let letter = &stored.letter;
    serde_json::json!({
        "id": stored.key,
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
    let chain = ChainId::new(chain).map_err(|error| CliError::usage(error.to_string()))?;
    let options = match key {
        Some(key) => ChainSinkOptions::signed(Arc::new(AuditSigner::load(key)?)),
        None => ChainSinkOptions::unsigned(),
    }
    .for_chain(chain.clone());
    let report = block_on(async {
        let source = open_source(url).await?;
        let mut writer = open_writer(url, options).await?;
        Ok::<_, CliError>(replay_dead_letters(source.as_ref(), &mut writer).await?)
    })??;
    let mut text = format!(
        "replayed into {url} chain {chain}: {} appended, {} already in the chain, {} unreadable (kept), {} dead-lettered again (kept), {} of other chains (kept)\n",
        report.appended,
        report.already_present,
        report.unreadable.len(),
        report.dead_lettered,
        report.other_chains,
    );
    for (id, why) in &report.unreadable {
        text.push_str(&format!("  dead letter #{id} kept: {why}\n"));
    }
    print_out(&text)?;
    Ok(OK)
}
