use std::sync::Arc;

use locksmith_store::EmbeddedStore;

use super::*;

fn at(s: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(s).unwrap()
}

const T0: i64 = 1_800_000_000;
const REDIRECT: &str = "https://id.example/oauth/callback/github";

fn store() -> PendingStore<EmbeddedStore> {
    PendingStore::new(EmbeddedStore::in_memory(locksmith_store::system_clock()).unwrap())
}

fn pending(verifier: Option<&str>) -> PendingAuthorization {
    PendingAuthorization {
        connection: ConnectionRef::parse("tenants/acme/orgs/sales/integrations/github").unwrap(),
        tenant: TenantId::parse("acme").unwrap(),
        subject: "api-key:k1".into(),
        redirect_uri: REDIRECT.into(),
        return_url: Some("https://app.acme.example/done".into()),
        inputs: [("tenant".to_owned(), "common".to_owned())].into(),
        scopes: vec!["repo".into()],
        pkce_verifier: verifier.map(|v| SecretString::from(v.to_owned())),
        created_at: at(T0),
        expires_at: at(T0) + STATE_TTL,
    }
}

async fn issue(s: &PendingStore<EmbeddedStore>, p: &PendingAuthorization) -> State {
    let state = State::generate().unwrap();
    s.issue(&state, p).await.unwrap();
    state
}

fn expected() -> Expected<'static> {
    Expected {
        integration: "github",
        redirect_uri: REDIRECT,
        confined_to: None,
    }
}

fn again(state: &State) -> State {
    State::from_callback(state.expose()).unwrap()
}

#[tokio::test]
async fn a_state_is_consumed_once_and_carries_the_flow_back() {
    let s = store();
    let state = issue(&s, &pending(Some("the-verifier"))).await;
    assert_eq!(state.expose().len(), 43);
    assert!(!format!("{state:?}").contains(state.expose()));
    let back = s
        .consume(&again(&state), &expected(), at(T0 + 60))
        .await
        .unwrap();
    assert_eq!(
        back.connection.resource_name(),
        "tenants/acme/orgs/sales/integrations/github"
    );
    assert_eq!(back.tenant.as_str(), "acme");
    assert_eq!(
        back.return_url.as_deref(),
        Some("https://app.acme.example/done")
    );
    assert_eq!(back.inputs["tenant"], "common");
    assert_eq!(back.scopes, vec!["repo".to_owned()]);
    assert_eq!(back.pkce_verifier.unwrap().expose_secret(), "the-verifier");
    assert_eq!(back.expires_at, at(T0 + 600));
    // Replayed: refused, whatever else is right.
    assert!(matches!(
        s.consume(&again(&state), &expected(), at(T0 + 61)).await,
        Err(StateError::Used)
    ));
}

#[tokio::test]
async fn neither_the_state_nor_the_verifier_is_in_storage() {
    let s = store();
    let state = issue(&s, &pending(Some("the-verifier"))).await;
    let prefix = Key::parse(PREFIX).unwrap();
    let page = s.store().list(Some(&prefix), None, 10).await.unwrap();
    assert_eq!(page.len(), 1);
    let key = Key::parse(&format!("{PREFIX}/{}", page[0].name())).unwrap();
    let body = String::from_utf8(s.store().read(&key, None).await.unwrap().body).unwrap();
    assert!(!body.contains(state.expose()), "{body}");
    assert!(!body.contains("the-verifier"), "{body}");
    assert!(!page[0].name().contains(state.expose()));
}

#[tokio::test]
async fn of_concurrent_presentations_exactly_one_wins() {
    let s = Arc::new(store());
    let state = issue(&s, &pending(None)).await;
    let text = state.expose().to_owned();
    let tries = (0..16).map(|_| {
        let s = Arc::clone(&s);
        let text = text.clone();
        tokio::spawn(async move {
            let state = State::from_callback(&text).unwrap();
            s.consume(&state, &expected(), at(T0 + 1)).await
        })
    });
    let results = futures_join(tries).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1);
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, StateError::Used))
    );
}

async fn futures_join(
    handles: impl Iterator<Item = tokio::task::JoinHandle<Result<PendingAuthorization, StateError>>>,
) -> Vec<Result<PendingAuthorization, StateError>> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn expiry_follows_the_clock_given_and_burns_the_state() {
    let s = store();
    let state = issue(&s, &pending(None)).await;
    assert!(matches!(
        s.consume(&again(&state), &expected(), at(T0 + 600)).await,
        Err(StateError::Expired)
    ));
    assert!(matches!(
        s.consume(&again(&state), &expected(), at(T0 + 1)).await,
        Err(StateError::Used)
    ));
    let fresh = issue(&s, &pending(None)).await;
    assert!(
        s.consume(&again(&fresh), &expected(), at(T0 + 599))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn wrong_integration_or_redirect_uri_is_refused_and_consumes() {
    let s = store();
    let state = issue(&s, &pending(None)).await;
    let wrong = Expected {
        integration: "slack",
        ..expected()
    };
    assert!(matches!(
        s.consume(&again(&state), &wrong, at(T0)).await,
        Err(StateError::IntegrationMismatch)
    ));
    assert!(matches!(
        s.consume(&again(&state), &expected(), at(T0)).await,
        Err(StateError::Used)
    ));
    let state = issue(&s, &pending(None)).await;
    let wrong = Expected {
        redirect_uri: "https://evil.example/oauth/callback/github",
        ..expected()
    };
    assert!(matches!(
        s.consume(&again(&state), &wrong, at(T0)).await,
        Err(StateError::RedirectMismatch)
    ));
}

#[tokio::test]
async fn another_tenant_sees_an_unknown_state_and_cannot_burn_it() {
    let s = store();
    let state = issue(&s, &pending(None)).await;
    let beta = TenantId::parse("beta").unwrap();
    let other = Expected {
        confined_to: Some(&beta),
        ..expected()
    };
    assert!(matches!(
        s.consume(&again(&state), &other, at(T0)).await,
        Err(StateError::Unknown)
    ));
    let acme = TenantId::parse("acme").unwrap();
    let own = Expected {
        confined_to: Some(&acme),
        ..expected()
    };
    assert!(s.consume(&again(&state), &own, at(T0)).await.is_ok());
}

#[tokio::test]
async fn unknown_and_tampered_states_are_unknown() {
    let s = store();
    let state = issue(&s, &pending(None)).await;
    let mut tampered = state.expose().to_owned();
    let last = if tampered.ends_with('A') { "B" } else { "A" };
    tampered.replace_range(42..43, last);
    let tampered = State::from_callback(&tampered).unwrap();
    assert!(matches!(
        s.consume(&tampered, &expected(), at(T0)).await,
        Err(StateError::Unknown)
    ));
    for bad in [
        "",
        "short",
        &"a".repeat(44),
        &format!("{}%", &"a".repeat(42)),
    ] {
        assert!(State::from_callback(bad).is_none(), "{bad}");
    }
    // The genuine one still works: probing did not burn it.
    assert!(s.consume(&again(&state), &expected(), at(T0)).await.is_ok());
}

#[tokio::test]
async fn purge_erases_used_and_expired_states_only() {
    let s = store();
    let used = issue(&s, &pending(None)).await;
    s.consume(&again(&used), &expected(), at(T0)).await.unwrap();
    let mut short = pending(None);
    short.expires_at = at(T0 + 10);
    let _expired = issue(&s, &short).await;
    let live = issue(&s, &pending(None)).await;
    assert_eq!(s.purge(at(T0 + 20), 100).await.unwrap(), 2);
    assert!(
        s.consume(&again(&live), &expected(), at(T0 + 30))
            .await
            .is_ok()
    );
}

#[test]
fn pkce_pairs_follow_rfc_7636() {
    // RFC 7636 appendix B.
    assert_eq!(
        challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
    let p = Pkce::generate().unwrap();
    assert_eq!(p.verifier.expose_secret().len(), 43);
    assert_eq!(p.challenge, challenge_of(p.verifier.expose_secret()));
}

#[test]
fn owners_parse_like_connection_owners() {
    assert_eq!(
        parse_owner("tenants/acme/orgs/sales")
            .unwrap()
            .storage_path(),
        "tenants/acme/orgs/sales"
    );
    assert!(parse_owner("tenants/ACME").is_none());
    assert!(parse_owner("tenants/acme/integrations/x").is_none());
}
