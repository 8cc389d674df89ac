//! The example `journal` runs in CI: events acknowledged by
//! `submit_durable` while the store is down survive the crash of the
//! process's pipeline, and reach the chain after the restart.

#[path = "../examples/support/journal_recovery.rs"]
mod journal_recovery;

#[test]
fn the_journal_example_recovers_every_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = journal_recovery::run(dir.path(), 20, 5).unwrap();
    assert_eq!(outcome.acknowledged_before_crash, 20);
    assert_eq!(
        outcome.recovered, 20,
        "every acknowledged event is in the journal"
    );
    assert_eq!(outcome.appended, 25);
    assert!(outcome.report.is_ok(), "{:?}", outcome.report.failures);
    assert_eq!(outcome.report.records, 25);
}
