//! The OAuth server the broker's tests run against (`oauth_server.rs`) behaves
//! as those tests rely on: PKCE required, strict refresh-token rotation (reuse
//! revokes the grant), revocation, client credentials, exact per-client request
//! counts, and the refresh race the broker must prevent. Plain HTTP, no broker.

use std::time::Duration;

use serde_json::{Value, json};

use crate::oauth_server::{
    Behaviour, Callback, ClientAuth, ClientSpec, Decision, DriverError, OnDisconnect,
    ProviderError, RegisteredClient, TokenRequests, oauth_server, pkce_pair,
};

/// Nothing listens here: the driver stops at the redirect.
const REDIRECT_URI: &str = "http://127.0.0.1:9/oauth/callback/selfcheck";

fn invalid_grant() -> Value {
    json!({"error": "invalid_grant", "error_description": "grant request is invalid"})
}

fn counts(count: u64, success: u64, error: u64, by_grant: &[(&str, u64)]) -> TokenRequests {
    TokenRequests {
        count,
        success,
        error,
        aborted: 0,
        by_grant: by_grant
            .iter()
            .map(|(g, n)| ((*g).to_owned(), *n))
            .collect(),
    }
}

/// Registers a code-flow client and runs one authorization with PKCE: the
/// client and the token response of the code exchange (asserted 200).
async fn client_with_tokens(spec: ClientSpec) -> (RegisteredClient, Value) {
    let server = oauth_server();
    let client = server.register_client(&spec).await;
    let (verifier, challenge) = pkce_pair();
    let url = server.authorization_url(&client, "read write", "state-1", Some(&challenge));
    let callback: Callback = server.authorize(&url).await.unwrap();
    assert_eq!(callback.state.as_deref(), Some("state-1"));
    let tokens = server
        .exchange_code(&client, callback.code(), Some(&verifier))
        .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    (client, tokens.body)
}

fn text(body: &Value, name: &str) -> String {
    body[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        .to_owned()
}

#[tokio::test]
async fn code_flow_with_pkce_s256_issues_working_tokens() {
    let server = oauth_server();
    let mut spec = ClientSpec::code_flow(REDIRECT_URI);
    spec.access_token_ttl = Some(120);
    let client = server.register_client(&spec).await;
    let (verifier, challenge) = pkce_pair();
    let url = server.authorization_url(&client, "read write", "st-42", Some(&challenge));

    let callback = server.authorize(&url).await.unwrap();
    assert!(callback.location.starts_with(&format!("{REDIRECT_URI}?")));
    assert_eq!(callback.state.as_deref(), Some("st-42"));
    let code = callback.code().to_owned();
    let keys: Vec<&str> = callback.params.keys().map(String::as_str).collect();
    assert_eq!(keys, ["code", "iss", "state"]);
    assert_eq!(callback.params["iss"], server.issuer);

    // A wrong verifier is refused.
    let (other_verifier, _) = pkce_pair();
    let wrong = server
        .exchange_code(&client, &code, Some(&other_verifier))
        .await;
    assert_eq!((wrong.status, wrong.body), (400, invalid_grant()));

    let tokens = server.exchange_code(&client, &code, Some(&verifier)).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let body = &tokens.body;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 120);
    assert_eq!(body["scope"], "read write");
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "access_token",
            "expires_in",
            "refresh_token",
            "scope",
            "token_type"
        ]
    );
    assert_ne!(text(body, "refresh_token"), text(body, "access_token"));

    let (status, me) = server.resource(&text(body, "access_token")).await;
    assert_eq!(status, 200);
    assert_eq!(
        me,
        json!({"active": true, "client_id": client.client_id, "sub": "alice", "scope": "read write"})
    );

    // A code is single use.
    let again = server.exchange_code(&client, &code, Some(&verifier)).await;
    assert_eq!((again.status, again.body), (400, invalid_grant()));

    assert_eq!(
        server.token_requests(&client.client_id).await,
        counts(3, 1, 2, &[("authorization_code", 3)])
    );
}

#[tokio::test]
async fn client_secret_post_clients_authenticate_in_the_body_only() {
    let server = oauth_server();
    let mut spec = ClientSpec::code_flow(REDIRECT_URI);
    spec.auth = ClientAuth::Post;
    let (client, tokens) = client_with_tokens(spec).await;
    assert_eq!(tokens["expires_in"], 300);

    // The same credentials over HTTP Basic: not this client's method.
    let basic = RegisteredClient {
        auth: ClientAuth::Basic,
        ..client.clone()
    };
    let refused = server
        .refresh(&basic, &text(&tokens, "refresh_token"))
        .await;
    assert_eq!(
        (refused.status, refused.body),
        (
            401,
            json!({
                "error": "invalid_client",
                "error_description":
                    "client authentication failed: registered client_secret_post, got client_secret_basic"
            })
        )
    );

    let refreshed = server
        .refresh(&client, &text(&tokens, "refresh_token"))
        .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(
        server.token_requests(&client.client_id).await,
        counts(3, 2, 1, &[("authorization_code", 1), ("refresh_token", 2)])
    );
}

#[tokio::test]
async fn authorization_without_pkce_s256_is_refused() {
    let server = oauth_server();
    let client = server
        .register_client(&ClientSpec::code_flow(REDIRECT_URI))
        .await;

    // No code_challenge at all: refused at the authorization endpoint.
    let url = server.authorization_url(&client, "read", "no-pkce", None);
    let callback = server.authorize(&url).await.unwrap();
    assert_eq!(callback.state.as_deref(), Some("no-pkce"));
    assert_eq!(
        callback.result,
        Err(ProviderError {
            error: "invalid_request".into(),
            description: Some(
                "Authorization Server policy requires PKCE to be used for this request".into()
            ),
        })
    );

    // The plain method is refused too.
    let (verifier, _) = pkce_pair();
    let plain = format!("{url}&code_challenge={verifier}&code_challenge_method=plain");
    let callback = server.authorize(&plain).await.unwrap();
    assert_eq!(
        callback.result,
        Err(ProviderError {
            error: "invalid_request".into(),
            description: Some("not supported value of code_challenge_method".into()),
        })
    );

    // A code issued for an S256 challenge needs its verifier.
    let (verifier, challenge) = pkce_pair();
    let url = server.authorization_url(&client, "read", "pkce", Some(&challenge));
    let callback = server.authorize(&url).await.unwrap();
    let without = server.exchange_code(&client, callback.code(), None).await;
    assert_eq!((without.status, without.body), (400, invalid_grant()));
    let with = server
        .exchange_code(&client, callback.code(), Some(&verifier))
        .await;
    assert_eq!(with.status, 200, "{}", with.body);

    // The user pressing Cancel: access_denied on the redirect.
    let url = server.authorization_url(&client, "read", "deny", Some(&challenge));
    let callback = server.authorize_as(&url, &Decision::Deny).await.unwrap();
    assert_eq!(callback.state.as_deref(), Some("deny"));
    assert_eq!(
        callback.result,
        Err(ProviderError {
            error: "access_denied".into(),
            description: Some("End-User aborted interaction".into()),
        })
    );

    // A redirect URI that was not registered: an error page, no redirect.
    let url = server
        .authorization_url(&client, "read", "x", Some(&challenge))
        .replace("selfcheck", "elsewhere");
    let err: DriverError = server.authorize(&url).await.unwrap_err();
    assert_eq!(err.status, Some(400), "{err}");
    assert!(
        err.body
            .contains("<strong>error</strong>: invalid_redirect_uri"),
        "{err}"
    );
    assert!(
        err.body.contains(
            "redirect_uri did not match any of the client&#39;s registered redirect_uris"
        ),
        "{err}"
    );

    assert_eq!(
        server.token_requests(&client.client_id).await,
        counts(2, 1, 1, &[("authorization_code", 2)])
    );
}

#[tokio::test]
async fn refresh_rotates_and_reusing_the_old_token_revokes_the_grant() {
    let server = oauth_server();
    let (client, tokens) = client_with_tokens(ClientSpec::code_flow(REDIRECT_URI)).await;
    let first = text(&tokens, "refresh_token");

    let refreshed = server.refresh(&client, &first).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    let second = refreshed.field("refresh_token");
    let access = refreshed.field("access_token");
    assert_ne!(second, first);
    assert_ne!(access, text(&tokens, "access_token"));
    assert_eq!(refreshed.body["scope"], "read write");
    assert_eq!(server.resource(&access).await.0, 200);

    // Reuse of the rotated token: refused, and the whole grant is revoked.
    let reuse = server.refresh(&client, &first).await;
    assert_eq!((reuse.status, reuse.body), (400, invalid_grant()));
    let next = server.refresh(&client, &second).await;
    assert_eq!((next.status, next.body), (400, invalid_grant()));
    assert_eq!(
        server.resource(&access).await,
        (401, json!({"error": "invalid_token"}))
    );

    assert_eq!(
        server.token_requests(&client.client_id).await,
        counts(4, 2, 2, &[("authorization_code", 1), ("refresh_token", 3)])
    );
    assert!(server.log().contains("refresh token already used"));
}

#[tokio::test]
async fn revocation_makes_the_refresh_token_unusable() {
    let server = oauth_server();
    let (client, tokens) = client_with_tokens(ClientSpec::code_flow(REDIRECT_URI)).await;
    let refresh = text(&tokens, "refresh_token");
    let access = text(&tokens, "access_token");
    assert_eq!(server.resource(&access).await.0, 200);
    let live = server.introspect(&client, &refresh).await;
    assert_eq!(
        (
            &live["active"],
            &live["client_id"],
            &live["scope"],
            &live["sub"]
        ),
        (
            &json!(true),
            &json!(client.client_id),
            &json!("read write"),
            &json!("alice")
        )
    );

    assert_eq!(
        server
            .revoke(&client, &refresh, Some("refresh_token"))
            .await,
        200
    );
    let after = server.refresh(&client, &refresh).await;
    assert_eq!((after.status, after.body), (400, invalid_grant()));
    // Revoking the refresh token revoked its grant, access tokens included.
    assert_eq!(server.resource(&access).await.0, 401);
    assert_eq!(
        server.introspect(&client, &refresh).await,
        json!({"active": false})
    );
    assert_eq!(
        server.introspect(&client, &access).await,
        json!({"active": false})
    );
    // RFC 7009 §2.2: an already invalid token still answers 200.
    assert_eq!(server.revoke(&client, &refresh, None).await, 200);

    let revocations = server.revocation_requests(&client.client_id).await;
    assert_eq!(
        (revocations.count, revocations.success, revocations.error),
        (2, 2, 0)
    );
    assert_eq!(
        server.token_requests(&client.client_id).await,
        counts(2, 1, 1, &[("authorization_code", 1), ("refresh_token", 1)])
    );
}

#[tokio::test]
async fn client_credentials_issue_an_access_token_without_refresh() {
    let server = oauth_server();
    let mut spec = ClientSpec::client_credentials();
    spec.access_token_ttl = Some(45);
    let client = server.register_client(&spec).await;

    let tokens = server
        .token_request(
            &client,
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let keys: Vec<&str> = tokens
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["access_token", "expires_in", "scope", "token_type"]);
    assert_eq!(tokens.body["expires_in"], 45);
    assert_eq!(tokens.body["scope"], "read");
    assert_eq!(tokens.body["token_type"], "Bearer");
    assert_eq!(
        server.resource(&tokens.field("access_token")).await,
        (
            200,
            json!({"active": true, "client_id": client.client_id, "sub": null, "scope": "read"})
        )
    );

    // Not allowed the code flow.
    let code = server
        .token_request(
            &client,
            &[
                ("grant_type", "authorization_code"),
                ("code", "x"),
                ("redirect_uri", REDIRECT_URI),
            ],
        )
        .await;
    assert_eq!(
        (code.status, code.body),
        (
            400,
            json!({
                "error": "invalid_request",
                "error_description": "requested grant type is not allowed for this client"
            })
        )
    );

    assert_eq!(
        server.token_requests(&client.client_id).await,
        counts(
            2,
            1,
            1,
            &[("authorization_code", 1), ("client_credentials", 1)]
        )
    );
}

#[tokio::test]
async fn the_counter_counts_exactly_each_clients_token_requests() {
    let server = oauth_server();
    let client = server
        .register_client(&ClientSpec::client_credentials())
        .await;
    let other = server
        .register_client(&ClientSpec::client_credentials())
        .await;
    assert_eq!(
        server.token_requests(&client.client_id).await,
        TokenRequests::default()
    );

    let cc = [("grant_type", "client_credentials")];
    for _ in 0..3 {
        assert_eq!(server.token_request(&client, &cc).await.status, 200);
    }
    // A wrong secret still names the client: counted, as an error.
    let wrong = RegisteredClient {
        client_secret: "not-the-secret".into(),
        ..client.clone()
    };
    let refused = server.token_request(&wrong, &cc).await;
    assert_eq!(
        (refused.status, refused.body),
        (
            401,
            json!({"error": "invalid_client", "error_description": "client authentication failed"})
        )
    );
    // No grant_type at all.
    assert_eq!(server.token_request(&client, &[]).await.status, 400);
    // The other client's requests stay its own.
    assert_eq!(server.token_request(&other, &cc).await.status, 200);

    assert_eq!(
        server.token_requests(&client.client_id).await,
        counts(5, 3, 2, &[("", 1), ("client_credentials", 4)])
    );
    assert_eq!(
        server.token_requests(&other.client_id).await,
        counts(1, 1, 0, &[("client_credentials", 1)])
    );
    let revocations = server.revocation_requests(&client.client_id).await;
    assert_eq!(
        (revocations.count, revocations.success, revocations.error),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn two_concurrent_refreshes_with_one_token_kill_the_grant() {
    let server = oauth_server();
    // Several rounds: the outcome must not depend on timing.
    for round in 0..3 {
        let (client, tokens) = client_with_tokens(ClientSpec::code_flow(REDIRECT_URI)).await;
        let refresh = text(&tokens, "refresh_token");
        let (a, b) = tokio::join!(
            server.refresh(&client, &refresh),
            server.refresh(&client, &refresh)
        );
        let mut statuses = [a.status, b.status];
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [200, 400],
            "round {round}: {} / {}",
            a.body,
            b.body
        );
        let (winner, loser) = if a.status == 200 { (a, b) } else { (b, a) };
        assert_eq!(loser.body, invalid_grant());

        // The loser's reuse revoked the grant: the winner's new token is dead.
        let after = server
            .refresh(&client, &winner.field("refresh_token"))
            .await;
        assert_eq!(
            (after.status, after.body),
            (400, invalid_grant()),
            "round {round}"
        );
        assert_eq!(server.resource(&winner.field("access_token")).await.0, 401);
        assert_eq!(
            server.token_requests(&client.client_id).await,
            counts(4, 2, 2, &[("authorization_code", 1), ("refresh_token", 3)])
        );
    }
}

/// Polls the counter until `done` holds (a hung-up request finishes later).
async fn wait_for_counts(client_id: &str, done: impl Fn(&TokenRequests) -> bool) -> TokenRequests {
    for _ in 0..100 {
        let now = oauth_server().token_requests(client_id).await;
        if done(&now) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the counter never settled: {:?}",
        oauth_server().token_requests(client_id).await
    )
}

/// A refresh whose caller gives up after 100 ms.
async fn impatient_refresh(client: &RegisteredClient, refresh_token: &str) {
    let result = reqwest::Client::new()
        .post(&oauth_server().token_endpoint)
        .basic_auth(&client.client_id, Some(&client.client_secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(result.unwrap_err().is_timeout());
}

#[tokio::test]
async fn injected_failures_and_delays_behave_as_documented() {
    let server = oauth_server();
    let (client, tokens) = client_with_tokens(ClientSpec::code_flow(REDIRECT_URI)).await;
    let mut refresh = text(&tokens, "refresh_token");

    // Two injected 503s, then the real endpoint again (the token untouched).
    let fail = Behaviour {
        fail_next: Some(2),
        ..Behaviour::default()
    };
    server.set_behaviour(&client.client_id, &fail).await;
    for _ in 0..2 {
        let busy = server.refresh(&client, &refresh).await;
        assert_eq!(busy.status, 503);
        assert_eq!(busy.body["error"], "temporarily_unavailable");
    }
    let ok = server.refresh(&client, &refresh).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    refresh = ok.field("refresh_token");

    // A delayed refresh whose caller hangs up, "drop": never handled.
    let drop = Behaviour {
        token_delay: Some(Duration::from_millis(400)),
        on_disconnect: Some(OnDisconnect::Drop),
        ..Behaviour::default()
    };
    server.set_behaviour(&client.client_id, &drop).await;
    impatient_refresh(&client, &refresh).await;
    let now = wait_for_counts(&client.client_id, |c| c.aborted == 1).await;
    assert_eq!(
        (now.count, now.success, now.error, now.aborted),
        (5, 2, 2, 1)
    );
    let ok = server.refresh(&client, &refresh).await;
    assert_eq!(
        ok.status, 200,
        "the dropped request left the token valid: {}",
        ok.body
    );
    refresh = ok.field("refresh_token");

    // "process": handled after the hang-up, so the token is consumed unseen.
    let process = Behaviour {
        on_disconnect: Some(OnDisconnect::Process),
        ..Behaviour::default()
    };
    server.set_behaviour(&client.client_id, &process).await;
    impatient_refresh(&client, &refresh).await;
    let now = wait_for_counts(&client.client_id, |c| c.success == 4).await;
    assert_eq!(
        (now.count, now.success, now.error, now.aborted),
        (7, 4, 2, 1)
    );
    let no_delay = Behaviour {
        token_delay: Some(Duration::ZERO),
        ..Behaviour::default()
    };
    server.set_behaviour(&client.client_id, &no_delay).await;
    let lost = server.refresh(&client, &refresh).await;
    assert_eq!((lost.status, lost.body), (400, invalid_grant()));

    assert_eq!(
        server.token_requests(&client.client_id).await,
        TokenRequests {
            count: 8,
            success: 4,
            error: 3,
            aborted: 1,
            by_grant: [
                ("authorization_code".to_owned(), 1),
                ("refresh_token".to_owned(), 7)
            ]
            .into(),
        }
    );
}
