//! Real OS processes on one database file: four writers at once, a writer
//! killed with SIGKILL mid-batch, a writer whose disk fills up, a lock held
//! by another process past the busy timeout.
//!
//! The test binary re-executes itself: with `AUDIT_SQLITE_ROLE` set it plays
//! a child role instead of running the tests.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use audit_core::AuditEvent;
use audit_core::chain_writer::ChainSinkOptions;
use audit_core::dead_letter::{DeadLetter, FallbackFile};
use audit_core::keys::Keyring;
use audit_core::sink::{AppendOutcome, AuditSink, ErrorClass};
use audit_sqlite::{SqliteOptions, open_sink};

mod common;
use common::{list as list_dead_letters, replay, verify_file};

const ROLE: &str = "AUDIT_SQLITE_ROLE";

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(child(&role));
        return;
    }
    let filter: Option<String> = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    let tests: [(&str, fn()); 4] = [
        (
            "four_processes_append_exactly_their_acknowledged_events",
            four_processes,
        ),
        (
            "a_writer_killed_mid_batch_leaves_whole_batches_only",
            killed_writer,
        ),
        ("a_full_disk_dead_letters_and_replays_later", disk_full),
        (
            "a_lock_held_past_the_busy_timeout_is_transient_then_succeeds",
            held_lock,
        ),
    ];
    let mut failed = Vec::new();
    for (name, test) in tests {
        if filter
            .as_deref()
            .is_some_and(|filter| !name.contains(filter))
        {
            continue;
        }
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(test);
        let status = if outcome.is_ok() { "ok" } else { "FAILED" };
        println!(
            "test {name} ... {status} ({:.1}s)",
            started.elapsed().as_secs_f64()
        );
        if outcome.is_err() {
            failed.push(name);
        }
    }
    if !failed.is_empty() {
        eprintln!("failed: {failed:?}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------- children

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child needs {name}"))
}

fn number(name: &str) -> usize {
    var(name).parse().unwrap()
}

fn refusal(writer: &str, n: usize) -> AuditEvent {
    AuditEvent::new(
        "governance.refusal",
        format!("agent-{writer}-{}", n % 5),
        serde_json::json!({"rule": "R001", "path": format!("secrets/{n}.txt"), "filler": "x".repeat(number_or("AUDIT_FILLER", 0))}),
    )
    .unwrap()
}

fn number_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn child(role: &str) {
    match role {
        "writer" => writer().await,
        "hold-lock" => hold_lock(),
        other => panic!("unknown role {other}"),
    }
}

/// Appends `AUDIT_EVENTS` events (0 = forever) in batches of
/// `AUDIT_BATCH`, printing `ack <id>` for each appended event after its
/// batch committed, `dead <id>` for dead-lettered ones, `fallback <id>` for
/// batches the sink could not even dead-letter (written to the fallback
/// file, as the pipeline's supervisor does).
async fn writer() {
    use std::io::Write;
    let path = PathBuf::from(var("AUDIT_DB"));
    let name = var("AUDIT_WRITER");
    let total = number("AUDIT_EVENTS");
    let batch = number("AUDIT_BATCH");
    let fallback = std::env::var("AUDIT_FALLBACK").ok().map(FallbackFile::new);
    let options = SqliteOptions::default().with_busy_timeout(Duration::from_secs(20));
    let mut sink = open_sink(&path, ChainSinkOptions::unsigned(), options)
        .await
        .unwrap();
    let stop_after_failures = number_or("AUDIT_STOP_AFTER_FAILURES", usize::MAX);
    let mut failures = 0;
    let mut stdout = std::io::stdout().lock();
    let mut n = 0;
    while (total == 0 || n < total) && failures < stop_after_failures {
        let size = batch.min(if total == 0 { batch } else { total - n });
        let events: Vec<AuditEvent> = (n..n + size).map(|i| refusal(&name, i)).collect();
        n += size;
        match sink.append_batch(&events).await {
            Ok(outcomes) => {
                if outcomes
                    .iter()
                    .any(|outcome| matches!(outcome, AppendOutcome::DeadLettered { .. }))
                {
                    failures += 1;
                }
                for (event, outcome) in events.iter().zip(outcomes) {
                    let tag = match outcome {
                        AppendOutcome::Appended(_) => "ack",
                        AppendOutcome::DeadLettered { .. } => "dead",
                        other => panic!("an outcome this test does not know: {other:?}"),
                    };
                    writeln!(stdout, "{tag} {}", event.id()).unwrap();
                }
            }
            Err(error) => {
                failures += 1;
                let file = fallback
                    .as_ref()
                    .unwrap_or_else(|| panic!("append failed: {error}"));
                let letters: Vec<DeadLetter> = events
                    .iter()
                    .map(|event| DeadLetter::new(&Default::default(), event, error.to_string(), 1))
                    .collect();
                file.append(&letters).unwrap();
                for event in &events {
                    writeln!(stdout, "fallback {}", event.id()).unwrap();
                }
            }
        }
        stdout.flush().unwrap();
    }
}

/// Takes the write lock of `AUDIT_DB`, says `locked`, holds it for
/// `AUDIT_HOLD_MS`.
fn hold_lock() {
    use std::io::Write;
    let connection = rusqlite::Connection::open(var("AUDIT_DB")).unwrap();
    connection.execute_batch("BEGIN IMMEDIATE").unwrap();
    println!("locked");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_millis(number("AUDIT_HOLD_MS") as u64));
    connection.execute_batch("COMMIT").unwrap();
}

// ------------------------------------------------------------------ parent

fn spawn(role: &str, envs: &[(&str, String)], wrapper: Option<&str>) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut command = match wrapper {
        Some(script) => {
            let mut command = Command::new("sh");
            command.arg("-c").arg(script).arg(&exe);
            command
        }
        None => Command::new(&exe),
    };
    command
        .env(ROLE, role)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in envs {
        command.env(key, value);
    }
    command.spawn().unwrap()
}

#[derive(Default, Debug)]
struct Acks {
    ack: Vec<String>,
    dead: Vec<String>,
    fallback: Vec<String>,
}

fn read_acks(child: &mut Child) -> Acks {
    let mut acks = Acks::default();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let (tag, id) = line.split_once(' ').unwrap();
        match tag {
            "ack" => acks.ack.push(id.to_owned()),
            "dead" => acks.dead.push(id.to_owned()),
            "fallback" => acks.fallback.push(id.to_owned()),
            other => panic!("unexpected child line {other}"),
        }
    }
    acks
}

fn chain_ids(path: &Path) -> Vec<String> {
    let connection = rusqlite::Connection::open(path).unwrap();
    let mut statement = connection
        .prepare("SELECT event_id FROM audit_records WHERE chain_id = 'default' ORDER BY seq")
        .unwrap();
    statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn verify_ok(path: &Path) -> u64 {
    let report = verify_file(path, &Keyring::new());
    assert!(report.is_ok(), "{:?}", report.failures);
    report.records
}

fn create_db(dir: &Path) -> PathBuf {
    let path = dir.join("audit.db");
    drop(audit_sqlite::SqliteStore::open_blocking(&path, SqliteOptions::default()).unwrap());
    path
}

fn writer_env(path: &Path, name: &str, events: usize, batch: usize) -> Vec<(&'static str, String)> {
    vec![
        ("AUDIT_DB", path.display().to_string()),
        ("AUDIT_WRITER", name.to_owned()),
        ("AUDIT_EVENTS", events.to_string()),
        ("AUDIT_BATCH", batch.to_string()),
    ]
}

fn four_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path = create_db(dir.path());
    let handles: Vec<_> = (0..4)
        .map(|writer| {
            let mut child = spawn(
                "writer",
                &writer_env(&path, &format!("w{writer}"), 600, 1 + writer * 17),
                None,
            );
            std::thread::spawn(move || {
                let acks = read_acks(&mut child);
                let status = child.wait_with_output().unwrap();
                assert!(
                    status.status.success(),
                    "{}",
                    String::from_utf8_lossy(&status.stderr)
                );
                acks
            })
        })
        .collect();
    let mut acknowledged = HashSet::new();
    for handle in handles {
        let acks = handle.join().unwrap();
        assert_eq!(acks.ack.len(), 600);
        assert!(acks.dead.is_empty() && acks.fallback.is_empty(), "{acks:?}");
        acknowledged.extend(acks.ack);
    }
    assert_eq!(verify_ok(&path), 2400);
    let stored: HashSet<String> = chain_ids(&path).into_iter().collect();
    assert_eq!(stored, acknowledged);
}

fn killed_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = create_db(dir.path());
    let batch = 250;
    let mut acknowledged = HashSet::new();
    for round in 0..5u64 {
        let mut child = spawn(
            "writer",
            &writer_env(&path, &format!("k{round}"), 0, batch),
            None,
        );
        std::thread::sleep(Duration::from_millis(300 + round * 70));
        child.kill().unwrap();
        let acks = read_acks(&mut child);
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "the writer was expected to die from SIGKILL"
        );
        acknowledged.extend(acks.ack);

        let records = verify_ok(&path);
        assert_eq!(
            records % batch as u64,
            0,
            "round {round}: a batch was half-written ({records} records)"
        );
        let stored: HashSet<String> = chain_ids(&path).into_iter().collect();
        assert!(
            acknowledged.is_subset(&stored),
            "round {round}: an acknowledged event is missing"
        );
        drop(audit_sqlite::SqliteStore::open_blocking(&path, SqliteOptions::default()).unwrap());
    }
    assert!(
        !acknowledged.is_empty(),
        "no writer got any batch in before being killed"
    );
}

fn disk_full() {
    let dir = tempfile::tempdir().unwrap();
    let path = create_db(dir.path());
    let fallback = dir.path().join("fallback.jsonl");
    let mut env = writer_env(&path, "full", 0, 100);
    env.push(("AUDIT_FALLBACK", fallback.display().to_string()));
    env.push(("AUDIT_FILLER", "300".into()));
    env.push(("AUDIT_STOP_AFTER_FAILURES", "4".into()));
    // 1 MiB per file (dash counts 512-byte blocks); SIGXFSZ ignored so that
    // writes past the limit fail with EFBIG instead of killing the writer.
    let script = r#"trap '' XFSZ; ulimit -f 2048; exec "$0""#;
    let mut child = spawn("writer", &env, Some(script));
    let acks = read_acks(&mut child);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let total = acks.ack.len() + acks.dead.len() + acks.fallback.len();
    assert_eq!(
        total % 100,
        0,
        "every event of every batch is counted somewhere"
    );
    assert!(
        !acks.ack.is_empty(),
        "some events fit before the disk filled"
    );
    assert!(
        !acks.dead.is_empty() || !acks.fallback.is_empty(),
        "the disk never filled: {} appended",
        acks.ack.len()
    );
    let stored_letters: HashSet<String> = list_dead_letters(&path)
        .into_iter()
        .map(|stored| stored.letter.event_id)
        .collect();
    assert_eq!(stored_letters, acks.dead.iter().cloned().collect());
    let file = FallbackFile::new(&fallback);
    let fallen: Vec<DeadLetter> = file.read_all().unwrap();
    assert_eq!(
        fallen
            .iter()
            .map(|letter| letter.event_id.clone())
            .collect::<HashSet<_>>(),
        acks.fallback.iter().cloned().collect()
    );
    assert_eq!(verify_ok(&path), acks.ack.len() as u64);

    // Space again: replay both the table and the fallback file.
    let options = ChainSinkOptions::unsigned();
    let from_table = replay(&path, &options);
    assert_eq!(from_table.appended as usize, acks.dead.len());
    let from_file = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut sink = open_sink(&path, options.clone(), SqliteOptions::default())
            .await
            .unwrap();
        file.replay_into(&mut sink, options.chain()).await.unwrap()
    });
    assert_eq!(from_file.appended as usize, acks.fallback.len());
    assert!(from_file.is_complete(), "{from_file:?}");
    assert_eq!(verify_ok(&path), total as u64);
    let stored: HashSet<String> = chain_ids(&path).into_iter().collect();
    let all: HashSet<String> = acks
        .ack
        .into_iter()
        .chain(acks.dead)
        .chain(acks.fallback)
        .collect();
    assert_eq!(stored, all);
    assert!(list_dead_letters(&path).is_empty());
}

fn held_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = create_db(dir.path());
    let mut holder = spawn(
        "hold-lock",
        &[
            ("AUDIT_DB", path.display().to_string()),
            ("AUDIT_HOLD_MS", "1500".into()),
        ],
        None,
    );
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let options = SqliteOptions::default().with_busy_timeout(Duration::from_millis(200));
        let mut sink = open_sink(&path, ChainSinkOptions::unsigned(), options)
            .await
            .unwrap();
        let event = refusal("lock", 1);
        let started = Instant::now();
        let error = sink
            .append_batch(std::slice::from_ref(&event))
            .await
            .unwrap_err();
        assert_eq!(error.class, ErrorClass::Transient, "{error}");
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(error.to_string().contains("audit.db"), "{error}");
        assert!(holder.wait().unwrap().success());
        let outcomes = sink
            .append_batch(std::slice::from_ref(&event))
            .await
            .unwrap();
        assert!(matches!(&outcomes[0], AppendOutcome::Appended(receipt) if receipt.seq == 1));
    });
    assert_eq!(verify_ok(&path), 1);
}
