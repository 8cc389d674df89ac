//! A witness set with a quorum: two witness servers, cosignatures merged,
//! proofs from the size each last cosigned, interval, cache and backoff.

use std::sync::Arc;
use std::time::Duration;

use audit_witness::state::MemoryState;
use audit_witness::witnesses::SkipReason;
use audit_witness::{OutcomeKind, WitnessLimits, WitnessOptions, Witnesses};

use crate::common::*;

fn eager() -> WitnessOptions {
    WitnessOptions::default().with_min_interval(Duration::ZERO)
}

#[tokio::test]
async fn a_quorum_of_two_cosigns_and_follows_the_log() {
    let mut log = TestLog::new("example.test/log", 1);
    let w1 = memory_witness(vec![log.vkey()]).await;
    let w2 = start_witness(
        "witness.test/w2",
        0x52,
        vec![log.vkey()],
        Arc::new(MemoryState::new()),
        WitnessLimits::default(),
    )
    .await;
    let witnesses = Witnesses::new(vec![client_of(&w1), client_of(&w2)], 2)
        .unwrap()
        .with_options(eager());

    log.append(5);
    let cosigned = witnesses.cosign(&log.note(), &log.source()).await;
    assert!(cosigned.quorum_met(), "{:?}", cosigned.outcomes);
    assert_eq!(cosigned.cosignatures, 2);
    assert_eq!(cosigned.note.verify(&witnesses.vkeys()).unwrap().len(), 2);
    assert_eq!(witnesses.cosigned_sizes().await, [Some(5), Some(5)]);

    // The same checkpoint: answered from memory.
    let again = witnesses.cosign(&log.note(), &log.source()).await;
    assert!(
        again
            .outcomes
            .iter()
            .all(|o| matches!(o.kind, OutcomeKind::Cached { .. }))
    );
    assert!(again.quorum_met());

    // The next one: a proof from 5.
    log.append(6);
    let next = witnesses.cosign(&log.note(), &log.source()).await;
    assert!(next.quorum_met());
    for outcome in &next.outcomes {
        assert!(
            matches!(outcome.kind, OutcomeKind::Cosigned { old_size: 5, .. }),
            "{:?}",
            outcome.kind
        );
    }

    // A witness down: it fails, the quorum is missed, and it is backed off.
    stop(w2).await;
    log.append(1);
    let degraded = witnesses.cosign(&log.note(), &log.source()).await;
    assert!(!degraded.quorum_met());
    assert_eq!(degraded.cosignatures, 1);
    let OutcomeKind::Failed { error, retry_in } = &degraded.outcomes[1].kind else {
        panic!("{:?}", degraded.outcomes[1].kind);
    };
    assert!(error.is_transient(), "{error}");
    assert!(*retry_in >= Duration::from_millis(500), "{retry_in:?}");
    log.append(1);
    let backed_off = witnesses.cosign(&log.note(), &log.source()).await;
    assert!(matches!(
        backed_off.outcomes[1].kind,
        OutcomeKind::Skipped(SkipReason::BackingOff { .. })
    ));
    assert!(matches!(
        backed_off.outcomes[0].kind,
        OutcomeKind::Cosigned { old_size: 12, .. }
    ));
    stop(w1).await;
}

#[tokio::test]
async fn a_witness_is_not_asked_more_often_than_the_interval() {
    let mut log = TestLog::new("example.test/log", 1);
    let witness = memory_witness(vec![log.vkey()]).await;
    let witnesses = Witnesses::new(vec![client_of(&witness)], 1).unwrap();
    log.append(2);
    assert!(
        witnesses
            .cosign(&log.note(), &log.source())
            .await
            .quorum_met()
    );
    log.append(2);
    let soon = witnesses.cosign(&log.note(), &log.source()).await;
    let OutcomeKind::Skipped(SkipReason::Interval { retry_in }) = soon.outcomes[0].kind else {
        panic!("{:?}", soon.outcomes[0].kind);
    };
    assert!(retry_in > Duration::from_secs(9));
    assert!(!soon.quorum_met());
    stop(witness).await;
}

#[tokio::test]
async fn a_set_that_forgot_learns_the_size_from_the_409() {
    let mut log = TestLog::new("example.test/log", 1);
    let witness = memory_witness(vec![log.vkey()]).await;
    log.append(7);
    client_of(&witness)
        .add_checkpoint(0, &[], &log.note())
        .await
        .unwrap();
    log.append(3);
    // A new set (a restarted writer) knows nothing: 0, then 409 with 7, then from 7.
    let witnesses = Witnesses::new(vec![client_of(&witness)], 1).unwrap();
    let cosigned = witnesses.cosign(&log.note(), &log.source()).await;
    assert!(
        matches!(
            cosigned.outcomes[0].kind,
            OutcomeKind::Cosigned { old_size: 7, .. }
        ),
        "{:?}",
        cosigned.outcomes[0].kind
    );
    assert_eq!(witnesses.cosigned_sizes().await, [Some(10)]);
    stop(witness).await;
}
