//! FORMAT.md section 4 asks for strict Ed25519 verification: a record the
//! verifier accepts must be accepted by `VerifyingKey::verify_strict`.
//!
//! These tests craft signatures that the cofactorless batch equation of
//! `ed25519_dalek::verify_batch` accepts (the forger grinds until the
//! content-derived batch weight cancels the torsion) while `verify_strict`
//! refuses them, and check that the verifier refuses them too; and they
//! check that keys with a small-order or torsion component never enter a
//! keyring.

use std::sync::Arc;

use audit_core::AuditEvent;
use audit_core::chain::{
    ChainHead, ChainId, FailureKind, Record, Sealer, SignMode, Verifier, VerifyOptions,
};
use audit_core::keys::{AuditSigner, Keyring, PublicKey};
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use getrandom::SysRng;
use rand_core::UnwrapErr;
use sha2::{Digest as _, Sha512};

/// The point of order 2, `(0, -1)`.
fn order_two() -> EdwardsPoint {
    let mut bytes = [0xffu8; 32];
    bytes[0] = 0xec;
    bytes[31] = 0x7f;
    let point = CompressedEdwardsY(bytes).decompress().unwrap();
    assert!(point.is_small_order() && point != EdwardsPoint::default());
    assert_eq!(point + point, EdwardsPoint::default());
    point
}

/// A point of order 4, `(sqrt(-1), 0)`.
fn order_four() -> EdwardsPoint {
    let point = CompressedEdwardsY([0u8; 32]).decompress().unwrap();
    assert!(point.is_small_order() && point + point != EdwardsPoint::default());
    point
}

fn challenge(r: &EdwardsPoint, a: &[u8; 32], message: &[u8]) -> Scalar {
    let mut hash = Sha512::new();
    hash.update(r.compress().as_bytes());
    hash.update(a);
    hash.update(message);
    Scalar::from_bytes_mod_order_wide(&hash.finalize().into())
}

/// A signed one-record chain and its signer's secret scalar.
fn one_signed_record() -> (Record, SigningKey, Keyring) {
    let key = SigningKey::generate(&mut UnwrapErr(SysRng));
    let signer = Arc::new(AuditSigner::from_signing_key(key.clone()));
    let sealer = Sealer::new(
        ChainId::default(),
        Some(signer.clone()),
        SignMode::EveryRecord,
    );
    let event = AuditEvent::new("test", "agent:forger", serde_json::json!({"n": 1})).unwrap();
    let record = sealer.seal(ChainHead::EMPTY, &event);
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    (record, key, keyring)
}

fn verify(record: &Record, keyring: &Keyring) -> Vec<(FailureKind, String)> {
    let mut verifier = Verifier::new(keyring.clone(), VerifyOptions::default());
    verifier.record(record);
    verifier
        .finish()
        .failures
        .into_iter()
        .map(|failure| (failure.kind, failure.detail))
        .collect()
}

/// Grinds nonces until `forge` gives a signature that the batch equation
/// accepts; returns it.
fn grind(
    key: &VerifyingKey,
    message: &[u8],
    mut forge: impl FnMut(Scalar) -> Signature,
) -> Signature {
    for _ in 0..256 {
        let mut wide = [0u8; 64];
        getrandom::fill(&mut wide).unwrap();
        let signature = forge(Scalar::from_bytes_mod_order_wide(&wide));
        if ed25519_dalek::verify_batch(&[message], &[signature], &[*key]).is_ok() {
            return signature;
        }
    }
    panic!("no nonce made the batch equation hold in 256 tries");
}

fn signature(r: &EdwardsPoint, s: &Scalar) -> Signature {
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(r.compress().as_bytes());
    bytes[32..].copy_from_slice(s.as_bytes());
    Signature::from_bytes(&bytes)
}

#[test]
fn mixed_order_r_accepted_by_the_batch_equation_is_refused_like_verify_strict() {
    let (mut record, key, keyring) = one_signed_record();
    let public = key.verifying_key();
    let a = key.to_scalar();
    let message = *record.hash.as_bytes();
    let torsion = order_two();
    // R' = [r]B + T: the honest equation holds for [r]B, so the batch
    // residue is z·T, the identity whenever the batch weight z is even.
    let forged = grind(&public, &message, |r| {
        let big_r = ED25519_BASEPOINT_POINT * r + torsion;
        let k = challenge(&big_r, public.as_bytes(), &message);
        signature(&big_r, &(r + k * a))
    });
    assert!(
        public.verify_strict(&message, &forged).is_err(),
        "verify_strict refuses R with a torsion component"
    );
    record.sig = Some(forged.to_bytes());
    let failures = verify(&record, &keyring);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, FailureKind::BadSignature, "{failures:?}");
}

#[test]
fn small_order_r_is_refused_like_verify_strict() {
    let (mut record, key, keyring) = one_signed_record();
    let public = key.verifying_key();
    let a = key.to_scalar();
    let message = *record.hash.as_bytes();
    let torsion = order_four();
    // R = T of order 4, S = k·a: the residue of the batch equation is z·T,
    // the identity when 4 divides the weight z (the signature is fixed here,
    // so there is nothing to grind; verify_strict refuses it regardless).
    let k = challenge(&torsion, public.as_bytes(), &message);
    let forged = signature(&torsion, &(k * a));
    assert!(public.verify_strict(&message, &forged).is_err());
    record.sig = Some(forged.to_bytes());
    let failures = verify(&record, &keyring);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, FailureKind::BadSignature, "{failures:?}");
}

#[test]
fn a_valid_signature_still_verifies() {
    let (record, _, keyring) = one_signed_record();
    assert!(verify(&record, &keyring).is_empty());
}

#[test]
fn small_order_and_mixed_order_public_keys_never_enter_a_keyring() {
    let mut wide = [0u8; 64];
    getrandom::fill(&mut wide).unwrap();
    let a = Scalar::from_bytes_mod_order_wide(&wide);
    let cases = [
        ("identity", EdwardsPoint::default()),
        ("order 2", order_two()),
        ("order 4", order_four()),
        ("mixed order 2", ED25519_BASEPOINT_POINT * a + order_two()),
        ("mixed order 4", ED25519_BASEPOINT_POINT * a + order_four()),
    ];
    for (name, point) in cases {
        let key = VerifyingKey::from_bytes(point.compress().as_bytes()).unwrap();
        let error = PublicKey::from_verifying_key(key, name)
            .expect_err(&format!("{name} public key must be refused"));
        assert!(error.to_string().contains(name), "{error}");
    }
    let honest =
        VerifyingKey::from_bytes((ED25519_BASEPOINT_POINT * a).compress().as_bytes()).unwrap();
    assert!(PublicKey::from_verifying_key(honest, "honest").is_ok());
}

#[test]
fn mixed_order_key_signature_the_batch_accepts_is_refused_by_verify_strict() {
    // What a keyring could hold before keys were checked for torsion: the
    // batch equation accepts this signature, verify_strict refuses it.
    let mut wide = [0u8; 64];
    getrandom::fill(&mut wide).unwrap();
    let a = Scalar::from_bytes_mod_order_wide(&wide);
    let public_point = ED25519_BASEPOINT_POINT * a + order_two();
    let public = VerifyingKey::from_bytes(public_point.compress().as_bytes()).unwrap();
    let message = b"record hash";
    let mut found = None;
    for _ in 0..1024 {
        let forged = grind(&public, message, |r| {
            let big_r = ED25519_BASEPOINT_POINT * r;
            let k = challenge(&big_r, public.as_bytes(), message);
            signature(&big_r, &(r + k * a))
        });
        if public.verify_strict(message, &forged).is_err() {
            found = Some(forged);
            break;
        }
    }
    assert!(
        found.is_some(),
        "a signature accepted by the batch and refused by verify_strict exists"
    );
    assert!(PublicKey::from_verifying_key(public, "mixed order 2").is_err());
}
