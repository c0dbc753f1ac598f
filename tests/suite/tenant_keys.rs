//! Tenant keys follow tenants: the registry has the credential store
//! provision a tenant's key when the tenant is created and shred it when the
//! tenant is deleted; without the credential store neither happens halfway.

use std::collections::HashMap;

use locksmith_auth::Principal;
use locksmith_proto::credstore::v1::{
    self as pb, credential_store_service_client::CredentialStoreServiceClient,
};
use locksmith_store::{Cas, DocumentStore, Key};
use locksmith_tls::ServiceName;
use reqwest::Method;
use serde_json::json;
use tonic::{Code, Request, transport::Channel};
use tonic_types::StatusExt;

use crate::harness::{Suite, assert_problem, create_tenant};

const SECRET: &str = "tenants/acme/secrets/webhooks/stripe";
/// Where the credential store keeps it (seed 000: directly under the tenant).
const SECRET_PATH: &str = "tenants/acme/webhooks/stripe";
const VALUE: &str = "whsec-acme-do-not-leak";

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

fn put(value: &str) -> pb::PutSecretRequest {
    pb::PutSecretRequest {
        name: SECRET.into(),
        fields: HashMap::from([("signing-key".to_owned(), value.to_owned())]),
        expected_version: 0,
        unconditional: true,
    }
}

fn get() -> pb::GetSecretRequest {
    pb::GetSecretRequest {
        name: SECRET.into(),
        version: 0,
    }
}

fn reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

#[track_caller]
fn assert_status(status: &tonic::Status, code: Code, want_reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(status), want_reason, "{status:?}");
}

/// Every secret call on tenant acme answers NOT_FOUND: no key, no tenant.
async fn assert_no_secrets(edge: &mut CredentialStoreServiceClient<Channel>) {
    let put = edge.put_secret(as_operator(put(VALUE))).await.unwrap_err();
    assert_status(&put, Code::NotFound, "NOT_FOUND");
    let got = edge.get_secret(as_operator(get())).await.unwrap_err();
    assert_status(&got, Code::NotFound, "NOT_FOUND");
    let resolved = edge
        .resolve_secret(as_operator(pb::ResolveSecretRequest {
            name: SECRET.into(),
        }))
        .await
        .unwrap_err();
    assert_status(&resolved, Code::NotFound, "NOT_FOUND");
}

/// Every registry route of tenant acme (and its org `sales`) answers 404.
async fn assert_tenant_gone(suite: &Suite) {
    let member = json!({"id": "m2", "display_name": "M"});
    let calls: [(Method, &str, Option<serde_json::Value>); 12] = [
        (Method::GET, "/tenants/acme", None),
        (Method::GET, "/tenants/acme/status", None),
        (
            Method::PATCH,
            "/tenants/acme",
            Some(json!({"version": 1, "display_name": "Back"})),
        ),
        (Method::DELETE, "/tenants/acme", None),
        (Method::GET, "/tenants/acme/orgs", None),
        (Method::POST, "/tenants/acme/orgs", Some(member.clone())),
        (Method::GET, "/tenants/acme/orgs/sales", None),
        (Method::GET, "/tenants/acme/orgs/sales/bots", None),
        (Method::GET, "/tenants/acme/orgs/sales/users/m1", None),
        (Method::POST, "/tenants/acme/orgs/sales/bots", Some(member)),
        (Method::GET, "/tenants/acme/api-keys", None),
        (
            Method::POST,
            "/tenants/acme/api-keys",
            Some(json!({"display_name": "k", "roles": ["read"]})),
        ),
    ];
    for (method, path, body) in calls {
        let (status, body) = suite.call(method.clone(), path, body).await;
        assert_problem(status, &body, 404, "NOT_FOUND");
    }
    let (_, listed) = suite.get("/admin/tenants").await;
    assert!(
        listed["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["id"] != "acme"),
        "{listed}"
    );
}

#[tokio::test]
async fn a_tenant_gets_its_key_when_created_and_loses_it_for_good_when_deleted() {
    let suite = Suite::start().await;
    let mut edge = suite.credstore_client_as(ServiceName::Edge);

    // Before the tenant exists it has no key: nothing can be written for it.
    assert_no_secrets(&mut edge).await;

    create_tenant(&suite, "acme").await;
    let written = edge
        .put_secret(as_operator(put(VALUE)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(written.version, 1);
    let org = json!({"id": "sales", "display_name": "Sales"});
    assert_eq!(suite.post("/tenants/acme/orgs", org).await.0, 201);
    let member = json!({"id": "m1", "display_name": "Member"});
    assert_eq!(
        suite.post("/tenants/acme/orgs/sales/users", member).await.0,
        201
    );
    let acme_key = suite.tenant_key("acme", &["read"]).await;

    // What someone holding the credential store's database would keep.
    let key = Key::parse(SECRET_PATH).unwrap();
    let stolen = suite.credstore_core.store().read(&key, None).await.unwrap();
    assert!(
        !String::from_utf8_lossy(&stolen.body).contains(VALUE),
        "the stored document holds no plaintext"
    );

    let (status, body) = suite.delete("/tenants/acme").await;
    assert_eq!(status, 204, "{body}");

    assert_tenant_gone(&suite).await;
    assert_no_secrets(&mut edge).await;
    let (status, body) = suite
        .call_with(
            &suite.client_as(&acme_key),
            Method::GET,
            "/tenants/acme",
            None,
        )
        .await;
    assert_problem(status, &body, 401, "UNAUTHENTICATED");

    // A new tenant with the same id gets a new key: the old ciphertext,
    // written back where it was, does not open.
    create_tenant(&suite, "acme").await;
    let (status, body) = suite.get("/tenants/acme/orgs/sales").await;
    assert_problem(status, &body, 404, "NOT_FOUND");
    suite
        .credstore_core
        .store()
        .write(&key, stolen.body.clone(), Cas::None)
        .await
        .unwrap();
    let refused = edge.get_secret(as_operator(get())).await.unwrap_err();
    assert_status(&refused, Code::Internal, "INTERNAL");
    assert_eq!(refused.message(), "internal error; see the service log");
    assert!(!format!("{refused:?}").contains(VALUE));
    let resolved = edge
        .resolve_secret(as_operator(pb::ResolveSecretRequest {
            name: SECRET.into(),
        }))
        .await
        .unwrap_err();
    assert_status(&resolved, Code::Internal, "INTERNAL");

    // The new tenant's own secrets work.
    let rewritten = edge
        .put_secret(as_operator(put("whsec-new")))
        .await
        .unwrap()
        .into_inner();
    let read = edge
        .get_secret(as_operator(get()))
        .await
        .unwrap()
        .into_inner()
        .secret
        .unwrap();
    assert_eq!(read.version, rewritten.version);
    assert_eq!(read.fields["signing-key"], "whsec-new");
}

/// A problem answer's `Retry-After`, with its status and body.
async fn call_with_retry_after(
    suite: &Suite,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value, Option<String>) {
    let mut request = suite.http.request(method, suite.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap();
    (status, body, retry_after)
}

#[tokio::test]
async fn without_the_credential_store_creates_and_deletes_fail_and_a_retry_finishes_them() {
    let mut suite = Suite::start().await;
    create_tenant(&suite, "beta").await;
    suite.stop_credstore().await;

    // Create: refused, and no tenant appears.
    let new = json!({"id": "acme", "display_name": "Acme"});
    let (status, body, retry_after) =
        call_with_retry_after(&suite, Method::POST, "/tenants", Some(new.clone())).await;
    let detail = assert_problem(status, &body, 503, "UNAVAILABLE");
    assert_eq!(detail, "the credential store is unavailable; retry later");
    assert_eq!(retry_after.as_deref(), Some("1"));
    let (status, body) = suite.get("/tenants/acme").await;
    assert_problem(status, &body, 404, "NOT_FOUND");

    // Delete: refused; the tenant is already gone for callers, and its id
    // stays taken until the delete is finished.
    let (status, body, _) =
        call_with_retry_after(&suite, Method::DELETE, "/tenants/beta", None).await;
    assert_problem(status, &body, 503, "UNAVAILABLE");
    let (status, body) = suite.get("/tenants/beta").await;
    assert_problem(status, &body, 404, "NOT_FOUND");
    let again = json!({"id": "beta", "display_name": "Beta"});
    let (status, body) = suite.post("/tenants", again.clone()).await;
    assert_problem(status, &body, 409, "ALREADY_EXISTS");

    suite.restart_credstore().await;
    // The retries finish both.
    let (status, body) = suite.post("/tenants", new).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"], 1);
    let (status, body) = suite.delete("/tenants/beta").await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = suite.post("/tenants", again).await;
    assert_eq!(status, 201, "{body}");

    // Both tenants have keys.
    let mut edge = suite.credstore_client_as(ServiceName::Edge);
    for t in ["acme", "beta"] {
        let mut request = put("v");
        request.name = format!("tenants/{t}/secrets/webhooks/stripe");
        edge.put_secret(as_operator(request))
            .await
            .unwrap_or_else(|s| panic!("{t}: {s:?}"));
    }
}
