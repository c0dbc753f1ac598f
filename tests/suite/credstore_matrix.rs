//! The cross-tenant matrix of the credential store over gRPC, generated from
//! the served descriptors so that a new RPC without a row fails the test.
//! Three callers of tenant alpha: a workload's own certificate, the edge
//! forwarding alpha's admin principal, and the OAuth broker forwarding it. On beta's secrets every secret RPC
//! answers NOT_FOUND exactly as if absent (or is not for that caller at all:
//! PERMISSION_DENIED, the same on alpha's own); key management is never a
//! tenant's. Beta's secrets are unchanged at the end.

use locksmith_auth::{Principal, Role, Roles};
use locksmith_domain::TenantId;
use locksmith_proto::credstore::v1::{
    self as pb, batch_resolve_result::Result as Batch,
    credential_store_service_client::CredentialStoreServiceClient,
};
use locksmith_tls::{ServiceName, TlsFiles};
use tonic::{Code, transport::Channel};
use tonic_types::StatusExt;

use crate::harness::{Suite, load_tls, populate_tenants};

/// What alpha's caller gets on beta's secrets, and on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// NOT_FOUND on beta, OK on alpha.
    Confined,
    /// PERMISSION_DENIED on both: not for this caller.
    Refused,
}

/// The two callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    /// `spiffe://locksmith/tenant/alpha/workload/billing`.
    Workload,
    /// The edge forwarding alpha's admin API key.
    EdgeForAlphaAdmin,
    /// The OAuth broker acting for alpha's admin (it keeps connections).
    BrokerForAlphaAdmin,
}

fn expectation(caller: Caller, method: &str) -> Option<Expect> {
    use Expect::*;
    // A workload and the edge read and write their tenant's secrets (a
    // workload is its tenant's service); the broker reads secrets and keeps
    // connection records, which nobody else reaches; no one here manages keys.
    let broker = caller == Caller::BrokerForAlphaAdmin;
    Some(match method {
        "GetSecret" | "ListSecrets" | "ResolveSecret" | "BatchResolveSecrets" => Confined,
        "PutSecret" | "DeleteSecret" | "UndeleteSecret" | "DestroySecretVersions" => {
            if broker {
                Refused
            } else {
                Confined
            }
        }
        "GetConnection" | "PutConnection" | "ListConnections" | "DeleteConnection" => {
            if broker {
                Confined
            } else {
                Refused
            }
        }
        "ProvisionTenantKey" | "RotateTenantKey" | "ShredTenantKey" | "EraseScope" => Refused,
        // Every record of a tenant: the broker's, for operators' health counts.
        "ListTenantConnections" => Refused,
        _ => return None,
    })
}

struct Client {
    inner: CredentialStoreServiceClient<Channel>,
    forward: Option<Principal>,
}

impl Client {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(p) = &self.forward {
            locksmith_auth::forward(&mut request, p);
        }
        request
    }
}

/// The secret of tenant `t` every row is about; version 1 exists.
fn secret(t: &str) -> String {
    format!("tenants/{t}/orgs/sales/bots/m1/secrets/tools/search")
}

/// The connection record of tenant `t` every connection row is about.
fn connection(t: &str) -> String {
    format!("tenants/{t}/integrations/github")
}

/// Calls `method` on tenant `t`'s secret (or its scope, or its key).
async fn call(c: &mut Client, method: &str, t: &str) -> Result<(), tonic::Status> {
    let name = secret(t);
    let owner = format!("tenants/{t}");
    match method {
        "GetSecret" => {
            let r = c.request(pb::GetSecretRequest { name, version: 0 });
            c.inner.get_secret(r).await.map(drop)
        }
        "ListSecrets" => {
            let r = c.request(pb::ListSecretsRequest {
                parent: format!("tenants/{t}/orgs/sales/bots/m1"),
                ..Default::default()
            });
            c.inner.list_secrets(r).await.map(drop)
        }
        "ResolveSecret" => {
            let r = c.request(pb::ResolveSecretRequest { name });
            c.inner.resolve_secret(r).await.map(drop)
        }
        "BatchResolveSecrets" => {
            let r = c.request(pb::BatchResolveSecretsRequest { names: vec![name] });
            let answer = c.inner.batch_resolve_secrets(r).await?.into_inner();
            // One name: found, or NOT_FOUND on its own, as ResolveSecret.
            match answer.results[0].result {
                Some(Batch::Resolved(_)) => Ok(()),
                _ => Err(tonic::Status::not_found("batch: not found")),
            }
        }
        "PutSecret" => {
            let r = c.request(pb::PutSecretRequest {
                name,
                fields: [("token".to_owned(), "stolen".to_owned())].into(),
                expected_version: 1,
                unconditional: false,
            });
            c.inner.put_secret(r).await.map(drop)
        }
        "DeleteSecret" => {
            let r = c.request(pb::DeleteSecretRequest {
                name,
                versions: vec![1],
            });
            c.inner.delete_secret(r).await.map(drop)
        }
        "UndeleteSecret" => {
            let r = c.request(pb::UndeleteSecretRequest {
                name,
                versions: vec![1],
            });
            c.inner.undelete_secret(r).await.map(drop)
        }
        "DestroySecretVersions" => {
            let r = c.request(pb::DestroySecretVersionsRequest {
                name,
                versions: vec![1],
            });
            c.inner.destroy_secret_versions(r).await.map(drop)
        }
        "EraseScope" => {
            let r = c.request(pb::EraseScopeRequest {
                scope: format!("tenants/{t}/orgs/sales"),
            });
            c.inner.erase_scope(r).await.map(drop)
        }
        "GetConnection" => {
            let r = c.request(pb::GetConnectionRequest {
                name: connection(t),
            });
            c.inner.get_connection(r).await.map(drop)
        }
        "PutConnection" => {
            let r = c.request(pb::PutConnectionRequest {
                name: connection(t),
                fields: [("access-token".to_owned(), "stolen".to_owned())].into(),
                expected_version: 1,
            });
            c.inner.put_connection(r).await.map(drop)
        }
        "ListConnections" => {
            let r = c.request(pb::ListConnectionsRequest {
                parent: format!("tenants/{t}"),
                ..Default::default()
            });
            c.inner.list_connections(r).await.map(drop)
        }
        "ListTenantConnections" => {
            let r = c.request(pb::ListTenantConnectionsRequest {
                parent: owner,
                ..Default::default()
            });
            c.inner.list_tenant_connections(r).await.map(drop)
        }
        "DeleteConnection" => {
            let r = c.request(pb::DeleteConnectionRequest {
                name: connection(t),
                expected_version: 0,
            });
            c.inner.delete_connection(r).await.map(drop)
        }
        "ProvisionTenantKey" => {
            let r = c.request(pb::ProvisionTenantKeyRequest { owner });
            c.inner.provision_tenant_key(r).await.map(drop)
        }
        "RotateTenantKey" => {
            let r = c.request(pb::RotateTenantKeyRequest { owner });
            c.inner.rotate_tenant_key(r).await.map(drop)
        }
        "ShredTenantKey" => {
            let r = c.request(pb::ShredTenantKeyRequest { owner });
            c.inner.shred_tenant_key(r).await.map(drop)
        }
        other => panic!("no call for {other}"),
    }
}

fn reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

fn channel(suite: &Suite, tls: &locksmith_tls::TlsMaterial) -> Channel {
    tonic::transport::Endpoint::from_shared(suite.credstore.url.clone())
        .unwrap()
        .tls_config(tls.client_tls("localhost"))
        .unwrap()
        .connect_lazy()
}

fn alpha_admin() -> Principal {
    Principal::Tenant {
        tenant: TenantId::parse("alpha").unwrap(),
        roles: Roles::of([Role::Admin]),
        subject: "api-key:alpha-admin".into(),
    }
}

/// A suite service's client, forwarding `principal` (or acting for itself).
fn as_service(suite: &Suite, service: ServiceName, principal: Option<Principal>) -> Client {
    Client {
        inner: CredentialStoreServiceClient::new(channel(
            suite,
            &load_tls(suite.pki.path(), service),
        )),
        forward: principal,
    }
}

fn client(suite: &Suite, caller: Caller) -> Client {
    match caller {
        Caller::Workload => {
            locksmith_tls::issue_workload(
                suite.pki.path(),
                "alpha",
                "billing",
                time::OffsetDateTime::now_utc(),
            )
            .unwrap();
            let tls = TlsFiles::for_workload(suite.pki.path(), "alpha", "billing")
                .unwrap()
                .load()
                .unwrap();
            Client {
                inner: CredentialStoreServiceClient::new(channel(suite, &tls)),
                forward: None,
            }
        }
        Caller::EdgeForAlphaAdmin => as_service(suite, ServiceName::Edge, Some(alpha_admin())),
        Caller::BrokerForAlphaAdmin => as_service(suite, ServiceName::Broker, Some(alpha_admin())),
    }
}

/// Beta's secret as an operator reads it, with its metadata.
async fn beta_state(suite: &Suite) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for v in ["", "?version=1"] {
        let path = format!("/{}{v}", secret("beta"));
        out.push(suite.get(&path).await.1);
    }
    out.push(
        suite
            .get("/tenants/beta/orgs/sales/bots/m1/secrets")
            .await
            .1,
    );
    let mut broker = as_service(suite, ServiceName::Broker, None);
    let r = broker.request(pb::GetConnectionRequest {
        name: connection("beta"),
    });
    let record = broker.inner.get_connection(r).await.unwrap().into_inner();
    let record = record.connection.unwrap();
    out.push(serde_json::json!({
        "version": record.version,
        "fields": record.fields,
    }));
    out
}

#[tokio::test]
async fn alpha_reaches_only_its_own_secrets_over_grpc() {
    let suite = Suite::start().await;
    populate_tenants(&suite, &["alpha", "beta"]).await;
    for t in ["alpha", "beta"] {
        let path = format!("/{}", secret(t));
        let body = serde_json::json!({"fields": {"token": format!("{t}-token")}});
        let (status, answer) = suite.call(reqwest::Method::PUT, &path, Some(body)).await;
        assert_eq!(status, 201, "{answer}");
    }
    let mut broker = as_service(&suite, ServiceName::Broker, None);
    for t in ["alpha", "beta"] {
        let r = broker.request(pb::PutConnectionRequest {
            name: connection(t),
            fields: [("access-token".to_owned(), format!("{t}-token"))].into(),
            expected_version: 0,
        });
        broker.inner.put_connection(r).await.unwrap();
    }
    let before = beta_state(&suite).await;

    let methods = crate::harness::served_methods("locksmith.credstore.v1");
    for caller in [
        Caller::Workload,
        Caller::EdgeForAlphaAdmin,
        Caller::BrokerForAlphaAdmin,
    ] {
        let missing: Vec<_> = methods
            .iter()
            .filter(|m| expectation(caller, m).is_none())
            .collect();
        assert!(missing.is_empty(), "RPCs without a row: {missing:?}");
        let mut c = client(&suite, caller);
        // Reads first, on alpha too; the writes are only tried on beta.
        for method in &methods {
            let label = format!("{caller:?} {method}");
            let Err(on_beta) = call(&mut c, method, "beta").await else {
                panic!("{label} reached beta");
            };
            match expectation(caller, method).unwrap() {
                Expect::Confined => {
                    assert_eq!(on_beta.code(), Code::NotFound, "{label}: {on_beta:?}");
                    // A batch answers absence per name, within an OK call.
                    if method != "BatchResolveSecrets" {
                        assert_eq!(reason(&on_beta), "NOT_FOUND", "{label}");
                    }
                }
                Expect::Refused => {
                    assert_eq!(
                        on_beta.code(),
                        Code::PermissionDenied,
                        "{label}: {on_beta:?}"
                    );
                    let on_alpha = call(&mut c, method, "alpha").await.unwrap_err();
                    assert_eq!(on_alpha.code(), Code::PermissionDenied, "{label} on alpha");
                }
            }
        }
        let mut reads = vec![
            "GetSecret",
            "ListSecrets",
            "ResolveSecret",
            "BatchResolveSecrets",
        ];
        if caller == Caller::BrokerForAlphaAdmin {
            reads.extend(["GetConnection", "ListConnections"]);
        }
        for read in reads {
            call(&mut c, read, "alpha")
                .await
                .unwrap_or_else(|e| panic!("{caller:?} {read} on alpha: {e:?}"));
        }
    }
    assert_eq!(beta_state(&suite).await, before, "beta's secrets changed");
}
