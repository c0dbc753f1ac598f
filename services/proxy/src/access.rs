//! Access to a connection: its credential and how its API takes it, from
//! the broker's GetAccessToken, cached per connection.
//!
//! A cached credential is used until shortly before it expires
//! (`expiry_margin`), and never longer than `max_age` after it was fetched,
//! which bounds how long a revoked API key or a deleted connection keeps
//! working through this replica. A 401 from the API drops it: the broker is
//! asked for a credential newer than the refused one (it refreshes, or
//! answers the one someone else refreshed meanwhile). Fetches are single
//! flight per connection. The broker announces connections whose records
//! change (stored, refreshed, revoked, deleted) and [`crate::changes`]
//! drops their credentials at once; `max_age` bounds the rest (a change
//! made through another broker replica, or while the announcements were
//! cut off).

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use http::{HeaderMap, HeaderName, HeaderValue};
use locksmith_auth::Principal;
use locksmith_proto::broker::v1::{
    self as pb, o_auth_broker_service_client::OAuthBrokerServiceClient,
};
use locksmith_tls::TlsMaterial;
use reqwest::Url;
use secrecy::SecretString;
use time::OffsetDateTime;
use tonic::transport::{Channel, Endpoint};

use crate::{error::ProxyError, flight::Slots, headers::Placement};

/// A connection's credential and where it goes.
pub struct Access {
    /// The credential (an access token, an API key, `user:password`).
    pub credential: SecretString,
    /// The connection record's version it was read from.
    pub version: u64,
    /// When the credential expires, if it does.
    pub expires_at: Option<OffsetDateTime>,
    /// The API's base URL.
    pub base_url: Url,
    /// Headers the API expects on every call.
    pub headers: HeaderMap,
    /// Where the credential goes.
    pub placement: Placement,
    /// When it was fetched.
    pub fetched_at: OffsetDateTime,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("version", &self.version)
            .field("expires_at", &self.expires_at)
            .field("base_url", &self.base_url.as_str())
            .field("placement", &self.placement)
            .finish_non_exhaustive()
    }
}

/// `[cache]`: how long credentials are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Longest a credential is used after it was fetched.
    pub max_age: Duration,
    /// A credential is dropped this long before it expires.
    pub expiry_margin: Duration,
    /// Most connections cached.
    pub max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(10),
            expiry_margin: Duration::from_secs(30),
            max_entries: 100_000,
        }
    }
}

impl Access {
    /// Whether the cached credential may still be used at `now`.
    pub fn usable_at(&self, now: OffsetDateTime, config: &CacheConfig) -> bool {
        let young = now < self.fetched_at + config.max_age;
        let fresh = self
            .expires_at
            .is_none_or(|expires| now + config.expiry_margin < expires);
        young && fresh
    }
}

/// Where access comes from: the broker, or a scripted source in tests.
pub trait AccessSource: Send + Sync {
    /// The connection's access for `principal`; `refused_version` (0: none)
    /// names a credential the API just refused.
    fn fetch<'a>(
        &'a self,
        principal: &'a Principal,
        connection: &'a str,
        refused_version: u64,
        now: OffsetDateTime,
    ) -> Pin<Box<dyn Future<Output = Result<Access, ProxyError>> + Send + 'a>>;
}

/// The per-connection cache.
pub struct AccessCache {
    source: Arc<dyn AccessSource>,
    config: CacheConfig,
    slots: Arc<Slots<String, Access>>,
}

/// Drops cached credentials: what [`crate::changes`] holds of the cache.
#[derive(Clone)]
pub struct Invalidator {
    slots: Arc<Slots<String, Access>>,
}

impl Invalidator {
    /// Drops the credential of `connection` (a resource name).
    pub fn forget(&self, connection: &str) {
        self.slots.invalidate(connection);
    }

    /// Drops every cached credential.
    pub fn forget_all(&self) {
        self.slots.invalidate_all();
    }
}

impl AccessCache {
    /// A cache over `source`.
    pub fn new(source: Arc<dyn AccessSource>, config: CacheConfig) -> Self {
        Self {
            source,
            config,
            slots: Arc::new(Slots::new(config.max_entries)),
        }
    }

    /// A handle that drops cached credentials.
    pub fn invalidator(&self) -> Invalidator {
        Invalidator {
            slots: Arc::clone(&self.slots),
        }
    }

    /// A usable credential for `connection` at `now`.
    pub async fn get(
        &self,
        principal: &Principal,
        connection: &str,
        now: OffsetDateTime,
    ) -> Result<Arc<Access>, ProxyError> {
        let config = self.config;
        self.slots
            .slot(connection)
            .get_or_refill(
                |a| a.usable_at(now, &config),
                || self.source.fetch(principal, connection, 0, now),
            )
            .await
    }

    /// After the API refused `refused` (a 401): a newer credential, from the
    /// broker's refresh or from whoever got one meanwhile.
    pub async fn after_refusal(
        &self,
        principal: &Principal,
        connection: &str,
        refused: &Access,
        now: OffsetDateTime,
    ) -> Result<Arc<Access>, ProxyError> {
        let config = self.config;
        let version = refused.version;
        let slot = self.slots.slot(connection);
        slot.get_or_refill(
            |a| a.version > version && a.usable_at(now, &config),
            || self.source.fetch(principal, connection, version, now),
        )
        .await
    }
}

/// The broker as the source of access.
#[derive(Clone)]
pub struct BrokerSource {
    client: OAuthBrokerServiceClient<Channel>,
}

impl BrokerSource {
    /// A client of the broker at `url`, verified as `server_name`, with the
    /// proxy's certificate; connects on first use.
    pub fn connect_lazy(
        url: &str,
        server_name: &str,
        tls: &TlsMaterial,
    ) -> Result<Self, ProxyError> {
        let channel = Endpoint::from_shared(url.to_owned())
            .map_err(|e| ProxyError::Internal(format!("broker URL: {e}")))?
            .tls_config(tls.client_tls(server_name))
            .map_err(|e| ProxyError::Internal(format!("broker TLS: {e}")))?
            .connect_lazy();
        Ok(Self {
            client: OAuthBrokerServiceClient::new(channel),
        })
    }

    /// The broker's client (for [`crate::changes`]).
    pub fn client(&self) -> OAuthBrokerServiceClient<Channel> {
        self.client.clone()
    }
}

impl AccessSource for BrokerSource {
    fn fetch<'a>(
        &'a self,
        principal: &'a Principal,
        connection: &'a str,
        refused_version: u64,
        now: OffsetDateTime,
    ) -> Pin<Box<dyn Future<Output = Result<Access, ProxyError>> + Send + 'a>> {
        Box::pin(async move {
            let mut request = tonic::Request::new(pb::GetAccessTokenRequest {
                name: connection.to_owned(),
                refused_version,
            });
            locksmith_auth::forward(&mut request, principal);
            let answer = self
                .client
                .clone()
                .get_access_token(request)
                .await
                .map_err(|status| ProxyError::from_peer("the broker", &status))?
                .into_inner();
            access_from(answer, now)
        })
    }
}

/// The broker's answer, checked.
pub fn access_from(
    answer: pb::GetAccessTokenResponse,
    now: OffsetDateTime,
) -> Result<Access, ProxyError> {
    let bad = |what: &str| ProxyError::Internal(format!("the broker answered {what}"));
    let Some(api) = answer.api else {
        return Err(ProxyError::Precondition(
            "the connection's integration declares no API to call".into(),
        ));
    };
    let base_url =
        Url::parse(&api.base_url).map_err(|_| bad("an API base URL that does not parse"))?;
    let mut headers = HeaderMap::new();
    for h in api.headers {
        let name =
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad("a bad header name"))?;
        let value = HeaderValue::from_str(&h.value).map_err(|_| bad("a bad header value"))?;
        headers.append(name, value);
    }
    use pb::CredentialLocation as L;
    let placement = match L::try_from(api.credential_location) {
        Ok(L::Bearer) => Placement::Bearer,
        Ok(L::Basic) => Placement::Basic,
        Ok(L::Header) => Placement::Header {
            name: HeaderName::from_bytes(api.credential_name.as_bytes())
                .map_err(|_| bad("a bad credential header"))?,
            prefix: api.credential_prefix,
        },
        Ok(L::Query) if !api.credential_name.is_empty() => Placement::Query {
            name: api.credential_name,
        },
        _ => return Err(bad("no credential location")),
    };
    let expires_at = match answer.expire_time {
        Some(t) => Some(
            OffsetDateTime::from_unix_timestamp(t.seconds)
                .map_err(|_| bad("an expiry out of range"))?,
        ),
        None => None,
    };
    Ok(Access {
        credential: SecretString::from(answer.credential),
        version: answer.version,
        expires_at,
        base_url,
        headers,
        placement,
        fetched_at: now,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    };

    use super::*;

    /// A source that counts fetches and answers version = fetch count.
    struct Counting {
        fetches: AtomicU64,
        refused: Mutex<Vec<u64>>,
        expires_in: Option<time::Duration>,
    }

    impl AccessSource for Counting {
        fn fetch<'a>(
            &'a self,
            _: &'a Principal,
            _: &'a str,
            refused_version: u64,
            now: OffsetDateTime,
        ) -> Pin<Box<dyn Future<Output = Result<Access, ProxyError>> + Send + 'a>> {
            Box::pin(async move {
                let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
                self.refused.lock().unwrap().push(refused_version);
                Ok(Access {
                    credential: SecretString::from(format!("t{n}")),
                    version: n,
                    expires_at: self.expires_in.map(|d| now + d),
                    base_url: Url::parse("https://api.example").unwrap(),
                    headers: HeaderMap::new(),
                    placement: Placement::Bearer,
                    fetched_at: now,
                })
            })
        }
    }

    fn cache(expires_in: Option<time::Duration>) -> (Arc<Counting>, AccessCache) {
        let source = Arc::new(Counting {
            fetches: AtomicU64::new(0),
            refused: Mutex::new(Vec::new()),
            expires_in,
        });
        let cache = AccessCache::new(source.clone(), CacheConfig::default());
        (source, cache)
    }

    fn who() -> Principal {
        Principal::Operator {
            subject: "t".into(),
        }
    }

    #[tokio::test]
    async fn a_credential_is_reused_until_its_expiry_margin_or_max_age() {
        let (source, cache) = cache(Some(time::Duration::minutes(5)));
        let t0 = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let a = cache.get(&who(), "c", t0).await.unwrap();
        let b = cache
            .get(&who(), "c", t0 + time::Duration::seconds(9))
            .await
            .unwrap();
        assert_eq!((a.version, b.version), (1, 1));
        // max_age (10 s) passed: fetched again.
        let c = cache
            .get(&who(), "c", t0 + time::Duration::seconds(11))
            .await
            .unwrap();
        assert_eq!(c.version, 2);
        // Inside the expiry margin (30 s before expiry): fetched again.
        let (_, cache) = (source, cache);
        let (source2, short) = self::cache(Some(time::Duration::seconds(40)));
        short.get(&who(), "c", t0).await.unwrap();
        short
            .get(&who(), "c", t0 + time::Duration::seconds(11))
            .await
            .unwrap();
        assert_eq!(source2.fetches.load(Ordering::SeqCst), 2);
        drop(cache);
    }

    #[tokio::test]
    async fn a_refusal_asks_for_a_newer_credential_once() {
        let (source, cache) = cache(None);
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let old = cache.get(&who(), "c", now).await.unwrap();
        let newer = cache.after_refusal(&who(), "c", &old, now).await.unwrap();
        assert_eq!(newer.version, 2);
        // Another caller refused the same old credential: it gets the newer
        // one without a second fetch.
        let again = cache.after_refusal(&who(), "c", &old, now).await.unwrap();
        assert_eq!(again.version, 2);
        assert_eq!(*source.refused.lock().unwrap(), vec![0, 1]);
    }

    #[test]
    fn the_brokers_answer_is_checked() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let answer = |location: pb::CredentialLocation, name: &str| pb::GetAccessTokenResponse {
            credential: "k".into(),
            expire_time: None,
            version: 3,
            api: Some(pb::ApiEndpoint {
                base_url: "https://api.example/v1".into(),
                headers: vec![pb::ApiHeader {
                    name: "notion-version".into(),
                    value: "2022-06-28".into(),
                }],
                credential_location: location.into(),
                credential_name: name.into(),
                credential_prefix: "Token ".into(),
            }),
        };
        let a = access_from(answer(pb::CredentialLocation::Header, "authorization"), now).unwrap();
        assert_eq!(
            a.placement,
            Placement::Header {
                name: HeaderName::from_static("authorization"),
                prefix: "Token ".into()
            }
        );
        assert_eq!(a.headers["notion-version"], "2022-06-28");
        assert!(access_from(answer(pb::CredentialLocation::Query, ""), now).is_err());
        assert!(access_from(answer(pb::CredentialLocation::Unspecified, ""), now).is_err());
        let debug = format!("{a:?}");
        assert!(!debug.contains("\"k\""), "{debug}");
    }
}
