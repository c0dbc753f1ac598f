//! Who we are to OpenBao: a static token, or an AppRole login whose token is
//! renewed in the background at about two thirds of its TTL, and replaced by
//! a new login when renewal fails or the token reaches its max TTL.
//!
//! Every request reads the current token when it is sent, so a renewal or a
//! new login takes effect for the next request without anyone waiting. The
//! background task holds only a weak reference: dropping the last client
//! stops it.

use std::{
    path::Path,
    sync::{Arc, Mutex, PoisonError, RwLock, Weak},
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode, header::HeaderValue};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::task::AbortHandle;
use zeroize::Zeroizing;

use super::{
    AppRoleConfig, OpenBaoConfig,
    http::{Raw, Request, Retry},
};
use crate::StoreError;

/// Shortest wait between two renewals (a TTL of a second or less would
/// otherwise make the task spin).
const MIN_WAIT: Duration = Duration::from_millis(200);
/// First wait after a failed login; doubled up to [`MAX_LOGIN_BACKOFF`].
const FIRST_LOGIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between login attempts while OpenBao is unreachable: short,
/// because requests may be failing with an expired token meanwhile.
const MAX_LOGIN_BACKOFF: Duration = Duration::from_secs(5);

/// How requests are authenticated.
#[derive(Clone)]
pub(super) enum Auth {
    /// One token for the life of the process, marked sensitive so no
    /// header dump shows it.
    Static(HeaderValue),
    /// AppRole login with background renewal.
    AppRole(Arc<AppRole>),
}

impl Auth {
    pub fn new(config: &OpenBaoConfig, raw: &Raw) -> Result<Self, StoreError> {
        match (&config.token, &config.approle) {
            (Some(token), None) => Ok(Auth::Static(header(token.expose_secret())?)),
            (None, Some(approle)) => Ok(Auth::AppRole(Arc::new(AppRole {
                raw: raw.clone(),
                config: approle.clone(),
                session: RwLock::new(None),
                login: tokio::sync::Mutex::new(()),
                renewer: Mutex::new(None),
            }))),
            // `validated_connection` refused these already.
            _ => Err(StoreError::Invalid(
                "openbao: exactly one of token and [approle] is required".into(),
            )),
        }
    }

    /// The token to send now; logs in first if AppRole has no token yet.
    pub async fn token(&self, raw: &Raw, deadline: Instant) -> Result<HeaderValue, StoreError> {
        match self {
            Auth::Static(token) => Ok(token.clone()),
            Auth::AppRole(approle) => approle.token(raw, deadline).await,
        }
    }
}

/// The token as a header value, marked sensitive.
fn header(token: &str) -> Result<HeaderValue, StoreError> {
    let mut value = HeaderValue::from_str(token)
        .map_err(|_| StoreError::Invalid("openbao token is not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// A token obtained by login and what we know of its lifetime.
#[derive(Clone)]
struct Session {
    token: HeaderValue,
    /// Its TTL when last logged in or renewed; zero: it never expires.
    ttl: Duration,
    /// The TTL the login granted: a renewal answering less has hit the max TTL.
    login_ttl: Duration,
    renewable: bool,
}

/// What the renewer does next, and after how long.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Renew(Duration),
    Login(Duration),
    /// A token without a TTL needs nothing.
    Nothing,
}

/// At two thirds of the TTL: renew while renewal still extends the token,
/// log in again once it can no longer (not renewable, or capped by its max
/// TTL, which the server signals by granting less than the login did).
fn plan(session: &Session) -> Step {
    if session.ttl.is_zero() {
        return Step::Nothing;
    }
    let wait = (session.ttl * 2 / 3).max(MIN_WAIT);
    if session.renewable && session.ttl >= session.login_ttl {
        Step::Renew(wait)
    } else {
        Step::Login(wait)
    }
}

pub(super) struct AppRole {
    raw: Raw,
    config: AppRoleConfig,
    session: RwLock<Option<Session>>,
    /// One login at a time: concurrent first requests wait for one login
    /// instead of each creating a token.
    login: tokio::sync::Mutex<()>,
    renewer: Mutex<Option<AbortHandle>>,
}

impl Drop for AppRole {
    fn drop(&mut self) {
        if let Some(task) = self
            .renewer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

/// The `auth` object of a login or renewal answer.
#[derive(Deserialize)]
struct AuthAnswer {
    auth: Option<AuthData>,
}

#[derive(Deserialize)]
struct AuthData {
    client_token: String,
    lease_duration: u64,
    renewable: bool,
}

impl AppRole {
    fn current(&self) -> Option<Session> {
        // The session is replaced whole; a poisoned lock still holds one.
        self.session
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn install(&self, session: Session) {
        *self.session.write().unwrap_or_else(PoisonError::into_inner) = Some(session);
    }

    async fn token(
        self: &Arc<Self>,
        raw: &Raw,
        deadline: Instant,
    ) -> Result<HeaderValue, StoreError> {
        if let Some(session) = self.current() {
            return Ok(session.token);
        }
        let _one_login = self.login.lock().await;
        if let Some(session) = self.current() {
            return Ok(session.token);
        }
        let session = self.log_in(raw, deadline).await?;
        let token = session.token.clone();
        self.install(session);
        self.start_renewer();
        Ok(token)
    }

    /// `POST auth/<mount>/login`; the secret id is read from its file now,
    /// so a rotated secret id is used without a restart.
    async fn log_in(&self, raw: &Raw, deadline: Instant) -> Result<Session, StoreError> {
        let secret_id = read_secret_id(&self.config.secret_id_file).await?;
        let body = json!({ "role_id": self.config.role_id, "secret_id": secret_id.as_str() });
        let path = self.config.login_path();
        let request = Request {
            method: &Method::POST,
            path: &path,
            query: &[],
            body: Some(&body),
            // A login that failed on the way back only leaves an unused
            // token behind, which expires with its TTL.
            retry: Retry::Idempotent,
        };
        let answer = raw.exchange(&request, None, deadline).await?;
        drop(body);
        match answer.status {
            s if s.is_success() => {}
            // AppRole answers 400 "invalid role or secret ID".
            StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => {
                return Err(StoreError::PermissionDenied(format!(
                    "openbao approle login at {path}: {} {}",
                    answer.status,
                    answer.errors()
                )));
            }
            s => {
                return Err(StoreError::Corrupt(format!(
                    "openbao approle login at {path}: unexpected {s}"
                )));
            }
        }
        let data = auth_data(&answer.json()?, "approle login")?;
        let ttl = Duration::from_secs(data.lease_duration);
        Ok(Session {
            token: header(&data.client_token)?,
            ttl,
            login_ttl: ttl,
            renewable: data.renewable,
        })
    }

    /// `POST auth/token/renew-self` with the current token.
    async fn renew(&self, session: &Session) -> Result<Session, StoreError> {
        let body = json!({});
        let request = Request {
            method: &Method::POST,
            path: "auth/token/renew-self",
            query: &[],
            body: Some(&body),
            retry: Retry::Idempotent,
        };
        let answer = self
            .raw
            .exchange(&request, Some(&session.token), self.raw.deadline())
            .await?;
        if !answer.status.is_success() {
            return Err(StoreError::PermissionDenied(format!(
                "openbao token renewal: {} {}",
                answer.status,
                answer.errors()
            )));
        }
        let data = auth_data(&answer.json()?, "token renewal")?;
        Ok(Session {
            token: header(&data.client_token)?,
            ttl: Duration::from_secs(data.lease_duration),
            login_ttl: session.login_ttl,
            renewable: data.renewable,
        })
    }

    fn start_renewer(self: &Arc<Self>) {
        let mut slot = self.renewer.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_some() {
            return;
        }
        let weak = Arc::downgrade(self);
        *slot = Some(tokio::spawn(renew_forever(weak)).abort_handle());
    }

    /// Logs in until it works, backing off while OpenBao is unreachable;
    /// the old token stays in use meanwhile (it may still be valid).
    async fn log_in_again(weak: &Weak<Self>) -> Option<()> {
        let mut backoff = FIRST_LOGIN_BACKOFF;
        loop {
            let this = weak.upgrade()?;
            let outcome = {
                let _one_login = this.login.lock().await;
                this.log_in(&this.raw, this.raw.deadline()).await
            };
            match outcome {
                Ok(session) => {
                    this.install(session);
                    tracing::debug!("openbao approle: logged in again");
                    return Some(());
                }
                Err(e) => tracing::warn!(error = %e, "openbao approle login failed; retrying"),
            }
            drop(this);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_LOGIN_BACKOFF);
        }
    }
}

/// The renewer: sleeps until the planned step, renews or logs in, repeats;
/// ends when the client is dropped.
async fn renew_forever(weak: Weak<AppRole>) {
    loop {
        let Some(session) = weak.upgrade().and_then(|this| this.current()) else {
            return;
        };
        match plan(&session) {
            Step::Nothing => return,
            Step::Renew(wait) => {
                tokio::time::sleep(wait).await;
                let Some(this) = weak.upgrade() else { return };
                match this.renew(&session).await {
                    Ok(renewed) => this.install(renewed),
                    Err(e) => {
                        tracing::info!(error = %e, "openbao token renewal failed; logging in again");
                        drop(this);
                        if AppRole::log_in_again(&weak).await.is_none() {
                            return;
                        }
                    }
                }
            }
            Step::Login(wait) => {
                tokio::time::sleep(wait).await;
                if AppRole::log_in_again(&weak).await.is_none() {
                    return;
                }
            }
        }
    }
}

fn auth_data(answer: &Value, what: &str) -> Result<AuthData, StoreError> {
    serde_json::from_value::<AuthAnswer>(answer.clone())
        .ok()
        .and_then(|a| a.auth)
        .ok_or_else(|| StoreError::Corrupt(format!("openbao {what}: no auth in the answer")))
}

/// The secret id, trimmed; never echoed in an error.
async fn read_secret_id(path: &Path) -> Result<Zeroizing<String>, StoreError> {
    let text = Zeroizing::new(tokio::fs::read_to_string(path).await.map_err(|e| {
        StoreError::PermissionDenied(format!(
            "openbao approle secret_id_file {}: {}",
            path.display(),
            e.kind()
        ))
    })?);
    let trimmed = Zeroizing::new(text.trim().to_owned());
    if trimmed.is_empty() {
        return Err(StoreError::PermissionDenied(format!(
            "openbao approle secret_id_file {} is empty",
            path.display()
        )));
    }
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(ttl: u64, login_ttl: u64, renewable: bool) -> Session {
        Session {
            token: HeaderValue::from_static("t"),
            ttl: Duration::from_secs(ttl),
            login_ttl: Duration::from_secs(login_ttl),
            renewable,
        }
    }

    #[test]
    fn renewal_is_planned_at_two_thirds_and_login_once_renewal_stops_extending() {
        assert_eq!(
            plan(&session(30, 30, true)),
            Step::Renew(Duration::from_secs(20))
        );
        // Capped by the max TTL: renewing again would only shorten it.
        assert_eq!(
            plan(&session(9, 30, true)),
            Step::Login(Duration::from_secs(6))
        );
        assert_eq!(
            plan(&session(30, 30, false)),
            Step::Login(Duration::from_secs(20))
        );
        assert_eq!(plan(&session(0, 0, false)), Step::Nothing);
        assert_eq!(plan(&session(0, 0, true)), Step::Nothing);
        let tiny = Session {
            ttl: Duration::from_millis(30),
            login_ttl: Duration::from_millis(30),
            ..session(1, 1, true)
        };
        assert_eq!(plan(&tiny), Step::Renew(MIN_WAIT));
    }

    #[test]
    fn tokens_are_sensitive_headers_and_bad_ones_are_refused_without_echo() {
        assert!(header("s.abc").unwrap().is_sensitive());
        let err = header("s.a\nb").unwrap_err();
        assert!(!err.to_string().contains("s.a"), "{err}");
    }

    #[tokio::test]
    async fn an_unreadable_or_empty_secret_id_file_is_refused_without_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_secret_id(&dir.path().join("nope")).await.unwrap_err();
        assert!(
            matches!(missing, StoreError::PermissionDenied(_)),
            "{missing:?}"
        );
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "  \n").unwrap();
        assert!(matches!(
            read_secret_id(&empty).await,
            Err(StoreError::PermissionDenied(m)) if m.contains("empty")
        ));
        let good = dir.path().join("sid");
        std::fs::write(&good, "sid-123\n").unwrap();
        assert_eq!(read_secret_id(&good).await.unwrap().as_str(), "sid-123");
    }
}
