//! JWT bearer-token verification (`locksmith_edge::auth::jwt`) against a real
//! OIDC issuer (`oidc-provider`, see `oidc.rs`): real client-credentials
//! tokens are accepted; forged, stale, misdirected and broken ones are each
//! refused with the exact reason; unknown key ids cannot make the verifier
//! hammer the issuer.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use futures::future::join_all;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use locksmith_edge::auth::jwt::{JwtError, JwtVerifier, Role, VerifiedJwt};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::oidc::oidc;

fn probe() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A verifier trusting the test issuer, counting its JWKS fetches under a
/// fresh probe tag (returned).
fn verifier() -> (JwtVerifier, String) {
    let probe = probe();
    let verifier = JwtVerifier::new(vec![oidc().issuer_config(&probe)]).unwrap();
    (verifier, probe)
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Claims the verifier accepts; each refusal test changes one thing.
fn good_claims() -> Value {
    let now = now().unix_timestamp();
    json!({
        "iss": oidc().issuer,
        "sub": "svc-reporting",
        "aud": oidc().resource,
        "iat": now,
        "exp": now + 300,
        "tenant": "acme",
        "roles": ["read"],
    })
}

fn with(changes: Value) -> Value {
    let mut claims = good_claims();
    for (k, v) in changes.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

async fn signed(changes: Value) -> String {
    oidc().sign(with(changes), json!({})).await
}

fn parts(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

#[tokio::test]
async fn jwt_client_credentials_tokens_are_accepted_with_their_tenant_and_roles() {
    let (verifier, _) = verifier();
    let cases = [
        ("tenant-acme-admin", "acme", vec![Role::Admin]),
        ("tenant-acme-write", "acme", vec![Role::Read, Role::Write]),
        ("tenant-beta-read", "beta", vec![Role::Read]),
        // The space-separated string form of the roles claim.
        (
            "tenant-acme-string-roles",
            "acme",
            vec![Role::Read, Role::Write],
        ),
    ];
    for (client, tenant, roles) in cases {
        let token = oidc()
            .client_credentials_token(client, &oidc().resource)
            .await;
        assert_eq!(
            verifier.verify(&token, now()).await,
            Ok(VerifiedJwt {
                issuer: oidc().issuer.clone(),
                subject: client.to_owned(),
                tenant: tenant.to_owned(),
                roles,
            }),
            "{client}"
        );
    }
}

#[tokio::test]
async fn jwt_real_tokens_with_bad_tenant_or_role_claims_are_refused() {
    let (verifier, _) = verifier();
    let cases = [
        (
            "tenant-acme-unknown-role",
            JwtError::InvalidClaim("roles".into()),
        ),
        ("tenant-bad-slug", JwtError::InvalidClaim("tenant".into())),
        ("no-tenant", JwtError::MissingClaim("tenant".into())),
    ];
    for (client, refusal) in cases {
        let token = oidc()
            .client_credentials_token(client, &oidc().resource)
            .await;
        assert_eq!(
            verifier.verify(&token, now()).await,
            Err(refusal),
            "{client}"
        );
    }
}

#[tokio::test]
async fn jwt_a_real_token_expires_at_the_now_passed_in_plus_leeway() {
    let (verifier, _) = verifier();
    let token = oidc()
        .client_credentials_token("tenant-beta-read", &oidc().resource)
        .await;
    let exp = claims_of(&token)["exp"].as_i64().unwrap();
    let at = |t: i64| OffsetDateTime::from_unix_timestamp(t).unwrap();
    // Default leeway 30 s: valid until exp + 30 exclusive.
    assert!(verifier.verify(&token, at(exp + 29)).await.is_ok());
    assert_eq!(
        verifier.verify(&token, at(exp + 30)).await,
        Err(JwtError::Expired)
    );
}

fn claims_of(token: &str) -> Value {
    serde_json::from_slice(&B64.decode(&parts(token)[1]).unwrap()).unwrap()
}

#[tokio::test]
async fn jwt_a_token_signed_by_the_issuer_key_with_good_claims_is_accepted() {
    // The baseline the refusals below differ from by one thing each.
    let (verifier, _) = verifier();
    let token = signed(json!({})).await;
    let ok = verifier.verify(&token, now()).await.unwrap();
    assert_eq!(ok.subject, "svc-reporting");
    assert_eq!(ok.tenant, "acme");
    assert_eq!(ok.roles, vec![Role::Read]);
}

#[tokio::test]
async fn jwt_expired_token_is_refused() {
    let (verifier, _) = verifier();
    let now_s = now().unix_timestamp();
    let token = signed(json!({"iat": now_s - 7200, "exp": now_s - 3600})).await;
    assert_eq!(verifier.verify(&token, now()).await, Err(JwtError::Expired));
}

#[tokio::test]
async fn jwt_not_yet_valid_token_is_refused() {
    let (verifier, _) = verifier();
    let now_s = now().unix_timestamp();
    let token = signed(json!({"nbf": now_s + 3600, "exp": now_s + 7200})).await;
    assert_eq!(
        verifier.verify(&token, now()).await,
        Err(JwtError::NotYetValid)
    );
}

#[tokio::test]
async fn jwt_token_from_another_issuer_is_refused() {
    let (verifier, _) = verifier();
    for iss in [
        "https://evil.example".to_owned(),
        format!("{}/", oidc().issuer),
    ] {
        let token = signed(json!({ "iss": iss })).await;
        assert_eq!(
            verifier.verify(&token, now()).await,
            Err(JwtError::UnknownIssuer),
            "{iss}"
        );
    }
}

#[tokio::test]
async fn jwt_token_for_another_audience_is_refused() {
    let (verifier, _) = verifier();
    for aud in [json!("https://other.test/api"), json!(["a", "b"])] {
        let token = signed(json!({ "aud": aud })).await;
        assert_eq!(
            verifier.verify(&token, now()).await,
            Err(JwtError::WrongAudience),
            "{aud}"
        );
    }
    // An array naming ours among others is fine.
    let token = signed(json!({"aud": ["https://other.test/api", oidc().resource]})).await;
    assert!(verifier.verify(&token, now()).await.is_ok());
}

#[tokio::test]
async fn jwt_alg_none_is_refused() {
    let (verifier, _) = verifier();
    let kid = oidc().public_key().await.kid;
    let payload = B64.encode(good_claims().to_string());
    for alg in ["none", "None", "NONE"] {
        let header = B64.encode(json!({"alg": alg, "typ": "JWT", "kid": kid}).to_string());
        // Unsigned, as an attacker sends it...
        let unsigned = format!("{header}.{payload}.");
        assert_eq!(
            verifier.verify(&unsigned, now()).await,
            Err(JwtError::AlgorithmNotAllowed),
            "{alg}"
        );
    }
    // ...and with a genuine signature by the issuer under a relabelled header.
    let relabelled = oidc().sign(good_claims(), json!({"alg": "none"})).await;
    assert_eq!(
        verifier.verify(&relabelled, now()).await,
        Err(JwtError::AlgorithmNotAllowed)
    );
}

#[tokio::test]
async fn jwt_hs256_signed_with_the_issuer_public_key_is_refused() {
    let (verifier, _) = verifier();
    let public = oidc().public_key().await;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(public.kid.clone());
    // The classic key-confusion forgery: the public key's bytes, in the forms
    // a confused verifier might use, as the HMAC secret.
    for secret in [
        public.pem.as_bytes().to_vec(),
        public.pem.trim_end().as_bytes().to_vec(),
        public.jwk.to_string().into_bytes(),
    ] {
        let forged =
            jsonwebtoken::encode(&header, &good_claims(), &EncodingKey::from_secret(&secret))
                .unwrap();
        assert_eq!(
            verifier.verify(&forged, now()).await,
            Err(JwtError::AlgorithmNotAllowed)
        );
    }
}

#[tokio::test]
async fn jwt_tampered_payload_is_refused() {
    let (verifier, _) = verifier();
    let token = oidc()
        .client_credentials_token("tenant-beta-read", &oidc().resource)
        .await;
    let p = parts(&token);
    let mut claims = claims_of(&token);
    claims["roles"] = json!(["admin"]);
    claims["tenant"] = json!("acme");
    let tampered = format!("{}.{}.{}", p[0], B64.encode(claims.to_string()), p[2]);
    assert_eq!(
        verifier.verify(&tampered, now()).await,
        Err(JwtError::BadSignature)
    );
    // The untampered token still verifies: the refusal is the tampering.
    assert!(verifier.verify(&token, now()).await.is_ok());
}

#[tokio::test]
async fn jwt_tampered_signature_is_refused() {
    let (verifier, _) = verifier();
    let token = signed(json!({})).await;
    let p = parts(&token);
    let mut signature = B64.decode(&p[2]).unwrap();
    for i in [0, signature.len() / 2, signature.len() - 1] {
        signature[i] ^= 0x01;
        let tampered = format!("{}.{}.{}", p[0], p[1], B64.encode(&signature));
        assert_eq!(
            verifier.verify(&tampered, now()).await,
            Err(JwtError::BadSignature),
            "byte {i}"
        );
        signature[i] ^= 0x01;
    }
    // Truncated: still base64url, no longer a valid RSA signature.
    let short = format!("{}.{}.{}", p[0], p[1], B64.encode(&signature[..128]));
    assert_eq!(
        verifier.verify(&short, now()).await,
        Err(JwtError::BadSignature)
    );
}

/// An ES256 key the issuer has never heard of, as jsonwebtoken wants it.
fn stranger_key() -> EncodingKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap()
}

#[tokio::test]
async fn jwt_token_signed_by_an_unknown_key_is_refused() {
    let (verifier, _) = verifier();
    let key = stranger_key();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("stranger".to_owned());
    let forged = jsonwebtoken::encode(&header, &good_claims(), &key).unwrap();
    assert_eq!(
        verifier.verify(&forged, now()).await,
        Err(JwtError::UnknownKey)
    );
    // Claiming the issuer's kid does not help: that key is RSA, the token
    // says ES256, and the key decides what it may verify.
    header.kid = Some(oidc().public_key().await.kid);
    let forged = jsonwebtoken::encode(&header, &good_claims(), &key).unwrap();
    assert_eq!(
        verifier.verify(&forged, now()).await,
        Err(JwtError::AlgorithmNotAllowed)
    );
    // Nor does leaving the kid out: no ES256 key to try.
    header.kid = None;
    let forged = jsonwebtoken::encode(&header, &good_claims(), &key).unwrap();
    assert_eq!(
        verifier.verify(&forged, now()).await,
        Err(JwtError::UnknownKey)
    );
}

#[tokio::test]
async fn jwt_garbage_is_refused_as_malformed() {
    let (verifier, probe) = verifier();
    let real = signed(json!({})).await;
    let p = parts(&real);
    let cases = [
        String::new(),
        "garbage".to_owned(),
        "a.b.c".to_owned(),
        "...".to_owned(),
        format!("{}.{}", p[0], p[1]),
        format!("{real}.{}", p[2]),
        format!("{}.{}.{}", p[0], B64.encode("not json"), p[2]),
        format!("{}.{}.{}", B64.encode("[]"), p[1], p[2]),
        format!("{}.{}.{}!", p[0], p[1], p[2]),
        format!("Bearer {real}"),
        "x".repeat(20_000),
    ];
    for case in cases {
        assert_eq!(
            verifier.verify(&case, now()).await,
            Err(JwtError::Malformed),
            "{case:.40}"
        );
    }
    // Refused before any key was needed.
    assert_eq!(oidc().jwks_fetches(&probe).await, 0);
}

/// Tokens signed by the real key, each naming a random key id.
async fn random_kid_tokens(n: usize) -> Vec<String> {
    join_all((0..n).map(|_| oidc().sign(good_claims(), json!({ "kid": probe() })))).await
}

#[tokio::test]
async fn jwt_a_flood_of_unknown_kids_fetches_the_jwks_at_most_once() {
    let (verifier, probe) = verifier();
    let flood = random_kid_tokens(50).await;

    // Cold cache, default 30 s refetch floor: the first token fetches the
    // set, the other 49 (concurrent) find the floor in force.
    let outcomes = join_all(flood.iter().map(|t| verifier.verify(t, now()))).await;
    assert!(outcomes.iter().all(|o| *o == Err(JwtError::UnknownKey)));
    assert_eq!(oidc().jwks_fetches(&probe).await, 1);

    // The set fetched is used: a real token verifies without another fetch.
    let token = oidc()
        .client_credentials_token("tenant-acme-admin", &oidc().resource)
        .await;
    assert!(verifier.verify(&token, now()).await.is_ok());
    let outcomes = join_all(flood.iter().map(|t| verifier.verify(t, now()))).await;
    assert!(outcomes.iter().all(|o| *o == Err(JwtError::UnknownKey)));
    assert_eq!(oidc().jwks_fetches(&probe).await, 1);
}

#[tokio::test]
async fn jwt_unknown_kids_refetch_once_per_interval() {
    let probe = probe();
    let mut config = oidc().issuer_config(&probe);
    config.jwks_refetch_min_interval_ms = 300;
    let verifier = JwtVerifier::new(vec![config]).unwrap();
    let token = oidc()
        .client_credentials_token("tenant-acme-admin", &oidc().resource)
        .await;
    assert!(verifier.verify(&token, now()).await.is_ok());
    assert_eq!(oidc().jwks_fetches(&probe).await, 1);

    // Once the floor has passed, a burst of unknown kids (perhaps a key
    // rotation) is worth exactly one more look, not fifty.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let flood = random_kid_tokens(50).await;
    let outcomes = join_all(flood.iter().map(|t| verifier.verify(t, now()))).await;
    assert!(outcomes.iter().all(|o| *o == Err(JwtError::UnknownKey)));
    assert_eq!(oidc().jwks_fetches(&probe).await, 2);
    assert!(verifier.verify(&token, now()).await.is_ok());
    assert_eq!(oidc().jwks_fetches(&probe).await, 2);
}

#[tokio::test]
async fn jwt_an_unreachable_jwks_is_reported_as_such() {
    let mut config = oidc().issuer_config(&probe());
    // Port 9 (discard) on loopback: nothing listens there in the test sandbox.
    config.jwks_url = "http://127.0.0.1:9/jwks".to_owned();
    let verifier = JwtVerifier::new(vec![config]).unwrap();
    let token = signed(json!({})).await;
    assert_eq!(
        verifier.verify(&token, now()).await,
        Err(JwtError::JwksUnavailable)
    );
}
