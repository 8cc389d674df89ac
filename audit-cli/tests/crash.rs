//! The crash and fault suite: real `deferred-audit load` processes killed
//! with SIGKILL on a SQLite file, a PostgreSQL server and a `file://`
//! archive; run against a store that cannot be used; and run out of disk
//! for their journal.
//!
//! The promise checked everywhere: every event id a writer wrote to its
//! acked file (it was fsync'd in the journal when acknowledged) ends up in
//! the chain exactly once, and the chain verifies.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_deferred-audit");

/// A small deterministic generator (xorshift64*), so a failing run can be
/// replayed with the seed it prints.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

/// One test's files: the store, the journal, the acked ids.
struct Site {
    _dir: tempfile::TempDir,
    store: PathBuf,
    url: String,
    journal: PathBuf,
    acked: PathBuf,
}

impl Site {
    /// A SQLite file.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("audit.db");
        Self::at(dir, format!("sqlite://{}", store.display()))
    }

    /// Any store URL, with the journal and acked file in a fresh folder.
    fn at(dir: tempfile::TempDir, url: String) -> Self {
        Site {
            store: dir.path().join("audit.db"),
            url,
            journal: dir.path().join("journal"),
            acked: dir.path().join("acked.txt"),
            _dir: dir,
        }
    }

    fn store_url(&self) -> String {
        self.url.clone()
    }

    /// `deferred-audit load` with the journal and acked file, plus `extra`.
    fn load(&self, events: u64, extra: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .arg("load")
            .arg("--json")
            .args(["--store", &self.store_url()])
            .args(["--events", &events.to_string()])
            .arg("--journal")
            .arg(&self.journal)
            .arg("--acked")
            .arg(&self.acked)
            .args(extra)
            .stdin(Stdio::null());
        command
    }

    /// Replays the journal into the store (no new events); must succeed.
    fn recover(&self) -> serde_json::Value {
        let output = self.load(0, &[]).output().unwrap();
        assert!(
            output.status.success(),
            "recovery failed: {}",
            describe(&output)
        );
        summary(&output)
    }

    /// Ids the writers claimed: complete lines only (a line cut by a kill
    /// was never fully claimed).
    fn acked_ids(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.acked).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// How many times each event id is in the chain, read through the
    /// library's source for the store's URL (any backend).
    fn chain_counts(&self) -> HashMap<String, u64> {
        let url: deferred_audit::StoreUrl = self.url.parse().unwrap();
        let records = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let source = deferred_audit::open_source(&url).await.unwrap();
                audit_testkit::read_all_records(source.as_ref())
                    .await
                    .unwrap()
            });
        let mut counts = HashMap::new();
        for record in records {
            let id = audit_core::AuditEvent::from_canonical(&record.event_json)
                .unwrap()
                .id()
                .to_owned();
            *counts.entry(id).or_insert(0) += 1;
        }
        counts
    }

    /// Every acked id is in the chain exactly once, no id is there twice,
    /// and `deferred-audit verify` exits 0. Returns the acked count.
    fn assert_acked_in_chain_once_and_verified(&self, context: &str) -> usize {
        let acked = self.acked_ids();
        let unique: HashSet<&String> = acked.iter().collect();
        assert_eq!(
            unique.len(),
            acked.len(),
            "{context}: an id was acknowledged twice"
        );
        let counts = self.chain_counts();
        for id in &acked {
            assert_eq!(
                counts.get(id).copied(),
                Some(1),
                "{context}: acknowledged event {id} is in the chain {} time(s)",
                counts.get(id).copied().unwrap_or(0)
            );
        }
        if let Some((id, count)) = counts.iter().find(|(_, count)| **count > 1) {
            panic!("{context}: event {id} is in the chain {count} times");
        }
        let verify = Command::new(BIN)
            .args(["verify", &self.store_url()])
            .output()
            .unwrap();
        assert_eq!(
            verify.status.code(),
            Some(0),
            "{context}: the chain does not verify: {}",
            describe(&verify)
        );
        acked.len()
    }

    fn journal_segments(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.journal) else {
            return Vec::new();
        };
        let mut segments: Vec<PathBuf> = entries
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "journal"))
            .collect();
        segments.sort();
        segments
    }
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn summary(output: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .unwrap_or_else(|error| panic!("no JSON summary ({error}): {}", describe(output)))
}

fn kill(mut child: Child) -> bool {
    use std::os::unix::process::ExitStatusExt;
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    status.signal() == Some(9)
}

/// Events per writer run, and the knobs that keep batches small so that
/// kills land inside SQLite transactions and journal group commits.
const EVENTS_PER_RUN: u64 = 1_500;
const WRITER_ARGS: [&str; 6] = ["--producers", "4", "--in-flight", "8", "--max-batch", "64"];

#[test]
fn twenty_sigkills_in_a_row_lose_no_acknowledged_event_and_the_chain_verifies() {
    sigkill_rounds(&Site::new(), 20);
}

#[test]
fn sigkills_on_postgres_lose_no_acknowledged_event_and_the_chain_verifies() {
    let server =
        audit_testkit::servers::postgres::PostgresServer::start().unwrap_or_else(|error| {
            panic!("PostgreSQL is needed (scripts/install-postgres.sh): {error}")
        });
    let site = Site::at(tempfile::tempdir().unwrap(), server.url());
    sigkill_rounds(&site, 10);
}

#[test]
fn sigkills_on_a_file_archive_lose_no_acknowledged_event_and_the_chain_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("archive").display());
    let site = Site::at(dir, url);
    sigkill_rounds(&site, 10);
}

/// `rounds` writers killed at seeded random moments, each followed by a
/// recovery and the full check.
fn sigkill_rounds(site: &Site, rounds: u32) {
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0x5EED_CAFE);
    eprintln!(
        "crash suite on {} seed {seed} (set CRASH_SEED to replay)",
        site.url
    );
    let mut rng = Rng(seed | 1);

    // Uninterrupted runs tell how long a run lasts on this machine, so the
    // kill delays spread over a whole run, start-up and drain included. The
    // first run also creates the store (a schema, a probe), so the shorter
    // of two runs is the measure.
    let mut run_ms = u64::MAX;
    for calibration in 1..=2 {
        let started = Instant::now();
        let output = site.load(EVENTS_PER_RUN, &WRITER_ARGS).output().unwrap();
        assert!(output.status.success(), "{}", describe(&output));
        run_ms = run_ms.min((started.elapsed().as_millis() as u64).max(20));
        site.assert_acked_in_chain_once_and_verified(&format!(
            "after calibration run {calibration}"
        ));
    }

    let mut interrupted = 0;
    for round in 1..=rounds {
        let before = site.acked_ids().len();
        let child = site
            .load(EVENTS_PER_RUN, &WRITER_ARGS)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let delay = rng.below(run_ms * 3 / 4);
        std::thread::sleep(Duration::from_millis(delay));
        let killed = kill(child);
        interrupted += u64::from(killed);
        let after_kill = site.acked_ids().len();
        let recovered = site.recover();
        let acked = site.assert_acked_in_chain_once_and_verified(&format!(
            "round {round} (kill after {delay} ms)"
        ));
        eprintln!(
            "round {round}: killed after {delay} ms (interrupted: {killed}), acked {} in that run, {} replayed from the journal, {acked} acked in all",
            after_kill - before,
            recovered["recovered"],
        );
        assert!(
            site.journal_segments().is_empty(),
            "round {round}: the journal still holds segments after a clean recovery: {:?}",
            site.journal_segments()
        );
    }
    assert!(
        interrupted * 2 >= u64::from(rounds),
        "only {interrupted} of {rounds} kills interrupted a writer: the suite did not test crashes"
    );
    eprintln!(
        "crash suite on {}: {rounds} kills ({interrupted} mid-run), {} events acknowledged, 0 lost",
        site.url,
        site.acked_ids().len()
    );
}

/// Event ids held by the journal's segments, read frame by frame; panics
/// unless every segment is whole frames after its header (no half frame
/// left by a failed write, nothing torn).
fn journal_ids_whole_frames(site: &Site) -> Vec<String> {
    use audit_core::journal::frame::{Decoded, SEGMENT_MAGIC, decode};
    let mut ids = Vec::new();
    for segment in site.journal_segments() {
        let bytes = std::fs::read(&segment).unwrap();
        assert!(bytes.starts_with(SEGMENT_MAGIC), "{}", segment.display());
        let mut offset = SEGMENT_MAGIC.len();
        while offset < bytes.len() {
            match decode(&bytes, offset) {
                Decoded::Frame { payload, next } => {
                    let event: serde_json::Value = serde_json::from_slice(payload).unwrap();
                    ids.push(event["id"].as_str().unwrap().to_owned());
                    offset = next;
                }
                other => panic!(
                    "{} holds a damaged frame at offset {offset} of {}: {other:?}",
                    segment.display(),
                    bytes.len()
                ),
            }
        }
    }
    ids
}

#[test]
fn a_store_unusable_at_recovery_keeps_every_event_in_the_journal_until_it_is_back() {
    let site = Site::new();
    let output = site.load(300, &[]).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));

    // The store becomes unusable: its path is now a directory.
    let away = site.store.with_extension("away");
    std::fs::rename(&site.store, &away).unwrap();
    std::fs::create_dir(&site.store).unwrap();

    // A writer admits events durably; the store takes none of them.
    let output = site.load(400, &["--max-restarts", "1"]).output().unwrap();
    let first = summary(&output);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert_eq!(first["appended"], 0, "{first}");
    let acked = site.acked_ids();
    assert!(acked.len() > 300, "too few acknowledged: {first}");
    let held = journal_ids_whole_frames(&site);
    let held_set: HashSet<&String> = held.iter().collect();
    for id in &acked[300..] {
        assert!(
            held_set.contains(id),
            "acknowledged {id} is not in the journal"
        );
    }

    // Restarted with the store still unusable: recovery cannot deliver, and
    // the journal keeps every event.
    let output = site.load(0, &["--max-restarts", "1"]).output().unwrap();
    let second = summary(&output);
    assert_ne!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(second["recovered"], held.len(), "{second}");
    assert_eq!(second["appended"], 0, "{second}");
    assert_eq!(
        journal_ids_whole_frames(&site),
        held,
        "the journal changed while the store was unusable"
    );

    // The store is back: a restart delivers them all, exactly once.
    std::fs::remove_dir(&site.store).unwrap();
    std::fs::rename(&away, &site.store).unwrap();
    let third = site.recover();
    assert_eq!(third["recovered"], held.len(), "{third}");
    assert_eq!(third["appended"], held.len(), "{third}");
    let total = site.assert_acked_in_chain_once_and_verified("after the store came back");
    assert_eq!(total, acked.len());
    assert!(site.journal_segments().is_empty());
}

/// `load` in a shell whose file size limit is `blocks` (SIGXFSZ ignored,
/// so writes past it fail with EFBIG instead of killing the process).
fn limited_load(site: &Site, blocks: u64, events: u64, extra: &[&str]) -> Output {
    let load = site.load(events, extra);
    let mut line = format!("trap '' XFSZ; ulimit -f {blocks}; exec '{BIN}'");
    for arg in load.get_args() {
        line.push_str(&format!(" '{}'", arg.to_str().unwrap()));
    }
    Command::new("sh")
        .args(["-c", &line])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_full_disk_for_the_journal_fails_submits_clearly_and_loses_nothing_acknowledged() {
    let site = Site::new();
    // 128 blocks (64 or 128 KiB): the acked ids fit, the journal does not.
    let output = limited_load(&site, 128, 1_500, &["--journal-full", "reject"]);
    let limited = summary(&output);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        limited["submit_errors"].as_u64().unwrap() > 0,
        "no submit failed: {limited}"
    );
    let error = limited["first_error"].as_str().unwrap();
    assert!(
        error.contains("File too large") && error.contains(site.journal.to_str().unwrap()),
        "unclear error: {error}"
    );
    // Failed writes were undone: only whole frames are left.
    journal_ids_whole_frames(&site);
    let acked = limited["acknowledged"].as_u64().unwrap();
    assert_eq!(site.acked_ids().len() as u64, acked);

    site.recover();
    let total = site.assert_acked_in_chain_once_and_verified("after the disk-full run");
    assert_eq!(total as u64, acked);
}

#[test]
fn at_its_byte_bound_the_journal_refuses_in_reject_mode_and_waits_in_block_mode() {
    let bound = ["--journal-max-bytes", "32768", "--in-flight", "64"];
    let site = Site::new();
    let output = site
        .load(1_500, &[&bound[..], &["--journal-full", "reject"]].concat())
        .output()
        .unwrap();
    let rejected = summary(&output);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let error = rejected["first_error"].as_str().unwrap_or_default();
    assert!(error.contains("is full"), "{rejected}");
    site.recover();
    site.assert_acked_in_chain_once_and_verified("after reject mode");

    let before = site.acked_ids().len();
    let output = site
        .load(1_500, &[&bound[..], &["--journal-full", "block"]].concat())
        .output()
        .unwrap();
    let blocked = summary(&output);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(blocked["submit_errors"], 0, "{blocked}");
    assert_eq!(blocked["acknowledged"], 1_500, "{blocked}");
    assert_eq!(site.acked_ids().len(), before + 1_500);
    site.assert_acked_in_chain_once_and_verified("after block mode");
    assert!(site.journal_segments().is_empty());
}
