//! Raw entry → [`Provider`]: every rule a catalog entry (or a tenant's
//! custom provider) must satisfy. All violations are collected, each naming
//! its field relative to the entry (`token_url`, `inputs.tenant.pattern`);
//! the caller adds the `providers.<id>.` prefix or maps them to API fields.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use locksmith_domain::{FieldError, IntegrationId};

use super::path::FieldPath;
use super::pattern::InputPattern;
use super::provider::{
    ApiSpec, AuthMode, BodyFormat, ClientAuth, CredentialPlacement, OAuth2Spec, Provider,
    ResponseFormat, Revocation, RevocationStyle, TokenResponseSpec,
};
use super::raw::{
    RawApi, RawAuthMode, RawBodyFormat, RawClientAuth, RawCredentialLocation, RawInput,
    RawProvider, RawResponseFormat, RawRevocationStyle, RawTokenResponse,
};
use super::template::{ConnectionInputs, InputSpec, UrlTemplate, valid_input_name};

const MAX_TEXT: usize = 200;
const MAX_DESCRIPTION: usize = 1000;
const MAX_MAP: usize = 32;
const MAX_SCOPES: usize = 100;
/// A year: anything longer is a typo (milliseconds?), not a token lifetime.
const MAX_DEFAULT_EXPIRES_IN: u64 = 365 * 24 * 3600;

/// Parameters the flows set themselves; an entry may not override them.
const RESERVED_AUTHORIZATION_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "code_challenge",
    "code_challenge_method",
];
const RESERVED_TOKEN_PARAMS: &[&str] = &[
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "client_id",
    "client_secret",
    "refresh_token",
    "scope",
];
/// Headers the flows and the proxy own: the credential, framing, routing.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
];

#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn fail(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }
}

/// Validates one entry. `id` is the entry's key (or the custom provider's
/// id); errors name fields relative to the entry.
pub(crate) fn validate(id: &str, raw: RawProvider) -> Result<Provider, Vec<FieldError>> {
    let mut p = Problems::default();
    let id = match IntegrationId::parse(id) {
        Ok(id) => Some(id),
        Err(e) => {
            p.fail("id", e.to_string());
            None
        }
    };
    let display_name = text(
        &mut p,
        "display_name",
        raw.display_name.as_deref(),
        MAX_TEXT,
    );
    // A link for people, never fetched: a fragment is fine here.
    let docs_url = raw
        .docs_url
        .as_deref()
        .and_then(|u| match reqwest::Url::parse(u) {
            Ok(url) if url.scheme() == "https" => Some(url),
            Ok(_) => {
                p.fail("docs_url", "must be an https URL");
                None
            }
            Err(e) => {
                p.fail("docs_url", e.to_string());
                None
            }
        });
    let inputs = inputs(&mut p, raw.inputs.as_ref());
    let mode = match raw.auth_mode {
        None => {
            p.fail(
                "auth_mode",
                "is required: oauth2_authorization_code, oauth2_client_credentials, api_key or basic",
            );
            None
        }
        Some(RawAuthMode::Oauth2AuthorizationCode) => Some(AuthMode::OAuth2AuthorizationCode),
        Some(RawAuthMode::Oauth2ClientCredentials) => Some(AuthMode::OAuth2ClientCredentials),
        Some(RawAuthMode::ApiKey) => Some(AuthMode::ApiKey),
        Some(RawAuthMode::Basic) => Some(AuthMode::Basic),
    };
    let oauth2 = match mode {
        Some(m) if m.is_oauth2() => oauth2(&mut p, m, &raw, &inputs),
        Some(m) => {
            refuse_oauth2_fields(&mut p, m, &raw);
            None
        }
        None => None,
    };
    let api = raw.api.as_ref().and_then(|a| api(&mut p, mode, a, &inputs));
    if raw.api.is_none() && matches!(mode, Some(AuthMode::ApiKey | AuthMode::Basic)) {
        p.fail("api", "is required for api_key and basic entries: the credential is only injected into API calls");
    }
    match (id, display_name, mode, p.0.is_empty()) {
        (Some(id), Some(display_name), Some(auth_mode), true) => Ok(Provider {
            id,
            display_name,
            docs_url,
            auth_mode,
            oauth2,
            inputs,
            api,
        }),
        _ => Err(p.0),
    }
}

fn text(p: &mut Problems, field: &str, value: Option<&str>, max: usize) -> Option<String> {
    match value {
        None => p.fail(field, "is required"),
        Some(v) if v.trim().is_empty() => p.fail(field, "must not be empty"),
        Some(v) if v.chars().count() > max => {
            p.fail(field, format!("must be at most {max} characters"))
        }
        Some(v) if v.chars().any(char::is_control) => {
            p.fail(field, "must not contain control characters")
        }
        Some(v) => return Some(v.to_owned()),
    }
    None
}

fn inputs(
    p: &mut Problems,
    raw: Option<&BTreeMap<String, RawInput>>,
) -> BTreeMap<String, InputSpec> {
    let mut out = BTreeMap::new();
    for (name, input) in raw.into_iter().flatten() {
        let field = format!("inputs.{name}");
        if !valid_input_name(name) {
            p.fail(
                &field,
                "input names must match [a-z][a-z0-9_]* (at most 32 characters)",
            );
            continue;
        }
        let description = text(
            p,
            &format!("{field}.description"),
            input.description.as_deref(),
            MAX_DESCRIPTION,
        );
        let pattern = match input.pattern.as_deref() {
            None => {
                p.fail(format!("{field}.pattern"), "is required");
                None
            }
            Some(src) => match InputPattern::compile(src) {
                Ok(pat) => Some(pat),
                Err(e) => {
                    p.fail(format!("{field}.pattern"), e.to_string());
                    None
                }
            },
        };
        let Some(example) = input.example.clone() else {
            p.fail(
                format!("{field}.example"),
                "is required: templates are checked with it",
            );
            continue;
        };
        let (Some(description), Some(pattern)) = (description, pattern) else {
            continue;
        };
        if !pattern.is_match(&example) {
            p.fail(
                format!("{field}.example"),
                format!("must match the pattern {}", pattern.as_str()),
            );
            continue;
        }
        if let Some(d) = &input.default
            && !pattern.is_match(d)
        {
            p.fail(
                format!("{field}.default"),
                format!("must match the pattern {}", pattern.as_str()),
            );
            continue;
        }
        out.insert(
            name.clone(),
            InputSpec {
                name: name.clone(),
                description,
                pattern,
                example,
                default: input.default.clone(),
            },
        );
    }
    out
}

/// Parses a URL template and proves it with the inputs' examples: every
/// placeholder declared, and the substituted URL https with a host.
fn template(
    p: &mut Problems,
    field: &str,
    value: &str,
    inputs: &BTreeMap<String, InputSpec>,
) -> Option<UrlTemplate> {
    let t = match UrlTemplate::parse(value) {
        Ok(t) => t,
        Err(e) => {
            p.fail(field, e.to_string());
            return None;
        }
    };
    let undeclared: Vec<&str> = t
        .placeholders()
        .filter(|n| !inputs.contains_key(*n))
        .collect();
    if !undeclared.is_empty() {
        p.fail(
            field,
            format!(
                "uses undeclared input(s) {{{}}}; declare them under inputs",
                undeclared.join("}, {")
            ),
        );
        return None;
    }
    let examples: BTreeMap<String, String> = inputs
        .iter()
        .map(|(n, s)| (n.clone(), s.example.clone()))
        .collect();
    let examples = match super::template::resolve_inputs(inputs, &examples) {
        Ok(e) => e,
        Err(_) => ConnectionInputs::none(),
    };
    match t.substitute(inputs, &examples) {
        Ok(_) => Some(t),
        Err(super::template::InputError::BadUrl(why)) if t.placeholders().next().is_none() => {
            p.fail(field, why);
            None
        }
        Err(e) => {
            p.fail(field, format!("with the inputs' examples: {e}"));
            None
        }
    }
}

fn refuse_oauth2_fields(p: &mut Problems, mode: AuthMode, raw: &RawProvider) {
    let present = [
        ("authorization_url", raw.authorization_url.is_some()),
        ("token_url", raw.token_url.is_some()),
        ("revocation_url", raw.revocation_url.is_some()),
        ("revocation_style", raw.revocation_style.is_some()),
        ("client_auth", raw.client_auth.is_some()),
        ("token_request_format", raw.token_request_format.is_some()),
        ("token_request_headers", raw.token_request_headers.is_some()),
        ("accept_json", raw.accept_json.is_some()),
        ("pkce", raw.pkce.is_some()),
        ("scope_separator", raw.scope_separator.is_some()),
        ("scope_param", raw.scope_param.is_some()),
        ("default_scopes", raw.default_scopes.is_some()),
        ("authorization_params", raw.authorization_params.is_some()),
        ("token_params", raw.token_params.is_some()),
        ("errors_with_http_200", raw.errors_with_http_200.is_some()),
        ("default_expires_in", raw.default_expires_in.is_some()),
        ("token_response", raw.token_response.is_some()),
        ("refresh_response", raw.refresh_response.is_some()),
    ];
    for (field, _) in present.iter().filter(|(_, set)| *set) {
        p.fail(
            *field,
            format!(
                "is an OAuth 2.0 setting; {} entries have no flow",
                mode.as_str()
            ),
        );
    }
}

fn oauth2(
    p: &mut Problems,
    mode: AuthMode,
    raw: &RawProvider,
    inputs: &BTreeMap<String, InputSpec>,
) -> Option<OAuth2Spec> {
    let before = p.0.len();
    let code_flow = mode == AuthMode::OAuth2AuthorizationCode;
    let authorization_url = match (&raw.authorization_url, code_flow) {
        (Some(u), true) => template(p, "authorization_url", u, inputs),
        (None, true) => {
            p.fail(
                "authorization_url",
                "is required for oauth2_authorization_code",
            );
            None
        }
        (Some(_), false) => {
            p.fail(
                "authorization_url",
                "is not used by oauth2_client_credentials (there is no user to send anywhere)",
            );
            None
        }
        (None, false) => None,
    };
    let token_url = match &raw.token_url {
        Some(u) => template(p, "token_url", u, inputs),
        None => {
            p.fail("token_url", format!("is required for {}", mode.as_str()));
            None
        }
    };
    let revocation = match (&raw.revocation_url, raw.revocation_style) {
        (Some(u), style) => template(p, "revocation_url", u, inputs).map(|url| Revocation {
            url,
            style: match style {
                None | Some(RawRevocationStyle::Rfc7009) => RevocationStyle::Rfc7009,
                Some(RawRevocationStyle::Bearer) => RevocationStyle::Bearer,
            },
        }),
        (None, Some(_)) => {
            p.fail("revocation_style", "needs a revocation_url");
            None
        }
        (None, None) => None,
    };
    let client_auth = match raw.client_auth {
        Some(RawClientAuth::Basic) => ClientAuth::Basic,
        Some(RawClientAuth::Body) => ClientAuth::Body,
        None => {
            // No default: providers disagree (RFC 6749 prefers Basic, many
            // accept only the body), and a wrong guess fails only at run time.
            p.fail("client_auth", "is required: basic or body");
            ClientAuth::Basic
        }
    };
    let pkce = raw.pkce.unwrap_or(false);
    if pkce && !code_flow {
        p.fail("pkce", "applies only to oauth2_authorization_code");
    }
    let scope_separator = raw
        .scope_separator
        .clone()
        .unwrap_or_else(|| " ".to_owned());
    if !matches!(scope_separator.as_str(), " " | "," | "+" | ";") {
        p.fail(
            "scope_separator",
            "must be one of \" \", \",\", \"+\" or \";\"",
        );
    }
    let scope_param = raw
        .scope_param
        .clone()
        .unwrap_or_else(|| "scope".to_owned());
    param_name(p, "scope_param", &scope_param);
    let default_scopes = raw.default_scopes.clone().unwrap_or_default();
    if default_scopes.len() > MAX_SCOPES {
        p.fail(
            "default_scopes",
            format!("must hold at most {MAX_SCOPES} scopes"),
        );
    }
    for (i, s) in default_scopes.iter().enumerate() {
        // RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E, and not our separator.
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
            || s.contains(scope_separator.as_str())
        {
            p.fail(
                format!("default_scopes.{i}"),
                "must be a non-empty RFC 6749 scope token without the scope separator",
            );
        }
    }
    let mut reserved_auth: Vec<&str> = RESERVED_AUTHORIZATION_PARAMS.to_vec();
    reserved_auth.push(&scope_param);
    let authorization_params = params(
        p,
        "authorization_params",
        raw.authorization_params.as_ref(),
        &reserved_auth,
    );
    if !code_flow && !authorization_params.is_empty() {
        p.fail(
            "authorization_params",
            "is not used by oauth2_client_credentials",
        );
    }
    let token_params = params(
        p,
        "token_params",
        raw.token_params.as_ref(),
        RESERVED_TOKEN_PARAMS,
    );
    let token_request_headers = headers(
        p,
        "token_request_headers",
        raw.token_request_headers.as_ref(),
        &[],
    );
    let default_expires_in = match raw.default_expires_in {
        Some(0) => {
            p.fail("default_expires_in", "must be at least 1 second");
            None
        }
        Some(s) if s > MAX_DEFAULT_EXPIRES_IN => {
            p.fail(
                "default_expires_in",
                format!("must be at most {MAX_DEFAULT_EXPIRES_IN} seconds"),
            );
            None
        }
        s => s.map(Duration::from_secs),
    };
    let token_response_spec = token_response(
        p,
        "token_response",
        raw.token_response.as_ref(),
        &scope_separator,
    );
    let refresh_response = raw
        .refresh_response
        .as_ref()
        .map(|r| token_response(p, "refresh_response", Some(r), &scope_separator));
    if refresh_response.is_some() && !code_flow {
        p.fail(
            "refresh_response",
            "is not used by oauth2_client_credentials (it has no refresh grant)",
        );
    }
    if p.0.len() != before {
        return None;
    }
    Some(OAuth2Spec {
        authorization_url,
        token_url: token_url?,
        revocation,
        client_auth,
        token_request_format: match raw.token_request_format {
            Some(RawBodyFormat::Json) => BodyFormat::Json,
            Some(RawBodyFormat::Form) | None => BodyFormat::Form,
        },
        token_request_headers,
        accept_json: raw.accept_json.unwrap_or(false),
        pkce,
        scope_separator,
        scope_param,
        default_scopes,
        authorization_params,
        token_params,
        errors_with_http_200: raw.errors_with_http_200.unwrap_or(false),
        default_expires_in,
        token_response: token_response_spec,
        refresh_response,
    })
}

fn param_name(p: &mut Problems, field: &str, name: &str) {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        p.fail(
            field,
            "parameter names must be 1-64 letters, digits, '_', '-' or '.'",
        );
    }
}

fn params(
    p: &mut Problems,
    field: &str,
    raw: Option<&BTreeMap<String, String>>,
    reserved: &[&str],
) -> BTreeMap<String, String> {
    let map = raw.cloned().unwrap_or_default();
    if map.len() > MAX_MAP {
        p.fail(field, format!("must hold at most {MAX_MAP} entries"));
    }
    for (k, v) in &map {
        let f = format!("{field}.{k}");
        param_name(p, &f, k);
        if reserved.contains(&k.as_str()) {
            p.fail(&f, "is set by the broker itself and cannot be overridden");
        }
        if v.len() > MAX_DESCRIPTION || v.chars().any(char::is_control) {
            p.fail(
                &f,
                format!(
                    "values must be at most {MAX_DESCRIPTION} bytes without control characters"
                ),
            );
        }
    }
    map
}

fn headers(
    p: &mut Problems,
    field: &str,
    raw: Option<&BTreeMap<String, String>>,
    also_reserved: &[&str],
) -> HeaderMap {
    let mut out = HeaderMap::new();
    let map = raw.cloned().unwrap_or_default();
    if map.len() > MAX_MAP {
        p.fail(field, format!("must hold at most {MAX_MAP} entries"));
    }
    for (k, v) in &map {
        let f = format!("{field}.{k}");
        let Ok(name) = HeaderName::from_bytes(k.as_bytes()) else {
            p.fail(&f, "is not a valid header name");
            continue;
        };
        if RESERVED_HEADERS.contains(&name.as_str()) || also_reserved.contains(&name.as_str()) {
            p.fail(&f, "is set by the broker itself and cannot be configured");
            continue;
        }
        match HeaderValue::from_str(v) {
            Ok(value) if v.len() <= MAX_DESCRIPTION => {
                out.insert(name, value);
            }
            _ => p.fail(
                &f,
                "must be visible ASCII without line breaks (at most 1000 bytes)",
            ),
        }
    }
    out
}

fn path(p: &mut Problems, field: &str, raw: Option<&str>, default: &str) -> FieldPath {
    match raw {
        None => FieldPath::top(default),
        Some(s) => FieldPath::parse(s).unwrap_or_else(|e| {
            p.fail(field, e);
            FieldPath::top(default)
        }),
    }
}

fn token_response(
    p: &mut Problems,
    field: &str,
    raw: Option<&RawTokenResponse>,
    request_separator: &str,
) -> TokenResponseSpec {
    let empty = RawTokenResponse::default();
    let raw = raw.unwrap_or(&empty);
    let format = match raw.format {
        None | Some(RawResponseFormat::Auto) => ResponseFormat::Auto,
        Some(RawResponseFormat::Json) => ResponseFormat::Json,
        Some(RawResponseFormat::Form) => ResponseFormat::Form,
    };
    let access_token = path(
        p,
        &format!("{field}.access_token"),
        raw.access_token.as_deref(),
        "access_token",
    );
    let refresh_token = path(
        p,
        &format!("{field}.refresh_token"),
        raw.refresh_token.as_deref(),
        "refresh_token",
    );
    let expires_in = path(
        p,
        &format!("{field}.expires_in"),
        raw.expires_in.as_deref(),
        "expires_in",
    );
    let scope = path(p, &format!("{field}.scope"), raw.scope.as_deref(), "scope");
    if format == ResponseFormat::Form {
        // A form body is flat: a nested path could never be found in it.
        for (name, fp) in [
            ("access_token", &access_token),
            ("refresh_token", &refresh_token),
            ("expires_in", &expires_in),
            ("scope", &scope),
        ] {
            if !fp.is_top_level() {
                p.fail(
                    format!("{field}.{name}"),
                    "must be a top-level key when format = \"form\"",
                );
            }
        }
    }
    let scope_separator = raw
        .scope_separator
        .clone()
        .unwrap_or_else(|| request_separator.to_owned());
    if !matches!(scope_separator.as_str(), " " | "," | "+" | ";") {
        p.fail(
            format!("{field}.scope_separator"),
            "must be one of \" \", \",\", \"+\" or \";\"",
        );
    }
    let token_paths: BTreeSet<&str> = [access_token.as_str(), refresh_token.as_str()].into();
    let mut metadata = BTreeMap::new();
    for (name, raw_path) in raw.metadata.iter().flatten() {
        let f = format!("{field}.metadata.{name}");
        if !valid_input_name(name) {
            p.fail(
                &f,
                "metadata names must match [a-z][a-z0-9_]* (at most 32 characters)",
            );
            continue;
        }
        let Ok(fp) = FieldPath::parse(raw_path).map_err(|e| p.fail(&f, e)) else {
            continue;
        };
        // Metadata is stored in the clear beside the connection; a path that
        // names a token or secret would copy a credential out of the sealed
        // record.
        let leaf = fp.leaf().to_ascii_lowercase();
        if token_paths.contains(fp.as_str())
            || ["token", "secret", "password", "assertion"]
                .iter()
                .any(|w| leaf.contains(w))
        {
            p.fail(
                &f,
                "must not name a token or secret: metadata is stored unencrypted",
            );
            continue;
        }
        metadata.insert(name.clone(), fp);
    }
    if metadata.len() > MAX_MAP {
        p.fail(
            format!("{field}.metadata"),
            format!("must hold at most {MAX_MAP} entries"),
        );
    }
    TokenResponseSpec {
        format,
        access_token,
        refresh_token,
        expires_in,
        scope,
        scope_separator,
        metadata,
    }
}

fn api(
    p: &mut Problems,
    mode: Option<AuthMode>,
    raw: &RawApi,
    inputs: &BTreeMap<String, InputSpec>,
) -> Option<ApiSpec> {
    let before = p.0.len();
    let base_url = match &raw.base_url {
        Some(u) => template(p, "api.base_url", u, inputs),
        None => {
            p.fail("api.base_url", "is required");
            None
        }
    };
    let cred = raw.credential.clone().unwrap_or_default();
    let location = cred.location.unwrap_or(match mode {
        Some(AuthMode::Basic) => RawCredentialLocation::Basic,
        _ => RawCredentialLocation::Bearer,
    });
    let credential = match location {
        RawCredentialLocation::Bearer => CredentialPlacement::Bearer,
        RawCredentialLocation::Basic => CredentialPlacement::Basic,
        RawCredentialLocation::Header => match cred
            .name
            .as_deref()
            .map(|n| HeaderName::from_bytes(n.as_bytes()))
        {
            Some(Ok(name))
                if !RESERVED_HEADERS.contains(&name.as_str())
                    || name == http::header::AUTHORIZATION =>
            {
                CredentialPlacement::Header {
                    name,
                    prefix: cred.prefix.clone().unwrap_or_default(),
                }
            }
            Some(Ok(_)) => {
                p.fail(
                    "api.credential.name",
                    "cannot be a framing or routing header",
                );
                CredentialPlacement::Bearer
            }
            Some(Err(_)) => {
                p.fail("api.credential.name", "is not a valid header name");
                CredentialPlacement::Bearer
            }
            None => {
                p.fail(
                    "api.credential.name",
                    "is required for location = \"header\"",
                );
                CredentialPlacement::Bearer
            }
        },
        RawCredentialLocation::Query => match cred.name.as_deref() {
            Some(n) => {
                param_name(p, "api.credential.name", n);
                CredentialPlacement::Query { name: n.to_owned() }
            }
            None => {
                p.fail(
                    "api.credential.name",
                    "is required for location = \"query\"",
                );
                CredentialPlacement::Bearer
            }
        },
    };
    if cred
        .prefix
        .as_deref()
        .is_some_and(|x| x.chars().any(char::is_control) || !x.is_ascii())
    {
        p.fail("api.credential.prefix", "must be printable ASCII");
    }
    if cred.prefix.is_some() && location != RawCredentialLocation::Header {
        p.fail(
            "api.credential.prefix",
            "applies only to location = \"header\"",
        );
    }
    if cred.name.is_some()
        && !matches!(
            location,
            RawCredentialLocation::Header | RawCredentialLocation::Query
        )
    {
        p.fail(
            "api.credential.name",
            "applies only to location = \"header\" or \"query\"",
        );
    }
    match (mode, location) {
        (Some(AuthMode::Basic), l) if l != RawCredentialLocation::Basic => {
            p.fail("api.credential.location", "must be basic for basic entries");
        }
        (Some(m), RawCredentialLocation::Basic) if m.is_oauth2() => {
            p.fail(
                "api.credential.location",
                "an OAuth 2.0 token cannot be sent as basic credentials",
            );
        }
        _ => {}
    }
    let credential_header: Vec<&str> = match &credential {
        CredentialPlacement::Header { name, .. } => vec![name.as_str()],
        _ => vec![],
    };
    let headers = headers(p, "api.headers", raw.headers.as_ref(), &credential_header);
    if p.0.len() != before {
        return None;
    }
    Some(ApiSpec {
        base_url: base_url?,
        headers,
        credential,
    })
}
