//! JWT bearer tokens at the edge, issued and signed by a real OIDC issuer
//! (`oidc-provider`, tests/tools/oidc): a token's tenant and roles become its
//! principal; every malformed, forged or out-of-date token is refused with
//! 401 problem+json and changes nothing.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use locksmith_edge::auth::AuthConfig;
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    harness::{Suite, assert_problem, create_tenant},
    oidc::oidc,
};

async fn suite_trusting_the_issuer() -> Suite {
    let probe = uuid::Uuid::new_v4().to_string();
    let suite = Suite::start_with(AuthConfig {
        oidc_issuers: vec![oidc().issuer_config(&probe)],
        ..AuthConfig::default()
    })
    .await;
    create_tenant(&suite, "acme").await;
    create_tenant(&suite, "beta").await;
    suite
}

fn claims(changes: Value) -> Value {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut claims = json!({
        "iss": oidc().issuer, "sub": "svc-reporting", "aud": oidc().resource,
        "iat": now, "exp": now + 300, "tenant": "acme", "roles": ["write"],
    });
    for (k, v) in changes.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

async fn as_token(
    suite: &Suite,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    suite
        .call_with(&suite.client_as(token), method, path, body)
        .await
}

#[tokio::test]
async fn a_token_acts_for_its_tenant_with_its_roles() {
    let suite = suite_trusting_the_issuer().await;
    let acme_admin = oidc()
        .client_credentials_token("tenant-acme-admin", &oidc().resource)
        .await;
    let (status, body) = as_token(&suite, &acme_admin, Method::GET, "/tenants/acme", None).await;
    assert_eq!(status, 200, "{body}");
    let org = json!({"id": "sales", "display_name": "Sales"});
    let (status, body) = as_token(
        &suite,
        &acme_admin,
        Method::POST,
        "/tenants/acme/orgs",
        Some(org.clone()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // Another tenant is invisible to it.
    let (status, body) = as_token(&suite, &acme_admin, Method::GET, "/tenants/beta", None).await;
    assert_eq!(
        assert_problem(status, &body, 404, "NOT_FOUND"),
        "tenant 'beta' does not exist"
    );
    // A read token reads and cannot write.
    let beta_read = oidc()
        .client_credentials_token("tenant-beta-read", &oidc().resource)
        .await;
    assert_eq!(
        as_token(&suite, &beta_read, Method::GET, "/tenants/beta/orgs", None)
            .await
            .0,
        200
    );
    let (status, body) = as_token(
        &suite,
        &beta_read,
        Method::POST,
        "/tenants/beta/orgs",
        Some(org),
    )
    .await;
    assert_eq!(
        assert_problem(status, &body, 403, "PERMISSION_DENIED"),
        "this call needs the write role"
    );
    // A suspended tenant's tokens are refused at once on this replica.
    let (status, _) = suite
        .patch(
            "/tenants/beta",
            json!({"version": 1, "status": "suspended"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) =
        as_token(&suite, &beta_read, Method::GET, "/tenants/beta/orgs", None).await;
    assert_eq!(
        assert_problem(status, &body, 401, "UNAUTHENTICATED"),
        "the token's tenant is suspended"
    );
}

#[tokio::test]
async fn forged_and_out_of_date_tokens_are_refused_and_change_nothing() {
    let suite = suite_trusting_the_issuer().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let public = oidc().public_key().await;
    let good = oidc().sign(claims(json!({})), json!({})).await;
    let parts: Vec<&str> = good.split('.').collect();

    let mut cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            oidc()
                .sign(
                    claims(json!({"exp": now - 3600, "iat": now - 7200})),
                    json!({}),
                )
                .await,
            "the bearer token has expired",
        ),
        (
            "not yet valid",
            oidc()
                .sign(claims(json!({"nbf": now + 3600})), json!({}))
                .await,
            "the bearer token is not valid yet",
        ),
        (
            "another issuer",
            oidc()
                .sign(claims(json!({"iss": "https://issuer.invalid"})), json!({}))
                .await,
            "the bearer token's issuer is not trusted here",
        ),
        (
            "another audience",
            oidc()
                .sign(
                    claims(json!({"aud": "https://elsewhere.invalid"})),
                    json!({}),
                )
                .await,
            "the bearer token is not meant for this service",
        ),
    ];
    // alg: none, unsigned.
    let header = B64.encode(json!({"alg": "none", "typ": "JWT", "kid": public.kid}).to_string());
    cases.push((
        "alg none",
        format!("{header}.{}.", parts[1]),
        "the bearer token's signing algorithm is not accepted",
    ));
    // HS256 with the issuer's public key as the HMAC secret.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(public.kid.clone());
    let forged = jsonwebtoken::encode(
        &hs,
        &claims(json!({})),
        &EncodingKey::from_secret(public.pem.as_bytes()),
    )
    .unwrap();
    cases.push((
        "HS256 with the public key",
        forged,
        "the bearer token's signing algorithm is not accepted",
    ));
    // Payload tampered: an admin of beta, under acme's signature.
    let tampered = B64.encode(claims(json!({"tenant": "beta", "roles": ["admin"]})).to_string());
    cases.push((
        "tampered payload",
        format!("{}.{tampered}.{}", parts[0], parts[2]),
        "the bearer token's signature is not valid",
    ));
    // Signature tampered.
    let mut signature = B64.decode(parts[2]).unwrap();
    signature[10] ^= 0x01;
    cases.push((
        "tampered signature",
        format!("{}.{}.{}", parts[0], parts[1], B64.encode(&signature)),
        "the bearer token's signature is not valid",
    ));
    // Signed by a key the issuer never published.
    let stranger = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut es = Header::new(Algorithm::ES256);
    es.kid = Some("stranger".into());
    let forged = jsonwebtoken::encode(
        &es,
        &claims(json!({})),
        &EncodingKey::from_ec_pem(stranger.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    cases.push((
        "unknown key",
        forged,
        "the bearer token is signed with a key its issuer does not publish",
    ));

    for (what, token, detail) in &cases {
        let org = json!({"id": "intruder", "display_name": "Intruder"});
        let resp = suite
            .client_as(token)
            .post(suite.url("/tenants/acme/orgs"))
            .json(&org)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert_eq!(
            resp.headers()["www-authenticate"],
            "Bearer realm=\"locksmith\"",
            "{what}"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            assert_problem(status, &body, 401, "UNAUTHENTICATED"),
            *detail,
            "{what}"
        );
        // The token itself is never echoed.
        assert!(
            !body.to_string().contains(&token[token.len() - 20..]),
            "{what}: {body}"
        );
    }
    // The good token works, and nothing was created by any refused one.
    let (status, body) = as_token(&suite, &good, Method::GET, "/tenants/acme/orgs", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"], json!([]), "{body}");
}

#[tokio::test]
async fn an_issuer_limited_to_some_tenants_cannot_speak_for_others() {
    let mut issuer = oidc().issuer_config(&uuid::Uuid::new_v4().to_string());
    issuer.tenants = vec!["beta".into()];
    let suite = Suite::start_with(AuthConfig {
        oidc_issuers: vec![issuer],
        ..AuthConfig::default()
    })
    .await;
    create_tenant(&suite, "acme").await;
    create_tenant(&suite, "beta").await;
    let acme = oidc()
        .client_credentials_token("tenant-acme-admin", &oidc().resource)
        .await;
    let (status, body) = as_token(&suite, &acme, Method::GET, "/tenants/acme", None).await;
    let detail = assert_problem(status, &body, 401, "UNAUTHENTICATED");
    assert_eq!(
        detail,
        "the bearer token's issuer may not speak for that tenant"
    );
    let beta = oidc()
        .client_credentials_token("tenant-beta-read", &oidc().resource)
        .await;
    assert_eq!(
        as_token(&suite, &beta, Method::GET, "/tenants/beta", None)
            .await
            .0,
        200
    );
}
