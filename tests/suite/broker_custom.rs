//! Tenants' custom providers through the broker's gRPC API (issue 12):
//! created by a tenant admin, they complete the flow against tiny local
//! servers that answer form-encoded or nest the token (the https fronts and
//! loopback allow-list of `broker_flows.rs`); aimed at the metadata address
//! or at the suite's own OpenBao they are refused with the exact code and
//! field and nothing is stored; another tenant can neither see nor use them.

use std::sync::atomic::Ordering;

use locksmith_auth::{Principal, Role};
use locksmith_broker::flows::SuiteEndpoints;
use locksmith_errors::{ApiError, ErrorCode};
use locksmith_proto::broker::v1 as pb;

use crate::broker_flows::{
    PUBLIC_URL, World, acme_writer, as_principal, assert_refused, quirk_server, tenant_principal,
    tls_front, world_with,
};

/// The shipped catalog of these tests: one entry, so an id it holds can be
/// refused as a custom provider.
const SHIPPED: &str = r#"
version = 1
[providers.shipped]
display_name = "Shipped"
auth_mode = "oauth2_authorization_code"
authorization_url = "https://shipped.example/authorize"
token_url = "https://shipped.example/token"
client_auth = "basic"
"#;

fn acme_admin() -> Principal {
    tenant_principal("acme", Role::Admin)
}

fn formy(port: u16) -> String {
    format!(
        r#"{{"display_name":"Form-encoded","auth_mode":"oauth2_authorization_code",
  "authorization_url":"https://127.0.0.1:{port}/authorize",
  "token_url":"https://127.0.0.1:{port}/token",
  "client_auth":"body","pkce":true,"token_response":{{"format":"form"}},
  "api":{{"base_url":"https://127.0.0.1:{port}/api"}}}}"#
    )
}

fn nesty(port: u16) -> String {
    format!(
        r#"{{"display_name":"Nested","auth_mode":"oauth2_authorization_code",
  "authorization_url":"https://127.0.0.1:{port}/authorize",
  "token_url":"https://127.0.0.1:{port}/token",
  "client_auth":"basic","pkce":false,
  "token_response":{{"access_token":"data.grant.token","refresh_token":"data.grant.renew",
    "expires_in":"data.grant.ttl","metadata":{{"workspace_id":"data.workspace.id"}}}},
  "api":{{"base_url":"https://127.0.0.1:{port}/api"}}}}"#
    )
}

/// A definition whose token URL is `token_url` (its authorization URL is
/// harmless, so only `token_url` can be refused).
fn aimed_at(token_url: &str) -> String {
    format!(
        r#"{{"display_name":"Sneaky","auth_mode":"oauth2_authorization_code",
  "authorization_url":"https://127.0.0.1:9/authorize","token_url":"{token_url}",
  "client_auth":"basic"}}"#
    )
}

impl World {
    async fn create_custom(
        &mut self,
        principal: &Principal,
        name: &str,
        definition: &str,
    ) -> Result<pb::CustomProvider, tonic::Status> {
        self.edge
            .create_custom_provider(as_principal(
                pb::CreateCustomProviderRequest {
                    name: name.into(),
                    definition: definition.into(),
                },
                Some(principal),
            ))
            .await
            .map(|r| r.into_inner().provider.unwrap())
    }

    async fn get_custom(
        &mut self,
        principal: &Principal,
        name: &str,
    ) -> Result<pb::CustomProvider, tonic::Status> {
        self.edge
            .get_custom_provider(as_principal(
                pb::GetCustomProviderRequest { name: name.into() },
                Some(principal),
            ))
            .await
            .map(|r| r.into_inner().provider.unwrap())
    }

    async fn list_custom(
        &mut self,
        principal: &Principal,
        parent: &str,
    ) -> Result<Vec<pb::CustomProvider>, tonic::Status> {
        self.edge
            .list_custom_providers(as_principal(
                pb::ListCustomProvidersRequest {
                    parent: parent.into(),
                    ..Default::default()
                },
                Some(principal),
            ))
            .await
            .map(|r| r.into_inner().providers)
    }
}

#[tokio::test]
async fn custom_providers_created_through_the_api_complete_the_flow() {
    let form = quirk_server(
        "application/x-www-form-urlencoded",
        "access_token=form-access&token_type=bearer&refresh_token=form-refresh&expires_in=3600&scope=a+b"
            .into(),
    )
    .await;
    let nested = quirk_server(
        "application/json",
        r#"{"ok":true,"data":{"grant":{"token":"nested-access","renew":"nested-refresh","ttl":600},"workspace":{"id":"w-42"}}}"#
            .into(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (form_port, form_ca) = tls_front(form.addr, &dir).await;
    let (nested_port, nested_ca) = tls_front(nested.addr, &dir).await;
    let mut w = world_with(
        SHIPPED,
        vec![form_ca, nested_ca],
        &[
            ("formy", "form-id", "form-secret"),
            ("nesty", "nest-id", "nest-secret"),
        ],
        dir,
        SuiteEndpoints::new(),
    )
    .await;

    for (integration, definition) in [("formy", formy(form_port)), ("nesty", nesty(nested_port))] {
        let name = format!("tenants/acme/providers/{integration}");
        let made = w
            .create_custom(&acme_admin(), &name, &definition)
            .await
            .unwrap();
        assert_eq!(made.name, name);
        assert_eq!(made.definition, definition);
        assert_eq!(made.version, 1);
        assert_eq!(made.create_time, made.update_time);
    }
    let listed = w
        .list_custom(&tenant_principal("acme", Role::Read), "tenants/acme")
        .await
        .unwrap();
    let names: Vec<_> = listed.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "tenants/acme/providers/formy",
            "tenants/acme/providers/nesty"
        ]
    );

    for (integration, server, access, expires) in [
        ("formy", &form, "form-access", 3600),
        ("nesty", &nested, "nested-access", 600),
    ] {
        let started = w
            .start(&acme_writer(), "tenants/acme", integration, "")
            .await
            .unwrap();
        let url = reqwest::Url::parse(&started.authorization_url).unwrap();
        assert_eq!(
            url.port(),
            Some(if integration == "formy" {
                form_port
            } else {
                nested_port
            })
        );
        let done = w
            .complete(pb::CompleteAuthorizationRequest {
                integration: integration.into(),
                state: started.state.clone(),
                code: "the-code".into(),
                redirect_uri: format!("{PUBLIC_URL}/oauth/callback/{integration}"),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(server.hits.load(Ordering::SeqCst), 1, "{integration}");
        let sent = server.last_body.lock().unwrap().clone();
        assert!(sent.contains("code=the-code"), "{sent}");
        assert_eq!(
            sent.contains("code_verifier="),
            integration == "formy",
            "{sent}"
        );
        let conn = done.connection.unwrap();
        assert_eq!(
            conn.name,
            format!("tenants/acme/integrations/{integration}")
        );
        let ttl = conn.expire_time.unwrap().seconds - conn.update_time.unwrap().seconds;
        assert_eq!(ttl, expires, "{integration}");
        assert!(conn.has_refresh_token);
        if integration == "nesty" {
            assert_eq!(conn.metadata["workspace_id"], "w-42");
        } else {
            assert_eq!(conn.scopes, vec!["a".to_owned(), "b".to_owned()]);
        }
        let token = w
            .proxy
            .get_access_token(as_principal(
                pb::GetAccessTokenRequest {
                    name: conn.name.clone(),
                    ..Default::default()
                },
                None,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(token.credential, access);
        // The refresher finds the custom provider too (the same server
        // answers the refresh).
        w.edge
            .refresh_connection(as_principal(
                pb::RefreshConnectionRequest {
                    name: conn.name.clone(),
                },
                Some(&acme_writer()),
            ))
            .await
            .unwrap();
        assert_eq!(server.hits.load(Ordering::SeqCst), 2, "{integration}");
        let sent = server.last_body.lock().unwrap().clone();
        assert!(sent.contains("grant_type=refresh_token"), "{sent}");
    }

    // Tenant beta neither sees nor uses acme's providers: NOT_FOUND, exactly
    // as for a provider nobody has.
    let beta = tenant_principal("beta", Role::Admin);
    for name in [
        "tenants/acme/providers/formy",
        "tenants/beta/providers/formy",
        "tenants/beta/providers/never",
    ] {
        let e = w.get_custom(&beta, name).await.unwrap_err();
        assert_refused(&e, ErrorCode::NotFound, None);
        assert_eq!(
            ApiError::from_status(&e).detail,
            "custom provider not found"
        );
    }
    let e = w.list_custom(&beta, "tenants/acme").await.unwrap_err();
    assert_refused(&e, ErrorCode::NotFound, None);
    assert!(
        w.list_custom(&beta, "tenants/beta")
            .await
            .unwrap()
            .is_empty()
    );
    for integration in ["formy", "never"] {
        let e = w
            .start(&beta, "tenants/beta", integration, "")
            .await
            .unwrap_err();
        assert_refused(&e, ErrorCode::NotFound, None);
        assert_eq!(ApiError::from_status(&e).detail, "integration not found");
    }
    // Nor may it store credentials for it.
    let e = w
        .edge
        .store_credentials(as_principal(
            pb::StoreCredentialsRequest {
                name: "tenants/beta/integrations/formy".into(),
                credentials: Some(pb::store_credentials_request::Credentials::Tokens(
                    pb::ImportedTokens {
                        access_token: "x".into(),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            },
            Some(&beta),
        ))
        .await
        .unwrap_err();
    assert_refused(&e, ErrorCode::NotFound, None);
    assert_eq!(ApiError::from_status(&e).detail, "integration not found");
    assert!(w.list("tenants/beta").await.is_empty());
}

#[tokio::test]
async fn custom_providers_aimed_inside_are_refused_and_changes_are_checked() {
    let bao = crate::openbao::openbao();
    let bao_url = reqwest::Url::parse(&bao.addr).unwrap();
    let bao_port = bao_url.port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut w = world_with(
        SHIPPED,
        Vec::new(),
        &[],
        dir,
        SuiteEndpoints::new()
            .with("the suite's OpenBao", &bao.addr)
            .unwrap(),
    )
    .await;
    let admin = acme_admin();

    let bao_token_url = format!("https://127.0.0.1:{bao_port}/v1/sys/health");
    let refusals = [
        (
            "metadata",
            "https://169.254.169.254/latest/meta-data/iam".to_owned(),
            "is refused by the egress policy: 169.254.169.254 is in 169.254.169.254 (cloud metadata)"
                .to_owned(),
        ),
        (
            "openbao",
            bao_token_url,
            format!(
                "points at the suite's OpenBao (127.0.0.1:{bao_port}), one of the suite's own \
                 services; a custom provider may not reach them"
            ),
        ),
        (
            "plain",
            format!("http://127.0.0.1:{bao_port}/v1/sys/health"),
            "must be an https URL".to_owned(),
        ),
    ];
    for (id, url, why) in &refusals {
        let name = format!("tenants/acme/providers/{id}");
        let e = w
            .create_custom(&admin, &name, &aimed_at(url))
            .await
            .unwrap_err();
        assert_refused(
            &e,
            ErrorCode::InvalidArgument,
            Some(("definition.token_url", why)),
        );
        // Nothing stored.
        let e = w.get_custom(&admin, &name).await.unwrap_err();
        assert_refused(&e, ErrorCode::NotFound, None);
    }
    assert!(
        w.list_custom(&admin, "tenants/acme")
            .await
            .unwrap()
            .is_empty()
    );

    // A shipped id cannot be taken; the definition's own errors name the
    // field under `definition.`.
    let fine = aimed_at("https://127.0.0.1:9/token");
    let e = w
        .create_custom(&admin, "tenants/acme/providers/shipped", &fine)
        .await
        .unwrap_err();
    assert_refused(&e, ErrorCode::AlreadyExists, None);
    assert_eq!(
        ApiError::from_status(&e).detail,
        "integration `shipped` already exists in the shipped catalog"
    );
    let e = w
        .create_custom(
            &admin,
            "tenants/acme/providers/typo",
            r#"{"display_name":"x","auth_mode":"oauth2_authorization_code","tokne_url":"https://a.example"}"#,
        )
        .await
        .unwrap_err();
    assert_eq!(
        ApiError::from_status(&e).violations[0].field,
        "definition.tokne_url"
    );
    let e = w
        .create_custom(&admin, "tenants/acme/nope/x", &fine)
        .await
        .unwrap_err();
    assert_refused(
        &e,
        ErrorCode::InvalidArgument,
        Some(("name", "must be tenants/{t}/providers/{integration}")),
    );

    // Changing needs the admin role; reading the read role.
    for role in [Role::Read, Role::Write] {
        let e = w
            .create_custom(
                &tenant_principal("acme", role),
                "tenants/acme/providers/crm",
                &fine,
            )
            .await
            .unwrap_err();
        assert_refused(&e, ErrorCode::PermissionDenied, None);
    }
    let made = w
        .create_custom(&admin, "tenants/acme/providers/crm", &fine)
        .await
        .unwrap();
    let e = w
        .create_custom(&admin, "tenants/acme/providers/crm", &fine)
        .await
        .unwrap_err();
    assert_refused(&e, ErrorCode::AlreadyExists, None);
    let read = w
        .get_custom(
            &tenant_principal("acme", Role::Read),
            "tenants/acme/providers/crm",
        )
        .await
        .unwrap();
    assert_eq!(read, made);

    // An update is checked like a create, and check-and-set on the version.
    let update = |definition: String, expected_version: u64, who: &Principal| {
        as_principal(
            pb::UpdateCustomProviderRequest {
                name: "tenants/acme/providers/crm".into(),
                definition,
                expected_version,
            },
            Some(who),
        )
    };
    let e = w
        .edge
        .update_custom_provider(update(aimed_at(&refusals[0].1), 1, &admin))
        .await
        .unwrap_err();
    assert_refused(
        &e,
        ErrorCode::InvalidArgument,
        Some(("definition.token_url", &refusals[0].2)),
    );
    let e = w
        .edge
        .update_custom_provider(update(aimed_at("https://127.0.0.1:10/token"), 5, &admin))
        .await
        .unwrap_err();
    assert_refused(&e, ErrorCode::VersionConflict, None);
    let e = w
        .edge
        .update_custom_provider(update(
            fine.clone(),
            1,
            &tenant_principal("beta", Role::Admin),
        ))
        .await
        .unwrap_err();
    assert_refused(&e, ErrorCode::NotFound, None);
    let updated = w
        .edge
        .update_custom_provider(update(aimed_at("https://127.0.0.1:10/token"), 1, &admin))
        .await
        .unwrap()
        .into_inner()
        .provider
        .unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.create_time, made.create_time);
    assert_eq!(
        w.get_custom(&admin, "tenants/acme/providers/crm")
            .await
            .unwrap(),
        updated
    );

    // Delete: check-and-set, then gone.
    let delete = |expected_version: u64| {
        as_principal(
            pb::DeleteCustomProviderRequest {
                name: "tenants/acme/providers/crm".into(),
                expected_version,
            },
            Some(&admin),
        )
    };
    let e = w.edge.delete_custom_provider(delete(1)).await.unwrap_err();
    assert_refused(&e, ErrorCode::VersionConflict, None);
    w.edge.delete_custom_provider(delete(2)).await.unwrap();
    let e = w
        .get_custom(&admin, "tenants/acme/providers/crm")
        .await
        .unwrap_err();
    assert_refused(&e, ErrorCode::NotFound, None);
    let e = w
        .start(&acme_writer(), "tenants/acme", "crm", "")
        .await
        .unwrap_err();
    assert_refused(&e, ErrorCode::NotFound, None);
    let e = w.edge.delete_custom_provider(delete(0)).await.unwrap_err();
    assert_refused(&e, ErrorCode::NotFound, None);

    // The token proxy may not manage custom providers.
    let e = w
        .proxy
        .get_custom_provider(as_principal(
            pb::GetCustomProviderRequest {
                name: "tenants/acme/providers/crm".into(),
            },
            Some(&admin),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
}
