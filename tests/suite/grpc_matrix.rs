//! The cross-tenant matrix over gRPC: a tenant workload's certificate
//! (`spiffe://locksmith/tenant/alpha/workload/billing`) against every RPC of
//! the registry, generated from the served descriptors so that a new RPC
//! without a row fails the test. Reads of another tenant answer NOT_FOUND
//! exactly as if absent; writes, key management and listing every tenant are
//! not for workloads (PERMISSION_DENIED); reads of its own tenant succeed.
//! A principal header the workload sends is ignored.

use locksmith_auth::{PRINCIPAL_HEADER, Principal};
use locksmith_proto::registry::v1::{
    self as pb, api_key_service_client::ApiKeyServiceClient,
    tenant_registry_service_client::TenantRegistryServiceClient,
};
use locksmith_tls::TlsFiles;
use tonic::{Code, transport::Channel};
use tonic_types::StatusExt;

use crate::harness::{Suite, populate_tenants};

/// What a workload of alpha gets on beta's records, and on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// A read: NOT_FOUND on beta, OK on alpha.
    Read,
    /// Not for workloads at all: PERMISSION_DENIED on both.
    Refused,
}

fn expectation(method: &str) -> Option<Expect> {
    use Expect::*;
    Some(match method {
        "GetTenant" | "GetOrg" | "ListOrgs" | "GetBot" | "ListBots" | "GetUser" | "ListUsers" => {
            Read
        }
        "ListTenants" | "CreateTenant" | "UpdateTenant" | "DeleteTenant" | "CreateOrg"
        | "UpdateOrg" | "DeleteOrg" | "CreateBot" | "UpdateBot" | "DeleteBot" | "CreateUser"
        | "UpdateUser" | "DeleteUser" | "CreateApiKey" | "ListApiKeys" | "RevokeApiKey"
        | "VerifyApiKey" => Refused,
        _ => return None,
    })
}

struct Clients {
    registry: TenantRegistryServiceClient<Channel>,
    keys: ApiKeyServiceClient<Channel>,
}

fn request<T>(spoof: Option<&Principal>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(p) = spoof {
        request
            .metadata_mut()
            .insert(PRINCIPAL_HEADER, p.encode().parse().unwrap());
    }
    request
}

/// Calls `method` on tenant `t`'s records (org `sales`, members `m1`).
async fn call(
    c: &mut Clients,
    method: &str,
    t: &str,
    spoof: Option<&Principal>,
) -> Result<(), tonic::Status> {
    let t = t.to_owned();
    let org = || "sales".to_owned();
    let m = || "m1".to_owned();
    let v = 1;
    let mask = || {
        Some(prost_types::FieldMask {
            paths: vec!["display_name".into()],
        })
    };
    match method {
        "GetTenant" => c
            .registry
            .get_tenant(request(spoof, pb::GetTenantRequest { tenant_id: t }))
            .await
            .map(drop),
        "ListTenants" => c
            .registry
            .list_tenants(request(spoof, pb::ListTenantsRequest::default()))
            .await
            .map(drop),
        "CreateTenant" => c
            .registry
            .create_tenant(request(
                spoof,
                pb::CreateTenantRequest {
                    tenant: Some(pb::Tenant {
                        id: "gamma".into(),
                        display_name: "G".into(),
                        ..Default::default()
                    }),
                },
            ))
            .await
            .map(drop),
        "UpdateTenant" => c
            .registry
            .update_tenant(request(
                spoof,
                pb::UpdateTenantRequest {
                    tenant: Some(pb::Tenant {
                        id: t,
                        display_name: "X".into(),
                        version: v,
                        ..Default::default()
                    }),
                    update_mask: mask(),
                },
            ))
            .await
            .map(drop),
        "DeleteTenant" => c
            .registry
            .delete_tenant(request(
                spoof,
                pb::DeleteTenantRequest {
                    tenant_id: t,
                    version: 0,
                },
            ))
            .await
            .map(drop),
        "GetOrg" => c
            .registry
            .get_org(request(
                spoof,
                pb::GetOrgRequest {
                    tenant_id: t,
                    org_id: org(),
                },
            ))
            .await
            .map(drop),
        "ListOrgs" => c
            .registry
            .list_orgs(request(
                spoof,
                pb::ListOrgsRequest {
                    tenant_id: t,
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "CreateOrg" => c
            .registry
            .create_org(request(
                spoof,
                pb::CreateOrgRequest {
                    org: Some(pb::Org {
                        tenant_id: t,
                        id: "x".into(),
                        display_name: "X".into(),
                        ..Default::default()
                    }),
                },
            ))
            .await
            .map(drop),
        "UpdateOrg" => c
            .registry
            .update_org(request(
                spoof,
                pb::UpdateOrgRequest {
                    org: Some(pb::Org {
                        tenant_id: t,
                        id: org(),
                        display_name: "X".into(),
                        version: v,
                        ..Default::default()
                    }),
                    update_mask: mask(),
                },
            ))
            .await
            .map(drop),
        "DeleteOrg" => c
            .registry
            .delete_org(request(
                spoof,
                pb::DeleteOrgRequest {
                    tenant_id: t,
                    org_id: org(),
                    version: 0,
                },
            ))
            .await
            .map(drop),
        "GetBot" => c
            .registry
            .get_bot(request(
                spoof,
                pb::GetBotRequest {
                    tenant_id: t,
                    org_id: org(),
                    bot_id: m(),
                },
            ))
            .await
            .map(drop),
        "ListBots" => c
            .registry
            .list_bots(request(
                spoof,
                pb::ListBotsRequest {
                    tenant_id: t,
                    org_id: org(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "CreateBot" => c
            .registry
            .create_bot(request(
                spoof,
                pb::CreateBotRequest {
                    bot: Some(pb::Bot {
                        tenant_id: t,
                        org_id: org(),
                        id: "x".into(),
                        display_name: "X".into(),
                        ..Default::default()
                    }),
                },
            ))
            .await
            .map(drop),
        "UpdateBot" => c
            .registry
            .update_bot(request(
                spoof,
                pb::UpdateBotRequest {
                    bot: Some(pb::Bot {
                        tenant_id: t,
                        org_id: org(),
                        id: m(),
                        display_name: "X".into(),
                        version: v,
                        ..Default::default()
                    }),
                    update_mask: mask(),
                },
            ))
            .await
            .map(drop),
        "DeleteBot" => c
            .registry
            .delete_bot(request(
                spoof,
                pb::DeleteBotRequest {
                    tenant_id: t,
                    org_id: org(),
                    bot_id: m(),
                    version: 0,
                },
            ))
            .await
            .map(drop),
        "GetUser" => c
            .registry
            .get_user(request(
                spoof,
                pb::GetUserRequest {
                    tenant_id: t,
                    org_id: org(),
                    user_id: m(),
                },
            ))
            .await
            .map(drop),
        "ListUsers" => c
            .registry
            .list_users(request(
                spoof,
                pb::ListUsersRequest {
                    tenant_id: t,
                    org_id: org(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "CreateUser" => c
            .registry
            .create_user(request(
                spoof,
                pb::CreateUserRequest {
                    user: Some(pb::User {
                        tenant_id: t,
                        org_id: org(),
                        id: "x".into(),
                        display_name: "X".into(),
                        ..Default::default()
                    }),
                },
            ))
            .await
            .map(drop),
        "UpdateUser" => c
            .registry
            .update_user(request(
                spoof,
                pb::UpdateUserRequest {
                    user: Some(pb::User {
                        tenant_id: t,
                        org_id: org(),
                        id: m(),
                        display_name: "X".into(),
                        version: v,
                        ..Default::default()
                    }),
                    update_mask: mask(),
                },
            ))
            .await
            .map(drop),
        "DeleteUser" => c
            .registry
            .delete_user(request(
                spoof,
                pb::DeleteUserRequest {
                    tenant_id: t,
                    org_id: org(),
                    user_id: m(),
                    version: 0,
                },
            ))
            .await
            .map(drop),
        "CreateApiKey" => c
            .keys
            .create_api_key(request(
                spoof,
                pb::CreateApiKeyRequest {
                    api_key: Some(pb::ApiKey {
                        owner: Some(pb::api_key::Owner::TenantId(t)),
                        display_name: "x".into(),
                        roles: vec![pb::ApiKeyRole::Admin as i32],
                        ..Default::default()
                    }),
                },
            ))
            .await
            .map(drop),
        "ListApiKeys" => c
            .keys
            .list_api_keys(request(
                spoof,
                pb::ListApiKeysRequest {
                    owner: Some(pb::list_api_keys_request::Owner::TenantId(t)),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "RevokeApiKey" => c
            .keys
            .revoke_api_key(request(
                spoof,
                pb::RevokeApiKeyRequest {
                    owner: Some(pb::revoke_api_key_request::Owner::TenantId(t)),
                    key_id: "0000000000000000".into(),
                },
            ))
            .await
            .map(drop),
        "VerifyApiKey" => c
            .keys
            .verify_api_key(request(
                spoof,
                pb::VerifyApiKeyRequest {
                    secret: "lsk_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                        .into(),
                },
            ))
            .await
            .map(drop),
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

async fn workload_clients(suite: &Suite, tenant: &str) -> Clients {
    locksmith_tls::issue_workload(
        suite.pki.path(),
        tenant,
        "billing",
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let tls = TlsFiles::for_workload(suite.pki.path(), tenant, "billing")
        .unwrap()
        .load()
        .unwrap();
    let channel =
        tonic::transport::Endpoint::from_shared(format!("https://{}", suite.registry_addr))
            .unwrap()
            .tls_config(tls.client_tls("localhost"))
            .unwrap()
            .connect_lazy();
    Clients {
        registry: TenantRegistryServiceClient::new(channel.clone()),
        keys: ApiKeyServiceClient::new(channel),
    }
}

#[tokio::test]
async fn a_workload_reaches_only_its_own_tenant_over_grpc() {
    let suite = Suite::start().await;
    populate_tenants(&suite, &["alpha", "beta"]).await;
    let mut alpha = workload_clients(&suite, "alpha").await;

    let methods = crate::harness::served_methods("locksmith.registry.v1");
    let missing: Vec<_> = methods
        .iter()
        .filter(|m| expectation(m).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "RPCs without a row in the matrix: {missing:?}"
    );
    assert_eq!(methods.len(), 24, "{methods:?}");

    let (_, before) = suite.get("/tenants/beta/orgs/sales/users/m1").await;
    for method in &methods {
        let on_beta = call(&mut alpha, method, "beta", None).await.unwrap_err();
        match expectation(method) {
            Some(Expect::Read) => {
                assert_eq!(on_beta.code(), Code::NotFound, "{method}: {on_beta:?}");
                assert_eq!(reason(&on_beta), "NOT_FOUND", "{method}");
                assert_eq!(
                    on_beta.message(),
                    "tenant 'beta' does not exist",
                    "{method}"
                );
                call(&mut alpha, method, "alpha", None)
                    .await
                    .unwrap_or_else(|s| panic!("{method} on its own tenant: {s:?}"));
            }
            Some(Expect::Refused) => {
                assert_eq!(
                    on_beta.code(),
                    Code::PermissionDenied,
                    "{method}: {on_beta:?}"
                );
                assert_eq!(reason(&on_beta), "PERMISSION_DENIED", "{method}");
                let own = call(&mut alpha, method, "alpha", None).await.unwrap_err();
                assert_eq!(own.code(), Code::PermissionDenied, "{method} on alpha");
            }
            None => unreachable!(),
        }
    }
    assert_eq!(
        suite.get("/tenants/beta/orgs/sales/users/m1").await.1,
        before
    );
}

#[tokio::test]
async fn a_workload_cannot_forward_someone_elses_principal() {
    let suite = Suite::start().await;
    populate_tenants(&suite, &["alpha", "beta"]).await;
    let mut alpha = workload_clients(&suite, "alpha").await;
    let spoofs = [
        Principal::Operator {
            subject: "api-key:forged".into(),
        },
        Principal::Tenant {
            tenant: locksmith_domain::TenantId::parse("beta").unwrap(),
            roles: locksmith_auth::Roles::of(locksmith_auth::Role::ALL),
            subject: "api-key:forged".into(),
        },
    ];
    for spoof in &spoofs {
        // Still confined to alpha: beta is invisible, alpha readable.
        let status = call(&mut alpha, "GetTenant", "beta", Some(spoof))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{spoof:?}");
        assert_eq!(status.message(), "tenant 'beta' does not exist");
        call(&mut alpha, "GetUser", "alpha", Some(spoof))
            .await
            .unwrap();
        // And still no operator: listing every tenant is refused.
        let status = call(&mut alpha, "ListTenants", "alpha", Some(spoof))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{spoof:?}");
    }
}
