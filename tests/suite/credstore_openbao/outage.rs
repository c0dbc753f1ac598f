//! OpenBao stopped mid-run, under the credential store served over mTLS
//! gRPC, with keys wrapped by Transit on the same server.
//!
//! The server is this test's own (the suite's shared dev server is in use by
//! other tests, and an in-memory dev server would lose everything on a
//! restart): one Raft node in a temporary directory, initialised and
//! unsealed through the API, so its data survives SIGKILL and a restart.
//!
//! What KV can guarantee for a write that did not answer: a version becomes
//! visible at once with all its data or not at all (KV writes one version
//! per request), but the client cannot know which happened. Two cases show
//! both ends: a write sent to a hung server that is then killed never lands
//! (the versions are exactly the ones before); a write sent to a hung server
//! that then resumes may land after the client gave up, and if it does it
//! is whole (it decrypts to exactly the fields sent). Repeating it with the
//! same check-and-set version is then safe: it answers VERSION_CONFLICT
//! instead of writing twice.

use std::{
    collections::HashMap,
    io::Write as _,
    net::TcpListener as StdListener,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use locksmith_auth::Principal;
use locksmith_credstore::{CredStore, MemoryAudit, SecretFields, server, wrapper::Wrapper};
use locksmith_crypto::{KeyWrapper, Owner, TransitWrapper};
use locksmith_domain::{
    Scope, TenantId,
    secrets::{SecretName, SecretRef},
};
use locksmith_proto::credstore::v1::{
    self as pb, credential_store_service_client::CredentialStoreServiceClient,
};
use locksmith_store::{Cas, DocumentStore, Key, OpenBaoConfig, OpenBaoStore, system_clock};
use locksmith_tls::ServiceName;
use secrecy::SecretString;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::{net::TcpListener, sync::oneshot};
use tonic::{Code, Request, transport::Channel};
use tonic_types::StatusExt;

use crate::harness::load_tls;

/// The credential store's OpenBao request timeout in this test.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a failing call may take: the timeout plus generous slack for
/// a loaded machine (gRPC, TLS, scheduling).
const BUDGET: Duration = Duration::from_secs(2 + 3);
/// How long the server may take to start, unseal or elect itself.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

const BOT_LLM: &str = "tenants/acme/orgs/sales/bots/helper/secrets/llm";
const BOT_EMAIL: &str = "tenants/acme/orgs/sales/bots/helper/secrets/email";
const BETA_LLM: &str = "tenants/beta/orgs/ops/bots/pager/secrets/llm";

/// This test's own OpenBao: a one-node Raft server held by a shell wrapper
/// that takes commands on its stdin (`stop`, `cont`, `kill`, `start`) and
/// stops the server when this process exits (its stdin closes).
struct OwnBao {
    addr: String,
    root_token: String,
    unseal_key: String,
    stdin: Mutex<ChildStdin>,
    _child: Child,
    _dir: TempDir,
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn bao_binary() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/.venv/bin/bao")
}

impl OwnBao {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (port, cluster) = (free_port(), free_port());
        let data = dir.path().join("raft");
        std::fs::create_dir_all(&data).unwrap();
        let config = dir.path().join("bao.hcl");
        std::fs::write(
            &config,
            format!(
                r#"storage "raft" {{
  path = "{}"
  node_id = "outage"
  performance_multiplier = 1
}}
listener "tcp" {{
  address = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{port}"
cluster_addr = "http://127.0.0.1:{cluster}"
"#,
                data.display()
            ),
        )
        .unwrap();
        let script = r#"
            run() { "$BAO" server -config="$CFG" -log-level=warn >>"$LOG" 2>&1 & pid=$!; }
            run
            while read -r cmd; do
              case "$cmd" in
                stop) kill -STOP "$pid" ;;
                cont) kill -CONT "$pid" ;;
                kill) kill -KILL "$pid"; wait "$pid" 2>/dev/null ;;
                start) run ;;
              esac
            done
            kill -CONT "$pid" 2>/dev/null; kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
        "#;
        let mut child = Command::new("sh")
            .args(["-c", script])
            .env("BAO", bao_binary())
            .env("CFG", &config)
            .env("LOG", dir.path().join("bao.log"))
            .env("HOME", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let addr = format!("http://127.0.0.1:{port}");
        let mut bao = OwnBao {
            addr,
            root_token: String::new(),
            unseal_key: String::new(),
            stdin: Mutex::new(stdin),
            _child: child,
            _dir: dir,
        };
        bao.wait_for(|s| s == 501).await;
        let (status, init) = bao
            .call(
                "PUT",
                "sys/init",
                Some(json!({"secret_shares": 1, "secret_threshold": 1})),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{init}");
        bao.root_token = init["root_token"].as_str().unwrap().to_owned();
        bao.unseal_key = init["keys_base64"][0].as_str().unwrap().to_owned();
        bao.unseal().await;
        for (path, body) in [
            (
                "sys/mounts/gbo",
                json!({"type": "kv", "options": {"version": "2"}}),
            ),
            ("sys/mounts/transit", json!({"type": "transit"})),
        ] {
            let (status, text) = bao.call("POST", path, Some(body)).await.unwrap();
            assert!(status == 204 || status == 200, "{path}: {status} {text}");
        }
        bao
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("bao.log")).unwrap_or_default()
    }

    /// One API call with the root token; `Err` if the server did not answer.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        // Health probes must notice a hung server quickly; `sys/init`
        // takes more than a second (key generation, the first Raft write).
        let timeout = if path == "sys/health" { 1 } else { 30 };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(timeout))
            .build()
            .unwrap();
        let mut request = client
            .request(method.parse().unwrap(), format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.root_token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| e.to_string())?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Waits until `sys/health` answers a status `ready` accepts.
    async fn wait_for(&self, ready: impl Fn(u16) -> bool) {
        let started = Instant::now();
        loop {
            if let Ok((status, _)) = self.call("GET", "sys/health", None).await
                && ready(status)
            {
                return;
            }
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "openbao at {} not ready; its log:\n{}",
                self.addr,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Unseals and waits until the node is the active one (health 200).
    async fn unseal(&self) {
        let key = json!({ "key": self.unseal_key });
        let (status, text) = self.call("PUT", "sys/unseal", Some(key)).await.unwrap();
        assert_eq!(status, 200, "{text}");
        self.wait_for(|s| s == 200).await;
    }

    fn command(&self, cmd: &str) {
        writeln!(self.stdin.lock().unwrap(), "{cmd}").unwrap();
    }

    /// SIGSTOP: the process hangs; the kernel still accepts connections.
    async fn hang(&self) {
        self.command("stop");
        // Proof it hangs: health no longer answers.
        let started = Instant::now();
        while self.call("GET", "sys/health", None).await.is_ok() {
            assert!(started.elapsed() < READY_TIMEOUT, "SIGSTOP had no effect");
        }
    }

    async fn resume(&self) {
        self.command("cont");
        self.wait_for(|s| s == 200).await;
    }

    /// SIGKILL (also of a stopped process: it never runs again).
    async fn kill(&self) {
        self.command("kill");
        let port = self.addr.rsplit(':').next().unwrap().to_owned();
        let started = Instant::now();
        while std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok() {
            assert!(started.elapsed() < READY_TIMEOUT, "SIGKILL had no effect");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the server again on the same data, unseals it.
    async fn restart(&self) {
        self.command("start");
        self.wait_for(|s| s == 503 || s == 200).await;
        self.unseal().await;
    }
}

fn operator() -> Principal {
    Principal::Operator {
        subject: "api-key:outage-test".into(),
    }
}

fn as_operator<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    locksmith_auth::forward(&mut request, &operator());
    request
}

fn reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

fn fields(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn put(name: &str, pairs: &[(&str, &str)], expected_version: u64) -> pb::PutSecretRequest {
    pb::PutSecretRequest {
        name: name.into(),
        fields: fields(pairs),
        expected_version,
        unconditional: false,
    }
}

fn core_fields(pairs: &[(&str, &str)]) -> SecretFields {
    let mut f = SecretFields::new();
    for (k, v) in pairs {
        f.insert(*k, SecretString::from((*v).to_owned()));
    }
    f
}

fn secret_ref(scope: &str, name: &str) -> SecretRef {
    let scope = Scope::parse(scope).unwrap();
    let name = SecretName::parse(name, &scope).unwrap();
    SecretRef { scope, name }
}

fn store_config(bao: &OwnBao) -> OpenBaoConfig {
    let mut config = OpenBaoConfig::new(&bao.addr, SecretString::from(bao.root_token.clone()));
    config.connect_timeout_ms = 500;
    config.request_timeout_ms = u64::try_from(REQUEST_TIMEOUT.as_millis()).unwrap();
    config
}

/// A credential store on `store`, keys wrapped by Transit through the
/// store's own client (as `main` builds it).
fn credstore(store: OpenBaoStore) -> CredStore<OpenBaoStore, Wrapper> {
    let transit = TransitWrapper::new(store.client(), "transit").unwrap();
    CredStore::new(
        store,
        Wrapper::Transit(transit),
        Arc::new(MemoryAudit::new()),
        system_clock(),
    )
}

/// Keys for acme, beta and the system scope, and their secrets, written
/// through a credential store of its own, so the served one starts with no
/// key ring cached (its first read of beta loads one during the outage).
async fn seed(bao: &OwnBao) {
    let cs = credstore(OpenBaoStore::new(&store_config(bao)).unwrap());
    let op = operator();
    for owner in [
        Owner::System,
        Owner::Tenant(TenantId::parse("acme").unwrap()),
        Owner::Tenant(TenantId::parse("beta").unwrap()),
    ] {
        // The Transit key first, as the provisioning hook will.
        KeyWrapper::provision(
            &TransitWrapper::new(cs.store().client(), "transit").unwrap(),
            &owner,
        )
        .await
        .unwrap();
        match &owner {
            Owner::System => cs.provision_system_key(&op).await.unwrap(),
            Owner::Tenant(t) => cs.provision_tenant_key(&op, t).await.unwrap(),
        }
    }
    let puts = [
        (
            "system",
            "email",
            vec![
                ("smtp-host", "smtp.example.com"),
                ("smtp-password", "sys-pw"),
            ],
        ),
        (
            "tenant/acme/org/sales/bot/helper",
            "llm",
            vec![("model", "m1"), ("api-key", "sk-1")],
        ),
        (
            "tenant/beta/org/ops/bot/pager",
            "llm",
            vec![("model", "beta"), ("api-key", "sk-b")],
        ),
    ];
    for (scope, name, pairs) in puts {
        cs.put(
            &op,
            &secret_ref(scope, name),
            &core_fields(&pairs),
            Cas::CreateOnly,
        )
        .await
        .unwrap();
    }
    let second = core_fields(&[("model", "m2"), ("api-key", "sk-2")]);
    let at = secret_ref("tenant/acme/org/sales/bot/helper", "llm");
    cs.put(&op, &at, &second, Cas::Version(1)).await.unwrap();
}

/// The served credential store, with a fresh PKI; answers a client as the edge.
async fn serve(
    bao: &OwnBao,
) -> (
    CredentialStoreServiceClient<Channel>,
    TempDir,
    oneshot::Sender<()>,
    std::net::SocketAddr,
) {
    crate::harness::spans();
    locksmith_tls::install_crypto_provider();
    let pki = tempfile::tempdir().unwrap();
    locksmith_tls::init_dir(pki.path(), time::OffsetDateTime::now_utc(), false).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cs = credstore(OpenBaoStore::new(&store_config(bao)).unwrap());
    let tls = load_tls(pki.path(), ServiceName::CredentialStore);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        server::serve(listener, &tls, Arc::new(cs), async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let edge = load_tls(pki.path(), ServiceName::Edge);
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(edge.client_tls("localhost"))
        .unwrap()
        .connect_lazy();
    (CredentialStoreServiceClient::new(channel), pki, stop, addr)
}

/// An edge in front of the credential store at `credstore`, serving every
/// caller as an operator (loopback only), so its secret routes can be asked
/// while OpenBao is down. Its registry is never called on these routes.
async fn edge_in_front(pki: &Path, credstore: std::net::SocketAddr) -> String {
    let tls = locksmith_tls::TlsFiles::in_dir(pki, ServiceName::Edge);
    let config: locksmith_edge::EdgeConfig = serde_json::from_value(json!({
        "listen": "127.0.0.1:0",
        "tls": {"ca": tls.ca, "cert": tls.cert, "key": tls.key},
        "services": {
            "registry": {"url": "https://127.0.0.1:9"},
            "credstore": {"url": format!("https://{credstore}")},
        },
        "auth": {"require_auth": false},
    }))
    .unwrap();
    let backends =
        locksmith_edge::Backends::connect(&config.services, &tls.load().unwrap()).unwrap();
    let state = locksmith_edge::AppState::new(backends, &config).unwrap();
    let listener = TcpListener::bind(config.listen).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        locksmith_edge::serve(listener, state, &config, std::future::pending())
            .await
            .unwrap();
    });
    url
}

/// The edge's answer to reading the bot's LLM secret: status, `Retry-After`
/// and body.
async fn edge_read(edge: &str) -> (u16, Option<String>, Value) {
    let resp = reqwest::get(format!("{edge}/{BOT_LLM}")).await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry_after, resp.json().await.unwrap())
}

/// One call of each kind that needs OpenBao: a read (acme's ring cached), a
/// write, a resolve, and a read whose key ring is not cached yet (beta: a KV
/// read, then a Transit decrypt). Each must answer UNAVAILABLE, with that
/// ErrorInfo reason, within [`BUDGET`].
async fn each_unavailable(client: &mut CredentialStoreServiceClient<Channel>, when: &str) {
    let llm3 = [("model", "lost"), ("api-key", "sk-lost")];
    for call in ["get", "put", "resolve", "get-cold"] {
        let started = Instant::now();
        let outcome = match call {
            "get" => client
                .get_secret(as_operator(pb::GetSecretRequest {
                    name: BOT_LLM.into(),
                    version: 0,
                }))
                .await
                .map(drop),
            "put" => client
                .put_secret(as_operator(put(BOT_LLM, &llm3, 2)))
                .await
                .map(drop),
            "resolve" => client
                .resolve_secret(as_operator(pb::ResolveSecretRequest {
                    name: BOT_EMAIL.into(),
                }))
                .await
                .map(drop),
            _ => client
                .get_secret(as_operator(pb::GetSecretRequest {
                    name: BETA_LLM.into(),
                    version: 0,
                }))
                .await
                .map(drop),
        };
        let elapsed = started.elapsed();
        let status = outcome.expect_err(call);
        assert_eq!(
            status.code(),
            Code::Unavailable,
            "{when} {call}: {status:?}"
        );
        assert_eq!(reason(&status), "UNAVAILABLE", "{when} {call}");
        assert!(elapsed < BUDGET, "{when} {call} took {elapsed:?}");
        // A hung server is given up on by the configured timeout, not by
        // anything shorter (a refused connection fails at once).
        if when == "hung" {
            assert!(elapsed >= REQUEST_TIMEOUT, "{when} {call} took {elapsed:?}");
        }
    }
}

/// The secret's versions as OpenBao holds them (the store's metadata).
async fn versions_of(bao: &OwnBao, path: &str) -> Vec<u64> {
    let store = OpenBaoStore::new(&store_config(bao)).unwrap();
    let meta = store.metadata(&Key::parse(path).unwrap()).await.unwrap();
    meta.versions.iter().map(|v| v.version).collect()
}

async fn get(client: &mut CredentialStoreServiceClient<Channel>, name: &str) -> pb::Secret {
    client
        .get_secret(as_operator(pb::GetSecretRequest {
            name: name.into(),
            version: 0,
        }))
        .await
        .unwrap_or_else(|s| panic!("get {name}: {s:?}"))
        .into_inner()
        .secret
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openbao_stopped_mid_run_answers_unavailable_writes_nothing_half_and_recovers() {
    let bao = OwnBao::start().await;
    seed(&bao).await;
    let (mut client, pki, _stop, addr) = serve(&bao).await;
    let edge = edge_in_front(pki.path(), addr).await;
    let llm_path = "tenants/acme/orgs/sales/bots/helper/llm";
    // Warm: acme's and the system's rings are loaded by these two calls.
    assert_eq!(get(&mut client, BOT_LLM).await.fields["model"], "m2");
    let email = client
        .resolve_secret(as_operator(pb::ResolveSecretRequest {
            name: BOT_EMAIL.into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(email.answering_scope, "system");

    // 1. Hung (SIGSTOP): every call times out as UNAVAILABLE.
    bao.hang().await;
    each_unavailable(&mut client, "hung").await;
    // At the edge: 503 with Retry-After, within the store's timeout.
    let started = Instant::now();
    let (status, retry_after, body) = edge_read(&edge).await;
    assert!(started.elapsed() < BUDGET, "{:?}", started.elapsed());
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "urn:locksmith:error:UNAVAILABLE", "{body}");
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)));
    // 2. Killed while hung (the write sent in 1 is never read), then down:
    //    refused connections are UNAVAILABLE too.
    bao.kill().await;
    each_unavailable(&mut client, "down").await;
    // 3. Back: calls succeed, and the secret has exactly its two versions.
    bao.restart().await;
    let back = get(&mut client, BOT_LLM).await;
    assert_eq!((back.version, back.fields["model"].as_str()), (2, "m2"));
    assert_eq!(versions_of(&bao, llm_path).await, [1, 2]);
    assert_eq!(get(&mut client, BETA_LLM).await.fields["model"], "beta");
    let (status, _, body) = edge_read(&edge).await;
    assert_eq!(
        (status, &body["fields"]["model"]),
        (200, &json!("m2")),
        "{body}"
    );
    let v3 = [("model", "m3"), ("api-key", "sk-3")];
    let written = client
        .put_secret(as_operator(put(BOT_LLM, &v3, 2)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(written.version, 3);

    // 4. Hung during a write, then resumed: the write may land after we gave
    //    up; either way it is whole, and repeating it cannot write twice.
    bao.hang().await;
    let v4 = [("model", "m4"), ("api-key", "sk-4")];
    let started = Instant::now();
    let status = client
        .put_secret(as_operator(put(BOT_LLM, &v4, 3)))
        .await
        .unwrap_err();
    assert!(started.elapsed() < BUDGET, "{:?}", started.elapsed());
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    bao.resume().await;
    let now = get(&mut client, BOT_LLM).await;
    match now.version {
        3 => assert_eq!(now.fields, fields(&v3)),
        4 => assert_eq!(now.fields, fields(&v4)),
        other => panic!("version {other} after one write of version 4"),
    }
    let repeat = client.put_secret(as_operator(put(BOT_LLM, &v4, 3))).await;
    match (now.version, repeat) {
        (3, Ok(w)) => assert_eq!(w.into_inner().version, 4),
        // Landed before the read, or between the read and the repeat (the
        // resumed server works off its backlog on its own time).
        (3 | 4, Err(s)) => assert_eq!(reason(&s), "VERSION_CONFLICT", "{s:?}"),
        (v, other) => panic!("at version {v}, repeating the write answered {other:?}"),
    }
    assert_eq!(versions_of(&bao, llm_path).await, [1, 2, 3, 4]);
    assert_eq!(get(&mut client, BOT_LLM).await.fields, fields(&v4));
}
