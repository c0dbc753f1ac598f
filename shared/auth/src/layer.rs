//! The server side: one tower layer, under the mTLS allow-list layer, that
//! decides the principal of every call and hands it to handlers.
//!
//! - A suite service's certificate: the forwarded principal if one is sent
//!   (refused as UNAUTHENTICATED if malformed), else the service itself.
//! - A tenant workload's certificate: always the workload; a principal it
//!   sends is ignored, so it can never speak for another tenant or an operator.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, PoisonError, RwLock},
    task::{Context, Poll},
};

use locksmith_domain::TenantId;
use locksmith_errors::{ApiError, ErrorCode};
use locksmith_tls::{Caller, Identity};
use tower::{Layer, Service};

use crate::{PRINCIPAL_HEADER, Principal};

/// `Server::builder().layer(MtlsAuthLayer::new(..)).layer(PrincipalLayer::default())`:
/// must run after the mTLS layer, which puts the [`Caller`] in place.
#[derive(Clone, Debug, Default)]
pub struct PrincipalLayer {
    decoded: Arc<DecodedPrincipals>,
}

impl<S> Layer<S> for PrincipalLayer {
    type Service = PrincipalService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PrincipalService {
            inner,
            decoded: Arc::clone(&self.decoded),
        }
    }
}

/// The service made by [`PrincipalLayer`].
#[derive(Clone, Debug)]
pub struct PrincipalService<S> {
    inner: S,
    decoded: Arc<DecodedPrincipals>,
}

/// Forwarded principals already decoded, by their exact header bytes: the
/// edge forwards the same few principals over and over, and decoding one
/// (base64, then JSON) was a visible share of a proxied call. A hit is
/// the very text a suite service sent; bounded, and emptied when full.
#[derive(Debug, Default)]
struct DecodedPrincipals {
    by_header: RwLock<HashMap<Vec<u8>, Principal>>,
}

/// Distinct forwarded principals remembered.
const DECODED_ENTRIES: usize = 4096;

impl DecodedPrincipals {
    fn decode(&self, header: &[u8]) -> Result<Principal, crate::WireError> {
        if let Some(p) = self
            .by_header
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(header)
        {
            return Ok(p.clone());
        }
        let principal = Principal::decode(header)?;
        let mut map = self
            .by_header
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if map.len() >= DECODED_ENTRIES {
            map.clear();
        }
        map.insert(header.to_vec(), principal.clone());
        Ok(principal)
    }
}

fn principal_of<B>(
    request: &http::Request<B>,
    decoded: &DecodedPrincipals,
) -> Result<Principal, ApiError> {
    let caller = request.extensions().get::<Caller>().ok_or_else(|| {
        tracing::error!("PrincipalLayer runs without MtlsAuthLayer before it");
        ApiError::internal()
    })?;
    match &caller.0 {
        Identity::Service(service) => match request.headers().get(PRINCIPAL_HEADER) {
            None => Ok(Principal::Service { service: *service }),
            Some(value) => decoded.decode(value.as_bytes()).map_err(|e| {
                tracing::warn!(%service, error = %e, "forwarded principal refused");
                ApiError::new(ErrorCode::Unauthenticated, e.to_string())
            }),
        },
        Identity::Workload { tenant, name } => {
            if request.headers().contains_key(PRINCIPAL_HEADER) {
                tracing::warn!(%tenant, workload = %name, "a workload sent a principal; ignored");
            }
            let tenant = TenantId::parse(tenant).map_err(|_| {
                ApiError::new(
                    ErrorCode::Unauthenticated,
                    "the client certificate names no valid tenant",
                )
            })?;
            Ok(Principal::Workload {
                tenant,
                name: name.clone(),
            })
        }
    }
}

impl<S, B> Service<http::Request<B>> for PrincipalService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match principal_of(&request, &self.decoded) {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
                Box::pin(self.inner.call(request))
            }
            Err(error) => Box::pin(std::future::ready(Ok(
                tonic::Status::from(error).into_http()
            ))),
        }
    }
}

impl Principal {
    /// The principal of a tonic request. An error (INTERNAL) means the
    /// server was built without [`PrincipalLayer`]; handlers must not guess.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<&Principal, tonic::Status> {
        request.extensions().get::<Principal>().ok_or_else(|| {
            tracing::error!("no principal on the request: PrincipalLayer missing");
            tonic::Status::from(ApiError::internal())
        })
    }
}

#[cfg(test)]
mod tests {
    use locksmith_tls::ServiceName;
    use tower::ServiceExt;

    use super::*;
    use crate::{Role, Roles};

    #[test]
    fn decoded_principals_are_the_ones_sent_and_bad_ones_are_never_kept() {
        let cache = DecodedPrincipals::default();
        let acme = Principal::Tenant {
            tenant: TenantId::parse("acme").unwrap(),
            roles: Roles::of([Role::Read]),
            subject: "api-key:a".into(),
        };
        let operator = Principal::Operator {
            subject: "api-key:o".into(),
        };
        for _ in 0..2 {
            assert_eq!(cache.decode(acme.encode().as_bytes()).unwrap(), acme);
            assert_eq!(
                cache.decode(operator.encode().as_bytes()).unwrap(),
                operator
            );
            assert!(cache.decode(b"not-base64-json").is_err());
        }
        assert_eq!(cache.by_header.read().unwrap().len(), 2);
    }

    async fn principal_seen(
        identity: Identity,
        header: Option<String>,
    ) -> Result<Principal, tonic::Code> {
        let inner = tower::service_fn(|req: http::Request<()>| async move {
            let p = req.extensions().get::<Principal>().cloned().unwrap();
            let mut resp = http::Response::new(tonic::body::Body::empty());
            resp.extensions_mut().insert(p);
            Ok::<_, std::convert::Infallible>(resp)
        });
        let svc = PrincipalLayer::default().layer(inner);
        let mut builder = http::Request::builder().uri("/a.B/C");
        if let Some(h) = header {
            builder = builder.header(PRINCIPAL_HEADER, h);
        }
        let mut request = builder.body(()).unwrap();
        request.extensions_mut().insert(Caller(identity));
        let response = svc.oneshot(request).await.unwrap();
        match response.extensions().get::<Principal>() {
            Some(p) => Ok(p.clone()),
            None => Err(tonic::Status::from_header_map(response.headers())
                .unwrap()
                .code()),
        }
    }

    fn acme_admin() -> Principal {
        Principal::Tenant {
            tenant: TenantId::parse("acme").unwrap(),
            roles: Roles::of([Role::Admin]),
            subject: "api-key:k".into(),
        }
    }

    #[tokio::test]
    async fn a_service_forwards_its_caller_or_acts_as_itself() {
        let edge = Identity::Service(ServiceName::Edge);
        assert_eq!(
            principal_seen(edge.clone(), Some(acme_admin().encode())).await,
            Ok(acme_admin())
        );
        assert_eq!(
            principal_seen(edge.clone(), None).await,
            Ok(Principal::Service {
                service: ServiceName::Edge
            })
        );
        assert_eq!(
            principal_seen(edge, Some("garbage!".into())).await,
            Err(tonic::Code::Unauthenticated)
        );
    }

    #[tokio::test]
    async fn a_workload_cannot_speak_for_anyone_else() {
        let workload = Identity::workload("beta", "billing").unwrap();
        let operator = Principal::Operator {
            subject: "api-key:root".into(),
        };
        let own = Principal::Workload {
            tenant: TenantId::parse("beta").unwrap(),
            name: "billing".into(),
        };
        for header in [Some(acme_admin().encode()), Some(operator.encode()), None] {
            assert_eq!(
                principal_seen(workload.clone(), header).await,
                Ok(own.clone())
            );
        }
    }
}
