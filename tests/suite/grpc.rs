//! The registry as typed gRPC callers see it: rich error details, health and
//! reflection.

use locksmith_proto::registry::v1 as pb;
use locksmith_tls::ServiceName;
use tonic_types::StatusExt;

use crate::harness::Suite;

#[tokio::test]
async fn errors_carry_error_info_and_field_violations() {
    let suite = Suite::start().await;
    let mut client = suite.registry_client_as(ServiceName::Edge).await;
    let bad = pb::Tenant {
        id: "Bad/Id".into(),
        display_name: "X".into(),
        ..Default::default()
    };
    let status = client
        .create_tenant(pb::CreateTenantRequest { tenant: Some(bad) })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let details = status.get_error_details();
    let info = details.error_info().unwrap();
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("INVALID_ARGUMENT", "locksmith")
    );
    let violations = &details.bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, "id");

    let status = client
        .get_tenant(pb::GetTenantRequest {
            tenant_id: "ghost".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "NOT_FOUND"
    );

    let ok = pb::Tenant {
        id: "acme".into(),
        display_name: "Acme".into(),
        ..Default::default()
    };
    client
        .create_tenant(pb::CreateTenantRequest {
            tenant: Some(ok.clone()),
        })
        .await
        .unwrap();
    let stale = pb::UpdateTenantRequest {
        tenant: Some(pb::Tenant {
            version: 7,
            display_name: "Y".into(),
            ..ok
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["display_name".into()],
        }),
    };
    let status = client.update_tenant(stale).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Aborted);
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "VERSION_CONFLICT"
    );
}

#[tokio::test]
async fn serves_grpc_health_and_reflection() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let suite = Suite::start().await;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("https://{}", suite.registry_addr))
            .unwrap()
            .tls_config(
                crate::harness::load_tls(suite.pki.path(), ServiceName::Proxy)
                    .client_tls("localhost"),
            )
            .unwrap()
            .connect_lazy();
    let mut health = HealthClient::new(channel);
    for service in ["", "locksmith.registry.v1.TenantRegistryService"] {
        let answer = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.status, ServingStatus::Serving as i32, "{service:?}");
    }
}
