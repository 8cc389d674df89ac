//! Our client against our server: every status of the protocol.

use std::sync::Arc;
use std::time::Duration;

use audit_core::Digest;
use audit_core::chain::note::Vkey;
use audit_witness::state::{MemoryState, WitnessState};
use audit_witness::{WitnessError, WitnessLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

#[tokio::test]
async fn cosigns_from_zero_then_with_a_proof() {
    let mut log = TestLog::new("example.test/log", 1);
    let state = Arc::new(MemoryState::new());
    let witness = start_witness(
        "witness.test/w1",
        0x51,
        vec![log.vkey()],
        state.clone(),
        WitnessLimits::default(),
    )
    .await;
    let client = client_of(&witness);
    log.append(5);
    let lines = client.add_checkpoint(0, &[], &log.note()).await.unwrap();
    assert_eq!(lines.len(), 1);
    let mut note = log.note();
    note.push_signature(lines[0].clone()).unwrap();
    let verified = note.verify(&[witness.vkey().clone()]).unwrap();
    assert!(verified[0].time.unwrap() > 1_700_000_000);

    log.append(12);
    let lines = client
        .add_checkpoint(5, &log.proof(5), &log.note())
        .await
        .unwrap();
    assert!(witness.vkey().matches(&lines[0]));
    let head = state.latest("example.test/log").await.unwrap().unwrap();
    assert_eq!((head.size, head.root), (17, log.root_at(17)));

    // The same checkpoint again, from its own size: cosigned again.
    client.add_checkpoint(17, &[], &log.note()).await.unwrap();
    stop(witness).await;
}

#[tokio::test]
async fn each_refusal_has_its_status_and_error() {
    let mut log = TestLog::new("example.test/log", 1);
    let witness = memory_witness(vec![log.vkey()]).await;
    let client = client_of(&witness);
    log.append(8);
    client.add_checkpoint(0, &[], &log.note()).await.unwrap();
    log.append(4);

    // 409: the old size is not the latest cosigned one; body and type per spec.
    let error = client
        .add_checkpoint(3, &log.proof(3), &log.note())
        .await
        .unwrap_err();
    assert!(
        matches!(error, WitnessError::Conflict { latest_size: 8 }),
        "{error}"
    );
    let body = format!("old 0\n\n{}", log.note()).into_bytes();
    assert_eq!(
        post_raw(&witness, body).await,
        (409, "text/x.tlog.size".into(), "8\n".into())
    );

    // 400: old size beyond the checkpoint's size.
    let error = client
        .add_checkpoint(13, &[], &log.note())
        .await
        .unwrap_err();
    assert!(matches!(error, WitnessError::BadRequest { .. }), "{error}");

    // 422: a proof that does not lead to the new root.
    let mut bad = log.proof(8);
    bad[0] = Digest([9; 32]);
    let error = client
        .add_checkpoint(8, &bad, &log.note())
        .await
        .unwrap_err();
    assert!(
        matches!(error, WitnessError::InconsistentProof { .. }),
        "{error}"
    );
    // 422: a proof of the wrong length.
    let error = client
        .add_checkpoint(8, &[], &log.note())
        .await
        .unwrap_err();
    assert!(
        matches!(error, WitnessError::InconsistentProof { .. }),
        "{error}"
    );

    // 403: same origin, another key.
    let mut impostor = log.clone();
    impostor.key = witness_key(0x77);
    let error = client
        .add_checkpoint(8, &log.proof(8), &impostor.note())
        .await
        .unwrap_err();
    assert!(matches!(error, WitnessError::Forbidden { .. }), "{error}");

    // 404: an origin the witness does not serve.
    let mut stranger = TestLog::new("example.test/other", 2);
    stranger.append(3);
    let error = client
        .add_checkpoint(0, &[], &stranger.note())
        .await
        .unwrap_err();
    assert!(
        matches!(error, WitnessError::UnknownOrigin { .. }),
        "{error}"
    );

    // 409 at the latest size with another root: a fork.
    let mut fork = TestLog::new("example.test/log", 1);
    fork.branch = "b".into();
    fork.append(8);
    let error = client
        .add_checkpoint(8, &[], &fork.note())
        .await
        .unwrap_err();
    assert!(
        matches!(error, WitnessError::Conflict { latest_size: 8 }),
        "{error}"
    );

    // Nothing of the above moved the witness: the honest request still works.
    client
        .add_checkpoint(8, &log.proof(8), &log.note())
        .await
        .unwrap();
    stop(witness).await;
}

#[tokio::test]
async fn malformed_oversized_and_overlong_requests_are_refused() {
    let mut log = TestLog::new("example.test/log", 1);
    let limits = WitnessLimits {
        max_body_bytes: 4096,
        ..WitnessLimits::default()
    };
    let witness = start_witness(
        "witness.test/w1",
        0x51,
        vec![log.vkey()],
        Arc::new(MemoryState::new()),
        limits,
    )
    .await;
    log.append(3);
    for body in [
        b"".to_vec(),
        b"old x\n\n".to_vec(),
        format!("old 01\n\n{}", log.note()).into_bytes(),
        format!("old 0\nnot base64\n\n{}", log.note()).into_bytes(),
        format!("old 0\n\n{}", log.checkpoint().body()).into_bytes(),
        format!("old 0\n{}", log.note()).into_bytes(),
    ] {
        let (status, _, _) = post_raw(&witness, body.clone()).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    }
    let hash_line = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
    let body = format!("old 1\n{}\n{}", hash_line.repeat(64), log.note());
    assert_eq!(post_raw(&witness, body.into_bytes()).await.0, 400);
    let body = format!("old 0\n\n{}{}", log.note(), "x".repeat(5000));
    assert_eq!(post_raw(&witness, body.into_bytes()).await.0, 413);
    // Not a POST.
    let response = reqwest_client()
        .get(format!("{}/add-checkpoint", witness.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    stop(witness).await;
}

#[tokio::test]
async fn slow_clients_are_timed_out() {
    let log = TestLog::new("example.test/log", 1);
    let limits = WitnessLimits {
        header_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(300),
        ..WitnessLimits::default()
    };
    let witness = start_witness(
        "witness.test/w1",
        0x51,
        vec![log.vkey()],
        Arc::new(MemoryState::new()),
        limits,
    )
    .await;
    // A body promised and never sent: 408.
    let mut stream = tokio::net::TcpStream::connect(witness.local_addr())
        .await
        .unwrap();
    stream
        .write_all(
            b"POST /add-checkpoint HTTP/1.1\r\nHost: w\r\nContent-Length: 100\r\n\r\nold 0\n",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the witness must answer a stalled body")
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"));
    // A request head never finished: the connection is closed.
    let mut stream = tokio::net::TcpStream::connect(witness.local_addr())
        .await
        .unwrap();
    stream.write_all(b"POST /add-check").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("the witness must close a stalled head")
        .ok();
    stop(witness).await;
}

#[tokio::test]
async fn the_client_refuses_a_forged_cosignature() {
    let mut log = TestLog::new("example.test/log", 1);
    let witness = memory_witness(vec![log.vkey()]).await;
    log.append(2);
    // A client that expects another key under the same name.
    let expected =
        Vkey::cosignature("witness.test/w1", &witness_key(0x52).verifying_key()).unwrap();
    let client = audit_witness::WitnessClient::new(&witness.url(), expected).unwrap();
    let error = client
        .add_checkpoint(0, &[], &log.note())
        .await
        .unwrap_err();
    assert!(
        matches!(error, WitnessError::NoCosignature { .. }),
        "{error}"
    );
    // A witness that is not there: a transport error, promptly.
    let addr = witness.local_addr();
    stop(witness).await;
    let gone = audit_witness::WitnessClient::new(&format!("http://{addr}"), client.vkey().clone())
        .unwrap()
        .with_timeout(Duration::from_secs(2));
    let error = gone.add_checkpoint(0, &[], &log.note()).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
}
