//! `deferred-audit export URL --to file:///DIR`: writes a chain in the JSONL
//! layout of FORMAT.md section 7, which `verify file:///DIR` accepts.

use std::process::ExitCode;

use audit_core::chain::ChainId;

use crate::error::{CliError, OK};
use crate::local_jsonl::{LocalJsonl, SegmentWriter};
use crate::progress;
use crate::store_url::StoreUrl;

/// Exports every chain of `from` into the folder `to`.
pub fn run(from: &StoreUrl, to: &StoreUrl, segment_records: u64) -> Result<ExitCode, CliError> {
    let StoreUrl::File(dir) = to else {
        return Err(to.unsupported("export --to"));
    };
    let StoreUrl::Sqlite(path) = from else {
        return Err(from.unsupported("export"));
    };
    let folder = LocalJsonl::create(dir)?;
    let bar = progress::bar(audit_sqlite::count_records(path)?, "export", false);
    let mut writer: Option<(ChainId, SegmentWriter)> = None;
    let mut records = 0u64;
    audit_sqlite::for_each_record(path, |record| -> Result<(), CliError> {
        if writer
            .as_ref()
            .is_none_or(|(chain, _)| *chain != record.chain)
        {
            if let Some((_, mut done)) = writer.take() {
                done.finish_segment()?;
            }
            let fresh = SegmentWriter::new(&folder, &record.chain, segment_records)?;
            writer = Some((record.chain.clone(), fresh));
        }
        if let Some((_, current)) = writer.as_mut() {
            current.record(record)?;
        }
        records += 1;
        bar.inc(1);
        Ok(())
    })?;
    if let Some((_, mut done)) = writer.take() {
        done.finish_segment()?;
    }
    bar.finish_and_clear();
    let checkpoints = audit_sqlite::read_checkpoints(path)?;
    for checkpoint in &checkpoints {
        SegmentWriter::new(&folder, &checkpoint.chain, segment_records)?.checkpoint(checkpoint)?;
    }
    println!(
        "exported {records} records and {} checkpoints from {from} to {to}",
        checkpoints.len()
    );
    Ok(OK)
}
