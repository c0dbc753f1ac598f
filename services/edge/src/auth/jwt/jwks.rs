//! An issuer's signing keys: fetching its JWK Set, keeping only keys that can
//! verify signatures, choosing the key for a token, and caching the set with
//! a floor on how often it is fetched again.

use std::{
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use jsonwebtoken::{
    Algorithm, AlgorithmFamily, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse},
};
use reqwest::{StatusCode, header};
use serde_json::Value;
use tokio::{sync::Mutex, time::Instant};

use super::{JwtError, config::IssuerPolicy};

/// Longest a JWKS fetch may take, connection included.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS response read. Real sets are a few KiB.
pub(crate) const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys kept from one set.
const MAX_KEYS: usize = 64;

/// One public key that may verify signatures.
pub(crate) struct VerificationKey {
    kid: Option<String>,
    family: AlgorithmFamily,
    /// The JWK's own `alg`, when it names one: the key is then good for
    /// that algorithm only.
    alg: Option<Algorithm>,
    curve: Option<EllipticCurve>,
    pub(crate) key: DecodingKey,
}

impl VerificationKey {
    /// Whether `alg` may be verified with this key: same family (so never
    /// HMAC with an RSA or EC key), the JWK's own `alg` if it has one, and
    /// for EC/EdDSA the matching curve.
    fn fits(&self, alg: Algorithm) -> bool {
        if self.family != alg.family() || self.alg.is_some_and(|a| a != alg) {
            return false;
        }
        match alg {
            Algorithm::ES256 => self.curve == Some(EllipticCurve::P256),
            Algorithm::ES384 => self.curve == Some(EllipticCurve::P384),
            Algorithm::EdDSA => self.curve == Some(EllipticCurve::Ed25519),
            _ => true,
        }
    }
}

/// The usable keys of one fetched JWK Set.
pub(crate) struct KeySet {
    keys: Vec<VerificationKey>,
    fetched_at: Instant,
}

/// The outcome of looking a token's key up in a set.
pub(crate) enum Lookup<'s> {
    Found(&'s VerificationKey),
    /// The key exists but is not for this algorithm.
    WrongAlgorithm,
    /// No key with this `kid` (or, without a `kid`, none for this algorithm).
    NotFound,
    /// No `kid`, and more than one key would do.
    Ambiguous,
}

impl KeySet {
    /// Reads a JWK Set document. Keys that cannot verify signatures (`oct`
    /// secrets, encryption keys, unknown types or curves) are skipped, not
    /// fatal: an issuer may publish them beside its signing keys.
    pub(crate) fn parse(body: &[u8], fetched_at: Instant) -> Result<Self, FetchError> {
        #[derive(serde::Deserialize)]
        struct Doc {
            keys: Vec<Value>,
        }
        let doc: Doc = serde_json::from_slice(body).map_err(|_| FetchError::NotAJwkSet)?;
        let keys = doc
            .keys
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
            .filter_map(|jwk| verification_key(&jwk))
            .take(MAX_KEYS)
            .collect();
        Ok(Self { keys, fetched_at })
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        match kid {
            Some(kid) => {
                let mut named = self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid));
                match named.clone().find(|k| k.fits(alg)) {
                    Some(key) => Lookup::Found(key),
                    None if named.next().is_some() => Lookup::WrongAlgorithm,
                    None => Lookup::NotFound,
                }
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => Lookup::Found(key),
                    (Some(_), Some(_)) => Lookup::Ambiguous,
                    (None, _) => Lookup::NotFound,
                }
            }
        }
    }
}

fn verification_key(jwk: &Jwk) -> Option<VerificationKey> {
    let common = &jwk.common;
    if common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    if common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return None;
    }
    let alg = match common.key_algorithm {
        None => None,
        Some(a) => Some(signature_algorithm(a)?),
    };
    let (family, curve) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (AlgorithmFamily::Rsa, None),
        AlgorithmParameters::EllipticCurve(p)
            if matches!(p.curve, EllipticCurve::P256 | EllipticCurve::P384) =>
        {
            (AlgorithmFamily::Ec, Some(p.curve.clone()))
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            (AlgorithmFamily::Ed, Some(p.curve.clone()))
        }
        // `oct` is a shared secret, never a key we verify with; other
        // curves and types have no algorithm we support.
        _ => return None,
    };
    if alg.is_some_and(|a| a.family() != family) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerificationKey {
        kid: common.key_id.clone(),
        family,
        alg,
        curve,
        key,
    })
}

/// The asymmetric signature algorithm a JWK's `alg` names; `None` for
/// HMAC, encryption and unknown algorithms (the key is then skipped).
fn signature_algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Why a JWKS fetch failed. Logged, never shown to callers (they see
/// [`JwtError::JwksUnavailable`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("answered HTTP {0}")]
    Status(StatusCode),
    #[error("response is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("response is not a JWK Set")]
    NotAJwkSet,
}

async fn fetch(http: &reqwest::Client, policy: &IssuerPolicy) -> Result<KeySet, FetchError> {
    let mut response = http
        .get(policy.jwks_url.clone())
        .header(header::ACCEPT, "application/json, application/jwk-set+json")
        .timeout(FETCH_TIMEOUT)
        .send()
        .await?;
    if !response.status().is_success() {
        return Err(FetchError::Status(response.status()));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
    {
        return Err(FetchError::TooLarge);
    }
    // Read chunk by chunk: a missing or lying Content-Length must not let
    // the issuer (or whoever answers for it) fill our memory.
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    KeySet::parse(&body, Instant::now())
}

/// One issuer's policy and its cached keys.
pub(crate) struct IssuerKeys {
    pub(crate) policy: IssuerPolicy,
    current: RwLock<Option<Arc<KeySet>>>,
    /// When a fetch was last started. Held across the fetch so concurrent
    /// callers wait for it instead of starting their own.
    last_fetch: Mutex<Option<Instant>>,
}

impl IssuerKeys {
    pub(crate) fn new(policy: IssuerPolicy) -> Self {
        Self {
            policy,
            current: RwLock::new(None),
            last_fetch: Mutex::new(None),
        }
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        // A panic while holding this lock cannot leave a half-written
        // `Option<Arc<_>>`, so a poisoned lock is still sound to read.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The key set to look `kid` up in: the cached one, fetched first if
    /// there is none yet or it is older than the policy's maximum age.
    pub(crate) async fn keys(
        self: &Arc<Self>,
        http: &reqwest::Client,
    ) -> Result<Arc<KeySet>, JwtError> {
        match self.current() {
            Some(set) if set.fetched_at.elapsed() < self.policy.jwks_max_age => Ok(set),
            Some(stale) => Ok(self.refetch(http).await.unwrap_or(stale)),
            None => self.refetch(http).await,
        }
    }

    /// Fetches the set again unless a fetch started less than the policy's
    /// minimum interval ago; then the cached set is returned as it is. This
    /// floor is what keeps tokens with made-up `kid`s from turning into
    /// requests to the issuer.
    pub(crate) async fn refetch(
        self: &Arc<Self>,
        http: &reqwest::Client,
    ) -> Result<Arc<KeySet>, JwtError> {
        let mut last = self.last_fetch.lock().await;
        if let Some(at) = *last
            && at.elapsed() < self.policy.refetch_min_interval
        {
            return self.current().ok_or(JwtError::JwksUnavailable);
        }
        *last = Some(Instant::now());
        // The fetch runs as its own task: if this caller goes away mid-fetch
        // (the client hung up), the fetch still completes and is cached,
        // rather than leaving nothing cached behind a floor now in force.
        let this = Arc::clone(self);
        let http = http.clone();
        let fetched = tokio::spawn(async move { this.fetch_and_store(&http).await }).await;
        drop(last);
        fetched.unwrap_or(Err(JwtError::JwksUnavailable))
    }

    async fn fetch_and_store(&self, http: &reqwest::Client) -> Result<Arc<KeySet>, JwtError> {
        match fetch(http, &self.policy).await {
            Ok(set) => {
                tracing::info!(
                    issuer = %self.policy.issuer,
                    keys = set.len(),
                    "fetched the issuer's signing keys"
                );
                let set = Arc::new(set);
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(set.clone());
                Ok(set)
            }
            Err(error) => {
                tracing::warn!(
                    issuer = %self.policy.issuer,
                    jwks_url = %self.policy.jwks_url,
                    %error,
                    "could not fetch the issuer's signing keys"
                );
                Err(JwtError::JwksUnavailable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    // A real 2048-bit RSA modulus is not needed to test selection; these
    // decode as base64url, which is all `DecodingKey::from_jwk` checks.
    const N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";
    const X: &str = "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4";
    const Y: &str = "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM";
    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn set(keys: Value) -> KeySet {
        KeySet::parse(
            json!({ "keys": keys }).to_string().as_bytes(),
            Instant::now(),
        )
        .unwrap()
    }

    fn rsa(kid: &str) -> Value {
        json!({"kty": "RSA", "kid": kid, "n": N, "e": "AQAB"})
    }

    fn found_kid(lookup: Lookup<'_>) -> Option<String> {
        match lookup {
            Lookup::Found(k) => Some(k.kid.clone().unwrap_or_default()),
            _ => None,
        }
    }

    #[test]
    fn secrets_encryption_keys_and_unknown_types_are_skipped() {
        let keys = set(json!([
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": N, "e": "AQAB"},
            {"kty": "RSA", "kid": "wrap", "key_ops": ["wrapKey"], "n": N, "e": "AQAB"},
            {"kty": "RSA", "kid": "hs", "alg": "HS256", "n": N, "e": "AQAB"},
            {"kty": "RSA", "kid": "oaep", "alg": "RSA-OAEP", "n": N, "e": "AQAB"},
            {"kty": "RSA", "kid": "es-labelled", "alg": "ES256", "n": N, "e": "AQAB"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": X, "y": Y},
            {"kty": "XYZ", "kid": "alien"},
            "not even an object",
            {"kty": "RSA", "kid": "good", "use": "sig", "alg": "RS256", "n": N, "e": "AQAB"},
        ]));
        assert_eq!(set_kids(&keys), ["good"]);
        for skipped in [
            "hmac",
            "enc",
            "wrap",
            "hs",
            "oaep",
            "es-labelled",
            "p521",
            "alien",
        ] {
            assert!(matches!(
                keys.lookup(Some(skipped), Algorithm::RS256),
                Lookup::NotFound
            ));
        }
    }

    fn set_kids(keys: &KeySet) -> Vec<String> {
        keys.keys
            .iter()
            .map(|k| k.kid.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn a_kid_selects_its_key_only_for_fitting_algorithms() {
        let keys = set(json!([
            rsa("r1"),
            {"kty": "RSA", "kid": "r2", "alg": "PS256", "n": N, "e": "AQAB"},
            {"kty": "EC", "kid": "e1", "crv": "P-256", "x": X, "y": Y},
            {"kty": "OKP", "kid": "d1", "crv": "Ed25519", "x": ED_X},
        ]));
        assert_eq!(
            found_kid(keys.lookup(Some("r1"), Algorithm::RS256)),
            Some("r1".into())
        );
        assert_eq!(
            found_kid(keys.lookup(Some("r1"), Algorithm::PS512)),
            Some("r1".into())
        );
        assert_eq!(
            found_kid(keys.lookup(Some("r2"), Algorithm::PS256)),
            Some("r2".into())
        );
        assert_eq!(
            found_kid(keys.lookup(Some("e1"), Algorithm::ES256)),
            Some("e1".into())
        );
        assert_eq!(
            found_kid(keys.lookup(Some("d1"), Algorithm::EdDSA)),
            Some("d1".into())
        );
        // The JWK's own alg wins over the token's.
        assert!(matches!(
            keys.lookup(Some("r2"), Algorithm::RS256),
            Lookup::WrongAlgorithm
        ));
        // Key type and curve must match the algorithm.
        assert!(matches!(
            keys.lookup(Some("r1"), Algorithm::ES256),
            Lookup::WrongAlgorithm
        ));
        assert!(matches!(
            keys.lookup(Some("r1"), Algorithm::HS256),
            Lookup::WrongAlgorithm
        ));
        assert!(matches!(
            keys.lookup(Some("e1"), Algorithm::ES384),
            Lookup::WrongAlgorithm
        ));
        assert!(matches!(
            keys.lookup(Some("e1"), Algorithm::EdDSA),
            Lookup::WrongAlgorithm
        ));
        assert!(matches!(
            keys.lookup(Some("nope"), Algorithm::RS256),
            Lookup::NotFound
        ));
    }

    #[test]
    fn without_a_kid_exactly_one_fitting_key_is_required() {
        let keys = set(json!([
            rsa("r1"),
            {"kty": "EC", "kid": "e1", "crv": "P-256", "x": X, "y": Y},
        ]));
        assert_eq!(
            found_kid(keys.lookup(None, Algorithm::ES256)),
            Some("e1".into())
        );
        assert_eq!(
            found_kid(keys.lookup(None, Algorithm::RS256)),
            Some("r1".into())
        );
        assert!(matches!(
            keys.lookup(None, Algorithm::EdDSA),
            Lookup::NotFound
        ));
        let two = set(json!([rsa("r1"), rsa("r2")]));
        assert!(matches!(
            two.lookup(None, Algorithm::RS256),
            Lookup::Ambiguous
        ));
    }

    #[test]
    fn a_document_without_keys_is_not_a_jwk_set() {
        for body in [&b"{}"[..], b"[]", b"<html>", b"{\"keys\": {}}"] {
            assert!(matches!(
                KeySet::parse(body, Instant::now()),
                Err(FetchError::NotAJwkSet)
            ));
        }
        assert_eq!(set(json!([])).len(), 0);
    }

    #[test]
    fn at_most_max_keys_are_kept() {
        let many: Vec<Value> = (0..MAX_KEYS + 10).map(|i| rsa(&format!("k{i}"))).collect();
        assert_eq!(set(Value::Array(many)).len(), MAX_KEYS);
    }
}
