//! The OpenBao backend against the real server: the whole conformance suite,
//! the failures a deployment meets (a server that is down or hangs, a token
//! without the policy), AppRole login with renewal, and Transit key wrapping
//! with the credential store's least-privilege policy.

use std::time::{Duration, Instant};

use locksmith_crypto::{
    CryptoError, DataKey, KeyVersion, KeyWrapper, Owner, TransitWrapper, WrappedKey,
};
use locksmith_domain::TenantId;
use locksmith_store::{
    AppRoleConfig, Cas, DocumentStore, Key, OpenBaoClient, OpenBaoConfig, OpenBaoStore, StoreError,
};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::openbao::{approle_role, load_credstore_policy, openbao};

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
    root_config.token = Some(SecretString::from(bao.root_token.clone()));
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

/// A store logged in with AppRole under the credential store's policy, with
/// a 2 s token TTL and a 5 s max TTL, keeps working for 8 s: past the first
/// TTL (renewal) and past the max TTL (a new login). Without either, calls
/// after 2 s or 5 s would be refused as PermissionDenied.
#[tokio::test]
async fn an_approle_store_renews_and_logs_in_again_past_the_token_ttl() {
    let bao = openbao();
    let policy = load_credstore_policy().await;
    let dir = tempfile::tempdir().unwrap();
    let (role_id, secret_id_file) = approle_role(&[policy], "2s", "5s", dir.path()).await;
    let mut config = OpenBaoConfig::with_approle(
        &bao.addr,
        AppRoleConfig::new(role_id.clone(), secret_id_file.clone()),
    );
    config.mount = bao.mount.clone();
    config.prefix = Some(format!("approle/{}", uuid::Uuid::new_v4()));
    assert!(!format!("{config:?}").contains(&std::fs::read_to_string(&secret_id_file).unwrap()));
    let store = OpenBaoStore::new(&config).unwrap();
    let k = key("tenants/t/config");
    let started = Instant::now();
    let mut version = 0;
    while started.elapsed() < Duration::from_secs(8) {
        let at = started.elapsed();
        version = store
            .write(&k, b"x".to_vec(), Cas::Version(version))
            .await
            .unwrap_or_else(|e| panic!("write at {at:?}: {e}"));
        store
            .read(&k, None)
            .await
            .unwrap_or_else(|e| panic!("read at {at:?}: {e}"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(version >= 20, "{version}");

    // A wrong secret id is a deployment mistake: PermissionDenied, no echo.
    std::fs::write(&secret_id_file, "not-the-secret-id").unwrap();
    let wrong = OpenBaoStore::new(&config).unwrap();
    let err = wrong.read(&k, None).await.unwrap_err();
    assert!(matches!(err, StoreError::PermissionDenied(_)), "{err:?}");
    assert!(!err.to_string().contains("not-the-secret-id"), "{err}");
}

/// A Transit wrapper whose token has only the credential store's policy.
async fn transit_with_policy() -> TransitWrapper {
    let bao = openbao();
    let policy = load_credstore_policy().await;
    let created = root_call(
        "auth/token/create",
        json!({ "policies": [policy], "ttl": "10m", "no_default_policy": true }),
    )
    .await;
    let token = created["auth"]["client_token"].as_str().unwrap().to_owned();
    let client =
        OpenBaoClient::new(&OpenBaoConfig::new(&bao.addr, SecretString::from(token))).unwrap();
    TransitWrapper::new(client, "transit").unwrap()
}

fn tenant(prefix: &str) -> Owner {
    let id = format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    Owner::Tenant(TenantId::parse(&id).unwrap())
}

#[tokio::test]
async fn transit_wraps_per_owner_and_shredding_is_for_good() {
    let transit = transit_with_policy().await;
    let (a, b) = (tenant("wrap-a"), tenant("wrap-b"));
    for owner in [&a, &b, &Owner::System] {
        transit.provision(owner).await.unwrap();
        // Idempotent: provisioning again keeps the key.
        transit.provision(owner).await.unwrap();
    }
    let key = DataKey::generate(a.clone(), KeyVersion::FIRST).unwrap();
    let wrapped = transit.wrap(&a, &key).await.unwrap();
    assert!(wrapped.blob().starts_with("vault:v1:"), "{wrapped:?}");
    let back = transit.unwrap(&a, &wrapped).await.unwrap();
    assert_eq!(back.expose_secret(), key.expose_secret());
    let system_key = DataKey::generate(Owner::System, KeyVersion::FIRST).unwrap();
    let system_wrapped = transit.wrap(&Owner::System, &system_key).await.unwrap();
    let system_back = transit
        .unwrap(&Owner::System, &system_wrapped)
        .await
        .unwrap();
    assert_eq!(system_back.expose_secret(), system_key.expose_secret());

    // The raw blob does not unwrap as another owner, nor as another version.
    for (owner, version) in [(&b, KeyVersion::FIRST), (&Owner::System, KeyVersion::FIRST)] {
        let moved = WrappedKey::new(version, wrapped.blob());
        let err = transit.unwrap(owner, &moved).await.unwrap_err();
        assert!(
            matches!(err, CryptoError::KeyUnwrap { .. }),
            "{owner}: {err:?}"
        );
    }
    let relabelled = WrappedKey::new(KeyVersion::new(2).unwrap(), wrapped.blob());
    let err = transit.unwrap(&a, &relabelled).await.unwrap_err();
    assert!(matches!(err, CryptoError::KeyUnwrap { .. }), "{err:?}");

    // Shredding: the wrapped key never unwraps again, even once the owner
    // is provisioned anew; shredding twice is fine; a wrap after the shred
    // does not silently recreate the key (the policy has no `create` there).
    transit.shred(&a).await.unwrap();
    let err = transit.unwrap(&a, &wrapped).await.unwrap_err();
    assert!(matches!(err, CryptoError::KeyUnwrap { .. }), "{err:?}");
    transit.shred(&a).await.unwrap();
    let err = transit.wrap(&a, &key).await.unwrap_err();
    assert!(matches!(err, CryptoError::Backend { .. }), "{err:?}");
    transit.provision(&a).await.unwrap();
    let err = transit.unwrap(&a, &wrapped).await.unwrap_err();
    assert!(matches!(err, CryptoError::KeyUnwrap { .. }), "{err:?}");
    // B is untouched.
    let b_key = DataKey::generate(b.clone(), KeyVersion::FIRST).unwrap();
    let b_wrapped = transit.wrap(&b, &b_key).await.unwrap();
    transit.unwrap(&b, &b_wrapped).await.unwrap();
    transit.shred(&b).await.unwrap();
    transit.shred(&a).await.unwrap();
}
