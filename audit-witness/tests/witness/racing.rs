//! Racing requests never roll a log back: the compare-and-swap of each
//! state is linearizable, and concurrent HTTP requests for one log end at
//! the largest size with every accepted request consistent with the one
//! before it.

use std::sync::{Arc, Mutex};

use audit_core::Digest;
use audit_witness::state::{MemoryState, SqliteState, Swap, WitnessState};
use audit_witness::{TreeHead, WitnessError, WitnessLimits};

use crate::common::*;

fn head(size: u64) -> TreeHead {
    let mut root = [0u8; 32];
    root[..8].copy_from_slice(&size.to_be_bytes());
    TreeHead {
        size,
        root: Digest(root),
    }
}

/// A successful swap: the head it replaced and the head it stored.
type Stored = (Option<TreeHead>, TreeHead);

/// Many tasks read and compare-and-swap one origin at once; the successful
/// swaps must form one chain from nothing to the final head.
pub async fn check_linearizable(state: Arc<dyn WitnessState>, origin: &str) {
    let stored: Arc<Mutex<Vec<Stored>>> = Arc::default();
    let mut tasks = Vec::new();
    for task in 0..24u64 {
        let state = state.clone();
        let stored = stored.clone();
        let origin = origin.to_owned();
        tasks.push(tokio::spawn(async move {
            for round in 0..15u64 {
                let latest = state.latest(&origin).await.unwrap();
                let new = head(latest.map_or(0, |h| h.size) + 1 + (task + round) % 4);
                match state.compare_and_swap(&origin, latest, new).await.unwrap() {
                    Swap::Stored => stored.lock().unwrap().push((latest, new)),
                    Swap::Conflict { current } => assert_ne!(current, latest),
                    other => panic!("an outcome this test does not know: {other:?}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut chain = stored.lock().unwrap().clone();
    chain.sort_by_key(|(_, new)| new.size);
    assert!(chain.len() >= 15, "only {} swaps succeeded", chain.len());
    let mut previous = None;
    for (expected, new) in &chain {
        assert_eq!(
            *expected, previous,
            "a swap did not extend the head before it"
        );
        previous = Some(*new);
    }
    assert_eq!(state.latest(origin).await.unwrap(), previous);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_sqlite_swaps_are_linearizable() {
    check_linearizable(Arc::new(MemoryState::new()), "example.test/log").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("witness.db");
    let state = Arc::new(SqliteState::open(&path).await.unwrap());
    check_linearizable(state, "example.test/log").await;
    // A second handle on the same file (another process, in effect) sees it.
    let reopened = audit_witness::open_state(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert!(reopened.latest("example.test/log").await.unwrap().is_some());
    check_linearizable(reopened, "example.test/other").await;
}

/// Racing HTTP requests for one log against a witness on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_requests_never_roll_the_log_back() {
    let mut log = TestLog::new("example.test/log", 1);
    log.append(400);
    let dir = tempfile::tempdir().unwrap();
    let state: Arc<dyn WitnessState> =
        Arc::new(SqliteState::open(dir.path().join("w.db")).await.unwrap());
    let witness = start_witness(
        "witness.test/w1",
        0x51,
        vec![log.vkey()],
        state.clone(),
        WitnessLimits::default(),
    )
    .await;
    let log = Arc::new(log);
    let accepted: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let mut tasks = Vec::new();
    for task in 0..32u64 {
        let client = client_of(&witness);
        let log = log.clone();
        let accepted = accepted.clone();
        let vkey = witness.vkey().clone();
        tasks.push(tokio::spawn(async move {
            // Each task pushes three targets of its own, interleaved with the others'.
            for round in 0..3u64 {
                let target = 1 + task + 32 * round * 4 + (task * 7) % 32;
                let mut old = 0;
                loop {
                    let proof = log.proof_between(old, target.max(old));
                    match client
                        .add_checkpoint(old, &proof, &log.note_at(target))
                        .await
                    {
                        Ok(lines) => {
                            let mut note = log.note_at(target);
                            note.push_signature(lines[0].clone()).unwrap();
                            note.verify(std::slice::from_ref(&vkey)).unwrap();
                            accepted.lock().unwrap().push((old, target));
                            break;
                        }
                        Err(WitnessError::Conflict { latest_size }) if latest_size < target => {
                            old = latest_size;
                        }
                        Err(WitnessError::Conflict { .. }) => break,
                        Err(other) => panic!("target {target} from {old}: {other}"),
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut accepted = accepted.lock().unwrap().clone();
    accepted.sort();
    let max_target = (0..32u64)
        .flat_map(|task| (0..3u64).map(move |round| 1 + task + 32 * round * 4 + (task * 7) % 32))
        .max()
        .unwrap();
    let latest = state.latest("example.test/log").await.unwrap().unwrap();
    assert_eq!(
        (latest.size, latest.root),
        (max_target, log.root_at(max_target))
    );
    let mut previous = 0;
    for (old, new) in &accepted {
        assert_eq!(*old, previous, "accepted {accepted:?}");
        assert!(new > old);
        previous = *new;
    }
    assert_eq!(previous, max_target);
    stop(witness).await;
}
