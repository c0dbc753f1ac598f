//! The shipped catalog, and malformed entries each refused with the entry
//! and field named.

use std::collections::BTreeMap;

use super::*;

const SHIPPED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/catalog/providers.toml"
);

fn shipped() -> Catalog {
    match Catalog::load(Path::new(SHIPPED)) {
        Ok(c) => c,
        Err(e) => panic!("the shipped catalog must load: {e}"),
    }
}

fn inputs(p: &Provider, pairs: &[(&str, &str)]) -> Result<ConnectionInputs, InputError> {
    let given: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    p.resolve_inputs(&given)
}

#[test]
fn shipped_catalog_loads_and_every_entry_validates() {
    let catalog = shipped();
    let required = [
        "notion",
        "github",
        "slack",
        "google",
        "microsoft",
        "jira",
        "salesforce",
        "hubspot",
        "linear",
        "gitlab",
        "dropbox",
        "zoom",
        "oauth2",
    ];
    for id in required {
        assert!(
            catalog.get(id).is_some(),
            "{id} is missing from the shipped catalog"
        );
    }
    for p in catalog.iter() {
        // Each entry also passes the one-entry validation custom providers
        // get, and can produce every URL from its inputs' examples.
        assert!(p.docs_url().is_some(), "{}: cite the documentation", p.id());
        let examples: Vec<(&str, &str)> = p
            .inputs()
            .values()
            .map(|s| (s.name(), s.example()))
            .collect();
        let inputs = inputs(p, &examples).unwrap();
        assert!(p.api_base_url(&inputs).is_ok(), "{}", p.id());
        if p.auth_mode().is_oauth2() {
            assert!(p.token_url(&inputs).is_ok(), "{}", p.id());
            assert!(p.revocation_url(&inputs).is_ok(), "{}", p.id());
        }
        if p.auth_mode() == AuthMode::OAuth2AuthorizationCode {
            assert!(p.authorization_url(&inputs).is_ok(), "{}", p.id());
        }
    }
    // The raw text round-trips through the single-entry path too.
    let text = std::fs::read_to_string(SHIPPED).unwrap();
    let raw: toml::Table = toml::from_str(&text).unwrap();
    let providers = raw["providers"].as_table().unwrap();
    assert_eq!(providers.len(), catalog.len());
    for (id, entry) in providers {
        let raw: RawProvider = entry.clone().try_into().unwrap();
        let json = serde_json::to_vec(&raw).unwrap();
        parse_custom_provider(id, &json).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn shipped_quirks_are_encoded() {
    let c = shipped();
    let get = |id: &str| c.get(id).unwrap();
    let o = |id: &str| get(id).oauth2().unwrap();

    let notion = o("notion");
    assert_eq!(notion.client_auth(), ClientAuth::Basic);
    assert_eq!(notion.token_request_format(), BodyFormat::Json);
    assert_eq!(notion.default_expires_in(), None);
    assert!(
        notion
            .token_response()
            .metadata()
            .contains_key("workspace_id")
    );
    let api = get("notion").api().unwrap();
    assert!(api.headers().contains_key("notion-version"));

    let github = o("github");
    assert!(github.accept_json() && github.errors_with_http_200() && github.pkce());
    assert_eq!(github.token_response().scope_separator(), ",");

    let slack = o("slack");
    assert_eq!(
        slack.token_response().access_token().as_str(),
        "authed_user.access_token"
    );
    assert_eq!(
        slack.refresh_response().access_token().as_str(),
        "access_token"
    );
    assert_eq!(slack.scope_param(), "user_scope");

    let google = o("google");
    assert_eq!(
        google
            .authorization_params()
            .get("access_type")
            .map(String::as_str),
        Some("offline")
    );
    assert_eq!(
        google
            .authorization_params()
            .get("prompt")
            .map(String::as_str),
        Some("consent")
    );

    let jira = o("jira");
    assert_eq!(
        jira.authorization_params()
            .get("audience")
            .map(String::as_str),
        Some("api.atlassian.com")
    );
    assert_eq!(jira.token_request_format(), BodyFormat::Json);

    assert_eq!(
        o("dropbox")
            .authorization_params()
            .get("token_access_type")
            .map(String::as_str),
        Some("offline")
    );
    assert_eq!(
        o("dropbox").revocation().unwrap().style(),
        RevocationStyle::Bearer
    );
    assert_eq!(o("zoom").client_auth(), ClientAuth::Basic);
    assert!(
        o("salesforce")
            .token_response()
            .metadata()
            .contains_key("instance_url")
    );
    assert_eq!(
        o("salesforce").default_expires_in(),
        Some(std::time::Duration::from_secs(7200))
    );
    assert_eq!(o("linear").scope_separator(), ",");
    assert_eq!(
        get("oauth2-client-credentials").auth_mode(),
        AuthMode::OAuth2ClientCredentials
    );
    assert_eq!(
        get("anthropic").api().unwrap().credential(),
        &CredentialPlacement::Header {
            name: http::HeaderName::from_static("x-api-key"),
            prefix: String::new()
        }
    );
    assert_eq!(
        get("twilio").api().unwrap().credential(),
        &CredentialPlacement::Basic
    );
}

#[test]
fn inputs_are_substituted_into_urls_and_refused_when_bad() {
    let c = shipped();
    let ms = c.get("microsoft").unwrap();
    let url = ms.token_url(&inputs(ms, &[]).unwrap()).unwrap();
    assert_eq!(
        url.as_str(),
        "https://login.microsoftonline.com/common/oauth2/v2.0/token"
    );
    let url = ms
        .token_url(&inputs(ms, &[("tenant", "72f988bf-86f1-41af-91ab-2d7cd011db47")]).unwrap())
        .unwrap();
    assert_eq!(
        url.as_str(),
        "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token"
    );
    for bad in [
        "evil.com/x",
        "a?b",
        "a#b",
        "user@evil.com",
        "evil.com:8443",
        "a%2fb",
        "",
    ] {
        assert!(
            matches!(
                inputs(ms, &[("tenant", bad)]),
                Err(InputError::NoMatch { .. })
            ),
            "{bad:?}"
        );
    }

    let sf = c.get("salesforce").unwrap();
    assert!(matches!(inputs(sf, &[]), Err(InputError::Missing(_))));
    for bad in [
        "evil.com",
        "acme.my.salesforce.com.evil.com",
        "169.254.169.254",
    ] {
        assert!(inputs(sf, &[("instance", bad)]).is_err(), "{bad}");
    }
    let i = inputs(sf, &[("instance", "acme.my.salesforce.com")]).unwrap();
    assert_eq!(
        sf.revocation_url(&i).unwrap().unwrap().0.as_str(),
        "https://acme.my.salesforce.com/services/oauth2/revoke"
    );

    let gl = c.get("gitlab").unwrap();
    assert_eq!(
        gl.api_base_url(&inputs(gl, &[]).unwrap()).unwrap().as_str(),
        "https://gitlab.com/api/v4"
    );
    assert!(matches!(
        inputs(gl, &[("realm", "x")]),
        Err(InputError::Unknown(_))
    ));
}

#[test]
fn authorization_request_urls_follow_the_entry() {
    let c = shipped();
    let req = |scopes: Option<&'static [String]>, challenge| AuthorizationRequest {
        client_id: "cid",
        redirect_uri: "https://edge.example.com/oauth/callback/x",
        state: "st",
        scopes,
        code_challenge: challenge,
    };
    let slack = c.get("slack").unwrap();
    let url = slack
        .authorization_request_url(&ConnectionInputs::none(), &req(None, None))
        .unwrap();
    let q: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["user_scope"], "users:read");
    assert!(!q.contains_key("scope") && !q.contains_key("code_challenge"));
    assert_eq!(q["response_type"], "code");

    let google = c.get("google").unwrap();
    let url = google
        .authorization_request_url(&ConnectionInputs::none(), &req(None, Some("chal")))
        .unwrap();
    let q: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["scope"], "openid email");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["access_type"], "offline");
    assert_eq!(
        q["redirect_uri"],
        "https://edge.example.com/oauth/callback/x"
    );
    assert!(matches!(
        google.authorization_request_url(&ConnectionInputs::none(), &req(None, None)),
        Err(EndpointError::MissingPkceChallenge(_))
    ));

    let cc = c.get("oauth2-client-credentials").unwrap();
    let i = inputs(cc, &[("host", "auth.example.com")]).unwrap();
    assert!(matches!(
        cc.authorization_url(&i),
        Err(EndpointError::NotApplicable { .. })
    ));
    assert!(
        c.get("openai")
            .unwrap()
            .token_url(&ConnectionInputs::none())
            .is_err()
    );
}

// ---- malformed entries ------------------------------------------------------

const VALID: &str = r#"
display_name = "Example"
auth_mode = "oauth2_authorization_code"
authorization_url = "https://{tenant}.example.com/authorize"
token_url = "https://{tenant}.example.com/token"
client_auth = "body"
[inputs.tenant]
description = "Tenant"
pattern = "[a-z0-9-]{1,63}"
example = "acme"
[api]
base_url = "https://api.example.com"
"#;

fn valid_entry() -> toml::Table {
    toml::from_str(VALID).unwrap()
}

/// Sets (`Some`) or removes (`None`) the value at a dotted path.
fn edit(table: &mut toml::Table, path: &str, value: Option<toml::Value>) {
    let (parents, leaf) = path
        .rsplit_once('.')
        .map_or((None, path), |(p, l)| (Some(p), l));
    let mut at = table;
    for seg in parents.into_iter().flat_map(|p| p.split('.')) {
        at = at
            .entry(seg)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .unwrap();
    }
    match value {
        Some(v) => at.insert(leaf.to_owned(), v),
        None => at.remove(leaf),
    };
}

fn catalog_text(id: &str, entry: toml::Table) -> String {
    let mut providers = toml::Table::new();
    providers.insert("ok".into(), toml::Value::Table(valid_entry()));
    providers.insert(id.into(), toml::Value::Table(entry));
    let mut top = toml::Table::new();
    top.insert("version".into(), toml::Value::Integer(1));
    top.insert("providers".into(), toml::Value::Table(providers));
    toml::to_string(&top).unwrap()
}

fn s(v: &str) -> Option<toml::Value> {
    Some(toml::Value::String(v.into()))
}

#[test]
fn the_valid_base_entry_is_valid() {
    let c = Catalog::parse(&catalog_text("fine", valid_entry())).unwrap();
    assert_eq!(c.len(), 2);
}

#[test]
fn malformed_entries_are_refused_naming_entry_and_field() {
    type Edit = (&'static str, Option<toml::Value>);
    let arr = |items: &[&str]| {
        Some(toml::Value::Array(
            items
                .iter()
                .map(|x| toml::Value::String((*x).into()))
                .collect(),
        ))
    };
    let cases: Vec<(Vec<Edit>, &str, &str)> = vec![
        (
            vec![("token_url", s("http://acme.example.com/token"))],
            "token_url",
            "must be an https URL",
        ),
        (
            vec![("token_url", s("not a url"))],
            "token_url",
            "relative URL",
        ),
        (vec![("token_url", None)], "token_url", "is required"),
        (vec![("display_name", None)], "display_name", "is required"),
        (
            vec![("auth_mode", s("oauth1"))],
            "auth_mode",
            "unknown variant `oauth1`",
        ),
        (vec![("auth_mode", None)], "auth_mode", "is required"),
        (
            vec![("tokne_url", s("https://x.example.com"))],
            "tokne_url",
            "unknown field",
        ),
        (
            vec![("token_response.bogus", s("x"))],
            "token_response.bogus",
            "unknown field",
        ),
        (
            vec![("default_expires_in", s("3600"))],
            "default_expires_in",
            "invalid type",
        ),
        (
            vec![("authorization_url", s("https://{realm}.example.com/a"))],
            "authorization_url",
            "undeclared input",
        ),
        (
            vec![("authorization_url", s("https://{tenant.example.com/a"))],
            "authorization_url",
            "without a matching",
        ),
        (
            vec![("revocation_url", s("https://u:p@example.com/revoke"))],
            "revocation_url",
            "user name or password",
        ),
        (
            vec![("revocation_style", s("bearer"))],
            "revocation_style",
            "needs a revocation_url",
        ),
        (
            vec![
                ("revocation_url", s("https://x.example.com/r")),
                ("revocation_style", s("delete")),
            ],
            "revocation_style",
            "unknown variant",
        ),
        (
            vec![("docs_url", s("http://example.com/docs"))],
            "docs_url",
            "https",
        ),
        (
            vec![("inputs.tenant.pattern", s("[a-z/]+"))],
            "inputs.tenant.pattern",
            "'/'",
        ),
        (
            vec![("inputs.tenant.pattern", s("[a-z?]+"))],
            "inputs.tenant.pattern",
            "'?'",
        ),
        (
            vec![("inputs.tenant.pattern", s("[a-z#]+"))],
            "inputs.tenant.pattern",
            "'#'",
        ),
        (
            vec![("inputs.tenant.pattern", s("[a-z@]+"))],
            "inputs.tenant.pattern",
            "'@'",
        ),
        (
            vec![("inputs.tenant.pattern", s("[a-z:]+"))],
            "inputs.tenant.pattern",
            "':'",
        ),
        (
            vec![("inputs.tenant.pattern", s("(acme|evil)"))],
            "inputs.tenant.pattern",
            "not supported",
        ),
        (
            vec![("inputs.tenant.pattern", s(".+"))],
            "inputs.tenant.pattern",
            "bare '.'",
        ),
        (
            vec![("inputs.tenant.pattern", s("[a-z"))],
            "inputs.tenant.pattern",
            "closing",
        ),
        (
            vec![("inputs.tenant.example", s("ACME"))],
            "inputs.tenant.example",
            "must match the pattern",
        ),
        (
            vec![("inputs.tenant.default", s("a_b"))],
            "inputs.tenant.default",
            "must match the pattern",
        ),
        (
            vec![("inputs.tenant.example", None)],
            "inputs.tenant.example",
            "is required",
        ),
        (
            vec![("inputs.Bad-Name.description", s("x"))],
            "inputs.Bad-Name",
            "input names",
        ),
        (vec![("client_auth", None)], "client_auth", "is required"),
        (
            vec![("client_auth", s("header"))],
            "client_auth",
            "unknown variant",
        ),
        (vec![("pkce", s("yes"))], "pkce", "invalid type"),
        (
            vec![("scope_separator", s("|"))],
            "scope_separator",
            "must be one of",
        ),
        (
            vec![("default_scopes", arr(&["read write"]))],
            "default_scopes.0",
            "scope token",
        ),
        (
            vec![("default_expires_in", Some(toml::Value::Integer(0)))],
            "default_expires_in",
            "at least 1",
        ),
        (
            vec![("authorization_params.state", s("fixed"))],
            "authorization_params.state",
            "set by the broker",
        ),
        (
            vec![("authorization_params.scope", s("x"))],
            "authorization_params.scope",
            "set by the broker",
        ),
        (
            vec![("token_params.grant_type", s("password"))],
            "token_params.grant_type",
            "set by the broker",
        ),
        (
            vec![("token_request_headers.Content-Type", s("text/plain"))],
            "token_request_headers.Content-Type",
            "set by the broker",
        ),
        (
            vec![("token_request_headers.X-Bad", s("a\nb"))],
            "token_request_headers.X-Bad",
            "visible ASCII",
        ),
        (
            vec![("token_response.access_token", s("a..b"))],
            "token_response.access_token",
            "empty segment",
        ),
        (
            vec![
                ("token_response.format", s("form")),
                ("token_response.access_token", s("data.token")),
            ],
            "token_response.access_token",
            "top-level",
        ),
        (
            vec![("token_response.format", s("xml"))],
            "token_response.format",
            "unknown variant",
        ),
        (
            vec![("token_response.metadata.leak", s("refresh_token"))],
            "token_response.metadata.leak",
            "must not name a token",
        ),
        (
            vec![("token_response.metadata.bot", s("bot.bot_access_token"))],
            "token_response.metadata.bot",
            "must not name a token",
        ),
        (
            vec![("api.base_url", s("ftp://api.example.com"))],
            "api.base_url",
            "https",
        ),
        (vec![("api.base_url", None)], "api.base_url", "is required"),
        (
            vec![("api.credential.location", s("cookie"))],
            "api.credential.location",
            "unknown variant",
        ),
        (
            vec![("api.credential.location", s("header"))],
            "api.credential.name",
            "is required",
        ),
        (
            vec![("api.credential.location", s("basic"))],
            "api.credential.location",
            "cannot be sent as basic",
        ),
        (
            vec![("api.headers.Authorization", s("Bearer x"))],
            "api.headers.Authorization",
            "set by the broker",
        ),
        // Client credentials: a token URL is required; user-flow settings are refused.
        (
            vec![
                ("auth_mode", s("oauth2_client_credentials")),
                ("authorization_url", None),
                ("token_url", None),
            ],
            "token_url",
            "is required for oauth2_client_credentials",
        ),
        (
            vec![("auth_mode", s("oauth2_client_credentials"))],
            "authorization_url",
            "not used by oauth2_client_credentials",
        ),
        (
            vec![
                ("auth_mode", s("oauth2_client_credentials")),
                ("authorization_url", None),
                ("pkce", Some(toml::Value::Boolean(true))),
            ],
            "pkce",
            "only to oauth2_authorization_code",
        ),
        // Store-and-inject modes take no OAuth settings, and need an API section.
        (
            vec![
                ("auth_mode", s("api_key")),
                ("authorization_url", None),
                ("client_auth", None),
            ],
            "token_url",
            "is an OAuth 2.0 setting",
        ),
        (
            vec![
                ("auth_mode", s("api_key")),
                ("authorization_url", None),
                ("token_url", None),
                ("client_auth", None),
                ("api", None),
            ],
            "api",
            "is required for api_key",
        ),
        (
            vec![
                ("auth_mode", s("basic")),
                ("authorization_url", None),
                ("token_url", None),
                ("client_auth", None),
                ("api.credential.location", s("bearer")),
            ],
            "api.credential.location",
            "must be basic",
        ),
    ];
    for (edits, field, message) in cases {
        let mut entry = valid_entry();
        for (path, value) in &edits {
            edit(&mut entry, path, value.clone());
        }
        let text = catalog_text("bad", entry);
        let err = match Catalog::parse(&text) {
            Ok(_) => panic!("{edits:?}: accepted"),
            Err(CatalogError::Entries(e)) => e,
            Err(other) => panic!("{edits:?}: {other}"),
        };
        assert_eq!(err.len(), 1, "{edits:?}: only the bad entry fails: {err:?}");
        assert_eq!(err[0].entry, "bad");
        assert!(
            err[0]
                .errors
                .iter()
                .any(|e| e.field == field && e.message.contains(message)),
            "{edits:?}: want {field}: …{message}…, got {err:?}"
        );
        let shown = CatalogError::Entries(err).to_string();
        assert!(
            shown.contains(&format!("providers.bad.{field}: ")),
            "{shown}"
        );
    }
}

#[test]
fn entry_ids_and_every_bad_field_are_reported() {
    let err = Catalog::parse(&catalog_text("Bad_Id", valid_entry())).unwrap_err();
    assert!(err.to_string().contains("providers.Bad_Id.id: "), "{err}");

    let mut entry = valid_entry();
    edit(&mut entry, "token_url", s("http://x.example.com/t"));
    edit(&mut entry, "api.base_url", s("http://api.example.com"));
    let CatalogError::Entries(e) = Catalog::parse(&catalog_text("two", entry)).unwrap_err() else {
        panic!("entry errors expected")
    };
    let fields: Vec<&str> = e[0].errors.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["token_url", "api.base_url"]);
}

#[test]
fn catalog_header_is_checked() {
    let ok = catalog_text("x", valid_entry());
    let v2 = ok.replace("version = 1", "version = 2");
    assert_eq!(
        Catalog::parse(&v2).unwrap_err().to_string(),
        "version: 2 is not supported (this build reads version 1)"
    );
    let missing = ok.replace("version = 1", "");
    assert!(
        matches!(Catalog::parse(&missing), Err(CatalogError::Syntax(m)) if m.contains("version"))
    );
    let extra = format!("extra = true\n{ok}");
    assert!(
        matches!(Catalog::parse(&extra), Err(CatalogError::Syntax(m)) if m.contains("unknown field"))
    );
    assert!(matches!(
        Catalog::parse("version = "),
        Err(CatalogError::Syntax(_))
    ));
    assert!(matches!(
        Catalog::load(Path::new("/nonexistent/providers.toml")),
        Err(CatalogError::Io { .. })
    ));
    assert!(Catalog::parse("version = 1").unwrap().is_empty());
}

#[test]
fn custom_providers_come_as_json_with_the_same_rules() {
    let body = serde_json::json!({
        "display_name": "Acme IdP",
        "auth_mode": "oauth2_authorization_code",
        "authorization_url": "https://idp.acme.test/oauth/authorize",
        "token_url": "https://idp.acme.test/oauth/token",
        "client_auth": "body",
        "pkce": true,
        "token_response": {"format": "form"},
        "api": {"base_url": "https://api.acme.test", "credential": {"location": "header", "name": "Authorization", "prefix": "Token "}}
    });
    let p = parse_custom_provider("acme-idp", &serde_json::to_vec(&body).unwrap()).unwrap();
    assert_eq!(
        p.oauth2().unwrap().token_response().format(),
        ResponseFormat::Form
    );

    let bad = serde_json::json!({
        "display_name": "Acme IdP",
        "auth_mode": "oauth2_authorization_code",
        "authorization_url": "https://idp.acme.test/oauth/authorize",
        "token_url": "http://169.254.169.254/token",
        "client_auth": "body",
    });
    let err = parse_custom_provider("acme-idp", &serde_json::to_vec(&bad).unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "providers.acme-idp.token_url: must be an https URL"
    );
    let invalid = err.into_invalid("");
    assert_eq!(invalid.0[0].field, "token_url");

    let unknown = br#"{"display_name": "x", "token_response": {"acess_token": "a"}}"#;
    let err = parse_custom_provider("acme-idp", unknown).unwrap_err();
    assert_eq!(err.errors[0].field, "token_response.acess_token");
    assert!(parse_custom_provider("acme-idp", b"{} trailing").is_err());
    assert_eq!(
        parse_custom_provider("acme-idp", br#"{"auth_mode": 3}"#)
            .unwrap_err()
            .errors[0]
            .field,
        "auth_mode"
    );
}
