//! Token responses read per the entry's quirks.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::*;

fn provider(id: &str, extra: &str) -> Provider {
    let text = format!(
        r#"version = 1
[providers.{id}]
display_name = "T"
auth_mode = "oauth2_authorization_code"
authorization_url = "https://idp.example.com/authorize"
token_url = "https://idp.example.com/token"
client_auth = "body"
{extra}
"#
    );
    Catalog::parse(&text)
        .unwrap_or_else(|e| panic!("{e}"))
        .get(id)
        .map(|p| Provider::clone(p))
        .unwrap()
}

const JSON: Option<&str> = Some("application/json; charset=utf-8");
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

#[test]
fn reads_plain_json() {
    let p = provider("std", "default_expires_in = 600");
    let body = br#"{"access_token":"at","refresh_token":"rt","expires_in":3600,"scope":"a b","token_type":"Bearer"}"#;
    let t = p
        .parse_token_response(TokenGrant::AuthorizationCode, 200, JSON, body)
        .unwrap();
    assert_eq!(t.access_token.expose_secret(), "at");
    assert_eq!(t.refresh_token.as_ref().unwrap().expose_secret(), "rt");
    assert_eq!(
        t.expires_in,
        Some((Duration::from_secs(3600), ExpirySource::Provider))
    );
    assert_eq!(t.scopes, Some(vec!["a".to_owned(), "b".to_owned()]));
    assert_eq!(t.token_type.as_deref(), Some("Bearer"));
    // No token value in Debug.
    let shown = format!("{t:?}");
    assert!(
        !shown.contains("\"at\"") && !shown.contains("\"rt\""),
        "{shown}"
    );

    // No expiry sent: the entry's default, marked as such; refresh absent or null → None.
    let t = p
        .parse_token_response(
            TokenGrant::RefreshToken,
            200,
            JSON,
            br#"{"access_token":"at2","refresh_token":null}"#,
        )
        .unwrap();
    assert!(t.refresh_token.is_none());
    assert_eq!(
        t.expires_in,
        Some((Duration::from_secs(600), ExpirySource::CatalogDefault))
    );
    // Neither: a non-expiring token.
    let q = provider("noexp", "");
    let t = q
        .parse_token_response(
            TokenGrant::AuthorizationCode,
            200,
            JSON,
            br#"{"access_token":"x"}"#,
        )
        .unwrap();
    assert_eq!(t.expires_in, None);
    // Quoted numbers are accepted.
    let t = q
        .parse_token_response(
            TokenGrant::AuthorizationCode,
            200,
            JSON,
            br#"{"access_token":"x","expires_in":"120"}"#,
        )
        .unwrap();
    assert_eq!(t.expires_in.unwrap().0, Duration::from_secs(120));
}

#[test]
fn reads_form_encoded_bodies() {
    // GitHub without Accept: application/json, and any custom provider that
    // answers form-encoded: by content type, or by sniffing text/plain.
    let p = provider(
        "gh",
        "errors_with_http_200 = true\n[providers.gh.token_response]\nscope_separator = \",\"",
    );
    let body = b"access_token=gho_abc&scope=repo%2Cgist&token_type=bearer";
    for ct in [FORM, Some("text/plain"), None] {
        let t = p
            .parse_token_response(TokenGrant::AuthorizationCode, 200, ct, body)
            .unwrap();
        assert_eq!(t.access_token.expose_secret(), "gho_abc");
        assert_eq!(t.scopes, Some(vec!["repo".to_owned(), "gist".to_owned()]));
    }
    let t = p
        .parse_token_response(
            TokenGrant::AuthorizationCode,
            200,
            FORM,
            b"access_token=a&expires_in=28800&refresh_token=r",
        )
        .unwrap();
    assert_eq!(t.expires_in.unwrap().0, Duration::from_secs(28800));
    // Forced form format, whatever the content type says.
    let f = provider("f", "[providers.f.token_response]\nformat = \"form\"");
    assert!(
        f.parse_token_response(TokenGrant::AuthorizationCode, 200, JSON, b"access_token=a")
            .is_ok()
    );
    // An HTML page is not a form.
    let err = p
        .parse_token_response(
            TokenGrant::AuthorizationCode,
            200,
            Some("text/html"),
            b"<html>oops</html>",
        )
        .unwrap_err();
    assert!(
        matches!(err, TokenResponseError::Malformed { status: 200, .. }),
        "{err}"
    );
}

#[test]
fn errors_with_http_200_are_errors() {
    let p = provider("gh", "errors_with_http_200 = true");
    // GitHub, JSON and form.
    let err = p
        .parse_token_response(
            TokenGrant::AuthorizationCode,
            200,
            JSON,
            br#"{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired.","error_uri":"/x"}"#,
        )
        .unwrap_err();
    let TokenResponseError::Provider(e) = &err else {
        panic!("{err}")
    };
    assert_eq!((e.status, e.code.as_str()), (200, "bad_verification_code"));
    assert_eq!(
        e.description.as_deref(),
        Some("The code passed is incorrect or expired.")
    );
    assert!(err.is_invalid_grant() && !err.is_transient());
    let err = p
        .parse_token_response(
            TokenGrant::AuthorizationCode,
            200,
            FORM,
            b"error=incorrect_client_credentials&error_description=bad",
        )
        .unwrap_err();
    assert!(
        matches!(err, TokenResponseError::Provider(ref e) if e.code == "incorrect_client_credentials")
    );
    // Slack.
    let err = p
        .parse_token_response(
            TokenGrant::RefreshToken,
            200,
            JSON,
            br#"{"ok":false,"error":"invalid_refresh_token"}"#,
        )
        .unwrap_err();
    assert!(err.is_invalid_grant(), "{err}");
    // RFC 6749 errors with 400, and statuses without an OAuth error.
    let err = p
        .parse_token_response(
            TokenGrant::RefreshToken,
            400,
            JSON,
            br#"{"error":"invalid_grant"}"#,
        )
        .unwrap_err();
    assert!(err.is_invalid_grant());
    assert_eq!(err.to_string(), "the provider answered 400 `invalid_grant`");
    let err = p
        .parse_token_response(TokenGrant::RefreshToken, 503, Some("text/html"), b"<html>")
        .unwrap_err();
    assert_eq!(err, TokenResponseError::Status { status: 503 });
    assert!(err.is_transient());
    let err = p
        .parse_token_response(
            TokenGrant::RefreshToken,
            400,
            JSON,
            br#"{"error":"temporarily_unavailable"}"#,
        )
        .unwrap_err();
    assert!(err.is_transient());
    // A 200 without a token, or with a non-string one.
    for body in [
        &br#"{"token_type":"bearer"}"#[..],
        br#"{"access_token":42}"#,
        br#"{"access_token":""}"#,
        b"[1]",
    ] {
        assert!(matches!(
            p.parse_token_response(TokenGrant::AuthorizationCode, 200, JSON, body),
            Err(TokenResponseError::Malformed { .. })
        ));
    }
}

#[test]
fn reads_nested_tokens_and_metadata() {
    let c = Catalog::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/catalog/providers.toml"
    )))
    .unwrap();
    let slack = c.get("slack").unwrap();
    let body = br#"{"ok":true,"access_token":"xoxb-bot","token_type":"bot","scope":"commands",
        "app_id":"A1","team":{"id":"T1","name":"Team"},"enterprise":null,
        "authed_user":{"id":"U1","scope":"users:read,chat:write","access_token":"xoxp-user",
                       "token_type":"user","refresh_token":"xoxe-1-r","expires_in":43200}}"#;
    let t = slack
        .parse_token_response(TokenGrant::AuthorizationCode, 200, JSON, body)
        .unwrap();
    assert_eq!(t.access_token.expose_secret(), "xoxp-user");
    assert_eq!(
        t.refresh_token.as_ref().unwrap().expose_secret(),
        "xoxe-1-r"
    );
    assert_eq!(t.expires_in.unwrap().0, Duration::from_secs(43200));
    assert_eq!(t.scopes.as_deref().unwrap(), ["users:read", "chat:write"]);
    assert_eq!(t.metadata["team_id"], "T1");
    assert_eq!(t.metadata["user_id"], "U1");
    assert!(!t.metadata.contains_key("enterprise_id"), "null is absent");
    // Without a user token, the bot token must not be taken instead.
    let bot_only = br#"{"ok":true,"access_token":"xoxb-bot","authed_user":{"id":"U1"}}"#;
    assert!(
        slack
            .parse_token_response(TokenGrant::AuthorizationCode, 200, JSON, bot_only)
            .is_err()
    );
    // A refresh answers the user token at the top level.
    let refreshed = br#"{"ok":true,"access_token":"xoxe.xoxp-new","token_type":"user","refresh_token":"xoxe-1-n","expires_in":43200,"team":{"id":"T1"}}"#;
    let t = slack
        .parse_token_response(TokenGrant::RefreshToken, 200, JSON, refreshed)
        .unwrap();
    assert_eq!(t.access_token.expose_secret(), "xoxe.xoxp-new");
    assert_eq!(t.metadata["team_id"], "T1");

    let notion = c.get("notion").unwrap();
    let body = br#"{"access_token":"ntn_x","token_type":"bearer","bot_id":"b1","workspace_id":"w1",
        "workspace_name":"WS","owner":{"type":"user","user":{"id":"u1","object":"user"}}}"#;
    let t = notion
        .parse_token_response(TokenGrant::AuthorizationCode, 200, JSON, body)
        .unwrap();
    assert_eq!(t.metadata["workspace_id"], "w1");
    assert_eq!(t.metadata["owner_user_id"], "u1");
    assert!(t.refresh_token.is_none() && t.expires_in.is_none());

    let sf = c.get("salesforce").unwrap();
    let body = br#"{"access_token":"00D!x","refresh_token":"5Aep","instance_url":"https://acme.my.salesforce.com",
        "id":"https://login.salesforce.com/id/00D/005","token_type":"Bearer","issued_at":"1","signature":"s"}"#;
    let t = sf
        .parse_token_response(TokenGrant::AuthorizationCode, 200, JSON, body)
        .unwrap();
    assert_eq!(t.metadata["instance_url"], "https://acme.my.salesforce.com");
    assert_eq!(
        t.expires_in,
        Some((Duration::from_secs(7200), ExpirySource::CatalogDefault))
    );

    // Metadata keeps scalars only.
    let p = provider(
        "m",
        "[providers.m.token_response.metadata]\nws = \"workspace\"",
    );
    let t = p
        .parse_token_response(
            TokenGrant::AuthorizationCode,
            200,
            JSON,
            br#"{"access_token":"a","workspace":{"x":1}}"#,
        )
        .unwrap();
    assert!(t.metadata.is_empty());
}

#[test]
fn an_absurd_lifetime_never_overflows_the_expiry() {
    let p = provider("std", "");
    let body = br#"{"access_token":"at","expires_in":1e300}"#;
    let t = p
        .parse_token_response(TokenGrant::AuthorizationCode, 200, JSON, body)
        .unwrap();
    let now = time::OffsetDateTime::UNIX_EPOCH;
    let mut state = crate::record::ConnectionState::new(
        IntegrationId::parse("std").unwrap(),
        AuthMode::OAuth2AuthorizationCode,
        now,
    );
    crate::token::apply_tokens(&mut state, t, now);
    assert_eq!(
        state.expires_at, None,
        "past any date: treated as not expiring"
    );
    assert_eq!(state.access_token.unwrap().expose_secret(), "at");
}
