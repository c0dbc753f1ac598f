//! The pure half of verification: splitting a compact JWT, reading its header
//! and claims, and checking the claims against an issuer's policy at a given
//! instant. No I/O and no clock here, so every rule is unit-tested with a
//! fixed `now`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use locksmith_auth::Role;
use locksmith_domain::TenantId;
use serde::Deserialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::{JwtError, VerifiedJwt, config::IssuerPolicy};

/// Longest token accepted. Real access tokens are 1–2 KiB; anything much
/// larger is refused before any decoding work.
pub(crate) const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The JOSE header fields the verifier reads. `jku`, `x5u` and `jwk` are
/// deliberately ignored: keys come only from the configured JWKS URL.
#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    /// RFC 7515 §4.1.11: a token naming critical extensions we do not
    /// implement must be refused, and we implement none.
    #[serde(default)]
    pub crit: Option<Value>,
}

/// A compact JWT split and decoded, signature not yet checked.
pub(crate) struct Unverified<'t> {
    pub header: Header,
    pub claims: Map<String, Value>,
    /// `base64url(header) "." base64url(payload)`, what the signature covers.
    pub signing_input: &'t str,
    /// The signature, still base64url (the form `jsonwebtoken` verifies).
    pub signature: &'t str,
}

/// Splits and decodes `token`. Anything that is not three base64url parts,
/// a JSON object header with a string `alg`, and a JSON object payload is
/// [`JwtError::Malformed`].
pub(crate) fn parse(token: &str) -> Result<Unverified<'_>, JwtError> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: Header = decode_json(header_b64)?;
    if header.crit.is_some() {
        return Err(JwtError::Malformed);
    }
    let claims: Map<String, Value> = decode_json(payload_b64)?;
    // Checked here so that a signature that fails to decode is a malformed
    // token, and a decodable one that does not verify is a bad signature.
    URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| JwtError::Malformed)?;
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    Ok(Unverified {
        header,
        claims,
        signing_input,
        signature,
    })
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// The unverified `iss`, used only to choose which issuer's keys to try.
pub(crate) fn issuer_of(claims: &Map<String, Value>) -> Result<&str, JwtError> {
    match claims.get("iss") {
        None => Err(missing("iss")),
        Some(Value::String(iss)) => Ok(iss),
        Some(_) => Err(invalid("iss")),
    }
}

/// Checks the claims of a token whose signature has verified, at `now`.
pub(crate) fn check(
    claims: &Map<String, Value>,
    policy: &IssuerPolicy,
    now: OffsetDateTime,
) -> Result<VerifiedJwt, JwtError> {
    if issuer_of(claims)? != policy.issuer {
        return Err(JwtError::UnknownIssuer);
    }
    check_times(claims, policy.leeway_seconds, now)?;
    check_audience(claims, &policy.audiences)?;
    let subject = match claims.get("sub") {
        None => return Err(missing("sub")),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(invalid("sub")),
    };
    let tenant = match claims.get(&policy.tenant_claim) {
        None => return Err(missing(&policy.tenant_claim)),
        Some(Value::String(t)) if TenantId::parse(t).is_ok() => t.clone(),
        Some(_) => return Err(invalid(&policy.tenant_claim)),
    };
    let roles = match claims.get(&policy.roles_claim) {
        None => return Err(missing(&policy.roles_claim)),
        Some(value) => parse_roles(value).ok_or_else(|| invalid(&policy.roles_claim))?,
    };
    Ok(VerifiedJwt {
        issuer: policy.issuer.clone(),
        subject,
        tenant,
        roles,
    })
}

/// `exp` is required; `nbf` is checked when present. Both tolerate
/// `leeway` seconds of clock skew. RFC 7519: the token is valid strictly
/// before `exp`, and from `nbf` on.
fn check_times(
    claims: &Map<String, Value>,
    leeway: u64,
    now: OffsetDateTime,
) -> Result<(), JwtError> {
    let now = now.unix_timestamp();
    let leeway = i64::try_from(leeway).unwrap_or(i64::MAX);
    // A fractional `exp` rounds down and a fractional `nbf` up: both
    // shorten the validity window rather than stretch it.
    let exp = match claims.get("exp") {
        None => return Err(missing("exp")),
        Some(v) => numeric_date(v, f64::floor).ok_or_else(|| invalid("exp"))?,
    };
    if now >= exp.saturating_add(leeway) {
        return Err(JwtError::Expired);
    }
    if let Some(v) = claims.get("nbf") {
        let nbf = numeric_date(v, f64::ceil).ok_or_else(|| invalid("nbf"))?;
        if now < nbf.saturating_sub(leeway) {
            return Err(JwtError::NotYetValid);
        }
    }
    Ok(())
}

/// A NumericDate: seconds since the epoch, possibly fractional.
fn numeric_date(value: &Value, round: fn(f64) -> f64) -> Option<i64> {
    let n = value.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    // Beyond ±2^53 seconds (hundreds of millions of years) is not a date.
    const LIMIT: f64 = 9_007_199_254_740_992.0;
    if !f.is_finite() || f.abs() > LIMIT {
        return None;
    }
    Some(round(f) as i64)
}

/// `aud` is a string or an array of strings; one of them must be ours.
fn check_audience(claims: &Map<String, Value>, accepted: &[String]) -> Result<(), JwtError> {
    let ours = |aud: &str| accepted.iter().any(|a| a == aud);
    match claims.get("aud") {
        None => Err(missing("aud")),
        Some(Value::String(aud)) => ours(aud).then_some(()).ok_or(JwtError::WrongAudience),
        Some(Value::Array(auds)) => {
            let mut matched = false;
            for aud in auds {
                let aud = aud.as_str().ok_or_else(|| invalid("aud"))?;
                matched |= ours(aud);
            }
            matched.then_some(()).ok_or(JwtError::WrongAudience)
        }
        Some(_) => Err(invalid("aud")),
    }
}

/// A JSON array of role names, or one space-separated string of them.
/// `None` if any entry is not a known role: a role we do not understand
/// might be a restriction, so it is not silently dropped. Sorted, no
/// duplicates.
pub(crate) fn parse_roles(value: &Value) -> Option<Vec<Role>> {
    let mut roles = match value {
        Value::String(s) => s
            .split_ascii_whitespace()
            .map(Role::parse)
            .collect::<Option<Vec<_>>>()?,
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().and_then(Role::parse))
            .collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    roles.sort_unstable();
    roles.dedup();
    Some(roles)
}

fn missing(claim: &str) -> JwtError {
    JwtError::MissingClaim(claim.to_owned())
}

fn invalid(claim: &str) -> JwtError {
    JwtError::InvalidClaim(claim.to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jsonwebtoken::Algorithm;
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW).unwrap()
    }

    fn policy() -> IssuerPolicy {
        IssuerPolicy {
            issuer: "https://id.example.com".to_owned(),
            jwks_url: "https://id.example.com/jwks".parse().unwrap(),
            audiences: vec!["api-a".to_owned(), "api-b".to_owned()],
            algorithms: vec![Algorithm::RS256],
            tenant_claim: "tenant".to_owned(),
            roles_claim: "roles".to_owned(),
            leeway_seconds: 30,
            refetch_min_interval: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(300),
        }
    }

    fn good() -> Value {
        json!({
            "iss": "https://id.example.com",
            "sub": "svc-1",
            "aud": "api-a",
            "exp": NOW + 60,
            "nbf": NOW - 60,
            "tenant": "acme",
            "roles": ["write", "read"],
        })
    }

    fn with(changes: Value) -> Map<String, Value> {
        let Value::Object(mut claims) = good() else {
            unreachable!()
        };
        let Value::Object(changes) = changes else {
            unreachable!()
        };
        for (k, v) in changes {
            if v.is_null() {
                claims.remove(&k);
            } else {
                claims.insert(k, v);
            }
        }
        claims
    }

    fn check_with(changes: Value) -> Result<VerifiedJwt, JwtError> {
        check(&with(changes), &policy(), now())
    }

    #[test]
    fn a_good_token_yields_issuer_subject_tenant_and_sorted_roles() {
        assert_eq!(
            check_with(json!({})),
            Ok(VerifiedJwt {
                issuer: "https://id.example.com".to_owned(),
                subject: "svc-1".to_owned(),
                tenant: "acme".to_owned(),
                roles: vec![Role::Read, Role::Write],
            })
        );
    }

    #[test]
    fn exp_is_required_and_honoured_with_leeway() {
        assert_eq!(
            check_with(json!({"exp": null})),
            Err(JwtError::MissingClaim("exp".into()))
        );
        assert_eq!(
            check_with(json!({"exp": "soon"})),
            Err(JwtError::InvalidClaim("exp".into()))
        );
        // Valid strictly before exp + leeway.
        assert!(check_with(json!({"exp": NOW - 29})).is_ok());
        assert_eq!(check_with(json!({"exp": NOW - 30})), Err(JwtError::Expired));
        assert_eq!(
            check_with(json!({"exp": NOW - 3600})),
            Err(JwtError::Expired)
        );
        // Fractional exp rounds down: NOW - 29.5 -> NOW - 30 -> expired.
        assert_eq!(
            check_with(json!({"exp": (NOW as f64) - 29.5})),
            Err(JwtError::Expired)
        );
        assert!(check_with(json!({"exp": (NOW as f64) + 0.5})).is_ok());
    }

    #[test]
    fn nbf_is_optional_and_honoured_with_leeway() {
        assert!(check_with(json!({"nbf": null})).is_ok());
        assert!(check_with(json!({"nbf": NOW + 30})).is_ok());
        assert_eq!(
            check_with(json!({"nbf": NOW + 31})),
            Err(JwtError::NotYetValid)
        );
        assert_eq!(
            check_with(json!({"nbf": (NOW as f64) + 30.5})),
            Err(JwtError::NotYetValid)
        );
        assert_eq!(
            check_with(json!({"nbf": [1]})),
            Err(JwtError::InvalidClaim("nbf".into()))
        );
    }

    #[test]
    fn the_now_passed_in_is_used_not_the_system_clock() {
        let claims = with(json!({"exp": 1_000, "nbf": 900}));
        let then = OffsetDateTime::from_unix_timestamp(950).unwrap();
        assert!(check(&claims, &policy(), then).is_ok());
        assert_eq!(check(&claims, &policy(), now()), Err(JwtError::Expired));
    }

    #[test]
    fn audience_may_be_a_string_or_an_array() {
        assert!(check_with(json!({"aud": "api-b"})).is_ok());
        assert!(check_with(json!({"aud": ["other", "api-a"]})).is_ok());
        assert_eq!(
            check_with(json!({"aud": "other"})),
            Err(JwtError::WrongAudience)
        );
        assert_eq!(
            check_with(json!({"aud": ["other", "API-A"]})),
            Err(JwtError::WrongAudience)
        );
        assert_eq!(check_with(json!({"aud": []})), Err(JwtError::WrongAudience));
        assert_eq!(
            check_with(json!({"aud": null})),
            Err(JwtError::MissingClaim("aud".into()))
        );
        assert_eq!(
            check_with(json!({"aud": ["api-a", 7]})),
            Err(JwtError::InvalidClaim("aud".into()))
        );
    }

    #[test]
    fn issuer_must_match_exactly() {
        assert_eq!(
            check_with(json!({"iss": "https://id.example.com/"})),
            Err(JwtError::UnknownIssuer)
        );
        assert_eq!(
            check_with(json!({"iss": null})),
            Err(JwtError::MissingClaim("iss".into()))
        );
        assert_eq!(
            check_with(json!({"iss": ["https://id.example.com"]})),
            Err(JwtError::InvalidClaim("iss".into()))
        );
    }

    #[test]
    fn subject_and_tenant_are_required_and_tenant_is_a_slug() {
        assert_eq!(
            check_with(json!({"sub": null})),
            Err(JwtError::MissingClaim("sub".into()))
        );
        assert_eq!(
            check_with(json!({"sub": ""})),
            Err(JwtError::InvalidClaim("sub".into()))
        );
        assert_eq!(
            check_with(json!({"tenant": null})),
            Err(JwtError::MissingClaim("tenant".into()))
        );
        for bad in [
            json!("Acme"),
            json!("-acme"),
            json!("acme/../x"),
            json!(""),
            json!("a".repeat(64)),
            json!(7),
        ] {
            assert_eq!(
                check_with(json!({ "tenant": bad })),
                Err(JwtError::InvalidClaim("tenant".into()))
            );
        }
        assert!(check_with(json!({"tenant": "a".repeat(63)})).is_ok());
    }

    #[test]
    fn claim_names_come_from_the_policy() {
        let mut p = policy();
        p.tenant_claim = "https://locksmith/tenant".to_owned();
        p.roles_claim = "scp".to_owned();
        let claims = with(json!({"https://locksmith/tenant": "beta", "scp": "admin"}));
        let ok = check(&claims, &p, now()).unwrap();
        assert_eq!(ok.tenant, "beta");
        assert_eq!(ok.roles, vec![Role::Admin]);
        let claims = with(json!({"scp": null}));
        assert_eq!(
            check(&claims, &p, now()),
            Err(JwtError::MissingClaim("https://locksmith/tenant".into()))
        );
    }

    #[test]
    fn roles_parse_from_an_array_or_a_space_separated_string() {
        assert_eq!(
            parse_roles(&json!(["admin", "read", "admin"])),
            Some(vec![Role::Read, Role::Admin])
        );
        assert_eq!(
            parse_roles(&json!(" write  read ")),
            Some(vec![Role::Read, Role::Write])
        );
        assert_eq!(parse_roles(&json!([])), Some(vec![]));
        assert_eq!(parse_roles(&json!("")), Some(vec![]));
    }

    #[test]
    fn unknown_roles_refuse_the_token() {
        for bad in [
            json!(["read", "superuser"]),
            json!("read superuser"),
            json!(["Read"]),
            json!(["read", 1]),
            json!({"read": true}),
            json!(true),
        ] {
            assert_eq!(parse_roles(&bad), None, "{bad}");
            assert_eq!(
                check_with(json!({ "roles": bad })),
                Err(JwtError::InvalidClaim("roles".into()))
            );
        }
        assert_eq!(
            check_with(json!({"roles": null})),
            Err(JwtError::MissingClaim("roles".into()))
        );
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn parse_splits_a_compact_token() {
        let token = format!(
            "{}.{}.{}",
            b64(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#),
            b64(r#"{"iss":"x"}"#),
            b64("sig")
        );
        let parsed = parse(&token).unwrap();
        assert_eq!(parsed.header.alg, "RS256");
        assert_eq!(parsed.header.kid.as_deref(), Some("k1"));
        assert_eq!(parsed.claims.get("iss"), Some(&json!("x")));
        assert_eq!(parsed.signature, b64("sig"));
        assert_eq!(parsed.signing_input, &token[..token.rfind('.').unwrap()]);
    }

    #[test]
    fn parse_refuses_anything_that_is_not_a_compact_jws() {
        let header = b64(r#"{"alg":"RS256"}"#);
        let payload = b64(r#"{"iss":"x"}"#);
        let cases = [
            String::new(),
            "garbage".to_owned(),
            "a.b".to_owned(),
            format!("{header}.{payload}.{}.extra", b64("s")),
            format!("{header}.{payload}.not+base64url"),
            format!("{header}.{payload}=.{}", b64("s")),
            format!("{}.{payload}.{}", b64("not json"), b64("s")),
            format!("{}.{payload}.{}", b64(r#"{"kid":"k"}"#), b64("s")),
            format!("{}.{payload}.{}", b64(r#"{"alg":7}"#), b64("s")),
            format!("{header}.{}.{}", b64("[1,2]"), b64("s")),
            format!(
                "{}.{payload}.{}",
                b64(r#"{"alg":"RS256","crit":["exp"]}"#),
                b64("s")
            ),
            format!("{header}.{}.{}", "A".repeat(MAX_TOKEN_BYTES), b64("s")),
        ];
        for case in cases {
            assert!(
                matches!(parse(&case), Err(JwtError::Malformed)),
                "accepted {case:.60}"
            );
        }
    }

    #[test]
    fn an_empty_signature_parses_so_alg_none_is_refused_by_algorithm() {
        let token = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64("{}"));
        let parsed = parse(&token).unwrap();
        assert_eq!(parsed.header.alg, "none");
        assert_eq!(parsed.signature, "");
    }
}
