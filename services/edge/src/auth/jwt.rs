//! JWT bearer tokens from configured OIDC issuers.
//!
//! A token is checked in this order, and the first failure is the answer:
//! 1. shape: a compact JWS whose header and payload are JSON objects;
//! 2. issuer: the unverified `iss` must name a configured issuer exactly
//!    (it only selects whose keys to try; nothing else is trusted yet);
//! 3. algorithm: the header's `alg` must be in that issuer's allow-list,
//!    which never holds `none` or an HMAC algorithm;
//! 4. key: the header's `kid` selects a key from the issuer's JWK Set, and
//!    the key's type, curve and own `alg` must fit the algorithm, so an
//!    issuer's public key can never be used as an HMAC secret;
//! 5. signature;
//! 6. claims, at the `now` passed in: `iss` again, `exp` (required), `nbf`
//!    (if present), `aud`, `sub`, then the tenant and roles claims.
//!
//! Errors say what is wrong in a sentence safe to show the caller; none of
//! them carries any part of the token.

mod claims;
mod config;
mod jwks;

use std::{collections::HashMap, fmt, str::FromStr, sync::Arc};

use jsonwebtoken::Algorithm;
use time::OffsetDateTime;

/// The roles a token may carry are the suite's roles.
pub use locksmith_auth::Role;

pub use config::{JwtConfigError, MAX_LEEWAY_SECONDS, MIN_REFETCH_INTERVAL_MS, OidcIssuer};

use config::IssuerPolicy;
use jwks::{FETCH_TIMEOUT, IssuerKeys, Lookup};

/// Why a bearer token is refused. `Display` is a sentence for the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not a compact JWS with JSON header and payload, too long, or naming
    /// critical header extensions.
    #[error("the bearer token is not a well-formed JWT")]
    Malformed,
    /// `iss` names no configured issuer.
    #[error("the bearer token's issuer is not trusted here")]
    UnknownIssuer,
    /// The issuer publishes no key with the token's `kid`.
    #[error("the bearer token is signed with a key its issuer does not publish")]
    UnknownKey,
    /// The signature does not verify with the issuer's key.
    #[error("the bearer token's signature is not valid")]
    BadSignature,
    /// `alg` is not allowed for this issuer, or does not fit the key.
    #[error("the bearer token's signing algorithm is not accepted")]
    AlgorithmNotAllowed,
    /// `exp` has passed (beyond the leeway).
    #[error("the bearer token has expired")]
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    #[error("the bearer token is not valid yet")]
    NotYetValid,
    /// `aud` names none of the configured audiences.
    #[error("the bearer token is not meant for this service")]
    WrongAudience,
    /// A required claim is absent (the claim's name).
    #[error("the bearer token has no {0:?} claim")]
    MissingClaim(String),
    /// A claim has the wrong type or an unacceptable value (the claim's name).
    #[error("the bearer token's {0:?} claim is not valid")]
    InvalidClaim(String),
    /// The issuer's keys could not be fetched, so the token cannot be checked.
    #[error("the bearer token's issuer could not be reached to check its signature")]
    JwksUnavailable,
}

/// A token that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedJwt {
    /// The configured issuer it came from.
    pub issuer: String,
    /// Its `sub` claim: the caller, as the issuer names it.
    pub subject: String,
    /// The tenant claim, checked to be a well-formed tenant id (a slug).
    pub tenant: String,
    /// The roles claim, lowest first, without duplicates. May be empty.
    pub roles: Vec<Role>,
}

/// Verifies bearer tokens against the configured issuers. Cheap to clone:
/// clones share the JWKS caches.
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuers: HashMap<String, Arc<IssuerKeys>>,
    http: reqwest::Client,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuers", &self.inner.issuers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// A verifier trusting `issuers`, fetching their keys on first use with
    /// [`JwtVerifier::default_http_client`]. Refuses a configuration that
    /// could accept forged tokens.
    pub fn new(issuers: Vec<OidcIssuer>) -> Result<Self, JwtConfigError> {
        Self::with_http_client(issuers, Self::default_http_client()?)
    }

    /// [`JwtVerifier::new`] with the HTTP client for JWKS fetches given
    /// (custom trust roots, a proxy). Each fetch still has its own
    /// timeout and size limit.
    pub fn with_http_client(
        issuers: Vec<OidcIssuer>,
        http: reqwest::Client,
    ) -> Result<Self, JwtConfigError> {
        // jsonwebtoken picks its crypto backend from crate features and
        // panics on first use if a build ever enables two; installing ours
        // before any use avoids that. An error only means a provider is
        // already installed, which is all we need.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        let mut by_name = HashMap::with_capacity(issuers.len());
        for issuer in &issuers {
            let policy = IssuerPolicy::from_config(issuer)?;
            if by_name.contains_key(&policy.issuer) {
                return Err(JwtConfigError::DuplicateIssuer(policy.issuer));
            }
            by_name.insert(policy.issuer.clone(), Arc::new(IssuerKeys::new(policy)));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                issuers: by_name,
                http,
            }),
        })
    }

    /// An HTTP client suited to JWKS fetches: bounded timeouts, and no
    /// redirects, so a fetch cannot be bounced to another host or from
    /// https down to http.
    pub fn default_http_client() -> Result<reqwest::Client, JwtConfigError> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(FETCH_TIMEOUT)
            .timeout(FETCH_TIMEOUT)
            .user_agent(concat!("locksmith-edge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| JwtConfigError::HttpClient(e.to_string()))
    }

    /// Verifies `token` as of `now` (a parameter so expiry is testable, and
    /// so one request uses one instant throughout).
    pub async fn verify(&self, token: &str, now: OffsetDateTime) -> Result<VerifiedJwt, JwtError> {
        let unverified = claims::parse(token)?;
        let issuer = self
            .inner
            .issuers
            .get(claims::issuer_of(&unverified.claims)?)
            .ok_or(JwtError::UnknownIssuer)?;
        let alg = Algorithm::from_str(&unverified.header.alg)
            .ok()
            .filter(|alg| issuer.policy.algorithms.contains(alg))
            .ok_or(JwtError::AlgorithmNotAllowed)?;
        let kid = unverified.header.kid.as_deref();

        let http = &self.inner.http;
        let mut keys = issuer.keys(http).await?;
        if matches!(keys.lookup(kid, alg), Lookup::NotFound) {
            // Perhaps the issuer rotated its keys; `refetch` decides whether
            // asking again is allowed yet.
            keys = issuer.refetch(http).await?;
        }
        let key = match keys.lookup(kid, alg) {
            Lookup::Found(key) => key,
            Lookup::WrongAlgorithm => return Err(JwtError::AlgorithmNotAllowed),
            Lookup::NotFound | Lookup::Ambiguous => return Err(JwtError::UnknownKey),
        };
        let verified = jsonwebtoken::crypto::verify(
            unverified.signature,
            unverified.signing_input.as_bytes(),
            &key.key,
            alg,
        );
        if !matches!(verified, Ok(true)) {
            return Err(JwtError::BadSignature);
        }
        claims::check(&unverified.claims, &issuer.policy, now)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::TcpListener,
        sync::atomic::{AtomicUsize, Ordering},
        time::Duration,
    };

    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};

    use super::*;

    /// A loopback URL nothing listens on.
    fn closed_port_url() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}/jwks")
    }

    /// A loopback HTTP server answering every request with `response`;
    /// returns its URL and how many requests it has had.
    fn serve(response: Vec<u8>) -> (String, Arc<AtomicUsize>) {
        serve_after(Duration::ZERO, response)
    }

    /// [`serve`], answering each request only after `delay`.
    fn serve_after(delay: Duration, response: Vec<u8>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().map_while(Result::ok) {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut request = [0u8; 4096];
                let _ = conn.read(&mut request);
                std::thread::sleep(delay);
                let _ = conn.write_all(&response);
            }
        });
        (url, hits)
    }

    const EMPTY_SET: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"keys\":[]}";

    fn issuer(name: &str) -> OidcIssuer {
        OidcIssuer::new(
            name,
            closed_port_url(),
            vec!["https://locksmith.test/api".to_owned()],
        )
    }

    /// A token the verifier gets as far as fetching keys for.
    fn needs_keys() -> String {
        format!(
            "{}.{}.{}",
            B64.encode(r#"{"alg":"RS256","kid":"k1"}"#),
            B64.encode(r#"{"iss":"https://id.example.com"}"#),
            B64.encode("sig")
        )
    }

    async fn verify_against(jwks_url: &str) -> Result<VerifiedJwt, JwtError> {
        let config = OidcIssuer {
            jwks_url: jwks_url.to_owned(),
            ..issuer("https://id.example.com")
        };
        let verifier = JwtVerifier::new(vec![config]).unwrap();
        verifier
            .verify(&needs_keys(), OffsetDateTime::now_utc())
            .await
    }

    #[tokio::test]
    async fn an_oversized_jwks_is_not_read() {
        // A valid (empty) key set padded past the limit: read whole, it
        // would answer UnknownKey, so JwksUnavailable shows the bound held.
        let big = [
            &b"{\"keys\":["[..],
            &vec![b' '; jwks::MAX_JWKS_BYTES],
            b"]}",
        ]
        .concat();
        let declared = [
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", big.len()).into_bytes(),
            big.clone(),
        ]
        .concat();
        // Without a length the body is cut off while streaming.
        let undeclared = [
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec(),
            big,
        ]
        .concat();
        for response in [declared, undeclared] {
            let (url, hits) = serve(response);
            assert_eq!(verify_against(&url).await, Err(JwtError::JwksUnavailable));
            assert_eq!(hits.load(Ordering::SeqCst), 1);
        }
    }

    #[tokio::test]
    async fn an_error_status_or_a_non_jwks_body_is_unavailable() {
        for response in [
            &b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n<html>",
        ] {
            let (url, _) = serve(response.to_vec());
            assert_eq!(verify_against(&url).await, Err(JwtError::JwksUnavailable));
        }
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (target, target_hits) = serve(EMPTY_SET.to_vec());
        let (url, _) = serve(
            format!("HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\n\r\n")
                .into_bytes(),
        );
        assert_eq!(verify_against(&url).await, Err(JwtError::JwksUnavailable));
        assert_eq!(target_hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_failed_fetch_is_not_retried_within_the_refetch_interval() {
        let (url, hits) = serve(b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n".to_vec());
        let config = OidcIssuer {
            jwks_url: url,
            ..issuer("https://id.example.com")
        };
        let verifier = JwtVerifier::new(vec![config]).unwrap();
        for _ in 0..5 {
            assert_eq!(
                verifier
                    .verify(&needs_keys(), OffsetDateTime::now_utc())
                    .await,
                Err(JwtError::JwksUnavailable)
            );
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_fetch_completes_and_is_cached_even_if_its_caller_gives_up() {
        let (url, hits) = serve_after(Duration::from_millis(300), EMPTY_SET.to_vec());
        let config = OidcIssuer {
            jwks_url: url,
            ..issuer("https://id.example.com")
        };
        let verifier = JwtVerifier::new(vec![config]).unwrap();
        let now = OffsetDateTime::now_utc();
        let gave_up = tokio::time::timeout(
            Duration::from_millis(50),
            verifier.verify(&needs_keys(), now),
        )
        .await;
        assert!(gave_up.is_err(), "the fetch should still be under way");
        tokio::time::sleep(Duration::from_millis(600)).await;
        // Within the refetch floor: answered from the set the abandoned fetch cached.
        assert_eq!(
            verifier.verify(&needs_keys(), now).await,
            Err(JwtError::UnknownKey)
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_empty_key_set_leaves_every_kid_unknown() {
        let (url, hits) = serve(EMPTY_SET.to_vec());
        assert_eq!(verify_against(&url).await, Err(JwtError::UnknownKey));
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn duplicate_issuers_are_refused() {
        let err = JwtVerifier::new(vec![issuer("a"), issuer("b"), issuer("a")]).unwrap_err();
        assert_eq!(err, JwtConfigError::DuplicateIssuer("a".to_owned()));
    }

    #[test]
    fn a_symmetric_algorithm_in_any_issuer_refuses_the_whole_configuration() {
        let mut bad = issuer("b");
        bad.algorithms.push("HS256".to_owned());
        let err = JwtVerifier::new(vec![issuer("a"), bad]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "OIDC issuer \"b\": algorithm HS256 is symmetric (HMAC) and cannot be verified with an issuer's public keys"
        );
    }

    #[test]
    fn errors_are_sentences_that_name_claims_not_values() {
        assert_eq!(
            JwtError::MissingClaim("tenant".into()).to_string(),
            "the bearer token has no \"tenant\" claim"
        );
        assert_eq!(
            JwtError::Expired.to_string(),
            "the bearer token has expired"
        );
    }

    #[tokio::test]
    async fn refusals_before_any_key_fetch() {
        // The JWKS URL is a closed port: these refusals must not need it.
        let verifier = JwtVerifier::new(vec![issuer("https://id.example.com")]).unwrap();
        let now = OffsetDateTime::now_utc();
        assert_eq!(
            verifier.verify("garbage", now).await,
            Err(JwtError::Malformed)
        );

        let token = |header: &str, claims: &str| {
            format!(
                "{}.{}.{}",
                B64.encode(header),
                B64.encode(claims),
                B64.encode("sig")
            )
        };
        let ours = r#"{"iss":"https://id.example.com"}"#;
        assert_eq!(
            verifier
                .verify(
                    &token(r#"{"alg":"RS256"}"#, r#"{"iss":"https://evil"}"#),
                    now
                )
                .await,
            Err(JwtError::UnknownIssuer)
        );
        assert_eq!(
            verifier
                .verify(&token(r#"{"alg":"RS256"}"#, "{}"), now)
                .await,
            Err(JwtError::MissingClaim("iss".into()))
        );
        for alg in ["none", "HS256", "RS384", "rs256", ""] {
            assert_eq!(
                verifier
                    .verify(&token(&format!(r#"{{"alg":"{alg}"}}"#), ours), now)
                    .await,
                Err(JwtError::AlgorithmNotAllowed),
                "{alg}"
            );
        }
        // Allowed algorithm: now the keys are needed, and the issuer is down.
        assert_eq!(
            verifier
                .verify(&token(r#"{"alg":"RS256"}"#, ours), now)
                .await,
            Err(JwtError::JwksUnavailable)
        );
    }
}
