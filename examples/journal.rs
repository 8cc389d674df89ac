//! Durable admission: `submit_durable` returns once the event is fsync'd
//! in a local journal, so an event acknowledged to the caller survives a
//! crash even when the audit store was down the whole time.
//!
//! Run it with `cargo run --example journal`. The first run of the
//! pipeline finds its store unreachable and "crashes" with every event
//! still queued; the second, on the same journal, recovers them and
//! appends them ahead of new events. A real crash (SIGKILL) behaves the
//! same: `audit-cli`'s crash tests kill writer processes to check it.
//! The journal locks its directory and relies on POSIX file semantics
//! (Unix only). The facade's test `tests/example_journal.rs` runs the same
//! code.

#[path = "support/journal_recovery.rs"]
mod journal_recovery;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let outcome = journal_recovery::run(dir.path(), 20, 5)?;
    println!(
        "acknowledged {} events while the store was down; after the restart {} were recovered from the journal and {} appended in all",
        outcome.acknowledged_before_crash, outcome.recovered, outcome.appended
    );
    println!(
        "chain verified: {} ({} records)",
        outcome.report.is_ok(),
        outcome.report.records
    );
    if !outcome.report.is_ok() {
        return Err("the chain does not verify".into());
    }
    Ok(())
}
