//! `deferred-audit dlq list|replay URL`: the dead letters of a store, read
//! and replayed by the core for every backend through one code path.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use audit_core::chain::ChainId;
use audit_core::chain_writer::ChainSinkOptions;
use audit_core::dead_letter::{FallbackFile, ReplayOptions as FallbackReplayOptions};
use audit_core::keys::{AuditSigner, Keyring};
use audit_core::replay::replay_dead_letters;
use audit_core::store::StoredDeadLetter;
use deferred_audit::{open_source, open_writer};

use crate::error::{CliError, OK, block_on, failed};
use crate::store_url::StoreUrl;
use crate::verify::print_out;

/// Where dead letters are read from: a store, or a fallback file.
#[derive(Debug, Clone)]
pub enum Letters {
    /// The dead letters kept in a store.
    Store(StoreUrl),
    /// The pipeline's fallback dead-letter file.
    File(PathBuf),
}

impl std::fmt::Display for Letters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Store(url) => write!(f, "{url}"),
            Self::File(path) => write!(f, "fallback file {}", path.display()),
        }
    }
}

/// The letters of a fallback file, keyed by line number; torn or damaged
/// lines are reported on stderr with their line numbers, later lines kept.
fn file_letters(path: &Path) -> Result<Vec<StoredDeadLetter>, CliError> {
    let contents = FallbackFile::new(path)
        .read()
        .map_err(|error| CliError::usage(error.to_string()))?;
    for skipped in &contents.skipped {
        eprintln!(
            "{}: line {} skipped (offset {}): {}",
            path.display(),
            skipped.line,
            skipped.offset,
            skipped.reason
        );
    }
    Ok(contents
        .letters
        .into_iter()
        .enumerate()
        .map(|(index, letter)| StoredDeadLetter {
            key: format!("letter {}", index + 1),
            letter,
        })
        .collect())
}

/// Lists the dead letters with their events' content, as text or one JSON object.
pub fn list(from: &Letters, json: bool) -> Result<ExitCode, CliError> {
    let letters = match from {
        Letters::File(path) => file_letters(path)?,
        Letters::Store(url) => block_on(async {
            let source = open_source(url).await?;
            Ok::<_, CliError>(source.dead_letters(None).await?)
        })??,
    };
    let url = from;
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

/// What to replay, into which store and chain, trusting which keys.
#[derive(Debug, Clone)]
pub struct ReplayArgs {
    /// The store whose chain receives the events.
    pub url: StoreUrl,
    /// Replay this fallback file instead of the store's own dead letters.
    pub fallback: Option<PathBuf>,
    /// The chain's secret key.
    pub key: Option<PathBuf>,
    /// Further public keys trusted to have authenticated letters.
    pub pubkeys: Vec<PathBuf>,
    /// The chain.
    pub chain: String,
}

/// Replays the dead letters of `chain` into the chain, signing with `key`.
pub fn replay(args: &ReplayArgs) -> Result<ExitCode, CliError> {
    let url = &args.url;
    let chain = ChainId::new(&args.chain).map_err(|error| CliError::usage(error.to_string()))?;
    let signer = args
        .key
        .as_deref()
        .map(AuditSigner::load)
        .transpose()?
        .map(Arc::new);
    let mut trusted = crate::verify::keyring(&args.pubkeys)?;
    let options = match &signer {
        Some(signer) => {
            trusted.insert(signer.public_key());
            ChainSinkOptions::signed(signer.clone())
        }
        None => ChainSinkOptions::unsigned(),
    }
    .for_chain(chain.clone());
    if let Some(path) = &args.fallback {
        return replay_file(url, path, options, trusted);
    }
    let report = block_on(async {
        let source = open_source(url).await?;
        let mut writer = open_writer(url, options).await?;
        Ok::<_, CliError>(replay_dead_letters(source.as_ref(), &mut writer, &trusted).await?)
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
    for (id, why) in &report.unauthenticated {
        text.push_str(&format!(
            "  dead letter #{id} kept, not authenticated: {why}\n"
        ));
    }
    print_out(&text)?;
    Ok(if report.is_complete() { OK } else { failed() })
}

/// Replays a fallback file into the store; the file is left as it is
/// (replay is idempotent; delete it once the report is complete).
fn replay_file(
    url: &StoreUrl,
    path: &Path,
    options: ChainSinkOptions,
    trusted: Keyring,
) -> Result<ExitCode, CliError> {
    let chain = options.chain().clone();
    let require_authenticated = options.signer().is_some().then_some(trusted);
    let report = block_on(async {
        let mut writer = open_writer(url, options).await?;
        FallbackFile::new(path)
            .replay_with(
                &mut writer,
                &chain,
                &FallbackReplayOptions::default().with_require_authenticated(require_authenticated),
            )
            .await
            .map_err(|error| CliError::usage(error.to_string()))
    })??;
    let mut text = format!(
        "replayed {} into {url} chain {chain}: {} appended, {} already in the chain, {} dead-lettered again, {} invalid, {} not authenticated, {} torn or damaged line(s), {} of other chains\n",
        path.display(),
        report.appended,
        report.already_present,
        report.dead_lettered,
        report.invalid.len(),
        report.unauthenticated.len(),
        report.skipped_lines.len(),
        report.other_chain,
    );
    for (id, why) in &report.invalid {
        text.push_str(&format!("  event {id} kept: {why}\n"));
    }
    for (id, why) in &report.unauthenticated {
        text.push_str(&format!("  event {id} kept: {why}\n"));
    }
    print_out(&text)?;
    Ok(if report.is_complete() { OK } else { failed() })
}
