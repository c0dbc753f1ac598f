//! Who may call which RPC: a tower layer over tonic servers that reads the
//! caller's certificate identity and checks it against an allow-list.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, PoisonError, RwLock},
    task::{Context, Poll},
};

use locksmith_errors::{ApiError, ErrorCode};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

use crate::{Identity, ServiceName};

/// One kind of caller an RPC admits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// Exactly this service.
    Service(ServiceName),
    /// Any suite service.
    AnyService,
    /// Any tenant workload (the handler must confine it to its tenant).
    AnyWorkload,
    /// Any identity the suite CA issued.
    AnyIdentity,
}

impl Allowed {
    fn admits(&self, id: &Identity) -> bool {
        match (self, id) {
            (Allowed::Service(want), Identity::Service(got)) => want == got,
            (Allowed::AnyService, Identity::Service(_)) => true,
            (Allowed::AnyWorkload, Identity::Workload { .. }) => true,
            (Allowed::AnyIdentity, _) => true,
            _ => false,
        }
    }
}

/// Per-RPC allow-lists, deny by default.
#[derive(Clone, Debug, Default)]
pub struct AllowList {
    methods: HashMap<String, Vec<Allowed>>,
    services: HashMap<String, Vec<Allowed>>,
}

impl AllowList {
    /// An empty list: everything is denied.
    pub fn new() -> Self {
        Self::default()
    }

    /// Admits `who` to `path`: a full method (`/pkg.Service/Method`) or every
    /// method of a service (`/pkg.Service/*`).
    pub fn allow(mut self, path: &str, who: impl IntoIterator<Item = Allowed>) -> Self {
        let (map, key) = match path.strip_suffix("/*") {
            Some(service) => (&mut self.services, service.to_owned()),
            None => (&mut self.methods, path.to_owned()),
        };
        map.entry(key).or_default().extend(who);
        self
    }

    /// Whether `id` may call `path`.
    pub fn permits(&self, path: &str, id: &Identity) -> bool {
        let service = path.rsplit_once('/').map_or(path, |(service, _)| service);
        self.methods
            .get(path)
            .into_iter()
            .chain(self.services.get(service))
            .flatten()
            .any(|rule| rule.admits(id))
    }
}

/// The authenticated caller, in the request's extensions for handlers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller(pub Identity);

impl Caller {
    /// The caller of a tonic request. An error (INTERNAL) means the server
    /// was built without [`MtlsAuthLayer`]; handlers must not guess then.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<&Identity, tonic::Status> {
        request
            .extensions()
            .get::<Caller>()
            .map(|caller| &caller.0)
            .ok_or_else(|| tonic::Status::internal("caller identity unavailable"))
    }
}

/// `Server::builder().layer(MtlsAuthLayer::new(list))`.
#[derive(Clone, Debug)]
pub struct MtlsAuthLayer {
    allow: Arc<AllowList>,
    identities: Arc<IdentityCache>,
}

impl MtlsAuthLayer {
    /// Enforces `allow` on every call.
    pub fn new(allow: AllowList) -> Self {
        Self {
            allow: Arc::new(allow),
            identities: Arc::new(IdentityCache::default()),
        }
    }
}

/// Identities already read from certificates, by the certificate's exact
/// DER bytes: every call on a connection presents the same certificate,
/// and parsing it (X.509, then the SAN) cost more than the rest of this
/// layer. Keyed by the whole DER, so a hit is the very certificate the
/// handshake verified; bounded, and emptied when full.
#[derive(Debug, Default)]
struct IdentityCache {
    by_der: RwLock<HashMap<Vec<u8>, Identity>>,
}

/// Distinct certificates remembered (suite services and workloads).
const IDENTITY_CACHE_ENTRIES: usize = 4096;

impl IdentityCache {
    fn identity(&self, der: &[u8]) -> Result<Identity, crate::TlsError> {
        if let Some(id) = self
            .by_der
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(der)
        {
            return Ok(id.clone());
        }
        let id = Identity::from_cert_der(der)?;
        let mut map = self.by_der.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= IDENTITY_CACHE_ENTRIES {
            map.clear();
        }
        map.insert(der.to_vec(), id.clone());
        Ok(id)
    }
}

impl<S> Layer<S> for MtlsAuthLayer {
    type Service = MtlsAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MtlsAuthService {
            inner,
            allow: Arc::clone(&self.allow),
            identities: Arc::clone(&self.identities),
        }
    }
}

/// The service made by [`MtlsAuthLayer`].
#[derive(Clone, Debug)]
pub struct MtlsAuthService<S> {
    inner: S,
    allow: Arc<AllowList>,
    identities: Arc<IdentityCache>,
}

/// The caller's identity from its TLS leaf certificate. tonic's server puts
/// `TlsConnectInfo<TcpConnectInfo>` into every request's extensions before
/// any `Server::builder().layer(..)` runs; the chain in it has already been
/// verified against the suite CA by the handshake (if one was presented).
fn caller_identity<B>(
    request: &http::Request<B>,
    identities: &IdentityCache,
) -> Result<Identity, ApiError> {
    let unauthenticated = |detail: String| ApiError::new(ErrorCode::Unauthenticated, detail);
    let certs = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
        .filter(|certs| !certs.is_empty())
        .ok_or_else(|| {
            unauthenticated("a client certificate issued by the suite CA is required".into())
        })?;
    let leaf = certs
        .first()
        .ok_or_else(|| unauthenticated("empty client certificate chain".into()))?;
    identities
        .identity(leaf.as_ref())
        .map_err(|e| unauthenticated(format!("client certificate has no Locksmith identity: {e}")))
}

/// A caller-chosen `:path` as it may appear in a log line (and so in a span
/// event): escaped and cut to a bounded length.
fn loggable(path: &str) -> String {
    const MAX_CHARS: usize = 128;
    let mut out: String = path
        .chars()
        .take(MAX_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if path.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<http::Request<B>> for MtlsAuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        // Refusals are ApiErrors so they carry `google.rpc.ErrorInfo` (domain
        // `locksmith`, reason PERMISSION_DENIED / UNAUTHENTICATED) like every
        // other error of the suite. The detail names the caller and the
        // method: it is read by the calling service's operator, who needs to
        // know which rule to add.
        let refusal = match caller_identity(&request, &self.identities) {
            Ok(id) if self.allow.permits(&path, &id) => {
                request.extensions_mut().insert(Caller(id));
                return Box::pin(self.inner.call(request));
            }
            Ok(id) => {
                tracing::warn!(identity = %id, path = %loggable(&path), "call refused: not on the allow-list");
                ApiError::new(
                    ErrorCode::PermissionDenied,
                    format!("{id} may not call {path}"),
                )
            }
            Err(refusal) => {
                tracing::warn!(path = %loggable(&path), reason = %refusal.detail, "call refused: unauthenticated");
                refusal
            }
        };
        let status = tonic::Status::from(refusal);
        Box::pin(std::future::ready(Ok(status.into_http())))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn identities_are_read_from_each_certificate_once_and_never_mixed_up() {
        let now = time::OffsetDateTime::now_utc();
        let ca = crate::CertificateAuthority::generate("authz-test", now).unwrap();
        let der = |id: &Identity| {
            let issued = ca.issue(id, now, time::Duration::days(1)).unwrap();
            crate::cert::pem_certs(&issued.cert_pem).unwrap().remove(0)
        };
        let edge = Identity::Service(ServiceName::Edge);
        let workload = Identity::workload("acme", "billing").unwrap();
        let (edge_der, workload_der) = (der(&edge), der(&workload));
        let cache = IdentityCache::default();
        for _ in 0..2 {
            assert_eq!(cache.identity(edge_der.as_ref()).unwrap(), edge);
            assert_eq!(cache.identity(workload_der.as_ref()).unwrap(), workload);
            assert!(cache.identity(b"not a certificate").is_err());
        }
        assert_eq!(
            cache.by_der.read().unwrap().len(),
            2,
            "failures are not kept"
        );
    }

    #[test]
    fn deny_by_default_exact_and_wildcard_rules() {
        let edge = Identity::Service(ServiceName::Edge);
        let proxy = Identity::Service(ServiceName::Proxy);
        let workload = Identity::workload("acme", "billing").unwrap();
        let list = AllowList::new()
            .allow("/a.B/Write", [Allowed::Service(ServiceName::Edge)])
            .allow("/a.B/Read", [Allowed::AnyService, Allowed::AnyWorkload])
            .allow("/grpc.health.v1.Health/*", [Allowed::AnyIdentity]);
        assert!(list.permits("/a.B/Write", &edge));
        assert!(!list.permits("/a.B/Write", &proxy));
        assert!(!list.permits("/a.B/Write", &workload));
        assert!(list.permits("/a.B/Read", &proxy) && list.permits("/a.B/Read", &workload));
        assert!(list.permits("/grpc.health.v1.Health/Check", &workload));
        assert!(
            !list.permits("/a.B/Other", &edge),
            "unlisted methods are denied"
        );
        assert!(!list.permits("/a.B/Write/", &edge));
        assert!(!AllowList::new().permits("/a.B/Read", &edge));
        // A wildcard covers one service, not its prefix-siblings.
        assert!(!list.permits("/grpc.health.v1.HealthX/Check", &edge));
        // Exact and wildcard rules add up.
        let both = AllowList::new()
            .allow("/a.B/*", [Allowed::Service(ServiceName::Edge)])
            .allow("/a.B/Read", [Allowed::Service(ServiceName::Proxy)]);
        assert!(both.permits("/a.B/Read", &proxy) && both.permits("/a.B/Read", &edge));
        assert!(!both.permits("/a.B/Write", &proxy) && both.permits("/a.B/Write", &edge));
    }

    /// Without TLS connect info (a server built without TLS, or a test
    /// harness) every call is refused: the layer fails closed.
    #[tokio::test]
    async fn without_tls_every_call_is_unauthenticated() {
        use tower::ServiceExt;
        let inner = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::empty()))
        });
        let list = AllowList::new().allow("/a.B/*", [Allowed::AnyIdentity]);
        let svc = MtlsAuthLayer::new(list).layer(inner);
        let request = http::Request::builder().uri("/a.B/C").body(()).unwrap();
        let response = svc.oneshot(request).await.unwrap();
        let status = tonic::Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert_eq!(
            status.message(),
            "a client certificate issued by the suite CA is required"
        );
        assert_error_info(&status, "UNAUTHENTICATED");
    }

    /// The refusal carries `google.rpc.ErrorInfo` like every other Locksmith
    /// error, so callers tell it apart by reason, not by text.
    pub(crate) fn assert_error_info(status: &tonic::Status, reason: &str) {
        use tonic_types::StatusExt;
        let details = status.get_error_details();
        let info = details.error_info();
        assert_eq!(
            info.map(|i| (i.reason.as_str(), i.domain.as_str())),
            Some((reason, "locksmith")),
            "{status:?}"
        );
    }

    #[test]
    fn handlers_read_the_caller() {
        let mut request = tonic::Request::new(());
        assert_eq!(
            Caller::of(&request).unwrap_err().code(),
            tonic::Code::Internal
        );
        let edge = Identity::Service(ServiceName::Edge);
        request.extensions_mut().insert(Caller(edge.clone()));
        assert_eq!(Caller::of(&request).unwrap(), &edge);
    }
}
