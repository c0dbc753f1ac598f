//! Where a secret route points: read from the request path itself.
//!
//! Secret names hold slashes (`api-keys/openai`), so a name is the rest of
//! the path after `…/secrets/` or `…/resolve/`, one path segment per name
//! segment. axum's parameters cannot say that in a route the published
//! contract can also describe, so the secret routes are documented with a
//! one-segment `{name}` and served by that route plus a catch-all twin
//! (see `crate::openapi`), and both read their target here, from the raw
//! path: one parser for every scope, checked with the domain's own rules.
//!
//! A `/` written as `%2F` inside a segment is refused: it would make one
//! name spelt two ways, and a proxy in front of the edge may or may not
//! decode it. Anything else percent-encoded is decoded first and must then
//! pass the same rules as if it had been written plainly.

use std::borrow::Cow;

use axum::{extract::FromRequestParts, http::request::Parts};
use locksmith_domain::{
    MemberId, MemberKind, Scope, TenantId,
    secrets::{NameError, SecretName, SecretRef},
};
use locksmith_errors::ApiError;

use crate::problem::{self, Failure};

/// What a secret route addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretTarget {
    /// `…/secrets`: a scope's own secrets.
    List(Scope),
    /// `…/secrets/{name}`: one secret.
    Secret(SecretRef),
    /// `…/resolve/{name}`: a name resolved from a scope upwards.
    Resolve(SecretRef),
}

/// Said of a segment holding `%2F`.
const ENCODED_SLASH: &str =
    "must not contain an encoded '/' (%2F): write each segment of a name as a path segment";

/// The target of the request's path; a route that matched only if it is one.
impl<S: Send + Sync> FromRequestParts<S> for SecretTarget {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parse(parts.uri.path())?.ok_or_else(|| {
            tracing::error!("a secret route matched a path the secret parser does not know");
            Failure(ApiError::internal())
        })
    }
}

/// Parses `path` as a secret route's path. `Ok(None)`: not a secret path
/// at all (another route's, or no route's); `Err`: a secret path with a bad
/// part, named by its parameter.
pub fn parse(path: &str) -> Result<Option<SecretTarget>, Failure> {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let (scope, rest) = match segments.as_slice() {
        ["system", rest @ ..] => (Scope::System, rest),
        ["tenants", tenant, rest @ ..] => match scope_under_tenant(tenant, rest)? {
            Some(found) => found,
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    let (resolve, name) = match rest {
        ["secrets"] => return Ok(Some(SecretTarget::List(scope))),
        ["secrets", name @ ..] => (false, name),
        ["resolve", name @ ..] if scope != Scope::System => (true, name),
        _ => return Ok(None),
    };
    let decoded = name
        .iter()
        .map(|segment| decode("name", segment))
        .collect::<Result<Vec<_>, _>>()?;
    let name = SecretName::parse(&decoded.join("/"), &scope).map_err(bad_name)?;
    let secret = SecretRef { scope, name };
    Ok(Some(if resolve {
        SecretTarget::Resolve(secret)
    } else {
        SecretTarget::Secret(secret)
    }))
}

/// The scope `/tenants/{tenant}/…` names, and what follows it; `None` if
/// the path is not a secret path (its ids are left to the routes that own
/// them).
fn scope_under_tenant<'a, 'b>(
    tenant: &str,
    rest: &'a [&'b str],
) -> Result<Option<(Scope, &'a [&'b str])>, Failure> {
    if !matches!(
        rest,
        ["secrets" | "resolve", ..]
            | ["orgs", _, "secrets" | "resolve", ..]
            | ["orgs", _, "bots" | "users", _, "secrets" | "resolve", ..]
    ) {
        return Ok(None);
    }
    let tenant = TenantId::parse(&decode("tenant_id", tenant)?)
        .map_err(|e| Failure(problem::invalid_field("tenant_id", &e.to_string())))?;
    let member = |field: &str, raw: &str| -> Result<MemberId, Failure> {
        MemberId::parse(&decode(field, raw)?)
            .map_err(|e| Failure(problem::invalid_field(field, &e.to_string())))
    };
    Ok(Some(match rest {
        ["orgs", org, kind @ ("bots" | "users"), id, rest @ ..] => {
            let (kind, field) = if *kind == "bots" {
                (MemberKind::Bot, "bot_id")
            } else {
                (MemberKind::User, "user_id")
            };
            let scope = Scope::member(tenant, member("org_id", org)?, kind, member(field, id)?);
            (scope, rest)
        }
        ["orgs", org, rest @ ..] => (
            Scope::Org {
                tenant,
                org: member("org_id", org)?,
            },
            rest,
        ),
        rest => (Scope::Tenant(tenant), rest),
    }))
}

/// One path segment, percent-decoded; `%2F` refused.
fn decode<'a>(field: &str, raw: &'a str) -> Result<Cow<'a, str>, Failure> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Failure(problem::invalid_field(field, "must be UTF-8 text")))?;
    if decoded.contains('/') {
        return Err(Failure(problem::invalid_field(field, ENCODED_SLASH)));
    }
    Ok(decoded)
}

fn bad_name(e: NameError) -> Failure {
    Failure(problem::invalid_field("name", &e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(path: &str) -> (String, String) {
        match parse(path) {
            Err(Failure(e)) => {
                assert_eq!(e.violations.len(), 1, "{path}: {e:?}");
                (
                    e.violations[0].field.clone(),
                    e.violations[0].description.clone(),
                )
            }
            other => panic!("{path}: {other:?}"),
        }
    }

    fn target(path: &str) -> SecretTarget {
        parse(path).unwrap().unwrap()
    }

    #[test]
    fn every_scope_and_names_with_slashes() {
        let SecretTarget::Secret(s) = target("/tenants/acme/orgs/sales/bots/helper/secrets/llm")
        else {
            panic!()
        };
        assert_eq!(
            s.resource_name(),
            "tenants/acme/orgs/sales/bots/helper/secrets/llm"
        );
        let SecretTarget::Secret(s) = target("/tenants/acme/secrets/infrastructure/email") else {
            panic!()
        };
        assert_eq!(s.name.as_str(), "infrastructure/email");
        let SecretTarget::Resolve(s) = target("/tenants/a/orgs/o/users/u/resolve/api-keys/openai")
        else {
            panic!()
        };
        assert_eq!(
            s.resource_name(),
            "tenants/a/orgs/o/users/u/secrets/api-keys/openai"
        );
        assert_eq!(target("/system/secrets"), SecretTarget::List(Scope::System));
        assert!(matches!(
            target("/tenants/a/orgs/o/secrets"),
            SecretTarget::List(Scope::Org { .. })
        ));
        // Plain characters written percent-encoded are the same name.
        let SecretTarget::Secret(s) = target("/system/secrets/%6c%6cm") else {
            panic!()
        };
        assert_eq!(s.name.as_str(), "llm");
    }

    #[test]
    fn other_routes_are_not_secret_paths() {
        for path in [
            "/tenants/acme",
            "/tenants/acme/orgs/sales/bots",
            "/tenants/acme/api-keys",
            "/system/resolve/llm",
            "/health",
            "/tenants/BAD/orgs",
        ] {
            assert_eq!(parse(path).unwrap(), None, "{path}");
        }
    }

    #[test]
    fn bad_parts_are_named() {
        for (path, field, says) in [
            ("/tenants/a/secrets/a%2Fb", "name", "encoded '/'"),
            ("/tenants/a/secrets/a%2fb", "name", "encoded '/'"),
            ("/tenants/a%2Fb/secrets/x", "tenant_id", "encoded '/'"),
            ("/tenants/a/secrets/..", "name", "[a-z0-9]"),
            ("/tenants/a/secrets/./x", "name", "[a-z0-9]"),
            ("/tenants/a/secrets/a//b", "name", "separated by single '/'"),
            ("/tenants/a/secrets/a/", "name", "separated by single '/'"),
            ("/tenants/a/secrets/a%00b", "name", "[a-z0-9]"),
            ("/tenants/a/secrets/a%0Ab", "name", "[a-z0-9]"),
            ("/tenants/a/secrets/%FF", "name", "UTF-8"),
            ("/tenants/a/secrets/config", "name", "registry record"),
            ("/tenants/a/secrets/orgs/o/bots/b/llm", "name", "'orgs'"),
            ("/tenants/a/orgs/o/secrets/bots/b/llm", "name", "'bots'"),
            (
                "/tenants/a/orgs/o/bots/b/secrets/config",
                "name",
                "'config'",
            ),
            ("/tenants/Upper/secrets/x", "tenant_id", ""),
            ("/tenants/a/orgs/-o/secrets/x", "org_id", ""),
            ("/tenants/a/orgs/o/bots/b_/secrets/x", "bot_id", ""),
            (
                "/tenants/a/orgs/o/users/%2F/resolve/x",
                "user_id",
                "encoded '/'",
            ),
        ] {
            let (got_field, got) = refused(path);
            assert_eq!(got_field, field, "{path}: {got}");
            assert!(got.contains(says), "{path}: {got}");
        }
    }
}
