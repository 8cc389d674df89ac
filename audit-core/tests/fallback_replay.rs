//! Replaying the fallback dead-letter file into a sink: once, whatever
//! happens in between.

use audit_core::AuditEvent;
use audit_core::chain::ChainId;
use audit_core::chain_writer::ChainSinkOptions;
use audit_core::dead_letter::{DeadLetter, FallbackFile, FallbackReplayError, REPLAY_BATCH};
use audit_core::keys::Keyring;
use audit_core::sink::AuditSink;
use audit_testkit::sinks::{FailingSink, MemoryChain};

fn events(count: usize) -> Vec<AuditEvent> {
    (0..count)
        .map(|n| AuditEvent::new("test", "agent:replay", serde_json::json!({ "n": n })).unwrap())
        .collect()
}

fn letters(chain: &ChainId, events: &[AuditEvent]) -> Vec<DeadLetter> {
    events
        .iter()
        .map(|event| DeadLetter::new(chain, event, "sink down", 3))
        .collect()
}

#[tokio::test]
async fn letters_replay_once_and_the_rest_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = FallbackFile::new(dir.path().join("fallback.jsonl"));
    let chain = ChainId::default();
    let lost = events(5);
    let mut written = letters(&chain, &lost);
    // The same batch dead-lettered twice (a retry that failed again).
    written.extend(letters(&chain, &lost[..2]));
    written.extend(letters(&ChainId::new("other").unwrap(), &events(1)));
    let mut broken = letters(&chain, &events(1));
    broken[0].event_json = "{not json".into();
    written.extend(broken);
    file.append(&written).unwrap();

    let memory = MemoryChain::new();
    let mut sink = memory.sink(ChainSinkOptions::unsigned());
    sink.append_batch(&lost[..1]).await.unwrap();
    let report = file.replay_into(&mut sink, &chain).await.unwrap();
    assert_eq!(
        (
            report.appended,
            report.already_present,
            report.dead_lettered
        ),
        (4, 3, 0)
    );
    assert_eq!(report.other_chain, 1);
    assert_eq!(report.invalid.len(), 1, "{:?}", report.invalid);
    assert!(!report.is_complete());
    let again = file.replay_into(&mut sink, &chain).await.unwrap();
    assert_eq!((again.appended, again.already_present), (0, 7));
    assert_eq!(memory.len(), 5, "every lost event exactly once");
    assert!(memory.verify(Keyring::new()).is_ok());
    assert_eq!(
        file.read_all().unwrap(),
        written,
        "the file is left as it was"
    );
}

#[tokio::test]
async fn a_sink_failure_part_way_stops_the_replay_and_a_second_replay_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = FallbackFile::new(dir.path().join("fallback.jsonl"));
    let chain = ChainId::default();
    let lost = events(REPLAY_BATCH + 10);
    file.append(&letters(&chain, &lost)).unwrap();
    let memory = MemoryChain::new();
    // The first batch appends, the second fails.
    let mut failing = FailingSink::on_call(memory.sink(ChainSinkOptions::unsigned()), 2);
    let error = file.replay_into(&mut failing, &chain).await.unwrap_err();
    match &error {
        FallbackReplayError::Sink { replayed, .. } => assert_eq!(*replayed, REPLAY_BATCH as u64),
        other => panic!("expected a sink error, got {other}"),
    }
    assert_eq!(memory.len(), REPLAY_BATCH);
    assert!(error.to_string().contains("fallback.jsonl"), "{error}");
    let mut sink = memory.sink(ChainSinkOptions::unsigned());
    let report = file.replay_into(&mut sink, &chain).await.unwrap();
    assert_eq!(
        (report.appended, report.already_present),
        (10, REPLAY_BATCH as u64)
    );
    assert!(report.is_complete());
    assert_eq!(memory.len(), lost.len());
}

#[tokio::test]
async fn a_missing_file_replays_nothing_and_an_unreadable_line_is_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let memory = MemoryChain::new();
    let mut sink = memory.sink(ChainSinkOptions::unsigned());
    let missing = FallbackFile::new(dir.path().join("none.jsonl"));
    let report = missing
        .replay_into(&mut sink, &ChainId::default())
        .await
        .unwrap();
    assert_eq!(report, Default::default());
    let garbage = dir.path().join("garbage.jsonl");
    std::fs::write(&garbage, "not a letter\n").unwrap();
    // One bad line no longer makes the file unreadable (issue 12): it is
    // skipped with its line number, and the replay is not complete.
    let report = FallbackFile::new(&garbage)
        .replay_into(&mut sink, &ChainId::default())
        .await
        .unwrap();
    assert_eq!(report.skipped_lines.len(), 1, "{report:?}");
    assert_eq!(report.skipped_lines[0].line, 1);
    assert!(!report.is_complete());
    assert!(memory.is_empty());
}
