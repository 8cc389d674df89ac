//! A split view caught: once a witness has cosigned chain A at size N, a
//! fork B of the same origin that diverges before N is refused, whatever
//! old size it claims, and a quorum policy rejects B's checkpoint.

use audit_core::chain::proof::{ProofFileError, TrustPolicy};
use audit_witness::{OutcomeKind, WitnessError, WitnessOptions, Witnesses};

use crate::common::*;

#[tokio::test]
async fn a_fork_is_refused_once_the_original_is_cosigned() {
    let mut chain_a = TestLog::new("example.test/log", 1);
    chain_a.append(10);
    let mut chain_b = chain_a.fork("b"); // diverges after seq 10
    chain_a.append(10); // A at 20
    chain_b.append(10); // B at 20, another root
    let witness = memory_witness(vec![chain_a.vkey()]).await;
    let client = client_of(&witness);
    client
        .add_checkpoint(0, &[], &chain_a.note())
        .await
        .unwrap();

    // B at the same size: 409 at that size (the root differs).
    let error = client
        .add_checkpoint(20, &[], &chain_b.note())
        .await
        .unwrap_err();
    assert!(
        matches!(error, WitnessError::Conflict { latest_size: 20 }),
        "{error}"
    );
    // B further on, with B's own consistency proof from 20: it does not lead
    // from the root the witness holds.
    chain_b.append(5);
    let error = client
        .add_checkpoint(20, &chain_b.proof(20), &chain_b.note())
        .await
        .unwrap_err();
    assert!(
        matches!(error, WitnessError::InconsistentProof { .. }),
        "{error}"
    );
    // B from where it diverged: 409, the witness is at 20.
    let error = client
        .add_checkpoint(10, &chain_b.proof(10), &chain_b.note())
        .await
        .unwrap_err();
    assert!(
        matches!(error, WitnessError::Conflict { latest_size: 20 }),
        "{error}"
    );
    // B from 0 (a log pretending to be new): 409 as well.
    let error = client
        .add_checkpoint(0, &[], &chain_b.note())
        .await
        .unwrap_err();
    assert!(
        matches!(error, WitnessError::Conflict { latest_size: 20 }),
        "{error}"
    );

    // Through a witness set, B's checkpoint ends without the cosignature,
    // and a verifier with the quorum rejects it; A's passes.
    let witnesses = Witnesses::new(vec![client_of(&witness)], 1)
        .unwrap()
        .with_options(WitnessOptions::default().with_min_interval(std::time::Duration::ZERO));
    let cosigned_b = witnesses.cosign(&chain_b.note(), &chain_b.source()).await;
    assert!(!cosigned_b.quorum_met());
    assert!(
        matches!(
            &cosigned_b.outcomes[0].kind,
            OutcomeKind::Failed {
                error: WitnessError::InconsistentProof { .. },
                ..
            }
        ),
        "{:?}",
        cosigned_b.outcomes[0].kind
    );
    let policy = TrustPolicy::new(chain_a.vkey()).with_witnesses(witnesses.vkeys(), 1);
    assert!(matches!(
        policy.verify_note(&cosigned_b.note),
        Err(ProofFileError::Quorum {
            valid: 0,
            required: 1
        })
    ));

    chain_a.append(3);
    let fresh = Witnesses::new(vec![client_of(&witness)], 1).unwrap();
    let cosigned_a = fresh.cosign(&chain_a.note(), &chain_a.source()).await;
    assert!(cosigned_a.quorum_met(), "{:?}", cosigned_a.outcomes);
    policy.verify_note(&cosigned_a.note).unwrap();
    stop(witness).await;
}
