use locksmith_domain::Scope;
use locksmith_egress::{EgressClient, EgressPolicy};
use locksmith_store::EmbeddedStore;

use super::*;
use crate::config::{PublicUrl, ReturnUrlPolicy};
use crate::credstore::CredstoreClient;
use crate::flows::{Broker, SuiteEndpoints};
use crate::refresh::{RefreshConfig, Refresher};
use crate::state::PendingStore;

const SHIPPED: &str = r#"
version = 1
[providers.github]
display_name = "GitHub"
auth_mode = "oauth2_authorization_code"
authorization_url = "https://github.com/login/oauth/authorize"
token_url = "https://github.com/login/oauth/access_token"
client_auth = "basic"
"#;

fn definition(token_url: &str) -> String {
    format!(
        r#"{{"display_name":"Acme CRM","auth_mode":"oauth2_authorization_code",
            "authorization_url":"https://127.0.0.1:9443/authorize","token_url":"{token_url}",
            "client_auth":"body"}}"#
    )
}

fn t(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

fn i(id: &str) -> IntegrationId {
    IntegrationId::parse(id).unwrap()
}

fn at(tenant: &str, integration: &str) -> ConnectionRef {
    ConnectionRef {
        scope: Scope::Tenant(t(tenant)),
        integration: i(integration),
    }
}

fn customs() -> CustomProviders<EmbeddedStore> {
    let store = Arc::new(EmbeddedStore::in_memory(locksmith_store::system_clock()).unwrap());
    CustomProviders::new(store, Arc::new(Catalog::parse(SHIPPED).unwrap()))
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

#[test]
fn names_and_parents_parse_strictly() {
    assert_eq!(
        parse_name("tenants/acme/providers/acme-crm"),
        Some((t("acme"), i("acme-crm")))
    );
    for bad in [
        "tenants/acme/providers/",
        "tenants/acme/integrations/x",
        "tenants/Acme/providers/x",
        "tenants/acme/providers/x/y",
        "acme/providers/x",
    ] {
        assert_eq!(parse_name(bad), None, "{bad}");
    }
    assert_eq!(parse_parent("tenants/acme"), Some(t("acme")));
    assert_eq!(parse_parent("tenants/acme/orgs/x"), None);
    assert_eq!(
        resource_name(&t("acme"), &i("crm")),
        "tenants/acme/providers/crm"
    );
}

#[tokio::test]
async fn create_get_update_delete_with_check_and_set() {
    let c = customs();
    let def = definition("https://127.0.0.1:9443/token");
    let made = c
        .create(&t("acme"), &i("crm"), def.clone(), now())
        .await
        .unwrap();
    assert_eq!(made.version, 1);
    assert_eq!(made.name, "tenants/acme/providers/crm");
    assert_eq!(made.definition, def);
    assert_eq!((made.created_at, made.updated_at), (now(), now()));
    // Create only: a second create is ALREADY_EXISTS naming the id.
    match c.create(&t("acme"), &i("crm"), def.clone(), now()).await {
        Err(BrokerError::AlreadyExists {
            what: "integration",
            id,
            shipped: false,
        }) => assert_eq!(id, "crm"),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.get(&t("acme"), &i("crm")).await.unwrap(), made);

    // Update on a stale version changes nothing.
    let later = now() + time::Duration::minutes(5);
    let def2 = definition("https://127.0.0.1:9444/token");
    assert!(matches!(
        c.update(&t("acme"), &i("crm"), def2.clone(), 7, later)
            .await,
        Err(BrokerError::VersionConflict)
    ));
    let updated = c
        .update(&t("acme"), &i("crm"), def2.clone(), 1, later)
        .await
        .unwrap();
    assert_eq!(
        (updated.version, updated.created_at, updated.updated_at),
        (2, now(), later)
    );
    let p = c.lookup(Some(&t("acme")), &i("crm")).await.unwrap();
    assert_eq!(
        p.token_url(&crate::catalog::ConnectionInputs::none())
            .unwrap()
            .port(),
        Some(9444)
    );

    // Delete on a stale version changes nothing; on the right one, erases.
    assert!(matches!(
        c.delete(&t("acme"), &i("crm"), 1).await,
        Err(BrokerError::VersionConflict)
    ));
    c.delete(&t("acme"), &i("crm"), 2).await.unwrap();
    assert!(matches!(
        c.get(&t("acme"), &i("crm")).await,
        Err(BrokerError::NotFound("custom provider"))
    ));
    // The cache was invalidated by the delete.
    assert!(matches!(
        c.lookup(Some(&t("acme")), &i("crm")).await,
        Err(BrokerError::NotFound("integration"))
    ));
    assert!(matches!(
        c.delete(&t("acme"), &i("crm"), 0).await,
        Err(BrokerError::NotFound("custom provider"))
    ));
    // And it can be created again, from version 1.
    let again = c.create(&t("acme"), &i("crm"), def, now()).await.unwrap();
    assert_eq!(again.version, 1);
}

#[tokio::test]
async fn a_tombstone_reads_as_absent_and_is_overwritten_by_a_create() {
    let c = customs();
    let def = definition("https://127.0.0.1:9443/token");
    c.create(&t("acme"), &i("crm"), def.clone(), now())
        .await
        .unwrap();
    // A delete that stopped after its tombstone (the process died).
    let key = CustomProviders::<EmbeddedStore>::key(&t("acme"), &i("crm")).unwrap();
    let tomb = Stored {
        definition: def.clone(),
        created_at: 0,
        updated_at: 0,
        deleted: true,
    };
    c.write(&key, &tomb, Cas::Version(1)).await.unwrap();
    c.forget(&t("acme"), &i("crm"));
    assert!(matches!(
        c.get(&t("acme"), &i("crm")).await,
        Err(BrokerError::NotFound(_))
    ));
    assert!(
        c.list(&t("acme"), 0, "")
            .await
            .unwrap()
            .providers
            .is_empty()
    );
    let made = c.create(&t("acme"), &i("crm"), def, now()).await.unwrap();
    assert_eq!(made.version, 3);
}

#[tokio::test]
async fn lookup_answers_shipped_entries_first_and_the_tenants_own_only() {
    let c = customs();
    c.create(
        &t("acme"),
        &i("crm"),
        definition("https://127.0.0.1:9443/token"),
        now(),
    )
    .await
    .unwrap();
    let p = c.provider(&at("acme", "crm")).await.unwrap();
    assert_eq!(p.display_name(), "Acme CRM");
    // Another tenant, and the system scope, see nothing: NOT_FOUND as absent.
    for (tenant, integration) in [("beta", "crm"), ("acme", "nope")] {
        assert!(matches!(
            c.provider(&at(tenant, integration)).await,
            Err(BrokerError::NotFound("integration"))
        ));
    }
    assert!(matches!(
        c.lookup(None, &i("crm")).await,
        Err(BrokerError::NotFound("integration"))
    ));
    // Shipped entries are everyone's.
    let gh = c.provider(&at("beta", "github")).await.unwrap();
    assert_eq!(gh.display_name(), "GitHub");
}

#[tokio::test]
async fn listings_page_by_integration_and_refuse_foreign_tokens() {
    let c = customs();
    for id in ["c3", "c1", "c2"] {
        c.create(
            &t("acme"),
            &i(id),
            definition("https://127.0.0.1:9443/token"),
            now(),
        )
        .await
        .unwrap();
    }
    let first = c.list(&t("acme"), 2, "").await.unwrap();
    let names: Vec<_> = first.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["tenants/acme/providers/c1", "tenants/acme/providers/c2"]
    );
    assert!(!first.next_page_token.is_empty());
    let second = c.list(&t("acme"), 2, &first.next_page_token).await.unwrap();
    assert_eq!(second.providers.len(), 1);
    assert_eq!(second.providers[0].name, "tenants/acme/providers/c3");
    assert_eq!(second.next_page_token, "");
    match c.list(&t("beta"), 2, &first.next_page_token).await {
        Err(BrokerError::InvalidArgument { field, .. }) => assert_eq!(field, "page_token"),
        other => panic!("{other:?}"),
    }
    assert!(
        c.list(&t("beta"), 0, "")
            .await
            .unwrap()
            .providers
            .is_empty()
    );
    assert!(matches!(
        c.list(&t("acme"), -1, "").await,
        Err(BrokerError::InvalidArgument { .. })
    ));
}

/// A broker with no reachable credential store (admission never calls it),
/// loopback allow-listed like the tests' deployments, and a suite OpenBao at
/// 127.0.0.1:8200.
fn broker() -> Broker<EmbeddedStore> {
    let catalog = Arc::new(Catalog::parse(SHIPPED).unwrap());
    let egress = EgressClient::new(EgressPolicy {
        allow_cidrs: vec!["127.0.0.0/8".into()],
        ..EgressPolicy::default()
    })
    .unwrap();
    let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
    let credstore = CredstoreClient::new(channel);
    let refresher = Refresher::new(
        credstore.clone(),
        egress.clone(),
        catalog.clone(),
        RefreshConfig::default(),
    )
    .unwrap();
    Broker::new(
        catalog,
        PendingStore::new(EmbeddedStore::in_memory(locksmith_store::system_clock()).unwrap()),
        credstore,
        egress,
        refresher,
        PublicUrl::parse("https://locksmith.example.com").unwrap(),
        ReturnUrlPolicy::default(),
    )
    .protect(
        SuiteEndpoints::new()
            .with("the suite's OpenBao", "http://127.0.0.1:8200")
            .unwrap(),
    )
}

fn fields(e: BrokerError) -> Vec<(String, String)> {
    match e {
        BrokerError::InvalidFields(errors) => {
            errors.into_iter().map(|e| (e.field, e.message)).collect()
        }
        BrokerError::InvalidArgument { field, reason } => vec![(field, reason)],
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn admission_names_the_field_of_a_bad_or_internal_url() {
    let b = broker();
    let crm = i("crm");
    b.admit_definition(&crm, &definition("https://127.0.0.1:9443/token"))
        .await
        .unwrap();
    let e = b
        .admit_definition(&crm, &definition("http://example.com/token"))
        .await
        .unwrap_err();
    assert_eq!(
        fields(e),
        [(
            "definition.token_url".to_owned(),
            "must be an https URL".to_owned()
        )]
    );
    let e = b
        .admit_definition(&crm, &definition("https://169.254.169.254/latest"))
        .await
        .unwrap_err();
    let f = fields(e);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].0, "definition.token_url");
    assert!(
        f[0].1
            .starts_with("is refused by the egress policy: 169.254.169.254 is in "),
        "{}",
        f[0].1
    );
    for (url, authority) in [
        ("https://127.0.0.1:8200/v1/sys/health", "127.0.0.1:8200"),
        ("https://localhost:8200/token", "localhost:8200"),
        (
            "https://[::ffff:127.0.0.1]:8200/token",
            "[::ffff:7f00:1]:8200",
        ),
    ] {
        let e = b
            .admit_definition(&crm, &definition(url))
            .await
            .unwrap_err();
        let f = fields(e);
        assert_eq!(f[0].0, "definition.token_url", "{url}");
        // `localhost` may resolve to ::1 only on some hosts, and ::1 is not
        // allow-listed here: then the guard refuses it first.
        if !f[0].1.starts_with("is refused by the egress policy") {
            assert_eq!(
                f[0].1,
                format!(
                    "points at the suite's OpenBao ({authority}), one of the suite's own \
                     services; a custom provider may not reach them"
                ),
                "{url}"
            );
        }
    }
    // Every bad field at once, named under `definition.`.
    let e = b
        .admit_definition(
            &crm,
            r#"{"display_name":"x","tokne_url":"https://a.example"}"#,
        )
        .await
        .unwrap_err();
    assert_eq!(fields(e)[0].0, "definition.tokne_url");
    let e = b.admit_definition(&crm, "").await.unwrap_err();
    assert_eq!(fields(e)[0].0, "definition");
}
