//! The credential store over mTLS gRPC: resolution through the wire, tenant
//! confinement by certificate, the allow-list, input errors naming their
//! field, and health.

use std::{collections::HashMap, sync::Arc, time::Duration};

use locksmith_auth::Principal;
use locksmith_credstore::{CredStore, MemoryAudit, server};
use locksmith_crypto::MasterKeyWrapper;
use locksmith_proto::credstore::v1::{
    self as pb, credential_store_service_client::CredentialStoreServiceClient,
};
use locksmith_store::{EmbeddedStore, system_clock};
use locksmith_tls::{ServiceName, TlsFiles, TlsMaterial};
use tempfile::TempDir;
use tokio::{net::TcpListener, sync::oneshot};
use tonic::{Code, Request, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};
use tonic_types::StatusExt;

use crate::harness::load_tls;

const BOT: &str = "tenants/acme/orgs/sales/bots/llm";

/// A credential store on loopback with a fresh PKI and an in-memory store.
pub struct CredStoreServer {
    pub addr: std::net::SocketAddr,
    pub pki: TempDir,
    _stop: oneshot::Sender<()>,
}

impl CredStoreServer {
    pub async fn start() -> Self {
        crate::harness::spans();
        locksmith_tls::install_crypto_provider();
        let pki = tempfile::tempdir().unwrap();
        locksmith_tls::init_dir(pki.path(), time::OffsetDateTime::now_utc(), false).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let clock = system_clock();
        let store = CredStore::new(
            EmbeddedStore::in_memory(clock.clone()).unwrap(),
            MasterKeyWrapper::load_or_create(pki.path().join("master-key")).unwrap(),
            Arc::new(MemoryAudit::new()),
            clock,
        );
        let tls = load_tls(pki.path(), ServiceName::CredentialStore);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            server::serve(listener, &tls, Arc::new(store), async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self {
            addr,
            pki,
            _stop: stop,
        }
    }

    fn channel(&self, tls: &TlsMaterial) -> Channel {
        tonic::transport::Endpoint::from_shared(format!("https://{}", self.addr))
            .unwrap()
            .tls_config(tls.client_tls("localhost"))
            .unwrap()
            .connect_lazy()
    }

    pub fn client_as(&self, service: ServiceName) -> CredentialStoreServiceClient<Channel> {
        CredentialStoreServiceClient::new(self.channel(&load_tls(self.pki.path(), service)))
    }

    fn workload(&self, tenant: &str) -> CredentialStoreServiceClient<Channel> {
        locksmith_tls::issue_workload(
            self.pki.path(),
            tenant,
            "billing",
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        let tls = TlsFiles::for_workload(self.pki.path(), tenant, "billing")
            .unwrap()
            .load()
            .unwrap();
        CredentialStoreServiceClient::new(self.channel(&tls))
    }
}

/// A request from the edge on behalf of an operator.
fn as_operator<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    locksmith_auth::forward(
        &mut request,
        &Principal::Operator {
            subject: "api-key:test".into(),
        },
    );
    request
}

fn fields(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn put(name: &str, pairs: &[(&str, &str)]) -> pb::PutSecretRequest {
    pb::PutSecretRequest {
        name: name.into(),
        fields: fields(pairs),
        expected_version: 0,
        unconditional: false,
    }
}

fn reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

fn violated_fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// Keys for acme, beta and the system scope, the system mailbox and the
/// bot's own LLM, all written through the edge as an operator.
async fn seed(edge: &mut CredentialStoreServiceClient<Channel>) {
    for owner in ["tenants/acme", "tenants/beta", "system"] {
        edge.provision_tenant_key(as_operator(pb::ProvisionTenantKeyRequest {
            owner: owner.into(),
        }))
        .await
        .unwrap_or_else(|s| panic!("key of {owner}: {s:?}"));
    }
    let version = edge
        .put_secret(as_operator(put(
            "system/secrets/email",
            &[
                ("smtp-host", "smtp.example.com"),
                ("smtp-password", "hunter2"),
            ],
        )))
        .await
        .unwrap()
        .into_inner()
        .version;
    assert_eq!(version, 1);
    edge.put_secret(as_operator(put(
        &format!("{BOT}/secrets/llm"),
        &[("model", "gpt"), ("api-key", "sk-acme")],
    )))
    .await
    .unwrap();
}

#[tokio::test]
async fn resolution_answers_the_system_secret_and_names_the_answering_scope() {
    let server = CredStoreServer::start().await;
    let mut edge = server.client_as(ServiceName::Edge);
    seed(&mut edge).await;

    let resolved = edge
        .resolve_secret(as_operator(pb::ResolveSecretRequest {
            name: format!("{BOT}/secrets/email"),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.answering_scope, "system");
    let secret = resolved.secret.unwrap();
    assert_eq!(secret.name, "system/secrets/email");
    assert_eq!(secret.version, 1);
    assert_eq!(secret.fields["smtp-password"], "hunter2");

    // The bot's own secret answers at its own scope.
    let own = edge
        .get_secret(as_operator(pb::GetSecretRequest {
            name: format!("{BOT}/secrets/llm"),
            version: 0,
        }))
        .await
        .unwrap()
        .into_inner()
        .secret
        .unwrap();
    assert_eq!(own.fields["api-key"], "sk-acme");

    // A batch answers each name on its own.
    let batch = edge
        .batch_resolve_secrets(as_operator(pb::BatchResolveSecretsRequest {
            names: vec![
                format!("{BOT}/secrets/email"),
                format!("{BOT}/secrets/whatsapp"),
            ],
        }))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(batch.len(), 2);
    match &batch[0].result {
        Some(pb::batch_resolve_result::Result::Resolved(r)) => {
            assert_eq!(r.answering_scope, "system");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        batch[1].result,
        Some(pb::batch_resolve_result::Result::NotFound(_))
    ));

    // Listing pages through the bot's names.
    edge.put_secret(as_operator(put(
        &format!("{BOT}/secrets/api-keys/openai"),
        &[("api-key", "sk-openai")],
    )))
    .await
    .unwrap();
    let first = edge
        .list_secrets(as_operator(pb::ListSecretsRequest {
            parent: BOT.into(),
            page_size: 1,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.names, [format!("{BOT}/secrets/api-keys/openai")]);
    assert!(!first.next_page_token.is_empty());
    let second = edge
        .list_secrets(as_operator(pb::ListSecretsRequest {
            parent: BOT.into(),
            page_size: 1,
            page_token: first.next_page_token,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.names, [format!("{BOT}/secrets/llm")]);
    assert!(second.next_page_token.is_empty());
}

#[tokio::test]
async fn a_workload_sees_only_its_own_tenant() {
    let server = CredStoreServer::start().await;
    let mut edge = server.client_as(ServiceName::Edge);
    seed(&mut edge).await;
    let mut beta = server.workload("beta");

    let name = format!("{BOT}/secrets/llm");
    let on_acme = beta
        .get_secret(pb::GetSecretRequest {
            name: name.clone(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(on_acme.code(), Code::NotFound, "{on_acme:?}");
    assert_eq!(reason(&on_acme), "NOT_FOUND");
    let resolved = beta
        .resolve_secret(pb::ResolveSecretRequest { name })
        .await
        .unwrap_err();
    assert_eq!(resolved.code(), Code::NotFound, "{resolved:?}");
    assert_eq!(reason(&resolved), "NOT_FOUND");

    let own = "tenants/beta/orgs/ops/bots/llm/secrets/llm";
    let missing = beta
        .get_secret(pb::GetSecretRequest {
            name: own.into(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    edge.put_secret(as_operator(put(own, &[("model", "beta-model")])))
        .await
        .unwrap();
    let secret = beta
        .get_secret(pb::GetSecretRequest {
            name: own.into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .secret
        .unwrap();
    assert_eq!(secret.fields["model"], "beta-model");

    // Key management is not for workloads.
    let shred = beta
        .shred_tenant_key(pb::ShredTenantKeyRequest {
            owner: "tenants/beta".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(shred.code(), Code::PermissionDenied, "{shred:?}");
}

#[tokio::test]
async fn the_proxy_may_read_but_not_write() {
    let server = CredStoreServer::start().await;
    let mut edge = server.client_as(ServiceName::Edge);
    seed(&mut edge).await;
    let mut proxy = server.client_as(ServiceName::Proxy);

    let refused = proxy
        .put_secret(put(&format!("{BOT}/secrets/llm"), &[("model", "evil")]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let read = proxy
        .get_secret(pb::GetSecretRequest {
            name: format!("{BOT}/secrets/llm"),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .secret
        .unwrap();
    assert_eq!(
        read.fields["model"], "gpt",
        "the refused write changed nothing"
    );
    assert_eq!(read.version, 1);
}

#[tokio::test]
async fn bad_resource_names_are_refused_naming_the_field() {
    let server = CredStoreServer::start().await;
    let mut edge = server.client_as(ServiceName::Edge);
    for bad in [
        "tenants/acme/secrets/config",
        "tenants/acme/../x/secrets/a",
        "",
    ] {
        let status = edge
            .get_secret(as_operator(pb::GetSecretRequest {
                name: bad.into(),
                version: 0,
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad}: {status:?}");
        assert_eq!(violated_fields(&status), ["name"], "{bad}");
        let status = edge
            .put_secret(as_operator(put(bad, &[("model", "x")])))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad}: {status:?}");
        assert_eq!(violated_fields(&status), ["name"], "{bad}");
    }
    let status = edge
        .batch_resolve_secrets(as_operator(pb::BatchResolveSecretsRequest {
            names: vec![format!("{BOT}/secrets/llm"), "tenants/acme/x".into()],
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["names[1]"]);
    let status = edge
        .list_secrets(as_operator(pb::ListSecretsRequest {
            parent: "tenants/acme/../beta".into(),
            page_size: 0,
            page_token: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["parent"]);
    let status = edge
        .shred_tenant_key(as_operator(pb::ShredTenantKeyRequest {
            owner: "system".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["owner"]);
}

#[tokio::test]
async fn health_turns_serving_and_reflection_lists_only_what_is_served() {
    let server = CredStoreServer::start().await;
    let tls = load_tls(server.pki.path(), ServiceName::Edge);
    let mut health = HealthClient::new(server.channel(&tls));
    let mut status = None;
    for _ in 0..50 {
        for service in ["", "locksmith.credstore.v1.CredentialStoreService"] {
            let answer = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner();
            status = ServingStatus::try_from(answer.status).ok();
            if status != Some(ServingStatus::Serving) {
                break;
            }
        }
        if status == Some(ServingStatus::Serving) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, Some(ServingStatus::Serving));

    // Reflection advertises this server's services, not the registry's.
    let mut reflection = ServerReflectionClient::new(server.channel(&tls));
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let answer = reflection
        .server_reflection_info(futures::stream::iter([ask]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a service list: {answer:?}");
    };
    let mut names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "locksmith.credstore.v1.CredentialStoreService",
        ]
    );
}
