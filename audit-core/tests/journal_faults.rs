//! Issue 12 on real files: recovery never deletes an acknowledged event
//! without refusing and naming the file; torn tails are still cut off; a
//! full disk during segment rotation does not lock the journal up.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use audit_core::AuditEvent;
use audit_core::journal::{Journal, JournalConfig, JournalError};

fn event(n: u64) -> AuditEvent {
    AuditEvent::new(
        "journal.fault",
        format!("agent:{n}"),
        serde_json::json!({ "n": n, "note": "acknowledged" }),
    )
    .unwrap()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "journal"))
        .collect();
    files.sort();
    files
}

/// A journal whose one segment holds 5 acknowledged events.
async fn five_frame_segment() -> (tempfile::TempDir, JournalConfig, PathBuf, Vec<AuditEvent>) {
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig::new(dir.path().join("j"));
    let events: Vec<AuditEvent> = (0..5).map(event).collect();
    {
        let (journal, _) = Journal::open(config.clone()).unwrap();
        for event in &events {
            journal.append(event).await.unwrap();
        }
    }
    let files = segments(config.dir());
    assert_eq!(files.len(), 1);
    let segment = files[0].clone();
    (dir, config, segment, events)
}

/// Offsets of the frames of a segment.
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut offset = 8;
    while offset < bytes.len() {
        offsets.push(offset);
        let len = u32::from_be_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        offset += 8 + len;
    }
    offsets
}

#[tokio::test]
async fn a_flipped_bit_in_the_high_byte_of_a_frame_length_is_refused_not_truncated() {
    let (_dir, config, segment, _) = five_frame_segment().await;
    let mut bytes = fs::read(&segment).unwrap();
    let offsets = frame_offsets(&bytes);
    assert_eq!(offsets.len(), 5);
    bytes[offsets[1]] ^= 0x01;
    fs::write(&segment, &bytes).unwrap();
    let error = Journal::open(config.clone()).unwrap_err();
    match &error {
        JournalError::Corrupt { path, offset, .. } => {
            assert_eq!(path, &segment);
            assert_eq!(*offset, offsets[1] as u64);
        }
        other => panic!("expected a refusal naming the file, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains(&segment.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!("offset {}", offsets[1])),
        "{message}"
    );
    assert_eq!(fs::read(&segment).unwrap(), bytes, "the file was modified");
}

#[tokio::test]
async fn a_tail_cut_at_every_byte_of_the_last_frame_is_recovered_and_truncated() {
    let (_dir, config, segment, events) = five_frame_segment().await;
    let intact = fs::read(&segment).unwrap();
    let last = *frame_offsets(&intact).last().unwrap();
    for cut in last..intact.len() {
        fs::write(&segment, &intact[..cut]).unwrap();
        let (journal, recovered) =
            Journal::open(config.clone()).unwrap_or_else(|error| panic!("cut at {cut}: {error}"));
        let back: Vec<AuditEvent> = recovered.events.into_iter().map(|(e, _)| e).collect();
        assert_eq!(back, events[..4], "cut at {cut}");
        assert_eq!(fs::read(&segment).unwrap(), intact[..last], "cut at {cut}");
        drop(journal);
    }
    println!(
        "torn tails: {} cut positions of the last frame, all recovered with 4 of 4 acknowledged events",
        intact.len() - last
    );
}

#[tokio::test]
async fn flipping_every_bit_of_a_segment_never_deletes_an_acknowledged_event_silently() {
    let (_dir, config, segment, events) = five_frame_segment().await;
    let intact = fs::read(&segment).unwrap();
    let (mut flipped, mut refusals, mut recoveries, mut lost) = (0u64, 0u64, 0u64, 0u64);
    for bit in 0..intact.len() * 8 {
        let mut bytes = intact.clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        fs::write(&segment, &bytes).unwrap();
        flipped += 1;
        match Journal::open(config.clone()) {
            Err(JournalError::Corrupt { path, .. }) => {
                assert_eq!(path, segment, "bit {bit}: the refusal names another file");
                assert_eq!(
                    fs::read(&segment).unwrap(),
                    bytes,
                    "bit {bit}: refused but modified"
                );
                refusals += 1;
            }
            Err(other) => panic!("bit {bit}: unexpected error {other}"),
            Ok((journal, recovered)) => {
                recoveries += 1;
                let back: Vec<AuditEvent> = recovered.events.into_iter().map(|(e, _)| e).collect();
                let missing = events.iter().filter(|event| !back.contains(event)).count();
                if missing > 0 {
                    eprintln!("bit {bit}: {missing} acknowledged events lost without a refusal");
                }
                lost += missing as u64;
                drop(journal);
            }
        }
    }
    println!(
        "bit flips: {flipped} bits flipped in a {}-byte segment of 5 acknowledged events; {refusals} refusals naming the file, {recoveries} recoveries, {lost} events lost",
        intact.len()
    );
    assert_eq!(flipped, intact.len() as u64 * 8);
    assert_eq!(
        lost, 0,
        "acknowledged events were deleted without a refusal"
    );
}

#[tokio::test]
async fn a_full_disk_during_rotation_does_not_lock_the_journal_up() {
    let tmpfs = support::Tmpfs::mount(256 * 1024);
    let mut config = JournalConfig::new(tmpfs.path().join("j"));
    // One 4 KiB page per segment: appends inside a segment need no new
    // space, so the full disk is met exactly when a new segment is made.
    config = config.with_segment_bytes(4096);
    let (journal, _) = Journal::open(config.clone()).unwrap();
    let mut acknowledged = Vec::new();
    let first = event(0);
    journal.append(&first).await.unwrap();
    acknowledged.push(first);
    let filler = tmpfs.fill();
    let mut failures = 0;
    for n in 1..200 {
        let next = event(n);
        match journal.append(&next).await {
            Ok(_) => acknowledged.push(next),
            Err(error) => {
                assert!(error.to_string().contains("No space left"), "{error}");
                failures += 1;
                break;
            }
        }
    }
    assert_eq!(failures, 1, "the disk never filled during rotation");
    assert_eq!(
        segments(config.dir()).len(),
        1,
        "a failed rotation left a segment"
    );
    // Still full: the retry fails the same way, not with "File exists".
    let error = journal.append(&event(1000)).await.unwrap_err();
    assert!(error.to_string().contains("No space left"), "{error}");
    fs::remove_file(&filler).unwrap();
    for n in 2000..2010 {
        let next = event(n);
        journal
            .append(&next)
            .await
            .unwrap_or_else(|error| panic!("after space was freed: {error}"));
        acknowledged.push(next);
    }
    drop(journal);
    let (_journal, recovered) = Journal::open(config).unwrap();
    let back: Vec<AuditEvent> = recovered.events.into_iter().map(|(e, _)| e).collect();
    assert_eq!(
        back, acknowledged,
        "every acknowledged event, once, in order"
    );
    println!(
        "disk-full rotation (tmpfs): {} events acknowledged, {} recovered, 0 lost",
        acknowledged.len(),
        back.len()
    );
}

#[tokio::test]
async fn recovery_copes_with_leftovers_of_a_rotation_cut_short() {
    let (_dir, config, segment, events) = five_frame_segment().await;
    // A temporary segment never renamed, and (as older versions left) a
    // header-only and an empty newest segment.
    let temporary = config.dir().join("00000000000000000002.journal.tmp");
    fs::write(&temporary, b"DAJR").unwrap();
    let header_only = config.dir().join("00000000000000000002.journal");
    fs::write(&header_only, b"DAJRN").unwrap();
    let (journal, recovered) = Journal::open(config.clone()).unwrap();
    assert_eq!(recovered.events.len(), events.len());
    assert!(!temporary.exists() && !header_only.exists());
    journal.append(&event(99)).await.unwrap();
    drop(journal);
    let empty = config.dir().join("00000000000000000009.journal");
    fs::write(&empty, b"").unwrap();
    let (journal, recovered) = Journal::open(config.clone()).unwrap();
    assert_eq!(recovered.events.len(), events.len() + 1);
    journal.append(&event(100)).await.unwrap();
    assert!(segment.exists());
}
