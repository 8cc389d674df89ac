//! `deferred-audit show URL --seq N` and `tail URL [-n N] [--follow]`:
//! reading a chain's records, as text or JSON lines, from any store.
//!
//! These commands print what is stored; they do not verify it (run
//! `verify` for that). A row that is not a readable record is printed as
//! such, never skipped.

use std::process::ExitCode;
use std::time::Duration;

use audit_core::chain::{ChainId, Record};
use audit_core::store::{ChainSource, SourceRecord};
use deferred_audit::open_source;
use futures::StreamExt;

use crate::error::{CliError, OK, block_on};
use crate::store_url::StoreUrl;
use crate::verify::print_out;

/// How often `tail --follow` looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

/// Arguments of `show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The store.
    url: StoreUrl,
    /// The record's seq.
    #[arg(long)]
    seq: u64,
    /// The chain.
    #[arg(long, default_value = "default")]
    chain: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The store.
    url: StoreUrl,
    /// How many of the last records to print.
    #[arg(short = 'n', long = "lines", default_value_t = 10)]
    count: u64,
    /// The chain.
    #[arg(long, default_value = "default")]
    chain: String,
    /// Keep printing records as they are appended, until interrupted.
    #[arg(short, long)]
    follow: bool,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

fn chain_id(name: &str) -> Result<ChainId, CliError> {
    ChainId::new(name).map_err(|error| CliError::usage(error.to_string()))
}

/// Runs `show`: exit 0 with the record, 2 when there is none at that seq.
pub fn show(args: &ShowArgs) -> Result<ExitCode, CliError> {
    let chain = chain_id(&args.chain)?;
    let found = block_on(async {
        let source = open_source(&args.url).await?;
        let mut rows = source.records(&chain, args.seq).await?;
        let found = match rows.next().await.transpose()? {
            Some(SourceRecord::Record(record)) if record.seq == args.seq => {
                Some(SourceRecord::Record(record))
            }
            Some(SourceRecord::Malformed { seq, detail }) if seq == i128::from(args.seq) => {
                Some(SourceRecord::Malformed { seq, detail })
            }
            _ => None,
        };
        Ok::<_, CliError>(found)
    })??;
    match found {
        Some(row) => {
            print_out(&render(&row, args.json))?;
            Ok(OK)
        }
        None => Err(CliError::usage(format!(
            "{}: chain {chain} has no record at seq {}",
            args.url, args.seq
        ))),
    }
}

/// Runs `tail`.
pub fn tail(args: &TailArgs) -> Result<ExitCode, CliError> {
    let chain = chain_id(&args.chain)?;
    block_on(async {
        let source = open_source(&args.url).await?;
        let last = source.last_seq(&chain).await?.unwrap_or(0);
        let from = last.saturating_sub(args.count.saturating_sub(1)).max(1);
        let mut next = if args.count == 0 { last + 1 } else { from };
        next = print_from(source.as_ref(), &chain, next, args.json).await?;
        if args.follow {
            loop {
                tokio::time::sleep(FOLLOW_POLL).await;
                next = print_from(source.as_ref(), &chain, next, args.json).await?;
            }
        }
        Ok::<_, CliError>(())
    })??;
    Ok(OK)
}

/// Prints the records from `from` on; returns the next seq to print.
async fn print_from(
    source: &dyn ChainSource,
    chain: &ChainId,
    from: u64,
    json: bool,
) -> Result<u64, CliError> {
    let mut next = from;
    let mut rows = source.records(chain, from).await?;
    while let Some(row) = rows.next().await {
        let row = row?;
        if let SourceRecord::Record(record) = &row {
            if record.seq < from {
                continue;
            }
            next = record.seq.saturating_add(1);
        }
        print_out(&render(&row, json))?;
    }
    Ok(next)
}

fn render(row: &SourceRecord, json: bool) -> String {
    match (row, json) {
        (SourceRecord::Record(record), true) => format!("{}\n", record_json(record)),
        (SourceRecord::Record(record), false) => record_text(record),
        (SourceRecord::Malformed { seq, detail }, true) => format!(
            "{}\n",
            serde_json::json!({"seq": seq.to_string(), "malformed": detail})
        ),
        (SourceRecord::Malformed { seq, detail }, false) => {
            format!("seq {seq}: not a readable record: {detail}\n")
        }
    }
}

fn record_json(record: &Record) -> serde_json::Value {
    serde_json::json!({
        "chain": record.chain.as_str(),
        "seq": record.seq,
        "event": serde_json::from_str::<serde_json::Value>(&record.event_json)
            .unwrap_or_else(|_| serde_json::Value::String(record.event_json.to_string())),
        "event_hash": record.event_hash.to_hex(),
        "prev": record.prev.to_hex(),
        "hash": record.hash.to_hex(),
        "key_id": record.key_id,
        "sig": record.sig.map(|sig| sig.iter().map(|b| format!("{b:02x}")).collect::<String>()),
    })
}

fn record_text(record: &Record) -> String {
    let signed = match &record.key_id {
        Some(key_id) if record.sig.is_some() => format!("signed by key {key_id}"),
        _ => "unsigned".to_owned(),
    };
    format!(
        "seq {} of chain {} ({signed})\n  hash  {}\n  prev  {}\n  event {}\n",
        record.seq, record.chain, record.hash, record.prev, record.event_json
    )
}
