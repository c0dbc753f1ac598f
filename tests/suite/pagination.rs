//! Cursor pagination over more than a thousand tenants.

use std::collections::BTreeSet;

use futures::{StreamExt, stream};
use locksmith_proto::registry::v1 as pb;
use locksmith_tls::ServiceName;

use crate::harness::{Suite, assert_problem};

const TENANTS: usize = 1_203;

#[tokio::test]
async fn lists_every_tenant_exactly_once_page_by_page() {
    let suite = Suite::start().await;
    // Created over gRPC, as the edge would, eight at a time.
    let client = suite.registry_client_as(ServiceName::Edge).await;
    let created: Vec<()> = stream::iter(0..TENANTS)
        .map(|i| {
            let mut client = client.clone();
            async move {
                let tenant = pb::Tenant {
                    id: format!("tenant-{i:05}"),
                    display_name: format!("Tenant {i}"),
                    ..Default::default()
                };
                client
                    .create_tenant(pb::CreateTenantRequest {
                        tenant: Some(tenant),
                    })
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert_eq!(created.len(), TENANTS);

    for page_size in [100, 1000, 7] {
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &token {
                Some(t) => format!("/admin/tenants?page_size={page_size}&page_token={t}"),
                None => format!("/admin/tenants?page_size={page_size}"),
            };
            let (status, page) = suite.get(&path).await;
            assert_eq!(status, 200, "{page}");
            let ids: Vec<String> = page["tenants"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_owned())
                .collect();
            assert!(ids.len() <= page_size);
            seen.extend(ids);
            pages += 1;
            match page["next_page_token"].as_str() {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen.len(), TENANTS, "page size {page_size}");
        assert_eq!(
            seen.iter().collect::<BTreeSet<_>>().len(),
            TENANTS,
            "no duplicates"
        );
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "ordered by id");
        assert_eq!(pages, TENANTS.div_ceil(page_size));
    }
}

#[tokio::test]
async fn page_sizes_and_tokens_are_checked() {
    let suite = Suite::start().await;
    for bad in [
        "page_size=1001",
        "page_size=-1",
        "page_token=bm9wZQ",
        "page_token=%%%",
    ] {
        let (status, body) = suite.get(&format!("/admin/tenants?{bad}")).await;
        assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    }
    // A token from one listing does not work on another.
    for id in ["a", "b", "c"] {
        crate::harness::create_tenant(&suite, id).await;
    }
    let (_, page) = suite.get("/admin/tenants?page_size=1").await;
    let token = page["next_page_token"].as_str().unwrap();
    let (status, body) = suite
        .get(&format!("/tenants/a/orgs?page_token={token}"))
        .await;
    assert_problem(status, &body, 400, "INVALID_ARGUMENT");
}
