//! `deferred-audit verify URL`: checks a chain (FORMAT.md section 4) with
//! the core's one verifier, for every backend through one code path, and
//! reports in text or JSON; exit 0 when every check holds, 1 otherwise.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use audit_core::chain::{ChainId, Checkpoint, FailureKind, VerifyOptions, VerifyReport};
use audit_core::keys::Keyring;
use audit_core::verification::{SourceVerifyOptions, verify_source};
use deferred_audit::open_source;

use crate::error::{CliError, OK, block_on, failed};
use crate::progress;
use crate::store_url::StoreUrl;

/// Failures listed in full by `--json` and the text report; the rest are counted.
pub const FAILURES_LISTED: usize = 100;

/// What to verify and how.
#[derive(Debug, Clone)]
pub struct VerifyArgs {
    /// The store.
    pub url: StoreUrl,
    /// Public key files of the keyring.
    pub pubkeys: Vec<PathBuf>,
    /// Stores whose checkpoints are checked too (published off-box).
    pub checkpoints: Vec<StoreUrl>,
    /// Unsigned records fail even without a key.
    pub require_signed: bool,
    /// With a key, accept unsigned records anyway.
    pub allow_unsigned: bool,
    /// Start at this seq.
    pub from: Option<u64>,
    /// Only these chains.
    pub chains: Vec<String>,
    /// Print JSON.
    pub json: bool,
    /// The witness policy.
    pub witness: crate::witness::WitnessPolicyArgs,
    /// Tree checkpoint note files kept outside the store.
    pub tree_checkpoints: Vec<PathBuf>,
}

/// Reads tree checkpoint note files, of the one chain given with
/// `--chain` (of `default` without one).
fn outside_notes(
    files: &[PathBuf],
    chains: &[ChainId],
) -> Result<Vec<(ChainId, String)>, CliError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let chain = match chains {
        [] => ChainId::default(),
        [chain] => chain.clone(),
        _ => {
            return Err(CliError::usage(
                "--tree-checkpoint applies to one chain: give at most one --chain",
            ));
        }
    };
    files
        .iter()
        .map(|file| {
            let text = std::fs::read(file)
                .map_err(|error| CliError::usage(format!("reading {}: {error}", file.display())))?;
            if text.len() > audit_core::chain::note::MAX_NOTE_BYTES {
                return Err(CliError::usage(format!(
                    "{} is larger than a note may be",
                    file.display()
                )));
            }
            let text = String::from_utf8(text)
                .map_err(|_| CliError::usage(format!("{} is not UTF-8", file.display())))?;
            Ok((chain.clone(), text))
        })
        .collect()
}

/// Loads the keyring from `files`.
pub fn keyring(files: &[PathBuf]) -> Result<Keyring, CliError> {
    let mut keyring = Keyring::new();
    for file in files {
        keyring.load_file(file)?;
    }
    Ok(keyring)
}

/// Runs the command.
pub fn run(args: &VerifyArgs) -> Result<ExitCode, CliError> {
    let keyring = keyring(&args.pubkeys)?;
    let (witnesses, witness_quorum) = args.witness.policy()?;
    let chains = args
        .chains
        .iter()
        .map(|name| ChainId::new(name).map_err(|error| CliError::usage(error.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let outside_tree_checkpoints = outside_notes(&args.tree_checkpoints, &chains)?;
    let report = block_on(async {
        let mut outside = Vec::new();
        for url in &args.checkpoints {
            outside.extend(load_checkpoints(url).await?);
        }
        let options = SourceVerifyOptions::default()
            .with_verify(VerifyOptions::default().with_require_signed(args.require_signed))
            .with_allow_unsigned(args.allow_unsigned)
            .with_from(args.from)
            .with_chains(chains)
            .with_outside_checkpoints(outside)
            .with_outside_tree_checkpoints(outside_tree_checkpoints)
            .with_witnesses(witnesses)
            .with_witness_quorum(witness_quorum);
        verify_store(&args.url, &keyring, options, args.json).await
    })??;
    print_report(&args.url, &report, args.json)?;
    Ok(if report.is_ok() { OK } else { failed() })
}

/// Verifies the store at `url` (drawing a progress bar on a terminal unless `quiet`).
pub async fn verify_store(
    url: &StoreUrl,
    keyring: &Keyring,
    options: SourceVerifyOptions,
    quiet: bool,
) -> Result<VerifyReport, CliError> {
    let source = open_source(url).await?;
    let total = source.count_records().await?.unwrap_or(0);
    let bar = progress::bar(total, "verify", quiet);
    let progress_bar = bar.clone();
    let options =
        options.with_progress(Some(Arc::new(move |done| progress_bar.set_position(done))));
    let report = verify_source(source.as_ref(), keyring, options).await;
    bar.finish_and_clear();
    Ok(report?)
}

/// Every checkpoint of every chain of the store at `url`; one that cannot
/// be read is an error naming it.
pub async fn load_checkpoints(url: &StoreUrl) -> Result<Vec<Checkpoint>, CliError> {
    let source = open_source(url).await?;
    let mut all = Vec::new();
    for chain in source.inventory().await?.chains {
        for checkpoint in source.checkpoints(&chain).await? {
            all.push(checkpoint.map_err(|(seq, detail)| {
                CliError::usage(format!(
                    "{}: the checkpoint at seq {seq} of chain {chain} cannot be read: {detail}",
                    source.describe()
                ))
            })?);
        }
    }
    Ok(all)
}

/// The report as the JSON object of `--json`, listing at most
/// [`FAILURES_LISTED`] failures with their total count.
pub fn report_json(report: &VerifyReport) -> serde_json::Value {
    let listed = &report.failures[..report.failures.len().min(FAILURES_LISTED)];
    serde_json::json!({
        "ok": report.is_ok(),
        "records": report.records,
        "checkpoints": report.checkpoints,
        "chains": report.chains,
        "failure_count": report.failures.len(),
        "failures": listed,
        "failures_listed": listed.len(),
        "unchecked": report.unchecked,
    })
}

/// Writes `text` to stdout; a closed pipe (`| head`) ends the output quietly.
pub fn print_out(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(error) => Err(CliError::usage(format!("writing to stdout: {error}"))),
    }
}

fn print_report(url: &StoreUrl, report: &VerifyReport, json: bool) -> Result<(), CliError> {
    if json {
        return print_out(&format!("{}\n", report_json(report)));
    }
    let mut text = String::new();
    for (name, chain) in &report.chains {
        text.push_str(&format!(
            "chain {name}: {} records ({} signed), {} checkpoints checked, head seq {} hash {}\n",
            chain.records, chain.signed, chain.checkpoints, chain.head_seq, chain.head_hash
        ));
    }
    match report.first_failure() {
        None => text.push_str(&format!(
            "OK: {url}: {} records and {} checkpoints verified\n",
            report.records, report.checkpoints
        )),
        Some(first) => {
            text.push_str(&format!(
                "FAILED: {url}: first failure at chain {} seq {}: {} ({})\n",
                first.chain, first.seq, first.kind, first.detail
            ));
            for failure in report.failures.iter().skip(1).take(FAILURES_LISTED - 1) {
                text.push_str(&format!("  {failure}\n"));
            }
            if report.failures.len() > FAILURES_LISTED {
                text.push_str(&format!(
                    "  … and {} more\n",
                    report.failures.len() - FAILURES_LISTED
                ));
            }
            text.push_str(&format!(
                "{} records checked, {} failure(s)\n",
                report.records,
                report.failures.len()
            ));
            if report.failures.iter().any(|failure| {
                matches!(
                    failure.kind,
                    FailureKind::UnknownKeyId | FailureKind::NoKeyGiven
                )
            }) {
                text.push_str("hint: pass the signer's public key with --pubkey PEM\n");
            }
        }
    }
    for note in &report.unchecked {
        text.push_str(&format!("not checked: {note}\n"));
    }
    print_out(&text)
}
