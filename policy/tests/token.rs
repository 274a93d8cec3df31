//! Biscuit tokens: mint, verify, attenuate, and attempts to break them.

use chrono::{DateTime, TimeDelta, Utc};
use sluis_policy::token::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn grant() -> Grant {
    Grant {
        agreement_id: "urn:agreement:1".into(),
        transfer_id: "urn:transfer:1".into(),
        dataset_id: "urn:dataset:meters".into(),
        consumer: "did:web:consumer.example".into(),
        expires_at: at("2026-06-01T12:00:00Z"),
    }
}

fn request(now: &str, columns: &[&str]) -> AccessRequest {
    AccessRequest {
        dataset_id: "urn:dataset:meters".into(),
        now: at(now),
        columns: columns.iter().map(|c| c.to_string()).collect(),
    }
}

fn setup() -> (TokenIssuer, TokenVerifier, String) {
    let issuer = TokenIssuer::generate();
    let verifier = TokenVerifier::from_public_key_hex(&issuer.public_key_hex()).unwrap();
    let token = issuer.mint(&grant()).unwrap();
    (issuer, verifier, token)
}

#[test]
fn mint_and_verify() {
    let (_, verifier, token) = setup();
    let v = verifier
        .verify(&token, &request("2026-05-01T00:00:00Z", &["region", "kwh"]))
        .unwrap();
    assert_eq!(v.grant, grant());
    assert_eq!(v.allowed_columns, None);
    assert!(!token.contains('+') && !token.contains('/'), "base64url");
}

#[test]
fn key_round_trips_through_hex() {
    let (issuer, verifier, _) = setup();
    let restored = TokenIssuer::from_private_key_hex(&issuer.private_key_hex()).unwrap();
    assert_eq!(restored.public_key_hex(), issuer.public_key_hex());
    let token = restored.mint(&grant()).unwrap();
    assert!(
        verifier
            .verify(&token, &request("2026-05-01T00:00:00Z", &[]))
            .is_ok()
    );
    assert!(matches!(
        TokenIssuer::from_private_key_hex("zz"),
        Err(TokenError::InvalidKey(_))
    ));
    assert!(matches!(
        TokenVerifier::from_public_key_hex("00"),
        Err(TokenError::InvalidKey(_))
    ));
}

#[test]
fn forged_by_another_key_is_rejected() {
    let (_, verifier, _) = setup();
    let forger = TokenIssuer::generate();
    let forged = forger.mint(&grant()).unwrap();
    assert_eq!(
        verifier.verify(&forged, &request("2026-05-01T00:00:00Z", &[])),
        Err(TokenError::InvalidSignature)
    );
}

#[test]
fn expired_is_rejected() {
    let (_, verifier, token) = setup();
    let e = verifier
        .verify(&token, &request("2026-06-01T12:00:01Z", &[]))
        .unwrap_err();
    assert_eq!(e, TokenError::Expired);
    assert!(e.to_string().contains("expired"));
    assert!(
        verifier
            .verify(&token, &request("2026-06-01T12:00:00Z", &[]))
            .is_ok()
    );
}

#[test]
fn wrong_dataset_is_rejected() {
    let (_, verifier, token) = setup();
    let mut req = request("2026-05-01T00:00:00Z", &[]);
    req.dataset_id = "urn:dataset:other".into();
    assert_eq!(verifier.verify(&token, &req), Err(TokenError::WrongDataset));
}

#[test]
fn attenuated_expiry_applies() {
    let (issuer, verifier, token) = setup();
    let narrowed = attenuate(
        &token,
        &issuer.public_key_hex(),
        &Attenuation {
            expires_at: Some(at("2026-05-01T00:00:00Z")),
            columns: None,
        },
    )
    .unwrap();
    let verified = verifier
        .verify(&narrowed, &request("2026-04-30T00:00:00Z", &[]))
        .unwrap();
    // the data plane ends running queries at the earlier expiry
    assert_eq!(verified.expires_at, at("2026-05-01T00:00:00Z"));
    let plain = verifier
        .verify(&token, &request("2026-04-30T00:00:00Z", &[]))
        .unwrap();
    assert_eq!(plain.expires_at, grant().expires_at);
    assert_eq!(
        verifier.verify(&narrowed, &request("2026-05-02T00:00:00Z", &[])),
        Err(TokenError::Expired)
    );
}

#[test]
fn attenuated_columns_apply() {
    let (issuer, verifier, token) = setup();
    let narrowed = attenuate(
        &token,
        &issuer.public_key_hex(),
        &Attenuation {
            expires_at: None,
            columns: Some(vec!["region".into(), "kwh".into()]),
        },
    )
    .unwrap();
    let ok = verifier
        .verify(&narrowed, &request("2026-05-01T00:00:00Z", &["kwh"]))
        .unwrap();
    let mut cols = ok.allowed_columns.unwrap();
    cols.sort();
    assert_eq!(cols, vec!["kwh", "region"]);
    assert_eq!(
        verifier.verify(
            &narrowed,
            &request("2026-05-01T00:00:00Z", &["kwh", "customer_name"])
        ),
        Err(TokenError::ColumnNotAllowed("customer_name".into()))
    );
}

#[test]
fn widening_by_appending_a_block_fails() {
    let (issuer, verifier, token) = setup();
    let pk = issuer.public_key_hex();
    let narrow = attenuate(
        &token,
        &pk,
        &Attenuation {
            expires_at: None,
            columns: Some(vec!["kwh".into()]),
        },
    )
    .unwrap();
    // a later block naming more columns and a later expiry widens nothing
    let wider = attenuate(
        &narrow,
        &pk,
        &Attenuation {
            expires_at: Some(grant().expires_at + TimeDelta::days(365)),
            columns: Some(vec!["kwh".into(), "customer_name".into()]),
        },
    )
    .unwrap();
    assert_eq!(
        verifier.verify(&wider, &request("2026-05-01T00:00:00Z", &["customer_name"])),
        Err(TokenError::ColumnNotAllowed("customer_name".into()))
    );
    assert_eq!(
        verifier.verify(&wider, &request("2026-07-01T00:00:00Z", &["kwh"])),
        Err(TokenError::Expired)
    );
    let v = verifier
        .verify(&wider, &request("2026-05-01T00:00:00Z", &["kwh"]))
        .unwrap();
    assert_eq!(v.allowed_columns, Some(vec!["kwh".to_string()]));
}

#[test]
fn a_block_stating_another_dataset_or_grant_changes_nothing() {
    use biscuit_auth::{Biscuit, BlockBuilder, PublicKey, builder::Algorithm};
    let (issuer, verifier, token) = setup();
    let pk = PublicKey::from_bytes_hex(&issuer.public_key_hex(), Algorithm::Ed25519).unwrap();
    let b = Biscuit::from_base64(&token, pk).unwrap();
    let evil = BlockBuilder::new()
        .code(r#"dataset("urn:dataset:other"); resource("urn:dataset:other"); agreement("urn:agreement:evil"); time(2020-01-01T00:00:00Z);"#)
        .unwrap();
    let appended = b.append(evil).unwrap().to_base64().unwrap();
    let mut req = request("2026-05-01T00:00:00Z", &[]);
    req.dataset_id = "urn:dataset:other".into();
    assert_eq!(
        verifier.verify(&appended, &req),
        Err(TokenError::WrongDataset)
    );
    let v = verifier
        .verify(&appended, &request("2026-05-01T00:00:00Z", &[]))
        .unwrap();
    assert_eq!(v.grant, grant());
    assert_eq!(
        verifier.verify(&appended, &request("2026-07-01T00:00:00Z", &[])),
        Err(TokenError::Expired)
    );
}

#[test]
fn tampered_bytes_fail() {
    let (_, verifier, token) = setup();
    let bytes = token.as_bytes();
    for i in [10, bytes.len() / 2, bytes.len() - 5] {
        let mut t = bytes.to_vec();
        t[i] = if t[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(t).unwrap();
        let e = verifier
            .verify(&tampered, &request("2026-05-01T00:00:00Z", &[]))
            .unwrap_err();
        assert!(
            matches!(e, TokenError::InvalidSignature | TokenError::Malformed(_)),
            "byte {i}: {e:?}"
        );
    }
    assert!(matches!(
        verifier.verify("not a token!", &request("2026-05-01T00:00:00Z", &[])),
        Err(TokenError::Malformed(_))
    ));
    let huge = "A".repeat(MAX_TOKEN_LEN + 1);
    assert!(matches!(
        verifier.verify(&huge, &request("2026-05-01T00:00:00Z", &[])),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn attenuation_requires_the_right_root_key_and_something_to_narrow() {
    let (_, _, token) = setup();
    let other = TokenIssuer::generate();
    assert_eq!(
        attenuate(
            &token,
            &other.public_key_hex(),
            &Attenuation {
                expires_at: None,
                columns: Some(vec!["a".into()])
            }
        ),
        Err(TokenError::InvalidSignature)
    );
}

#[test]
fn inspect_reads_the_grant_and_rejects_foreign_keys() {
    let issuer = TokenIssuer::generate();
    let g = Grant {
        agreement_id: "urn:a".into(),
        transfer_id: "urn:t".into(),
        dataset_id: "urn:d".into(),
        consumer: "did:web:c".into(),
        expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
    };
    let token = issuer.mint(&g).unwrap();
    let verifier = TokenVerifier::from_public_key_hex(&issuer.public_key_hex()).unwrap();
    assert_eq!(verifier.inspect(&token).unwrap().dataset_id, "urn:d");
    let other =
        TokenVerifier::from_public_key_hex(&TokenIssuer::generate().public_key_hex()).unwrap();
    assert!(matches!(
        other.inspect(&token),
        Err(TokenError::InvalidSignature)
    ));
}

#[test]
fn delegations_are_read_in_chain_order_with_what_each_holder_signed() {
    let (issuer, verifier, token) = setup();
    let key = issuer.public_key_hex();
    let now = request("2026-05-01T00:00:00Z", &[]);
    assert!(
        verifier
            .verify(&token, &now)
            .unwrap()
            .delegations
            .is_empty()
    );
    // the proofs are checked by the data plane (PKI); here only their place in the chain
    let to_b = delegation_message(&token, &key, "did:web:b.example").unwrap();
    let first = delegate(
        &token,
        &key,
        "did:web:b.example",
        b"cert-a",
        0x0403,
        b"sig-a",
    )
    .unwrap();
    let narrowed = attenuate(
        &first,
        &key,
        &Attenuation {
            expires_at: None,
            columns: Some(vec!["kwh".into()]),
        },
    )
    .unwrap();
    let to_c = delegation_message(&narrowed, &key, "did:web:c.example").unwrap();
    let second = delegate(
        &narrowed,
        &key,
        "did:web:c.example",
        b"cert-b",
        0x0403,
        b"sig-b",
    )
    .unwrap();
    let chain = verifier.verify(&second, &now).unwrap().delegations;
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[0].delegate, "did:web:b.example");
    assert_eq!(chain[0].certificate, b"cert-a");
    assert_eq!(chain[0].message, to_b, "bound to the token as it was");
    assert_eq!(chain[1].delegate, "did:web:c.example");
    assert_eq!(chain[1].signature, b"sig-b");
    assert_eq!(chain[1].message, to_c);
    assert_ne!(to_b, to_c);
    // a delegate must be a participant id
    assert!(delegate(&token, &key, "not an id", b"c", 0x0403, b"s").is_err());
}
