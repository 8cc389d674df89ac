//! `deferred-audit verify URL`: checks a chain (FORMAT.md section 4) and
//! reports in text or JSON; exit 0 when every check holds, 1 otherwise.

use std::path::PathBuf;
use std::process::ExitCode;

use audit_core::chain::{ChainId, Checkpoint, FailureKind, VerifyOptions, VerifyReport};
use audit_core::keys::Keyring;
use audit_sqlite::SqliteVerifyOptions;

use crate::error::{CliError, OK, block_on, failed};
use crate::progress;
use crate::store_url::{Access, StoreUrl};

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
        StoreUrl::File(_) | StoreUrl::S3 { .. } => {
            refuse_from(from, "file:// and s3://")?;
            let (store, prefix) = url.object_store(Access::Read, "verify")?;
            Ok(block_on(audit_s3_jsonl::verify::verify_archive(
                store.as_ref(),
                &prefix,
                None,
                keyring.clone(),
                options,
                extra,
            ))??)
        }
        StoreUrl::Postgres(url) => {
            refuse_from(from, "postgres://")?;
            let bar = progress::bar(0, "verify", quiet);
            let report = block_on(audit_postgres::verify_postgres(
                url,
                keyring.clone(),
                options,
                extra,
                |done| bar.set_position(done),
            ))?;
            bar.finish_and_clear();
            Ok(report?)
        }
    }
}

/// `--from` is served by the SQLite reader alone.
fn refuse_from(from: Option<u64>, scheme: &str) -> Result<(), CliError> {
    match from {
        Some(seq) => Err(CliError::usage(format!(
            "--from {seq} is not served for {scheme} stores; verify the whole chain or export it to sqlite:// first"
        ))),
        None => Ok(()),
    }
}

fn load_checkpoints(url: &StoreUrl) -> Result<Vec<Checkpoint>, CliError> {
    match url {
        StoreUrl::Sqlite(path) => Ok(audit_sqlite::read_checkpoints(path)?),
        StoreUrl::Postgres(url) => block_on(postgres_checkpoints(url))?,
        StoreUrl::File(_) | StoreUrl::S3 { .. } => {
            let (store, prefix) = url.object_store(Access::Read, "verify --checkpoints")?;
            block_on(archive_checkpoints(store.as_ref(), &prefix))?
        }
    }
}

/// Every decodable checkpoint of every chain of a PostgreSQL database; an
/// undecodable one is an error naming it.
async fn postgres_checkpoints(url: &str) -> Result<Vec<Checkpoint>, CliError> {
    let reader =
        audit_postgres::PostgresReader::connect(url, audit_postgres::PostgresOptions::default())
            .await?;
    let mut all = Vec::new();
    for name in reader.chains().await? {
        let chain = ChainId::new(&name).map_err(|error| CliError::usage(error.to_string()))?;
        for checkpoint in reader.checkpoints(&chain).await? {
            all.push(checkpoint.map_err(|(seq, detail)| {
                CliError::usage(format!(
                    "checkpoint at seq {seq} of chain {name} in {}: {detail}",
                    reader.target()
                ))
            })?);
        }
    }
    Ok(all)
}

/// Every checkpoint of every chain under `prefix`.
async fn archive_checkpoints(
    store: &dyn object_store::ObjectStore,
    prefix: &object_store::path::Path,
) -> Result<Vec<Checkpoint>, CliError> {
    let mut all = Vec::new();
    for chain in audit_s3_jsonl::verify::list_chains(store, prefix).await? {
        all.extend(audit_s3_jsonl::read_checkpoints(store, prefix, &chain).await?);
    }
    Ok(all)
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
