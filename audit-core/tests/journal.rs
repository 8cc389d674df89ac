//! The durable admission journal on real files: recovery, torn tails,
//! corruption, permissions and its bounds.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use audit_core::AuditEvent;
use audit_core::journal::{Journal, JournalConfig, JournalError, WhenFull};

fn event(n: u64) -> AuditEvent {
    AuditEvent::new(
        "journal.test",
        format!("agent:{n}"),
        serde_json::json!({ "n": n }),
    )
    .unwrap()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "journal")
        })
        .collect();
    files.sort();
    files
}

async fn write(config: &JournalConfig, events: &[AuditEvent]) {
    let (journal, _) = Journal::open(config.clone()).unwrap();
    for event in events {
        journal.append(event).await.unwrap();
    }
}

#[tokio::test]
async fn acknowledged_events_come_back_in_order_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig::new(dir.path().join("j"));
    let events: Vec<AuditEvent> = (0..50).map(event).collect();
    write(&config, &events).await;
    let (_journal, recovered) = Journal::open(config).unwrap();
    let back: Vec<AuditEvent> = recovered
        .events
        .into_iter()
        .map(|(event, _)| event)
        .collect();
    assert_eq!(back, events);
}

#[tokio::test]
async fn concurrent_appends_are_group_committed_and_all_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig::new(dir.path().join("j"));
    let (journal, _) = Journal::open(config.clone()).unwrap();
    let tasks: Vec<_> = (0..500)
        .map(|n| {
            let journal = journal.clone();
            tokio::spawn(async move { journal.append(&event(n)).await.map(|_| n) })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    drop(journal);
    let (_journal, recovered) = Journal::open(config).unwrap();
    let mut ns: Vec<u64> = recovered
        .events
        .iter()
        .map(|(event, _)| event.payload()["n"].as_u64().unwrap())
        .collect();
    ns.sort();
    assert_eq!(ns, (0..500).collect::<Vec<_>>());
}

#[tokio::test]
async fn resolved_segments_are_deleted_and_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = JournalConfig::new(dir.path().join("j"));
    config = config.with_segment_bytes(1024);
    let (journal, _) = Journal::open(config.clone()).unwrap();
    let mut tickets = Vec::new();
    for n in 0..40 {
        tickets.push(journal.append(&event(n)).await.unwrap());
    }
    assert!(segments(config.dir()).len() > 3);
    for ticket in &tickets[..30] {
        journal.resolve(*ticket);
    }
    drop(journal);
    let (_journal, recovered) = Journal::open(config.clone()).unwrap();
    let first_kept = recovered.events[0].0.payload()["n"].as_u64().unwrap();
    assert!(
        first_kept <= 30,
        "an unresolved event was lost: first kept {first_kept}"
    );
    assert!(
        recovered.events.len() < 40,
        "resolved segments were kept: {}",
        recovered.events.len()
    );
    assert_eq!(recovered.events.last().unwrap().0.payload()["n"], 39);
}

#[tokio::test]
async fn a_fully_resolved_active_segment_is_deleted_and_appends_go_on_in_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig::new(dir.path().join("j"));
    let (journal, _) = Journal::open(config.clone()).unwrap();
    let first = journal.append(&event(1)).await.unwrap();
    assert_eq!(segments(config.dir()).len(), 1);
    journal.resolve(first);
    assert!(
        segments(config.dir()).is_empty(),
        "a settled active segment was kept: a clean stop would replay it"
    );
    assert_eq!(journal.usage(), (0, 0));
    journal.append(&event(2)).await.unwrap();
    assert_eq!(segments(config.dir()).len(), 1);
    drop(journal);
    let (_journal, recovered) = Journal::open(config).unwrap();
    let kept: Vec<_> = recovered
        .events
        .iter()
        .map(|(event, _)| event.payload()["n"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [2]);
}

#[tokio::test]
async fn a_torn_last_frame_is_dropped_and_the_file_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig::new(dir.path().join("j"));
    let events: Vec<AuditEvent> = (0..3).map(event).collect();
    write(&config, &events).await;
    let last = segments(config.dir()).pop().unwrap();
    let intact = fs::read(&last).unwrap();
    // A crash mid-write: a header and half a payload.
    let mut torn = intact.clone();
    torn.extend_from_slice(&[0, 0, 0, 200, 1, 2, 3, 4, b'{', b'"']);
    fs::write(&last, &torn).unwrap();
    let (_journal, recovered) = Journal::open(config.clone()).unwrap();
    assert_eq!(recovered.events.len(), 3);
    assert_eq!(fs::read(&last).unwrap(), intact);
}

#[tokio::test]
async fn a_damaged_whole_last_frame_is_corruption_not_a_torn_tail() {
    // The last frame is whole and was acknowledged: a bad checksum there is
    // damage, not a crash mid-write; it is refused, not cut off (issue 12).
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig::new(dir.path().join("j"));
    write(&config, &(0..3).map(event).collect::<Vec<_>>()).await;
    let last = segments(config.dir()).pop().unwrap();
    let mut bytes = fs::read(&last).unwrap();
    let end = bytes.len();
    bytes[end - 5] ^= 0xff;
    fs::write(&last, &bytes).unwrap();
    let error = Journal::open(config).unwrap_err();
    assert!(
        matches!(&error, JournalError::Corrupt { path, .. } if *path == last),
        "{error:?}"
    );
    assert_eq!(fs::read(&last).unwrap(), bytes);
}

#[tokio::test]
async fn a_last_frame_whose_end_did_not_reach_the_disk_is_torn() {
    // The file size reached the disk, the data did not: zeros at the end.
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig::new(dir.path().join("j"));
    write(&config, &(0..3).map(event).collect::<Vec<_>>()).await;
    let last = segments(config.dir()).pop().unwrap();
    let mut bytes = fs::read(&last).unwrap();
    let end = bytes.len();
    bytes[end - 20..].fill(0);
    fs::write(&last, &bytes).unwrap();
    let (_journal, recovered) = Journal::open(config).unwrap();
    assert_eq!(recovered.events.len(), 2);
}

#[tokio::test]
async fn corruption_before_the_tail_stops_recovery_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig::new(dir.path().join("j"));
    write(&config, &(0..3).map(event).collect::<Vec<_>>()).await;
    let last = segments(config.dir()).pop().unwrap();
    let mut bytes = fs::read(&last).unwrap();
    bytes[8 + 8 + 3] ^= 0x01; // inside the first frame's payload
    fs::write(&last, &bytes).unwrap();
    let error = Journal::open(config.clone()).unwrap_err();
    let JournalError::Corrupt { path, offset, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!((path, *offset), (&last, 8));
    assert!(error.to_string().contains("nothing was deleted"));
    assert_eq!(
        fs::read(&last).unwrap(),
        bytes,
        "a corrupt journal was modified"
    );
}

#[tokio::test]
async fn a_cut_frame_in_an_older_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = JournalConfig::new(dir.path().join("j"));
    config = config.with_segment_bytes(600);
    write(&config, &(0..12).map(event).collect::<Vec<_>>()).await;
    let files = segments(config.dir());
    assert!(files.len() >= 2);
    let bytes = fs::read(&files[0]).unwrap();
    fs::write(&files[0], &bytes[..bytes.len() - 3]).unwrap();
    let error = Journal::open(config).unwrap_err();
    assert!(
        matches!(error, JournalError::Corrupt { ref path, .. } if *path == files[0]),
        "{error:?}"
    );
}

#[tokio::test]
async fn journals_that_others_can_write_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig::new(dir.path().join("j"));
    write(&config, &[event(1)]).await;
    assert_eq!(
        fs::metadata(config.dir()).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let file = segments(config.dir()).pop().unwrap();
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).unwrap();
    let error = Journal::open(config.clone()).unwrap_err();
    assert!(
        matches!(error, JournalError::InsecurePermissions { ref path, mode: 0o666 } if *path == file),
        "{error:?}"
    );
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();

    fs::set_permissions(config.dir(), fs::Permissions::from_mode(0o777)).unwrap();
    let error = Journal::open(config.clone()).unwrap_err();
    assert!(
        matches!(error, JournalError::InsecurePermissions { mode: 0o777, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("chmod go-w"));
}

#[tokio::test]
async fn a_second_handle_on_the_same_directory_is_refused_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig::new(dir.path().join("j"));
    let (journal, _) = Journal::open(config.clone()).unwrap();
    let error = Journal::open(config.clone()).unwrap_err();
    assert!(
        matches!(error, JournalError::Locked { ref dir } if *dir == config.dir()),
        "{error:?}"
    );
    drop(journal);
    assert!(Journal::open(config).is_ok());
}

#[tokio::test]
async fn a_full_journal_rejects_in_reject_mode() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = JournalConfig::new(dir.path().join("j"));
    config = config.with_max_bytes(600);
    config = config.with_when_full(WhenFull::Reject);
    let (journal, _) = Journal::open(config).unwrap();
    let mut admitted = 0;
    let error = loop {
        match journal.append(&event(admitted)).await {
            Ok(_) => admitted += 1,
            Err(error) => break error,
        }
    };
    assert!(admitted >= 2, "admitted {admitted}");
    assert!(matches!(error, JournalError::Full { .. }), "{error:?}");
    assert!(error.to_string().contains("not admitted"));
}

#[tokio::test]
async fn a_full_journal_blocks_in_block_mode_until_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = JournalConfig::new(dir.path().join("j"));
    config = config.with_max_bytes(1200);
    config = config.with_segment_bytes(300);
    let (journal, _) = Journal::open(config).unwrap();
    let mut tickets = Vec::new();
    while let Ok(ticket) = tokio::time::timeout(
        Duration::from_millis(300),
        journal.append(&event(tickets.len() as u64)),
    )
    .await
    {
        tickets.push(ticket.unwrap());
    }
    assert!(tickets.len() >= 3);
    let waiting = tokio::spawn({
        let journal = journal.clone();
        async move { journal.append(&event(999)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "a full journal admitted an event");
    for ticket in tickets {
        journal.resolve(ticket);
    }
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("append stayed blocked after space was freed")
        .unwrap()
        .unwrap();
}
