//! The guarded client: URL checks up front, address checks inside DNS
//! resolution, and bounded responses.

use std::{
    fmt,
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
};

use bytes::{Bytes, BytesMut};
use reqwest::{
    Method, StatusCode, Url,
    dns::{Addrs, Name, Resolve, Resolving},
    header::{self, HeaderMap, HeaderName, HeaderValue},
};

use crate::{
    EgressError, EgressPolicy, PolicyError, Refusal, StreamLimits, forbidden_range,
    policy::Compiled,
};

/// Resolves a host name to addresses. The system resolver in production; a
/// scripted one in tests, to show that the addresses checked are the ones
/// connected to.
pub(crate) type Lookup = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> + Send + Sync,
>;

fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|addr| addr.ip()).collect())
        })
    })
}

/// The HTTP client every call to a tenant-, catalog- or connection-supplied
/// URL goes through. Cheap to clone (the connection pool is shared); build
/// one per policy at start and keep it.
#[derive(Clone)]
pub struct EgressClient {
    http: reqwest::Client,
    policy: Arc<Compiled>,
    lookup: Lookup,
}

impl fmt::Debug for EgressClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressClient")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl EgressClient {
    /// A client enforcing `policy`; fails when the policy is malformed.
    pub fn new(policy: EgressPolicy) -> Result<Self, PolicyError> {
        Self::with_lookup(&policy, system_lookup())
    }

    pub(crate) fn with_lookup(policy: &EgressPolicy, lookup: Lookup) -> Result<Self, PolicyError> {
        let compiled = Arc::new(Compiled::new(policy)?);
        let user_agent =
            HeaderValue::from_str(&policy.user_agent).map_err(|_| PolicyError::UserAgent)?;
        let resolver = GuardedResolver {
            policy: Arc::clone(&compiled),
            lookup: Arc::clone(&lookup),
        };
        let mut builder = reqwest::Client::builder();
        for path in &policy.ca_files {
            let fail = |reason: String| PolicyError::CaFile {
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| fail(e.without_url().to_string()))?;
            if roots.is_empty() {
                return Err(fail("holds no PEM certificate".into()));
            }
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
        }
        let http = builder
            // A 3xx goes back to the caller: following it would be a second,
            // unchecked request, with the first one's credentials.
            .redirect(reqwest::redirect::Policy::none())
            // An HTTP(S)_PROXY from the environment would resolve and
            // connect on our behalf, past the resolver's checks.
            .no_proxy()
            .connect_timeout(compiled.connect_timeout)
            .user_agent(user_agent)
            .dns_resolver(Arc::new(resolver))
            .build()
            .map_err(|err| PolicyError::Client(err.without_url().to_string()))?;
        Ok(Self {
            http,
            policy: compiled,
            lookup,
        })
    }

    /// Checks that `url` may be called: its scheme, that it has no
    /// userinfo, and every address its host resolves to now (or the
    /// address it names). For validating a URL when it is configured (a
    /// tenant's custom provider, a connection input), so an internal
    /// address is refused then rather than only when used. [`send`](Self::send)
    /// checks again, against the addresses it actually connects to.
    pub async fn check_url(&self, url: &Url) -> Result<(), EgressError> {
        let host = host_label(url);
        if self.check_syntax(url, &host)?.is_some() {
            return Ok(());
        }
        // A name, as the literal case returned above.
        let name = url.host_str().unwrap_or_default();
        if self.policy.host_allowed(name) {
            return Ok(());
        }
        let limit = self.policy.timeout;
        let addrs = match tokio::time::timeout(limit, (self.lookup)(name.to_owned())).await {
            Err(_) => return Err(EgressError::Timeout { host, limit }),
            Ok(Err(err)) => {
                return Err(EgressError::Unreachable {
                    host,
                    detail: format!("dns error: {err}"),
                });
            }
            Ok(Ok(addrs)) => addrs,
        };
        if addrs.is_empty() {
            return Err(EgressError::Unreachable {
                host,
                detail: "dns error: no addresses".to_owned(),
            });
        }
        check_addrs(&self.policy, &addrs).map_err(|reason| self.refusal(&host, reason))
    }

    /// Sends `request` and reads the whole response, within the policy's
    /// time and size bounds. A 3xx is returned as it came (status and
    /// `Location`), never followed; any other status, 4xx and 5xx included,
    /// is a response too, not an error.
    pub async fn send(
        &self,
        request: impl Into<EgressRequest>,
    ) -> Result<EgressResponse, EgressError> {
        let request = request.into();
        let host = host_label(request.url());
        let limit = self.policy.timeout;
        match tokio::time::timeout(limit, self.read_whole(request)).await {
            Ok(result) => result,
            Err(_) => Err(EgressError::Timeout { host, limit }),
        }
    }

    /// The streamed exchange (every check of [`Self::send_streaming`]),
    /// its body collected within the size limit.
    async fn read_whole(&self, request: EgressRequest) -> Result<EgressResponse, EgressError> {
        let limits = StreamLimits {
            head_timeout: self.policy.timeout,
            idle_timeout: self.policy.timeout,
            max_body_bytes: self.policy.max_response_bytes,
        };
        let mut response = self.send_streaming(request, limits).await?;
        // Reserve what was declared (already bounded by the limit), so a
        // lying Content-Length costs at most one limit's worth of memory.
        let declared = response.content_length.unwrap_or(0);
        let mut body = BytesMut::with_capacity(usize::try_from(declared).unwrap_or(0));
        while let Some(chunk) = response.chunk().await? {
            body.extend_from_slice(&chunk);
        }
        Ok(EgressResponse {
            status: response.status,
            headers: std::mem::take(&mut response.headers),
            body: body.freeze(),
        })
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(crate) fn connect_timeout(&self) -> std::time::Duration {
        self.policy.connect_timeout
    }

    /// The checks that need no DNS: scheme, userinfo, host, and the address
    /// when the host is an IP literal (returned).
    pub(crate) fn check_syntax(
        &self,
        url: &Url,
        host: &str,
    ) -> Result<Option<IpAddr>, EgressError> {
        let refuse = |reason| Err(self.refusal(host, reason));
        let scheme = url.scheme();
        if scheme != "https" && scheme != "http" {
            return refuse(Refusal::Scheme(scheme.to_owned()));
        }
        let Some(name) = url.host_str() else {
            return refuse(Refusal::NoHost);
        };
        // The url crate has already turned `127.1`, `0x7f.0.0.1`,
        // `2130706433` and `0177.0.0.1` into `127.0.0.1`, so a literal
        // parses here whatever its spelling.
        let literal = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name)
            .parse::<IpAddr>()
            .ok();
        if scheme == "http" {
            let allowed = match literal {
                Some(addr) => self.policy.addr_allowed(addr),
                None => self.policy.host_allowed(name),
            };
            if !allowed {
                return refuse(Refusal::PlainHttp);
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return refuse(Refusal::Userinfo);
        }
        if let Some(addr) = literal {
            check_addrs(&self.policy, &[addr]).map_err(|reason| self.refusal(host, reason))?;
        }
        Ok(literal)
    }

    fn refusal(&self, host: &str, reason: Refusal) -> EgressError {
        tracing::debug!(host, %reason, "egress destination refused");
        EgressError::refused(host, reason)
    }
}

/// The host as errors name it: never the path, query or userinfo.
pub(crate) fn host_label(url: &Url) -> String {
    url.host_str().unwrap_or("(no host)").to_owned()
}

/// Refuses the first address that is forbidden and not allow-listed.
fn check_addrs(policy: &Compiled, addrs: &[IpAddr]) -> Result<(), Refusal> {
    for &addr in addrs {
        if policy.addr_allowed(addr) {
            continue;
        }
        if let Some(range) = forbidden_range(addr) {
            return Err(Refusal::Address { addr, range });
        }
    }
    Ok(())
}

/// reqwest's DNS hook: resolves once, refuses the whole name if any of its
/// addresses is forbidden (a name pointing both outside and inside is not a
/// provider's), and hands the connector exactly the addresses it checked.
/// There is no second lookup for a rebinding answer to slip into.
struct GuardedResolver {
    policy: Arc<Compiled>,
    lookup: Lookup,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        // Looked up as written: dropping a trailing dot would let search
        // domains change the answer. Only the allow-list compares normalised.
        let host = name.as_str().to_owned();
        let lookup = (self.lookup)(host.clone());
        Box::pin(async move {
            let addrs = lookup.await?;
            if addrs.is_empty() {
                return Err(io::Error::new(io::ErrorKind::NotFound, "no addresses").into());
            }
            if !policy.host_allowed(&host) {
                check_addrs(&policy, &addrs).inspect_err(|reason| {
                    tracing::debug!(host, %reason, "egress destination refused at connect");
                })?;
            }
            // Port 0 is replaced by the URL's port by the connector.
            let addrs: Addrs = Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// An outbound request: method, URL, headers and body. Build it with the
/// constructors and setters, or convert a `reqwest::Request`.
pub struct EgressRequest {
    inner: reqwest::Request,
}

impl EgressRequest {
    /// A request with no headers and no body.
    pub fn new(method: Method, url: Url) -> Self {
        Self {
            inner: reqwest::Request::new(method, url),
        }
    }

    /// A `GET`.
    pub fn get(url: Url) -> Self {
        Self::new(Method::GET, url)
    }

    /// A `POST`.
    pub fn post(url: Url) -> Self {
        Self::new(Method::POST, url)
    }

    /// Sets a header, replacing any value it had. Mark secret values with
    /// [`HeaderValue::set_sensitive`] so they never show in debug output.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.inner.headers_mut().insert(name, value);
        self
    }

    /// The headers, for appending or removing.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        self.inner.headers_mut()
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<reqwest::Body>) -> Self {
        *self.inner.body_mut() = Some(body.into());
        self
    }

    /// Sets an `application/x-www-form-urlencoded` body from `pairs`.
    pub fn form<K, V>(self, pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        )
        .body(body)
    }

    /// Sets an `application/json` body.
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Result<Self, serde_json::Error> {
        let body = serde_json::to_vec(value)?;
        Ok(self
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .body(body))
    }

    /// The method.
    pub fn method(&self) -> &Method {
        self.inner.method()
    }

    /// The URL.
    pub fn url(&self) -> &Url {
        self.inner.url()
    }

    pub(crate) fn into_inner(self) -> reqwest::Request {
        self.inner
    }
}

impl From<reqwest::Request> for EgressRequest {
    fn from(inner: reqwest::Request) -> Self {
        Self { inner }
    }
}

/// Only the method and host: the path's query, headers and body may hold
/// secrets.
impl fmt::Debug for EgressRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressRequest")
            .field("method", self.method())
            .field("host", &self.url().host_str())
            .finish_non_exhaustive()
    }
}

/// A complete response, its body read to the end within the size limit.
pub struct EgressResponse {
    /// The status, 3xx included (redirects are not followed).
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The whole body, at most `max_response_bytes` long.
    pub body: Bytes,
}

/// Status and body length only: headers and body may hold tokens.
impl fmt::Debug for EgressResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressResponse")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}
