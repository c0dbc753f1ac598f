//! The credential store over the embedded store and a master key in a
//! temporary directory. Fixtures here; resolution tests here too; guards
//! (access, crypto, check-and-set, audit) in `guard`.

mod cache;
mod connections;
mod guard;
mod rotation;

use std::sync::Arc;

use locksmith_auth::{Principal, Role, Roles};
use locksmith_crypto::MasterKeyWrapper;
use locksmith_domain::{
    Scope, TenantId,
    secrets::{SecretName, SecretRef},
};
use locksmith_store::{Cas, Clock, EmbeddedStore};
use locksmith_tls::ServiceName;
use secrecy::ExposeSecret;
use tempfile::TempDir;
use time::OffsetDateTime;

use crate::{CredError, CredStore, MemoryAudit, Operation, Outcome, Secret, SecretFields};

type Store = CredStore<EmbeddedStore, MasterKeyWrapper>;

const BOT: &str = "tenant/acme/org/sales/bot/helper";
const USER: &str = "tenant/acme/org/sales/user/ann";

struct Fx {
    cs: Store,
    audit: Arc<MemoryAudit>,
    raw: EmbeddedStore,
    dir: TempDir,
    clock: Clock,
}

fn at() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

/// A store with keys for acme, beta and the system scope, and an empty trail.
async fn fixture() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let clock: Clock = Arc::new(at);
    let raw = EmbeddedStore::in_memory(clock.clone()).unwrap();
    let audit = Arc::new(MemoryAudit::new());
    let wrapper = MasterKeyWrapper::load_or_create(dir.path().join("master.key")).unwrap();
    let cs = CredStore::new(raw.clone(), wrapper, audit.clone(), clock.clone());
    for t in ["acme", "beta"] {
        cs.provision_tenant_key(&operator(), &tid(t)).await.unwrap();
    }
    cs.provision_system_key(&operator()).await.unwrap();
    audit.take();
    Fx {
        cs,
        audit,
        raw,
        dir,
        clock,
    }
}

impl Fx {
    /// A second credential store over the same documents and master key,
    /// with its own key cache: another replica.
    fn replica(&self) -> Store {
        let wrapper = MasterKeyWrapper::load(self.dir.path().join("master.key")).unwrap();
        CredStore::new(
            self.raw.clone(),
            wrapper,
            Arc::new(MemoryAudit::new()),
            self.clock.clone(),
        )
    }
}

fn tid(t: &str) -> TenantId {
    TenantId::parse(t).unwrap()
}

fn operator() -> Principal {
    Principal::Operator {
        subject: "api-key:op".into(),
    }
}

fn service() -> Principal {
    Principal::Service {
        service: ServiceName::Broker,
    }
}

fn tenant(t: &str, roles: &[Role]) -> Principal {
    Principal::Tenant {
        tenant: tid(t),
        roles: Roles::of(roles.iter().copied()),
        subject: "api-key:k1".into(),
    }
}

fn workload(t: &str) -> Principal {
    Principal::Workload {
        tenant: tid(t),
        name: "bot-runtime".into(),
    }
}

fn scope(s: &str) -> Scope {
    Scope::parse(s).unwrap()
}

fn sref(s: &str, name: &str) -> SecretRef {
    let scope = scope(s);
    let name = SecretName::parse(name, &scope).unwrap();
    SecretRef { scope, name }
}

fn fields(pairs: &[(&str, &str)]) -> SecretFields {
    pairs.iter().copied().collect()
}

fn value(secret: &Secret, field: &str) -> String {
    secret.fields.get(field).unwrap().expose_secret().to_owned()
}

fn system_email() -> SecretFields {
    fields(&[
        ("smtp-host", "smtp.system.example"),
        ("smtp-port", "587"),
        ("smtp-password", "system-pass-1"),
    ])
}

fn is_not_found<T: std::fmt::Debug>(r: Result<T, CredError>) -> bool {
    matches!(r, Err(CredError::NotFound("secret")))
}

#[tokio::test]
async fn a_bots_email_falls_back_to_the_system_email_until_it_has_its_own() {
    let fx = fixture().await;
    let system = sref("system", "email");
    fx.cs
        .put(&operator(), &system, &system_email(), Cas::CreateOnly)
        .await
        .unwrap();
    let bot = sref(BOT, "email");

    let found = fx.cs.resolve(&service(), &bot).await.unwrap();
    assert_eq!(found.secret_ref, system);
    assert_eq!(found.version, 1);
    assert_eq!(value(&found, "smtp-password"), "system-pass-1");
    // Whole secret, not per field: exactly the system's three fields.
    assert_eq!(
        found.fields.names().collect::<Vec<_>>(),
        ["smtp-host", "smtp-password", "smtp-port"]
    );

    let own = fields(&[
        ("smtp-host", "mail.acme.example"),
        ("imap-password", "bot-imap"),
    ]);
    fx.cs
        .put(&workload("acme"), &bot, &own, Cas::CreateOnly)
        .await
        .unwrap();
    let found = fx.cs.resolve(&service(), &bot).await.unwrap();
    assert_eq!(found.secret_ref, bot);
    assert_eq!(value(&found, "imap-password"), "bot-imap");
    assert_eq!(found.fields.get("smtp-password").map(|_| ()), None);
}

#[tokio::test]
async fn a_bots_llm_uses_its_override_else_the_system_default() {
    let fx = fixture().await;
    fx.cs
        .put(
            &operator(),
            &sref("system", "llm"),
            &fields(&[
                ("url", "https://llm.system.example"),
                ("model", "default-7b"),
            ]),
            Cas::CreateOnly,
        )
        .await
        .unwrap();
    let bot = sref(BOT, "llm");
    let other_bot = sref("tenant/acme/org/sales/bot/other", "llm");
    fx.cs
        .put(
            &workload("acme"),
            &bot,
            &fields(&[
                ("provider", "openai"),
                ("model", "gpt-x"),
                ("api-key", "sk-bot"),
            ]),
            Cas::CreateOnly,
        )
        .await
        .unwrap();

    let own = fx.cs.resolve(&service(), &bot).await.unwrap();
    assert_eq!(own.secret_ref.scope, scope(BOT));
    assert_eq!(value(&own, "api-key"), "sk-bot");
    let default = fx.cs.resolve(&service(), &other_bot).await.unwrap();
    assert_eq!(default.secret_ref.scope, Scope::System);
    assert_eq!(value(&default, "model"), "default-7b");
}

#[tokio::test]
async fn an_org_secret_answers_before_the_system_and_names_the_org() {
    let fx = fixture().await;
    fx.cs
        .put(
            &operator(),
            &sref("system", "llm"),
            &fields(&[("model", "system")]),
            Cas::CreateOnly,
        )
        .await
        .unwrap();
    let org = sref("tenant/acme/org/sales", "llm");
    fx.cs
        .put(
            &workload("acme"),
            &org,
            &fields(&[("model", "org")]),
            Cas::CreateOnly,
        )
        .await
        .unwrap();
    let found = fx.cs.resolve(&service(), &sref(BOT, "llm")).await.unwrap();
    assert_eq!(found.secret_ref, org);
    assert_eq!(value(&found, "model"), "org");
}

#[tokio::test]
async fn a_users_email_never_falls_back() {
    let fx = fixture().await;
    fx.cs
        .put(
            &operator(),
            &sref("system", "email"),
            &system_email(),
            Cas::CreateOnly,
        )
        .await
        .unwrap();
    // Even with an org-level `email`, a user's mailbox is the user's own.
    fx.cs
        .put(
            &workload("acme"),
            &sref("tenant/acme/org/sales", "email"),
            &fields(&[("smtp-host", "org.example")]),
            Cas::CreateOnly,
        )
        .await
        .unwrap();
    let user = sref(USER, "email");
    assert!(is_not_found(fx.cs.resolve(&service(), &user).await));
    assert!(is_not_found(fx.cs.resolve(&operator(), &user).await));

    fx.cs
        .put(
            &workload("acme"),
            &user,
            &fields(&[("smtp-user", "ann@acme.example")]),
            Cas::CreateOnly,
        )
        .await
        .unwrap();
    let found = fx.cs.resolve(&service(), &user).await.unwrap();
    assert_eq!(found.secret_ref, user);
}

#[tokio::test]
async fn tenant_principals_resolve_within_their_tenant_only() {
    let fx = fixture().await;
    fx.cs
        .put(
            &operator(),
            &sref("system", "email"),
            &system_email(),
            Cas::CreateOnly,
        )
        .await
        .unwrap();
    let bot = sref(BOT, "email");
    // The suite's own SMTP password is not handed to tenant principals.
    assert!(is_not_found(fx.cs.resolve(&workload("acme"), &bot).await));
    let reader = tenant("acme", &[Role::Read]);
    assert!(is_not_found(fx.cs.resolve(&reader, &bot).await));

    let tenant_level = sref("tenant/acme", "email");
    fx.cs
        .put(
            &workload("acme"),
            &tenant_level,
            &fields(&[("smtp-host", "t.example")]),
            Cas::CreateOnly,
        )
        .await
        .unwrap();
    let found = fx.cs.resolve(&reader, &bot).await.unwrap();
    assert_eq!(found.secret_ref, tenant_level);
}

#[tokio::test]
async fn a_soft_deleted_secret_does_not_fall_through_until_undeleted() {
    let fx = fixture().await;
    fx.cs
        .put(
            &operator(),
            &sref("system", "llm"),
            &fields(&[("model", "system")]),
            Cas::CreateOnly,
        )
        .await
        .unwrap();
    let bot = sref(BOT, "llm");
    fx.cs
        .put(
            &workload("acme"),
            &bot,
            &fields(&[("model", "bot")]),
            Cas::CreateOnly,
        )
        .await
        .unwrap();
    fx.cs
        .soft_delete(&workload("acme"), &bot, &[])
        .await
        .unwrap();

    assert!(is_not_found(fx.cs.resolve(&service(), &bot).await));
    assert!(is_not_found(fx.cs.get(&service(), &bot, None).await));

    fx.cs.undelete(&workload("acme"), &bot, &[1]).await.unwrap();
    let found = fx.cs.resolve(&service(), &bot).await.unwrap();
    assert_eq!(found.secret_ref, bot);
    assert_eq!(value(&found, "model"), "bot");

    // Destroyed is final, and still does not fall through.
    fx.cs.destroy(&workload("acme"), &bot, &[1]).await.unwrap();
    assert!(is_not_found(fx.cs.resolve(&service(), &bot).await));
    // Undeleting a destroyed version succeeds and changes nothing.
    fx.cs.undelete(&workload("acme"), &bot, &[1]).await.unwrap();
    assert!(is_not_found(fx.cs.get(&service(), &bot, Some(1)).await));

    // Purging erases the history: the system default answers again.
    fx.cs.purge(&workload("acme"), &bot).await.unwrap();
    let found = fx.cs.resolve(&service(), &bot).await.unwrap();
    assert_eq!(found.secret_ref, sref("system", "llm"));
    assert!(is_not_found(fx.cs.purge(&workload("acme"), &bot).await));
    assert_eq!(
        fx.cs
            .put(
                &workload("acme"),
                &bot,
                &fields(&[("model", "new")]),
                Cas::CreateOnly
            )
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn list_names_a_scopes_own_secrets_sorted_and_paged() {
    let fx = fixture().await;
    let w = workload("acme");
    for name in ["zeta", "a/b", "a-b", "a/c/d"] {
        fx.cs
            .put(
                &w,
                &sref("tenant/acme", name),
                &fields(&[("k", "secret-v")]),
                Cas::CreateOnly,
            )
            .await
            .unwrap();
    }
    // A child scope's secret and the registry's record live beside them.
    fx.cs
        .put(
            &w,
            &sref("tenant/acme/org/sales", "llm"),
            &fields(&[("model", "m")]),
            Cas::CreateOnly,
        )
        .await
        .unwrap();
    use locksmith_store::{DocumentStore, Key};
    fx.raw
        .write(
            &Key::parse("tenants/acme/config").unwrap(),
            b"{}".to_vec(),
            Cas::CreateOnly,
        )
        .await
        .unwrap();

    let names = |v: Vec<SecretName>| v.iter().map(|n| n.as_str().to_owned()).collect::<Vec<_>>();
    let t = scope("tenant/acme");
    let all = fx.cs.list(&w, &t, None, 10).await.unwrap();
    assert_eq!(names(all), ["a-b", "a/b", "a/c/d", "zeta"]);
    let first = fx.cs.list(&w, &t, None, 2).await.unwrap();
    assert_eq!(names(first), ["a-b", "a/b"]);
    let rest = fx.cs.list(&w, &t, Some("a/b"), 2).await.unwrap();
    assert_eq!(names(rest), ["a/c/d", "zeta"]);
    let last = fx.cs.list(&w, &t, Some("zeta"), 2).await.unwrap();
    assert!(last.is_empty());
    let org = fx
        .cs
        .list(&w, &scope("tenant/acme/org/sales"), None, 10)
        .await
        .unwrap();
    assert_eq!(names(org), ["llm"]);
    // Five lists, five events, none with a value.
    let events = fx.audit.take();
    let lists: Vec<_> = events
        .iter()
        .filter(|e| e.operation == Operation::List)
        .collect();
    assert_eq!(lists.len(), 5);
    assert!(lists.iter().all(|e| e.outcome == Outcome::Ok));
}
