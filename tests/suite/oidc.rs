//! The real OIDC issuer for JWT tests: `oidc-provider` running
//! `tests/tools/oidc/server.mjs` (see the top of that file for its clients,
//! claims and test-only routes). It is started once per test process, on a
//! free loopback port, and exits when this process does (it watches its
//! stdin, which only this process holds). Needs `node` and
//! `tests/tools/node_modules` (`make tools`).

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Arc, Mutex, OnceLock, mpsc},
    time::Duration,
};

use locksmith_edge::auth::jwt::OidcIssuer;
use serde_json::{Value, json};

/// How long the server may take to print its start-up line.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Most stderr kept to explain a failed start.
const MAX_LOG: usize = 64 * 1024;

/// The running issuer.
pub struct Oidc {
    /// Its issuer identifier (`iss` of every token it issues).
    pub issuer: String,
    /// Its JWKS, as published in its discovery document.
    pub jwks_uri: String,
    pub token_endpoint: String,
    /// The one resource indicator it issues JWT access tokens for.
    pub resource: String,
    /// Every client's secret.
    client_secret: String,
    /// Held, never written: the server exits when it closes.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

/// The server, started on first use.
pub fn oidc() -> &'static Oidc {
    static OIDC: OnceLock<Oidc> = OnceLock::new();
    OIDC.get_or_init(start)
}

fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools")
}

fn start() -> Oidc {
    let tools = tools_dir();
    assert!(
        tools.join("node_modules/oidc-provider").is_dir(),
        "oidc-provider is not installed in {}: run `make tools`",
        tools.display()
    );
    let mut child = Command::new("node")
        .arg(tools.join("oidc/server.mjs"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start `node` (is Node.js installed?)");
    let stdin = child.stdin.take().expect("child stdin");
    let stdout = child.stdout.take().expect("child stdout");
    let stderr = child.stderr.take().expect("child stderr");

    // Keep its log for a failure message, and keep both pipes drained so the
    // server never blocks on a full pipe.
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if std::env::var_os("LOCKSMITH_OIDC_LOG").is_some() {
                eprintln!("[oidc] {line}");
            }
            let mut log = sink.lock().unwrap();
            if log.len() < MAX_LOG {
                log.push_str(&line);
                log.push('\n');
            }
        }
    });
    let (first_line, first) = mpsc::channel();
    std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let _ = first_line.send(line);
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
    });
    let line = first.recv_timeout(START_TIMEOUT).unwrap_or_default();
    let started: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
        std::thread::sleep(Duration::from_millis(200));
        panic!(
            "the OIDC server did not start (first stdout line {line:?}); its stderr:\n{}",
            log.lock().unwrap()
        )
    });
    let field = |name: &str| -> String {
        started[name]
            .as_str()
            .unwrap_or_else(|| panic!("start-up line lacks {name}: {started}"))
            .to_owned()
    };
    Oidc {
        issuer: field("issuer"),
        jwks_uri: field("jwks_uri"),
        token_endpoint: field("token_endpoint"),
        resource: field("resource"),
        client_secret: field("client_secret"),
        _stdin: Mutex::new(stdin),
        _child: Mutex::new(child),
    }
}

/// The issuer's public signing key.
pub struct PublicKey {
    pub kid: String,
    /// SPKI PEM text.
    pub pem: String,
    /// The public JWK as the JWKS publishes it.
    pub jwk: Value,
}

impl Oidc {
    /// A fresh client per call: each test has its own tokio runtime, and a
    /// pooled connection must not outlive the runtime that opened it.
    fn http() -> reqwest::Client {
        reqwest::Client::new()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// This issuer as the edge would configure it: its JWKS, audience
    /// [`Oidc::resource`], every other field at its default. `probe` tags the
    /// JWKS URL so [`Oidc::jwks_fetches`] counts this verifier's fetches only.
    pub fn issuer_config(&self, probe: &str) -> OidcIssuer {
        OidcIssuer::new(
            self.issuer.clone(),
            format!("{}?probe={probe}", self.jwks_uri),
            vec![self.resource.clone()],
        )
    }

    /// An access token from a real client-credentials grant for `client`
    /// (a client id from the table in `server.mjs`, e.g. `tenant-acme-admin`)
    /// and `resource`. Panics unless the issuer grants one.
    pub async fn client_credentials_token(&self, client: &str, resource: &str) -> String {
        match self.try_client_credentials(client, resource).await {
            Ok(token) => token,
            Err((status, body)) => panic!("token request for {client} answered {status}: {body}"),
        }
    }

    /// The token endpoint's answer: the access token, or status and body.
    pub async fn try_client_credentials(
        &self,
        client: &str,
        resource: &str,
    ) -> Result<String, (u16, Value)> {
        let resp = Self::http()
            .post(&self.token_endpoint)
            .basic_auth(client, Some(&self.client_secret))
            .form(&[("grant_type", "client_credentials"), ("resource", resource)])
            .send()
            .await
            .expect("reach the token endpoint");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("token endpoint answers JSON");
        if status != 200 {
            return Err((status, body));
        }
        Ok(body["access_token"]
            .as_str()
            .expect("an access_token")
            .to_owned())
    }

    /// `claims` signed as given by the issuer's own key (RS256). `header`
    /// fields replace the defaults `{"alg":"RS256","typ":"JWT","kid":<kid>}`
    /// (null removes one); the signature stays RS256 whatever `alg` says.
    pub async fn sign(&self, claims: Value, header: Value) -> String {
        let resp = Self::http()
            .post(self.url("/test/sign"))
            .json(&json!({ "claims": claims, "header": header }))
            .send()
            .await
            .expect("reach /test/sign");
        assert_eq!(resp.status().as_u16(), 200, "/test/sign refused");
        let body: Value = resp.json().await.expect("/test/sign answers JSON");
        body["token"].as_str().expect("a token").to_owned()
    }

    pub async fn public_key(&self) -> PublicKey {
        let body: Value = Self::http()
            .get(self.url("/test/public-key"))
            .send()
            .await
            .expect("reach /test/public-key")
            .json()
            .await
            .expect("/test/public-key answers JSON");
        PublicKey {
            kid: body["kid"].as_str().expect("kid").to_owned(),
            pem: body["pem"].as_str().expect("pem").to_owned(),
            jwk: body["jwk"].clone(),
        }
    }

    /// How many times the JWKS was fetched with `?probe=<probe>`.
    pub async fn jwks_fetches(&self, probe: &str) -> u64 {
        let body: Value = Self::http()
            .get(self.url("/test/jwks-fetches"))
            .query(&[("probe", probe)])
            .send()
            .await
            .expect("reach /test/jwks-fetches")
            .json()
            .await
            .expect("/test/jwks-fetches answers JSON");
        body["count"].as_u64().expect("a count")
    }
}
