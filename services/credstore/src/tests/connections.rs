//! Connection records: sealed, versioned with check-and-set, listed by
//! owner, erased with their history, confined to their tenant, audited.

use locksmith_domain::ConnectionRef;
use locksmith_store::{Cas, DocumentStore, Key};

use super::*;

/// NOT_FOUND in a connection's words, as for an absent record.
fn absent<T: std::fmt::Debug>(r: Result<T, CredError>) -> bool {
    matches!(r, Err(CredError::NotFound("connection")))
}

fn conn(name: &str) -> ConnectionRef {
    ConnectionRef::parse(name).unwrap()
}

const GITHUB: &str = "tenants/acme/orgs/sales/bots/helper/integrations/github";

#[tokio::test]
async fn records_are_sealed_versioned_and_conditional() {
    let fx = fixture().await;
    let c = conn(GITHUB);
    let tokens = fields(&[("access-token", "gho_live_1"), ("status", "active")]);
    let v1 = fx
        .cs
        .put_connection(&service(), &c, &tokens, Cas::CreateOnly)
        .await
        .unwrap();
    assert_eq!(v1, 1);
    // Create-only again, and a stale version: refused, nothing written.
    for cas in [Cas::CreateOnly, Cas::Version(7)] {
        let refused = fx.cs.put_connection(&service(), &c, &tokens, cas).await;
        assert!(
            matches!(refused, Err(CredError::VersionConflict { current: 1 })),
            "{refused:?}"
        );
    }
    let next = fields(&[("access-token", "gho_live_2"), ("status", "active")]);
    let v2 = fx
        .cs
        .put_connection(&service(), &c, &next, Cas::Version(1))
        .await
        .unwrap();
    assert_eq!(v2, 2);
    let read = fx.cs.get_connection(&service(), &c).await.unwrap();
    assert_eq!(read.version, 2);
    assert_eq!(
        read.fields.get("access-token").unwrap().expose_secret(),
        "gho_live_2"
    );
    assert!(!format!("{read:?}").contains("gho_live"));

    // At rest: sealed, and not a secret any secret route can reach.
    let raw = fx
        .raw
        .read(&Key::parse(GITHUB).unwrap(), None)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&raw.body);
    assert!(!text.contains("gho_live"), "{text}");
    assert!(text.contains("lsk1:"), "{text}");
    let bot = scope(BOT);
    assert!(SecretName::parse("integrations/github", &bot).is_err());
    assert_eq!(
        fx.cs.list(&service(), &bot, None, 10).await.unwrap(),
        vec![]
    );

    let events = fx.audit.take();
    let ops: Vec<_> = events.iter().map(|e| e.operation).collect();
    assert_eq!(
        ops,
        [
            Operation::PutConnection,
            Operation::PutConnection,
            Operation::PutConnection,
            Operation::PutConnection,
            Operation::GetConnection,
            Operation::List,
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| e.resource == GITHUB || e.operation == Operation::List)
    );
}

#[tokio::test]
async fn listing_deleting_and_another_tenant() {
    let fx = fixture().await;
    let owner = scope("tenant/acme");
    for i in ["slack", "github", "notion"] {
        let c = conn(&format!("tenants/acme/integrations/{i}"));
        fx.cs
            .put_connection(&service(), &c, &fields(&[("t", i)]), Cas::CreateOnly)
            .await
            .unwrap();
    }
    let listed: Vec<String> = fx
        .cs
        .list_connections(&service(), &owner, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|c| c.integration.as_str().to_owned())
        .collect();
    assert_eq!(listed, ["github", "notion", "slack"]);
    let page = fx
        .cs
        .list_connections(&service(), &owner, Some("github"), 1)
        .await
        .unwrap();
    assert_eq!(page[0].integration.as_str(), "notion");

    // Beta's principals see nothing of acme's, exactly as if absent.
    let slack = conn("tenants/acme/integrations/slack");
    for beta in [workload("beta"), tenant("beta", &[Role::Admin])] {
        assert!(absent(fx.cs.get_connection(&beta, &slack).await));
        assert!(absent(fx.cs.delete_connection(&beta, &slack, None).await));
        assert!(absent(
            fx.cs
                .put_connection(&beta, &slack, &fields(&[("t", "x")]), Cas::Version(1))
                .await
        ));
        assert!(absent(
            fx.cs.list_connections(&beta, &owner, None, 10).await
        ));
    }

    // A conditional erase at the wrong version is refused; then it goes whole.
    let refused = fx.cs.delete_connection(&service(), &slack, Some(9)).await;
    assert!(matches!(
        refused,
        Err(CredError::VersionConflict { current: 1 })
    ));
    fx.cs
        .delete_connection(&service(), &slack, Some(1))
        .await
        .unwrap();
    assert!(absent(fx.cs.get_connection(&service(), &slack).await));
    assert!(absent(
        fx.cs.delete_connection(&service(), &slack, None).await
    ));
    // Erased with its history: a new record starts at version 1.
    let again = fx
        .cs
        .put_connection(&service(), &slack, &fields(&[("t", "y")]), Cas::CreateOnly)
        .await
        .unwrap();
    assert_eq!(again, 1);
}

#[tokio::test]
async fn a_tenant_without_a_key_has_no_connections_and_shredding_erases_them() {
    let fx = fixture().await;
    let ghost = conn("tenants/ghost/integrations/github");
    let refused = fx
        .cs
        .put_connection(&service(), &ghost, &fields(&[("t", "x")]), Cas::CreateOnly)
        .await;
    assert!(
        matches!(refused, Err(CredError::NotFound("connection"))),
        "{refused:?}"
    );

    let c = conn("tenants/beta/integrations/github");
    fx.cs
        .put_connection(&service(), &c, &fields(&[("t", "x")]), Cas::CreateOnly)
        .await
        .unwrap();
    fx.cs
        .shred_tenant_key(&operator(), &tid("beta"))
        .await
        .unwrap();
    let gone = fx
        .raw
        .read(&Key::parse(&c.storage_path()).unwrap(), None)
        .await;
    assert!(gone.is_err(), "the sealed record outlived its key");
}

#[tokio::test]
async fn a_tenants_records_are_walked_at_every_owner_in_pages_without_repeats() {
    let fx = fixture().await;
    // Names chosen so that `o-x/` sorts before `o/` in listings, secrets sit
    // next to the records, and beta holds one record of its own.
    let names = [
        "tenants/acme/integrations/github",
        "tenants/acme/integrations/slack",
        "tenants/acme/orgs/o/integrations/notion",
        "tenants/acme/orgs/o/bots/b1/integrations/github",
        "tenants/acme/orgs/o/bots/b2/integrations/github",
        "tenants/acme/orgs/o/users/u/integrations/linear",
        "tenants/acme/orgs/o-x/integrations/github",
        "tenants/beta/integrations/github",
    ];
    for name in names {
        fx.cs
            .put_connection(
                &service(),
                &conn(name),
                &fields(&[("token", name)]),
                Cas::CreateOnly,
            )
            .await
            .unwrap();
    }
    for s in ["tenant/acme", "tenant/acme/org/o/bot/b1"] {
        fx.cs
            .put(
                &service(),
                &sref(s, "tools/search"),
                &fields(&[("token", "k")]),
                Cas::CreateOnly,
            )
            .await
            .unwrap();
    }
    let acme = tid("acme");
    let all: Vec<String> = fx
        .cs
        .list_tenant_connections(&operator(), &acme, None, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.connection.resource_name())
        .collect();
    let mut expected: Vec<String> = names[..7].iter().map(|s| s.to_string()).collect();
    expected.sort();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "every owner's records, nothing else");
    // Pages of every size, resumed after the last path served, give the
    // same records once each, in the same order.
    for size in 1..=7 {
        let mut after: Option<String> = None;
        let mut paged = Vec::new();
        loop {
            let page = fx
                .cs
                .list_tenant_connections(&operator(), &acme, after.as_deref(), size)
                .await
                .unwrap();
            paged.extend(page.iter().map(|r| r.connection.resource_name()));
            if page.len() < size {
                break;
            }
            after = page.last().map(|r| r.connection.storage_path());
        }
        assert_eq!(paged, all, "pages of {size}");
    }
    // The values come decrypted, to the broker alone.
    let first = fx
        .cs
        .list_tenant_connections(&service(), &acme, None, 1)
        .await
        .unwrap();
    assert_eq!(
        first[0].fields.get("token").unwrap().expose_secret(),
        first[0].connection.resource_name()
    );
    // Tenant principals and workloads, even acme's own: not theirs.
    for who in [tenant("acme", &[Role::Admin]), workload("acme")] {
        let refused = fx.cs.list_tenant_connections(&who, &acme, None, 10).await;
        assert!(
            matches!(refused, Err(CredError::PermissionDenied { .. })),
            "{refused:?}"
        );
    }
    // A tenant without a key holds none.
    assert!(absent(
        fx.cs
            .list_tenant_connections(&operator(), &tid("ghost"), None, 10)
            .await
    ));
    let ops: Vec<_> = fx.audit.take().iter().map(|e| e.operation).collect();
    assert!(ops.contains(&Operation::ListTenantConnections), "{ops:?}");
}
