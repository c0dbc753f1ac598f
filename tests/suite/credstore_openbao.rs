//! Seed 000's own examples through the credential store's core on the real
//! OpenBao (KV v2), as the embedded store's unit tests run them: a bot's
//! email falls back to the system SMTP secret, a bot's LLM override wins, a
//! user's email has no fallback; and the raw KV entry holds no plaintext.
//!
//! Then OpenBao stopped mid-run (`outage`): the credential store over mTLS
//! gRPC, on its own OpenBao server (KV and Transit), answers UNAVAILABLE
//! within its request timeout while the server hangs or is down, writes
//! nothing half, and serves again once the server is back.

mod outage;

use std::sync::Arc;

use locksmith_auth::Principal;
use locksmith_credstore::{CredError, CredStore, MemoryAudit, SecretFields};
use locksmith_crypto::MasterKeyWrapper;
use locksmith_domain::{
    Scope, TenantId,
    secrets::{SecretName, SecretRef},
};
use locksmith_store::{Cas, OpenBaoConfig, OpenBaoStore, system_clock};
use locksmith_tls::ServiceName;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::openbao::openbao;

fn secret_ref(scope: &str, name: &str) -> SecretRef {
    let scope = Scope::parse(scope).unwrap();
    let name = SecretName::parse(name, &scope).unwrap();
    SecretRef { scope, name }
}

fn fields(pairs: &[(&str, &str)]) -> SecretFields {
    let mut f = SecretFields::new();
    for (k, v) in pairs {
        f.insert(*k, SecretString::from((*v).to_owned()));
    }
    f
}

#[tokio::test]
async fn seed_examples_on_openbao_and_no_plaintext_in_kv() {
    let bao = openbao();
    let prefix = format!("credstore/{}", uuid::Uuid::new_v4());
    let mut config = OpenBaoConfig::new(&bao.addr, SecretString::from(bao.root_token.clone()));
    config.prefix = Some(prefix.clone());
    let store = OpenBaoStore::new(&config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wrapper = MasterKeyWrapper::load_or_create(dir.path().join("master.key")).unwrap();
    let cs = CredStore::new(store, wrapper, Arc::new(MemoryAudit::new()), system_clock());
    let operator = Principal::Operator {
        subject: "api-key:test".into(),
    };
    let service = Principal::Service {
        service: ServiceName::Broker,
    };
    cs.provision_system_key(&operator).await.unwrap();
    cs.provision_tenant_key(&operator, &TenantId::parse("acme").unwrap())
        .await
        .unwrap();

    let smtp_password = "system-smtp-hunter2";
    cs.put(
        &operator,
        &secret_ref("system", "email"),
        &fields(&[
            ("smtp-host", "smtp.example.com"),
            ("smtp-password", smtp_password),
        ]),
        Cas::CreateOnly,
    )
    .await
    .unwrap();
    cs.put(
        &operator,
        &secret_ref("system", "llm"),
        &fields(&[("model", "default-model")]),
        Cas::CreateOnly,
    )
    .await
    .unwrap();
    let bot = "tenant/acme/org/sales/bot/helper";
    cs.put(
        &operator,
        &secret_ref(bot, "llm"),
        &fields(&[("model", "bot-model"), ("api-key", "sk-bot")]),
        Cas::CreateOnly,
    )
    .await
    .unwrap();

    // A bot's email falls back to the system SMTP secret, and says so.
    let email = cs
        .resolve(&service, &secret_ref(bot, "email"))
        .await
        .unwrap();
    assert_eq!(email.secret_ref.scope, Scope::System);
    assert_eq!(
        email.fields.get("smtp-password").unwrap().expose_secret(),
        smtp_password
    );
    // A bot's LLM override wins over the system default.
    let llm = cs.resolve(&service, &secret_ref(bot, "llm")).await.unwrap();
    assert_eq!(llm.secret_ref.scope, Scope::parse(bot).unwrap());
    assert_eq!(
        llm.fields.get("model").unwrap().expose_secret(),
        "bot-model"
    );
    // A user's email has no fallback.
    let user = "tenant/acme/org/sales/user/ann";
    assert!(matches!(
        cs.resolve(&service, &secret_ref(user, "email")).await,
        Err(CredError::NotFound(_))
    ));

    // The raw KV entry, read with the root token, holds no plaintext.
    let raw: Value = reqwest::Client::new()
        .get(format!(
            "{}/v1/{}/data/{prefix}/system/email",
            bao.addr, bao.mount
        ))
        .header("X-Vault-Token", &bao.root_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = raw.to_string();
    assert!(raw["data"]["data"].is_object(), "{text}");
    assert!(!text.contains(smtp_password), "plaintext in KV: {text}");
    assert!(
        !text.contains("smtp.example.com"),
        "plaintext in KV: {text}"
    );
    // And as an operator would look, with the `bao` CLI.
    let cli = std::process::Command::new(crate::openbao::bao_binary())
        .args([
            "kv",
            "get",
            "-format=json",
            &format!("-mount={}", bao.mount),
        ])
        .arg(format!("{prefix}/system/email"))
        .env("BAO_ADDR", &bao.addr)
        .env("BAO_TOKEN", &bao.root_token)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&cli.stdout);
    assert!(cli.status.success(), "bao kv get: {shown}");
    // The store keeps the document's bytes base64-encoded; decoded, they are
    // sealed values only.
    let entry: Value = serde_json::from_str(&shown).unwrap();
    let encoded = entry["data"]["data"]["b"].as_str().unwrap();
    use base64::Engine as _;
    let document = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let document = String::from_utf8(document).unwrap();
    for seen in [shown.as_ref(), document.as_str()] {
        assert!(
            !seen.contains(smtp_password),
            "plaintext in bao kv get: {seen}"
        );
        assert!(
            !seen.contains("smtp.example.com"),
            "plaintext in bao kv get: {seen}"
        );
    }
    assert!(document.contains("\"smtp-password\":\"lsk1:"), "{document}");
}
