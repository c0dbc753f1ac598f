//! The proxy's audit trail: one event per proxied call, whatever its end —
//! who called, which connection and integration, the method, the API's host,
//! the path's shape (identifiers replaced, see
//! [`ApiPath::template`](crate::target::ApiPath::template)), the status,
//! the bytes each way and the time taken. Never a token, a header value, a
//! query or a body.
//!
//! An event is recorded when the call's response body has been sent (or the
//! call failed, or the caller went away), so its figures are the real ones.

use std::{sync::Arc, time::Instant};

use locksmith_audit::AuditSink;
use serde::Serialize;
use time::OffsetDateTime;

/// How a call ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "reason")]
pub enum CallOutcome {
    /// The API answered (whatever its status) and the body was delivered.
    Answered,
    /// Refused or failed before or while answering, by error reason
    /// (`NOT_FOUND`, `RATE_LIMITED`, `TIMEOUT`, …).
    Failed(String),
    /// The caller went away before the end.
    Cancelled,
}

/// One proxied call.
#[derive(Clone, Debug, Serialize)]
pub struct CallEvent {
    /// When the call arrived.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who ([`locksmith_auth::Principal::describe`]).
    pub principal: String,
    /// The connection's resource name.
    pub connection: String,
    /// Its integration.
    pub integration: String,
    /// The HTTP method.
    pub method: String,
    /// The API's host; empty when the call ended before it was known.
    pub host: String,
    /// The path's shape.
    pub path: String,
    /// The API's status, when it answered.
    pub status: Option<u16>,
    /// Request body bytes sent upstream.
    pub bytes_in: u64,
    /// Response body bytes sent to the caller.
    pub bytes_out: u64,
    /// Milliseconds from arrival to the end.
    pub duration_ms: u64,
    /// Attempts made upstream (retries and the 401 retry included).
    pub attempts: u32,
    /// Whether the credential was refreshed after a 401.
    pub refreshed: bool,
    /// How it ended.
    pub outcome: CallOutcome,
}

/// Where the proxy's events go.
pub type Audit = Arc<dyn AuditSink<CallEvent>>;

/// A call's event in the making; recorded once, by [`Ticket::finish`] or,
/// if the call is dropped unfinished (the caller went away), on drop.
pub struct Ticket {
    event: Option<CallEvent>,
    started: Instant,
    audit: Audit,
}

impl Ticket {
    /// A ticket for `event`, timed from now.
    pub fn new(audit: Audit, event: CallEvent) -> Self {
        Self {
            event: Some(event),
            started: Instant::now(),
            audit,
        }
    }

    /// Changes the event in the making.
    pub fn update(&mut self, change: impl FnOnce(&mut CallEvent)) {
        if let Some(event) = self.event.as_mut() {
            change(event);
        }
    }

    /// Records the event with `outcome`.
    pub async fn finish(mut self, outcome: CallOutcome) {
        if let Some(event) = self.take(outcome) {
            self.audit.record(event).await;
        }
    }

    fn take(&mut self, outcome: CallOutcome) -> Option<CallEvent> {
        let mut event = self.event.take()?;
        event.outcome = outcome;
        event.duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Some(event)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(event) = self.take(CallOutcome::Cancelled) {
            let audit = Arc::clone(&self.audit);
            // Drop cannot wait: the record is handed to a task. Outside a
            // runtime (never in the server) it goes to the log instead.
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(async move { audit.record(event).await });
                }
                Err(_) => {
                    tracing::error!(connection = %event.connection, "proxied call not audited: no runtime")
                }
            }
        }
    }
}
