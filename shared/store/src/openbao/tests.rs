//! The transport against a scripted fake server: which failures a read
//! retries, that writes and redirects are never repeated, AppRole login,
//! and how answers are classified. (The real server is exercised by the suite's
//! `store_openbao` tests.)

use std::{
    io::{Read, Write},
    net::TcpListener,
    sync::{Arc, Mutex},
};

use secrecy::SecretString;

use super::*;

/// One scripted answer: status, extra header lines, body.
type Reply = (u16, &'static str, &'static str);

/// Whether an error is the one a reply must give.
type Expect = fn(&StoreError) -> bool;

const METADATA: &str = r#"{"data": {"current_version": 1, "created_time": "2026-11-23T16:37:41Z",
    "updated_time": "2026-11-23T16:37:41Z", "versions": {"1": {"created_time":
    "2026-11-23T16:37:41Z", "deletion_time": "", "destroyed": false}}}}"#;

/// Serves `script` in order (the last reply repeats) on its own thread, one
/// connection per request; answers the store and every request head seen.
fn fake(script: Vec<Reply>) -> (OpenBaoStore, Arc<Mutex<Vec<String>>>) {
    fake_with(script, |_| {})
}

/// [`fake`], with the configuration adjusted by `adjust` first.
fn fake_with(
    script: Vec<Reply>,
    adjust: impl FnOnce(&mut OpenBaoConfig),
) -> (OpenBaoStore, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => head.extend_from_slice(&buf[..k]),
                }
            }
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).into_owned());
            let (status, extra, body) = script[n.min(script.len() - 1)];
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    let mut config = OpenBaoConfig::new(format!("http://{addr}"), SecretString::from("s.tok3n"));
    config.request_timeout_ms = 5_000;
    adjust(&mut config);
    (OpenBaoStore::new(&config).unwrap(), seen)
}

fn key() -> Key {
    Key::parse("tenants/t/config").unwrap()
}

#[tokio::test]
async fn reads_retry_429_and_5xx_then_succeed() {
    let (store, seen) = fake(vec![(429, "", "{}"), (502, "", "{}"), (200, "", METADATA)]);
    assert_eq!(store.metadata(&key()).await.unwrap().current_version, 1);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(
        seen[0].starts_with("GET /v1/gbo/metadata/tenants/t/config "),
        "{}",
        seen[0]
    );
    assert!(
        seen[0]
            .to_ascii_lowercase()
            .contains("x-vault-token: s.tok3n")
    );
}

#[tokio::test]
async fn reads_give_up_after_three_tries() {
    let (store, seen) = fake(vec![(503, "", r#"{"errors": ["Vault is sealed"]}"#)]);
    let err = store.read(&key(), None).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable(ref m) if m.contains("sealed")),
        "{err:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn writes_and_deletes_are_never_retried() {
    let (store, seen) = fake(vec![(503, "", "{}")]);
    let err = store.write(&key(), b"x".to_vec(), Cas::None).await;
    assert!(matches!(err, Err(StoreError::Unavailable(_))), "{err:?}");
    let err = store.destroy(&key(), &[1]).await;
    assert!(matches!(err, Err(StoreError::Unavailable(_))), "{err:?}");
    assert_eq!(seen.lock().unwrap().len(), 2);
}

/// A listener that counts the connections it gets (it never answers).
fn counting_listener() -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(Mutex::new(0));
    let count = Arc::clone(&hits);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            *count.lock().unwrap() += 1;
            drop(conn);
        }
    });
    (format!("http://{addr}/v1/gbo/data/tenants/t/config"), hits)
}

#[tokio::test]
async fn a_standby_redirect_is_unavailable_and_not_followed() {
    // The redirect names a live server: following it would show there (and
    // carry the token to it).
    let (elsewhere, hits) = counting_listener();
    let location: &'static str = format!("location: {elsewhere}\r\n").leak();
    for op in ["read", "write"] {
        let (store, seen) = fake(vec![(307, location, "")]);
        let err = match op {
            "read" => store.read(&key(), None).await.map(|_| 0).unwrap_err(),
            _ => store
                .write(&key(), b"x".to_vec(), Cas::None)
                .await
                .unwrap_err(),
        };
        assert!(
            matches!(err, StoreError::Unavailable(ref m) if m.contains("redirected")),
            "{op}: {err:?}"
        );
        assert_eq!(seen.lock().unwrap().len(), 1, "{op}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(*hits.lock().unwrap(), 0, "the redirect was followed");
}

#[tokio::test]
async fn approle_logs_in_once_and_sends_the_token_it_got() {
    let login =
        r#"{"auth": {"client_token": "s.from-login", "lease_duration": 3600, "renewable": true}}"#;
    let (store, seen) = fake_with(vec![(200, "", login), (200, "", METADATA)], |config| {
        let dir = std::env::temp_dir().join(format!("approle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("sid");
        std::fs::write(&file, "sid-s3cret\n").unwrap();
        *config =
            OpenBaoConfig::with_approle(config.address.clone(), AppRoleConfig::new("role-1", file));
    });
    assert_eq!(store.metadata(&key()).await.unwrap().current_version, 1);
    assert_eq!(store.metadata(&key()).await.unwrap().current_version, 1);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "one login, then two reads");
    assert!(
        seen[0].starts_with("POST /v1/auth/approle/login "),
        "{}",
        seen[0]
    );
    assert!(!seen[0].to_ascii_lowercase().contains("x-vault-token"));
    for read in &seen[1..] {
        assert!(
            read.to_ascii_lowercase()
                .contains("x-vault-token: s.from-login"),
            "{read}"
        );
    }
    assert!(!format!("{store:?}").contains("s.from-login"));
}

#[tokio::test]
async fn a_refused_approle_login_is_permission_denied() {
    let (store, _) = fake_with(
        vec![(400, "", r#"{"errors": ["invalid role or secret ID"]}"#)],
        |config| {
            let file = std::env::temp_dir().join(format!("approle-bad-{}", std::process::id()));
            std::fs::write(&file, "wrong-sid").unwrap();
            *config = OpenBaoConfig::with_approle(
                config.address.clone(),
                AppRoleConfig::new("role-1", file),
            );
        },
    );
    let err = store.read(&key(), None).await.unwrap_err();
    assert!(matches!(err, StoreError::PermissionDenied(_)), "{err:?}");
    assert!(!format!("{err}").contains("wrong-sid"), "{err}");
}

#[tokio::test]
async fn answers_are_classified_without_the_token_or_body() {
    let cases: [(Reply, Expect); 5] = [
        ((400, "", r#"{"errors": ["bad"]}"#), |e| {
            matches!(e, StoreError::Invalid(_))
        }),
        ((403, "", r#"{"errors": ["permission denied"]}"#), |e| {
            matches!(e, StoreError::PermissionDenied(_))
        }),
        (
            (
                404,
                "",
                r#"{"errors": ["no handler for route \"gbo/data/x\""]}"#,
            ),
            |e| matches!(e, StoreError::PermissionDenied(_)),
        ),
        ((200, "", "not json"), |e| {
            matches!(e, StoreError::Corrupt(_))
        }),
        ((418, "", "{}"), |e| matches!(e, StoreError::Corrupt(_))),
    ];
    for (reply, expected) in cases {
        let (store, _) = fake(vec![reply]);
        let err = store
            .write(&key(), b"body-bytes".to_vec(), Cas::None)
            .await
            .unwrap_err();
        assert!(expected(&err), "{reply:?}: {err:?}");
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("s.tok3n") && !shown.contains("body-bytes"),
            "{shown}"
        );
    }
}
