//! `deferred-audit export URL --to URL`: copies chains record for record
//! (hashes and signatures untouched) with the core's one export, from any
//! store into any store, e.g. a SQLite chain into the JSONL layout of
//! FORMAT.md section 7. Into a store that already holds the start of a
//! chain, the export continues it (appends what is new).

use std::process::ExitCode;

use audit_core::chain::ChainId;
use audit_core::export::{ExportOptions, export};
use audit_core::sink::{ErrorClass, SinkError};
use deferred_audit::{open_chain_store, open_source};

use crate::error::{CliError, OK, block_on};
use crate::store_url::StoreUrl;
use crate::verify::print_out;

/// Exports every chain (or `chains`) of `from` into `to`.
pub fn run(
    from: &StoreUrl,
    to: &StoreUrl,
    segment_records: u64,
    chains: &[String],
) -> Result<ExitCode, CliError> {
    let chains = chains
        .iter()
        .map(|name| ChainId::new(name).map_err(|error| CliError::usage(error.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let options = ExportOptions::default()
        .with_batch_records(usize::try_from(segment_records.max(1)).unwrap_or(usize::MAX))
        .with_chains(chains);
    let report = block_on(async {
        let source = open_source(from).await?;
        let open = |chain: &ChainId| {
            let chain = chain.clone();
            async move {
                open_chain_store(to, &chain).await.map_err(|error| {
                    SinkError::new(to.to_string(), ErrorClass::Permanent, error.to_string())
                })
            }
        };
        Ok::<_, CliError>(export(source.as_ref(), open, options).await?)
    })??;
    print_out(&format!(
        "exported {} records and {} checkpoints of {} chain(s) from {from} to {to} ({} records were there already)\n",
        report.records, report.checkpoints, report.chains, report.already_present
    ))?;
    Ok(OK)
}
