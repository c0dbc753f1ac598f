//! Mutual TLS between services: who is refused, and how clearly.

use locksmith_proto::registry::v1 as pb;
use locksmith_tls::{CertificateAuthority, Identity, ServiceName};
use tonic::{
    Code,
    transport::{Certificate, ClientTlsConfig, Identity as TlsIdentity},
};

use crate::harness::Suite;

fn get(id: &str) -> pb::GetTenantRequest {
    pb::GetTenantRequest {
        tenant_id: id.into(),
    }
}

fn create(id: &str) -> pb::CreateTenantRequest {
    pb::CreateTenantRequest {
        tenant: Some(pb::Tenant {
            id: id.into(),
            display_name: "X".into(),
            ..Default::default()
        }),
    }
}

fn suite_ca(suite: &Suite) -> Certificate {
    Certificate::from_pem(std::fs::read(suite.pki.path().join("ca.pem")).unwrap())
}

#[tokio::test]
async fn a_caller_without_a_certificate_is_unauthenticated() {
    let suite = Suite::start().await;
    let tls = ClientTlsConfig::new()
        .ca_certificate(suite_ca(&suite))
        .domain_name("localhost");
    let mut client = suite.registry_client_with(tls).await;
    let status = client.get_tenant(get("acme")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("client certificate"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_at_the_handshake() {
    let suite = Suite::start().await;
    let now = time::OffsetDateTime::now_utc();
    let rogue_ca = CertificateAuthority::generate("rogue CA", now).unwrap();
    // Same identity as the real edge, but not issued by the suite CA.
    let rogue = rogue_ca
        .issue(
            &Identity::Service(ServiceName::Edge),
            now,
            time::Duration::days(1),
        )
        .unwrap();
    let key = secrecy::ExposeSecret::expose_secret(&rogue.key_pem).to_owned();
    let tls = ClientTlsConfig::new()
        .ca_certificate(suite_ca(&suite))
        .identity(TlsIdentity::from_pem(rogue.cert_pem, key))
        .domain_name("localhost");
    let mut client = suite.registry_client_with(tls).await;
    let status = client.create_tenant(create("evil")).await.unwrap_err();
    assert_ne!(status.code(), Code::Ok);
    assert!(
        matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Internal
        ),
        "{status:?}"
    );
    // And nothing was created: the real edge sees no tenant.
    let mut edge = suite.registry_client_as(ServiceName::Edge).await;
    assert_eq!(
        edge.get_tenant(get("evil")).await.unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn identities_off_the_allow_list_are_denied() {
    let suite = Suite::start().await;
    // The proxy may read the registry but not change it.
    let mut proxy = suite.registry_client_as(ServiceName::Proxy).await;
    let status = proxy.create_tenant(create("acme")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("spiffe://locksmith/proxy"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("CreateTenant"),
        "{}",
        status.message()
    );
    assert_eq!(
        proxy.get_tenant(get("acme")).await.unwrap_err().code(),
        Code::NotFound
    );

    // A tenant workload, validly issued by the suite CA, is not admitted to the registry.
    let dir = suite.pki.path();
    let cert =
        locksmith_tls::issue_workload(dir, "acme", "billing", time::OffsetDateTime::now_utc())
            .unwrap();
    let key = cert.with_file_name("billing-key.pem");
    let tls = ClientTlsConfig::new()
        .ca_certificate(suite_ca(&suite))
        .identity(TlsIdentity::from_pem(
            std::fs::read(&cert).unwrap(),
            std::fs::read(&key).unwrap(),
        ))
        .domain_name("localhost");
    let mut workload = suite.registry_client_with(tls).await;
    assert_eq!(
        workload.get_tenant(get("acme")).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    // The edge is allowed.
    let mut edge = suite.registry_client_as(ServiceName::Edge).await;
    edge.create_tenant(create("acme")).await.unwrap();
}
