//! The OpenBao backend against the real server: the whole conformance suite,
//! and the failures a deployment meets (a server that is down or hangs, a
//! token without the policy).

use std::time::{Duration, Instant};

use locksmith_store::{Cas, DocumentStore, Key, OpenBaoConfig, OpenBaoStore, StoreError};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::openbao::openbao;

/// A store with the root token, rooted at a fresh prefix nobody else uses,
/// so every store starts empty.
fn fresh_config(token: &str) -> OpenBaoConfig {
    let bao = openbao();
    let mut config = OpenBaoConfig::new(&bao.addr, SecretString::from(token.to_owned()));
    config.mount = bao.mount.clone();
    config.prefix = Some(format!("conformance/{}", uuid::Uuid::new_v4()));
    config
}

pub(crate) fn fresh_store() -> OpenBaoStore {
    OpenBaoStore::new(&fresh_config(&openbao().root_token)).unwrap()
}

mod conformance {
    use super::fresh_store;

    locksmith_store::conformance_tests!(|| async { fresh_store() });
}

fn key(s: &str) -> Key {
    Key::parse(s).unwrap()
}

/// Every operation kind on `store` answers `Unavailable`, each within
/// `budget` (the configured request timeout plus scheduling slack).
async fn each_unavailable_within(store: &OpenBaoStore, budget: Duration) {
    let k = key("tenants/t/config");
    for what in ["read", "write", "list", "ping"] {
        let started = Instant::now();
        let outcome = match what {
            "read" => store.read(&k, None).await.map(|_| ()),
            "write" => store
                .write(&k, b"x".to_vec(), Cas::CreateOnly)
                .await
                .map(|_| ()),
            "list" => store.list(None, None, 10).await.map(|_| ()),
            _ => store.ping().await,
        };
        let elapsed = started.elapsed();
        assert!(
            matches!(outcome, Err(StoreError::Unavailable(_))),
            "{what}: {outcome:?}"
        );
        assert!(
            elapsed < budget,
            "{what} took {elapsed:?}, more than {budget:?}"
        );
    }
}

#[tokio::test]
async fn a_closed_port_answers_unavailable_within_the_timeout() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut config = OpenBaoConfig::new(format!("http://127.0.0.1:{port}"), "t".into());
    config.connect_timeout_ms = 500;
    config.request_timeout_ms = 1_000;
    let store = OpenBaoStore::new(&config).unwrap();
    // Refusals are quick, and the reads' retries stay inside the timeout.
    each_unavailable_within(&store, Duration::from_millis(1_000 + 500)).await;
    let err = store.read(&key("a"), None).await.unwrap_err();
    assert!(err.to_string().contains("could not connect"), "{err}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_as_unavailable() {
    // Bound and listening, never accepted: connects succeed (the kernel's
    // backlog), requests hang. Only the request timeout ends them.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = OpenBaoConfig::new(format!("http://{addr}"), "t".into());
    config.request_timeout_ms = 300;
    let store = OpenBaoStore::new(&config).unwrap();
    let started = Instant::now();
    let err = store.read(&key("a"), None).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    // Retries never stretch an operation past its timeout.
    assert!(elapsed < Duration::from_millis(900), "{elapsed:?}");
    each_unavailable_within(&store, Duration::from_millis(300 + 500)).await;
    drop(listener);
}

/// Root-token call to the server's API.
async fn root_call(path: &str, body: Value) -> Value {
    let bao = openbao();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/{path}", bao.addr))
        .header("X-Vault-Token", &bao.root_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_token_without_the_policy_is_denied_and_writes_nothing() {
    let bao = openbao();
    let policy = format!("other-{}", uuid::Uuid::new_v4());
    // Allowed only somewhere else in the mount.
    let rules = format!(
        "path \"{}/data/elsewhere/*\" {{ capabilities = [\"create\", \"read\", \"update\"] }}",
        bao.mount
    );
    root_call(&format!("sys/policy/{policy}"), json!({ "policy": rules })).await;
    let created = root_call(
        "auth/token/create",
        json!({ "policies": [policy], "ttl": "10m", "no_default_policy": true }),
    )
    .await;
    let token = created["auth"]["client_token"].as_str().unwrap().to_owned();

    let config = fresh_config(&token);
    let denied = OpenBaoStore::new(&config).unwrap();
    let mut root_config = config.clone();
    root_config.token = SecretString::from(bao.root_token.clone());
    let root = OpenBaoStore::new(&root_config).unwrap();
    let k = key("tenants/t/config");

    let read = denied.read(&k, None).await;
    let write = denied
        .write(&k, b"secret body".to_vec(), Cas::CreateOnly)
        .await;
    for (what, outcome) in [("read", read.map(|_| 0)), ("write", write)] {
        let err = outcome.unwrap_err();
        assert!(
            matches!(err, StoreError::PermissionDenied(_)),
            "{what}: {err:?}"
        );
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains(&token) && !shown.contains("secret body"),
            "{shown}"
        );
    }
    assert_eq!(
        root.metadata(&k).await,
        Err(StoreError::NotFound { deleted: false }),
        "nothing written"
    );
    // The same key with the root token works: the denial was the policy's.
    assert_eq!(root.write(&k, b"x".to_vec(), Cas::CreateOnly).await, Ok(1));
}
