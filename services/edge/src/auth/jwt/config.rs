//! Trusted OIDC issuers as configured, and the checks that turn one into the
//! policy the verifier enforces. Everything that can be refused before the
//! first token arrives (HMAC or `none` in the allow-list, a JWKS URL that
//! could be tampered with in transit) is refused here, at start-up.

use std::{net::IpAddr, str::FromStr, time::Duration};

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use reqwest::Url;
use serde::Deserialize;

/// One trusted issuer of JWT bearer tokens.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuer {
    /// The issuer identifier, compared exactly (byte for byte) with each
    /// token's `iss` claim; it also selects this entry for a token.
    pub issuer: String,
    /// Where the issuer publishes its signing keys (a JWK Set): `https://…`,
    /// or `http://…` to a loopback address only (tests, a local sidecar).
    pub jwks_url: String,
    /// Accepted `aud` values: a token must name at least one of them.
    pub audiences: Vec<String>,
    /// Signature algorithms accepted from this issuer. Asymmetric only:
    /// `HS256`/`HS384`/`HS512` and `none` are refused at start-up.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Claim holding the caller's tenant, a slug (`[a-z0-9][a-z0-9-]{0,62}`).
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// Claim holding the caller's roles: a JSON array of `read`, `write`,
    /// `admin`, or one space-separated string of them. Any other role makes
    /// the token invalid.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds (at most 300).
    #[serde(default = "default_leeway_seconds")]
    pub leeway_seconds: u64,
    /// Least time between two JWKS fetches for this issuer, in milliseconds
    /// (at least 100). A token naming an unknown `kid` triggers a refetch only
    /// once this much time has passed since the last one, so a flood of
    /// made-up key ids cannot become a flood of requests to the issuer.
    #[serde(default = "default_refetch_min_interval_ms")]
    pub jwks_refetch_min_interval_ms: u64,
    /// Age after which the cached key set is fetched again even if every
    /// token names a known key, so keys the issuer withdrew stop being
    /// trusted. If that fetch fails the old set keeps being used.
    #[serde(default = "default_jwks_max_age_seconds")]
    pub jwks_max_age_seconds: u64,
    /// The tenants this issuer may speak for; empty: any tenant. Required
    /// when more than one issuer is configured, so that one identity
    /// provider (staging's, say) cannot mint tokens for another's tenants.
    #[serde(default)]
    pub tenants: Vec<String>,
}

fn default_algorithms() -> Vec<String> {
    ["RS256", "ES256", "PS256", "EdDSA"]
        .into_iter()
        .map(str::to_owned)
        .collect()
}

fn default_tenant_claim() -> String {
    "tenant".to_owned()
}

fn default_roles_claim() -> String {
    "roles".to_owned()
}

fn default_leeway_seconds() -> u64 {
    30
}

fn default_refetch_min_interval_ms() -> u64 {
    30_000
}

fn default_jwks_max_age_seconds() -> u64 {
    300
}

/// Largest accepted `leeway_seconds`: more would make `exp` meaningless.
pub const MAX_LEEWAY_SECONDS: u64 = 300;
/// Smallest accepted `jwks_refetch_min_interval_ms`.
pub const MIN_REFETCH_INTERVAL_MS: u64 = 100;

impl OidcIssuer {
    /// An issuer with every optional field at its default.
    pub fn new(
        issuer: impl Into<String>,
        jwks_url: impl Into<String>,
        audiences: Vec<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            jwks_url: jwks_url.into(),
            audiences,
            algorithms: default_algorithms(),
            tenant_claim: default_tenant_claim(),
            roles_claim: default_roles_claim(),
            leeway_seconds: default_leeway_seconds(),
            jwks_refetch_min_interval_ms: default_refetch_min_interval_ms(),
            jwks_max_age_seconds: default_jwks_max_age_seconds(),
            tenants: Vec::new(),
        }
    }

    /// Checks the entry without building anything; call it when loading the
    /// edge's configuration to refuse a bad one at start-up.
    pub fn validate(&self) -> Result<(), JwtConfigError> {
        IssuerPolicy::from_config(self).map(|_| ())
    }
}

/// Why an issuer's configuration is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtConfigError {
    /// `issuer` is empty.
    #[error("an OIDC issuer has an empty `issuer`")]
    EmptyIssuer,
    /// Two entries share one `issuer`, so a token could not select one.
    #[error("OIDC issuer {0:?} is configured twice")]
    DuplicateIssuer(String),
    /// `jwks_url` is not an absolute URL, or is plain HTTP to a remote host.
    #[error("OIDC issuer {issuer:?}: jwks_url {reason}")]
    JwksUrl {
        /// The entry's `issuer`.
        issuer: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `audiences` is empty or has an empty entry.
    #[error("OIDC issuer {0:?}: audiences must list at least one non-empty audience")]
    NoAudience(String),
    /// `algorithms` is empty.
    #[error("OIDC issuer {0:?}: algorithms must list at least one algorithm")]
    NoAlgorithms(String),
    /// An HMAC algorithm is listed: the verifier holds only the issuer's
    /// public keys, and an HMAC "verified" with a public key proves nothing.
    #[error(
        "OIDC issuer {issuer:?}: algorithm {algorithm} is symmetric (HMAC) and cannot be verified with an issuer's public keys"
    )]
    SymmetricAlgorithm {
        /// The entry's `issuer`.
        issuer: String,
        /// The refused algorithm.
        algorithm: String,
    },
    /// `none` is listed: unsigned tokens are never accepted.
    #[error("OIDC issuer {0:?}: algorithm \"none\" (unsigned tokens) is never accepted")]
    AlgorithmNone(String),
    /// A name that is not a JWS signature algorithm this verifier supports.
    #[error(
        "OIDC issuer {issuer:?}: unknown algorithm {algorithm:?} (supported: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
    )]
    UnknownAlgorithm {
        /// The entry's `issuer`.
        issuer: String,
        /// The unknown name.
        algorithm: String,
    },
    /// `tenant_claim` or `roles_claim` is empty.
    #[error("OIDC issuer {issuer:?}: {field} must not be empty")]
    EmptyClaimName {
        /// The entry's `issuer`.
        issuer: String,
        /// Which field.
        field: &'static str,
    },
    /// `leeway_seconds` is above [`MAX_LEEWAY_SECONDS`].
    #[error("OIDC issuer {0:?}: leeway_seconds must be at most {MAX_LEEWAY_SECONDS}")]
    LeewayTooLarge(String),
    /// `jwks_refetch_min_interval_ms` is below [`MIN_REFETCH_INTERVAL_MS`].
    #[error(
        "OIDC issuer {0:?}: jwks_refetch_min_interval_ms must be at least {MIN_REFETCH_INTERVAL_MS}"
    )]
    RefetchIntervalTooShort(String),
    /// The HTTP client for JWKS fetches could not be built.
    #[error("the HTTP client for JWKS fetches could not be built: {0}")]
    HttpClient(String),
}

/// An issuer's configuration, checked and parsed.
#[derive(Clone, Debug)]
pub(crate) struct IssuerPolicy {
    pub issuer: String,
    pub jwks_url: Url,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub tenant_claim: String,
    pub roles_claim: String,
    pub leeway_seconds: u64,
    pub refetch_min_interval: Duration,
    pub jwks_max_age: Duration,
}

impl IssuerPolicy {
    pub(crate) fn from_config(c: &OidcIssuer) -> Result<Self, JwtConfigError> {
        if c.issuer.is_empty() {
            return Err(JwtConfigError::EmptyIssuer);
        }
        let issuer = || c.issuer.clone();
        let jwks_url = check_jwks_url(&c.jwks_url).map_err(|reason| JwtConfigError::JwksUrl {
            issuer: issuer(),
            reason,
        })?;
        if c.audiences.is_empty() || c.audiences.iter().any(String::is_empty) {
            return Err(JwtConfigError::NoAudience(issuer()));
        }
        if c.algorithms.is_empty() {
            return Err(JwtConfigError::NoAlgorithms(issuer()));
        }
        let mut algorithms = Vec::with_capacity(c.algorithms.len());
        for name in &c.algorithms {
            let alg = parse_allowed_algorithm(name).map_err(|refusal| match refusal {
                Refusal::None => JwtConfigError::AlgorithmNone(issuer()),
                Refusal::Symmetric => JwtConfigError::SymmetricAlgorithm {
                    issuer: issuer(),
                    algorithm: name.clone(),
                },
                Refusal::Unknown => JwtConfigError::UnknownAlgorithm {
                    issuer: issuer(),
                    algorithm: name.clone(),
                },
            })?;
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        for (field, value) in [
            ("tenant_claim", &c.tenant_claim),
            ("roles_claim", &c.roles_claim),
        ] {
            if value.is_empty() {
                return Err(JwtConfigError::EmptyClaimName {
                    issuer: issuer(),
                    field,
                });
            }
        }
        if c.leeway_seconds > MAX_LEEWAY_SECONDS {
            return Err(JwtConfigError::LeewayTooLarge(issuer()));
        }
        if c.jwks_refetch_min_interval_ms < MIN_REFETCH_INTERVAL_MS {
            return Err(JwtConfigError::RefetchIntervalTooShort(issuer()));
        }
        Ok(Self {
            issuer: c.issuer.clone(),
            jwks_url,
            audiences: c.audiences.clone(),
            algorithms,
            tenant_claim: c.tenant_claim.clone(),
            roles_claim: c.roles_claim.clone(),
            leeway_seconds: c.leeway_seconds,
            refetch_min_interval: Duration::from_millis(c.jwks_refetch_min_interval_ms),
            jwks_max_age: Duration::from_secs(c.jwks_max_age_seconds),
        })
    }
}

enum Refusal {
    None,
    Symmetric,
    Unknown,
}

/// The asymmetric JWS algorithm named `name` (case-sensitive, as in a JWS
/// header).
fn parse_allowed_algorithm(name: &str) -> Result<Algorithm, Refusal> {
    if name.eq_ignore_ascii_case("none") {
        return Err(Refusal::None);
    }
    let alg = Algorithm::from_str(name).map_err(|_| Refusal::Unknown)?;
    if alg.family() == AlgorithmFamily::Hmac {
        return Err(Refusal::Symmetric);
    }
    Ok(alg)
}

/// Keys fetched over plain HTTP from another machine could be replaced in
/// transit, and whoever replaces them can mint tokens: only loopback may
/// skip TLS.
fn check_jwks_url(raw: &str) -> Result<Url, &'static str> {
    let url = Url::parse(raw).map_err(|_| "is not an absolute URL")?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials");
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err("must use https (plain http is allowed to loopback addresses only)"),
        _ => Err("must be an https URL"),
    }
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    // IPv6 hosts come bracketed (`[::1]`).
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> OidcIssuer {
        OidcIssuer::new(
            "https://id.example.com",
            "https://id.example.com/jwks",
            vec!["https://locksmith.example/api".to_owned()],
        )
    }

    fn with_algorithms(algs: &[&str]) -> OidcIssuer {
        OidcIssuer {
            algorithms: algs.iter().map(|s| (*s).to_owned()).collect(),
            ..issuer()
        }
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        // The edge reads TOML; serde applies the same defaults from any format.
        let parsed: OidcIssuer = serde_json::from_str(
            r#"{
                "issuer": "https://id.example.com",
                "jwks_url": "https://id.example.com/jwks",
                "audiences": ["https://locksmith.example/api"]
            }"#,
        )
        .unwrap();
        assert_eq!(parsed, issuer());
        assert_eq!(parsed.algorithms, ["RS256", "ES256", "PS256", "EdDSA"]);
        assert_eq!(parsed.tenant_claim, "tenant");
        assert_eq!(parsed.roles_claim, "roles");
        assert_eq!(parsed.leeway_seconds, 30);
        assert_eq!(parsed.jwks_refetch_min_interval_ms, 30_000);
        assert_eq!(parsed.validate(), Ok(()));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let parsed = serde_json::from_str::<OidcIssuer>(
            r#"{
                "issuer": "https://id.example.com",
                "jwks_url": "https://id.example.com/jwks",
                "audiences": ["a"],
                "audience": "typo"
            }"#,
        );
        assert!(parsed.is_err());
    }

    #[test]
    fn hmac_algorithms_are_refused() {
        for alg in ["HS256", "HS384", "HS512"] {
            assert_eq!(
                with_algorithms(&["RS256", alg]).validate(),
                Err(JwtConfigError::SymmetricAlgorithm {
                    issuer: "https://id.example.com".to_owned(),
                    algorithm: alg.to_owned(),
                }),
            );
        }
    }

    #[test]
    fn none_is_refused_in_any_case() {
        for alg in ["none", "None", "NONE"] {
            assert_eq!(
                with_algorithms(&[alg]).validate(),
                Err(JwtConfigError::AlgorithmNone(
                    "https://id.example.com".to_owned()
                )),
            );
        }
    }

    #[test]
    fn unknown_and_empty_algorithm_lists_are_refused() {
        assert_eq!(
            with_algorithms(&["rs256"]).validate(),
            Err(JwtConfigError::UnknownAlgorithm {
                issuer: "https://id.example.com".to_owned(),
                algorithm: "rs256".to_owned(),
            }),
        );
        assert_eq!(
            with_algorithms(&[]).validate(),
            Err(JwtConfigError::NoAlgorithms(
                "https://id.example.com".to_owned()
            )),
        );
    }

    #[test]
    fn every_asymmetric_algorithm_is_accepted() {
        let all = [
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
        ];
        let policy = IssuerPolicy::from_config(&with_algorithms(&all)).unwrap();
        assert_eq!(policy.algorithms.len(), all.len());
    }

    #[test]
    fn jwks_url_must_be_https_unless_loopback() {
        let url = |u: &str| OidcIssuer {
            jwks_url: u.to_owned(),
            ..issuer()
        };
        for ok in [
            "https://id.example.com/jwks",
            "http://127.0.0.1:8080/jwks",
            "http://[::1]:8080/jwks",
            "http://localhost/jwks",
        ] {
            assert_eq!(url(ok).validate(), Ok(()), "{ok}");
        }
        let refused = |u: &str, reason: &'static str| {
            assert_eq!(
                url(u).validate(),
                Err(JwtConfigError::JwksUrl {
                    issuer: "https://id.example.com".to_owned(),
                    reason,
                }),
                "{u}"
            );
        };
        refused(
            "http://id.example.com/jwks",
            "must use https (plain http is allowed to loopback addresses only)",
        );
        refused(
            "http://10.0.0.1/jwks",
            "must use https (plain http is allowed to loopback addresses only)",
        );
        refused("ftp://id.example.com/jwks", "must be an https URL");
        refused("/jwks", "is not an absolute URL");
        refused(
            "https://user:pw@id.example.com/jwks",
            "must not carry credentials",
        );
    }

    #[test]
    fn bounds_and_empty_fields_are_refused() {
        let name = || "https://id.example.com".to_owned();
        let bad = OidcIssuer {
            audiences: vec![],
            ..issuer()
        };
        assert_eq!(bad.validate(), Err(JwtConfigError::NoAudience(name())));
        let bad = OidcIssuer {
            audiences: vec![String::new()],
            ..issuer()
        };
        assert_eq!(bad.validate(), Err(JwtConfigError::NoAudience(name())));
        let bad = OidcIssuer {
            leeway_seconds: MAX_LEEWAY_SECONDS + 1,
            ..issuer()
        };
        assert_eq!(bad.validate(), Err(JwtConfigError::LeewayTooLarge(name())));
        let bad = OidcIssuer {
            jwks_refetch_min_interval_ms: MIN_REFETCH_INTERVAL_MS - 1,
            ..issuer()
        };
        assert_eq!(
            bad.validate(),
            Err(JwtConfigError::RefetchIntervalTooShort(name()))
        );
        let bad = OidcIssuer {
            roles_claim: String::new(),
            ..issuer()
        };
        assert_eq!(
            bad.validate(),
            Err(JwtConfigError::EmptyClaimName {
                issuer: name(),
                field: "roles_claim"
            })
        );
        let bad = OidcIssuer {
            issuer: String::new(),
            ..issuer()
        };
        assert_eq!(bad.validate(), Err(JwtConfigError::EmptyIssuer));
    }
}
