//! A Node.js test server from `tests/tools/`, started once per test process:
//! it prints one JSON line on stdout when it listens, logs to stderr, and
//! exits when its stdin closes (only this process holds it, so it dies with
//! the suite). Shared by the OIDC issuer (`oidc`) and the OAuth server
//! (`oauth_server`).

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use serde_json::Value;

/// How long a server may take to print its start-up line.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Most stderr kept to explain a failure.
const MAX_LOG: usize = 64 * 1024;

/// A running server.
pub struct NodeServer {
    /// Its start-up line.
    started: Value,
    /// Its stderr, up to [`MAX_LOG`] bytes.
    log: Arc<Mutex<String>>,
    /// Held, never written: the server exits when it closes.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

impl NodeServer {
    /// Runs `node tests/tools/{script}`; `label` prefixes its log lines when
    /// `LOCKSMITH_OIDC_LOG` is set.
    pub fn start(script: &str, label: &str) -> NodeServer {
        let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools");
        assert!(
            tools.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed in {}: run `make tools`",
            tools.display()
        );
        let mut child = Command::new("node")
            .arg(tools.join(script))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start `node` (is Node.js installed?)");
        let stdin = child.stdin.take().expect("child stdin");
        let stdout = child.stdout.take().expect("child stdout");
        let stderr = child.stderr.take().expect("child stderr");

        // Keep its log for failure messages, and keep both pipes drained so
        // the server never blocks on a full pipe.
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let label = label.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("LOCKSMITH_OIDC_LOG").is_some() {
                    eprintln!("[{label}] {line}");
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
                "{script} did not start (first stdout line {line:?}); its stderr:\n{}",
                log.lock().unwrap()
            )
        });
        NodeServer {
            started,
            log,
            _stdin: Mutex::new(stdin),
            _child: Mutex::new(child),
        }
    }

    /// A text field of the start-up line.
    pub fn field(&self, name: &str) -> String {
        self.started[name]
            .as_str()
            .unwrap_or_else(|| panic!("start-up line lacks {name}: {}", self.started))
            .to_owned()
    }

    /// Everything it logged so far (capped).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}
