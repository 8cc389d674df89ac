//! `deferred-audit verify URL`: checks a chain (FORMAT.md section 4) and
//! reports in text or JSON; exit 0 when every check holds, 1 otherwise.

use std::path::PathBuf;
use std::process::ExitCode;

use audit_core::chain::{Checkpoint, FailureKind, VerifyOptions, VerifyReport};
use audit_core::keys::Keyring;
use audit_sqlite::SqliteVerifyOptions;

use crate::error::{CliError, OK, failed};
use crate::local_jsonl::LocalJsonl;
use crate::progress;
use crate::store_url::StoreUrl;

/// What to verify and how.
#[derive(Debug, Clone)]
pub struct VerifyArgs {
    /// The store.
    pub url: StoreUrl,
    /// Public key files of the keyring.
    pub pubkeys: Vec<PathBuf>,
    /// Another store whose checkpoints are checked too.
    pub checkpoints: Option<StoreUrl>,
    /// Unsigned records fail.
    pub require_signed: bool,
    /// Start at this seq.
    pub from: Option<u64>,
    /// Print JSON.
    pub json: bool,
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
    let extra = match &args.checkpoints {
        Some(url) => load_checkpoints(url)?,
        None => Vec::new(),
    };
    let options = VerifyOptions {
        require_signed: args.require_signed,
        ..VerifyOptions::default()
    };
    let report = verify_store(&args.url, &keyring, options, args.from, &extra, args.json)?;
    print_report(&args.url, &report, args.json);
    Ok(if report.is_ok() { OK } else { failed() })
}

/// Verifies the store at `url` (drawing a progress bar on a terminal unless `quiet`).
pub fn verify_store(
    url: &StoreUrl,
    keyring: &Keyring,
    options: VerifyOptions,
    from: Option<u64>,
    extra: &[Checkpoint],
    quiet: bool,
) -> Result<VerifyReport, CliError> {
    match url {
        StoreUrl::Sqlite(path) => {
            let bar = progress::bar(audit_sqlite::count_records(path)?, "verify", quiet);
            let progress_bar = bar.clone();
            let options = SqliteVerifyOptions {
                verify: options,
                from_seq: from,
                progress: Some(Box::new(move |done| progress_bar.set_position(done))),
            };
            let report = audit_sqlite::verify_sqlite(path, keyring, options, extra);
            bar.finish_and_clear();
            Ok(report?)
        }
        StoreUrl::File(dir) => {
            let bar = progress::bar(0, "verify", quiet);
            let report =
                LocalJsonl::open(dir)?.verify(keyring, &options, from, extra, &mut |done| {
                    bar.set_position(done)
                });
            bar.finish_and_clear();
            report
        }
        other => Err(other.unsupported("verify")),
    }
}

fn load_checkpoints(url: &StoreUrl) -> Result<Vec<Checkpoint>, CliError> {
    match url {
        StoreUrl::Sqlite(path) => Ok(audit_sqlite::read_checkpoints(path)?),
        StoreUrl::File(dir) => LocalJsonl::open(dir)?.all_checkpoints(),
        other => Err(other.unsupported("verify --checkpoints")),
    }
}

/// Merges per-chain reports into one, failures in (chain, seq) order.
pub fn merge(reports: Vec<VerifyReport>) -> VerifyReport {
    let mut total = VerifyReport {
        records: 0,
        checkpoints: 0,
        chains: Default::default(),
        failures: Vec::new(),
    };
    for report in reports {
        total.records += report.records;
        total.checkpoints += report.checkpoints;
        total.chains.extend(report.chains);
        total.failures.extend(report.failures);
    }
    total
        .failures
        .sort_by(|a, b| (&a.chain, a.seq).cmp(&(&b.chain, b.seq)));
    total
}

/// The report as the JSON object of `--json`.
pub fn report_json(report: &VerifyReport) -> serde_json::Value {
    serde_json::json!({
        "ok": report.is_ok(),
        "records": report.records,
        "checkpoints": report.checkpoints,
        "chains": report.chains,
        "failures": report.failures,
    })
}

fn print_report(url: &StoreUrl, report: &VerifyReport, json: bool) {
    if json {
        println!("{}", report_json(report));
        return;
    }
    for (name, chain) in &report.chains {
        println!(
            "chain {name}: {} records ({} signed), {} checkpoints checked, head seq {} hash {}",
            chain.records, chain.signed, chain.checkpoints, chain.head_seq, chain.head_hash
        );
    }
    match report.first_failure() {
        None => println!(
            "OK: {url}: {} records and {} checkpoints verified",
            report.records, report.checkpoints
        ),
        Some(first) => {
            println!(
                "FAILED: {url}: first failure at chain {} seq {}: {} ({})",
                first.chain, first.seq, first.kind, first.detail
            );
            println!(
                "{} records checked, {} failure(s)",
                report.records,
                report.failures.len()
            );
            if report
                .failures
                .iter()
                .any(|failure| failure.kind == FailureKind::UnknownKeyId)
            {
                println!("hint: pass the signer's public key with --pubkey PEM");
            }
        }
    }
}
