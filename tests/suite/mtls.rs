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
    assert_eq!(
        status.message(),
        "a client certificate issued by the suite CA is required"
    );
    // Like every other Locksmith error, the refusal says why in ErrorInfo.
    let details = tonic_types::StatusExt::get_error_details(&status);
    let info = details
        .error_info()
        .map(|i| (i.reason.as_str(), i.domain.as_str()));
    assert_eq!(info, Some(("UNAUTHENTICATED", "locksmith")), "{status:?}");
}

/// The I/O error at the bottom of a failed call: tonic's transport error →
/// hyper's "connection error" → `io::Error`. h2 keeps I/O errors as kind and
/// text (an `io::Error` is not `Clone`), so the rustls error inside arrives
/// as its message, not as a `rustls::Error`.
fn io_cause(status: &tonic::Status) -> Option<(std::io::ErrorKind, String)> {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return Some((io.kind(), io.to_string()));
        }
        source = error.source();
    }
    None
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

    // Right before: the registry at that address answers the real edge.
    let mut edge = suite.registry_client_as(ServiceName::Edge).await;
    assert_eq!(
        edge.get_tenant(get("evil")).await.unwrap_err().code(),
        Code::NotFound
    );

    // With TLS 1.3 the client's handshake completes before the server has
    // judged its certificate; the server's verdict is a fatal UnknownCA alert,
    // which the first call reads as a transport failure (UNKNOWN, not a
    // status the registry sent).
    let mut client = suite.registry_client_with(tls).await;
    let status = client.create_tenant(create("evil")).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unknown, "transport error"),
        "{status:?}"
    );
    // rustls' own text for the alert the server sent, so a renamed variant
    // or a different alert (an expired certificate's, a reset) fails here.
    let alert = rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA);
    assert_eq!(
        io_cause(&status),
        Some((std::io::ErrorKind::InvalidData, alert.to_string())),
        "{status:?}"
    );

    // Right after: the registry is still up, nothing was created, and the
    // same call with the suite's own edge certificate succeeds.
    assert_eq!(
        edge.get_tenant(get("evil")).await.unwrap_err().code(),
        Code::NotFound
    );
    edge.create_tenant(create("evil")).await.unwrap();
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

    // A tenant workload, validly issued by the suite CA, may read its own
    // tenant's records (grpc_matrix covers every RPC) but never change them.
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
    let status = workload.create_tenant(create("acme")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("spiffe://locksmith/tenant/acme/workload/billing"),
        "{}",
        status.message()
    );

    // The edge is allowed.
    let mut edge = suite.registry_client_as(ServiceName::Edge).await;
    edge.create_tenant(create("acme")).await.unwrap();
}
