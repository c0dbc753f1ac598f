//! The audit trail: one event per call, success or failure, naming who did
//! what to which resource and how it ended — never a value.
//!
//! [`JsonLinesAudit`] keeps file I/O off the request path: a call hands its
//! event to a bounded queue and goes on; a dedicated writer thread
//! serialises events, writes them in batches and flushes once per batch.
//! When the queue is full the call waits for room (backpressure): a request
//! is slowed rather than its event dropped, because "every read is audited"
//! must hold under load too. [`JsonLinesAudit::close`] writes out everything
//! queued before it; an event recorded after that goes to the service log
//! instead of the trail, with an error, never nowhere.

use std::{
    future::Future,
    io::Write,
    pin::Pin,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
};

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

/// What was attempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Read one secret.
    Get,
    /// Write a secret version.
    Put,
    /// List names under a scope.
    List,
    /// Resolve a name up a scope's ancestry.
    Resolve,
    /// Soft-delete versions.
    SoftDelete,
    /// Restore soft-deleted versions.
    Undelete,
    /// Destroy versions for good.
    Destroy,
    /// Erase a secret with its whole history.
    Purge,
    /// Create an owner's key ring.
    ProvisionKey,
    /// Add a key version.
    RotateKey,
    /// Destroy an owner's key ring (crypto-shredding).
    ShredKey,
    /// Rewrite a secret's latest version sealed under the owner's newest key
    /// (the background sweep after a rotation; a new secret version).
    Reencrypt,
    /// Read a connection record (tokens and state).
    GetConnection,
    /// Write a connection record's next version.
    PutConnection,
    /// List an owner's connection records (names only).
    ListConnections,
    /// Erase a connection record with its history.
    DeleteConnection,
    /// Erase a member scope's secrets and connection records.
    EraseScope,
}

/// How a call ended: `ok`, or the error code it answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It succeeded.
    Ok,
    /// It failed with this error code (`NOT_FOUND`…); the cause, if ours,
    /// is in the service log.
    Failed(String),
}

/// One audit record. Holds names and numbers only: no field values, no
/// field names even (they can be chosen by the caller and say too much).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// When, from the store's injected clock.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who ([`locksmith_auth::Principal::describe`]).
    pub principal: String,
    /// What.
    pub operation: Operation,
    /// The resource: a secret's resource name, a scope, or a key ring.
    pub resource: String,
    /// The secret version read or written, when there is one; for a key
    /// provisioning or rotation, the owner's key version afterwards.
    pub version: Option<u64>,
    /// For a resolve, the scope that answered.
    pub answered_by: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
}

/// What [`AuditSink::record`] answers: a future that completes once the
/// event is accepted (queued or written).
pub type Recording<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Where audit events go. Recording cannot fail from the caller's point of
/// view: the call has already happened, so a sink that cannot write logs the
/// failure itself (an operator alert) instead of undoing the call. It may
/// make the caller wait (backpressure), never drop the event silently.
pub trait AuditSink: Send + Sync + 'static {
    /// Records one event.
    fn record(&self, event: AuditEvent) -> Recording<'_>;
}

/// How many events may wait for the writer before callers wait in turn: a
/// few seconds of a busy replica's calls, so a slow disk hiccup never
/// reaches a request, and a bounded amount of memory when the disk is gone.
pub const AUDIT_QUEUE: usize = 8192;
/// Largest batch the writer builds before writing and flushing it.
const BATCH_BYTES: usize = 256 * 1024;

enum Msg {
    Event(AuditEvent),
    /// Write out everything queued before this, then answer.
    Flush(oneshot::Sender<()>),
    /// Like `Flush`, then stop: later events go to the service log.
    Close(oneshot::Sender<()>),
}

/// Writes one JSON object per line to any writer (a file, stdout), from a
/// writer thread fed by a bounded queue (see the module docs).
pub struct JsonLinesAudit {
    queue: mpsc::Sender<Msg>,
    /// Whether the queue was last seen full, so a sustained overload is
    /// reported once rather than once per event.
    saturated: AtomicBool,
}

impl JsonLinesAudit {
    /// A sink writing to `out` through a writer thread, with a queue of
    /// [`AUDIT_QUEUE`] events.
    pub fn start<W: Write + Send + 'static>(out: W) -> std::io::Result<Self> {
        Self::with_capacity(out, AUDIT_QUEUE)
    }

    /// [`JsonLinesAudit::start`] with a queue of `capacity` events (at least 1).
    pub fn with_capacity<W: Write + Send + 'static>(
        out: W,
        capacity: usize,
    ) -> std::io::Result<Self> {
        let (queue, events) = mpsc::channel(capacity.max(1));
        // A thread, not a task: file writes block, and they must not hold a
        // runtime worker that requests need.
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(out, events))?;
        Ok(Self {
            queue,
            saturated: AtomicBool::new(false),
        })
    }

    /// Waits until every event recorded before this call is written and
    /// flushed to the writer.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.queue.send(Msg::Flush(ack)).await.is_ok() {
            // The writer answers once the batch holding everything before
            // the request is written; if it is gone, there is nothing to wait for.
            let _ = done.await;
        }
    }

    /// Writes out every event recorded so far and stops the writer (at
    /// shutdown, after the server has drained its calls). Events recorded
    /// later are logged as errors instead. Closing twice is harmless.
    pub async fn close(&self) {
        let (ack, done) = oneshot::channel();
        if self.queue.send(Msg::Close(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

/// The event's line, without its trailing newline.
fn line_of(event: &AuditEvent) -> Option<Vec<u8>> {
    match serde_json::to_vec(event) {
        Ok(line) => Some(line),
        Err(e) => {
            // Only names and numbers are serialised; this is a bug, not data.
            tracing::error!(error = %e, "audit event not serialisable");
            None
        }
    }
}

/// An event that cannot reach the trail is kept in the service log: it holds
/// no value, and an operator must see that the trail has a gap.
fn log_lost(event: &AuditEvent, why: &str) {
    let line = line_of(event)
        .map(|l| String::from_utf8_lossy(&l).into_owned())
        .unwrap_or_default();
    tracing::error!(event = %line, "audit event not written to the trail: {why}");
}

fn write_loop<W: Write>(mut out: W, mut events: mpsc::Receiver<Msg>) {
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH_BYTES);
    let mut pending: Vec<AuditEvent> = Vec::new();
    while let Some(first) = events.blocking_recv() {
        let mut acks = Vec::new();
        let mut stop = false;
        let mut next = Some(first);
        // Take whatever is already queued, up to one batch, so a burst costs
        // one write and one flush instead of one per event.
        while let Some(msg) = next.take() {
            match msg {
                Msg::Event(event) => {
                    if let Some(line) = line_of(&event) {
                        batch.extend_from_slice(&line);
                        batch.push(b'\n');
                        pending.push(event);
                    }
                }
                Msg::Flush(ack) => acks.push(ack),
                Msg::Close(ack) => {
                    acks.push(ack);
                    stop = true;
                    break;
                }
            }
            if batch.len() < BATCH_BYTES {
                next = events.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            if let Err(e) = out.write_all(&batch).and_then(|()| out.flush()) {
                tracing::error!(error = %e, events = pending.len(), "audit trail write failed");
                for event in &pending {
                    log_lost(event, "the trail could not be written");
                }
            }
            batch.clear();
            pending.clear();
        }
        for ack in acks {
            let _ = ack.send(());
        }
        if stop {
            events.close();
            // Events that raced with the close: still recorded, in the log.
            while let Ok(msg) = events.try_recv() {
                match msg {
                    Msg::Event(event) => log_lost(&event, "the trail is closed"),
                    Msg::Flush(ack) | Msg::Close(ack) => {
                        let _ = ack.send(());
                    }
                }
            }
            return;
        }
    }
}

impl AuditSink for JsonLinesAudit {
    fn record(&self, event: AuditEvent) -> Recording<'_> {
        Box::pin(async move {
            match self.queue.try_send(Msg::Event(event)) {
                Ok(()) => {
                    self.saturated.store(false, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(msg)) => {
                    if !self.saturated.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "the audit queue is full: calls wait for the audit trail (disk too slow?)"
                        );
                    }
                    // Backpressure: this call waits for room rather than
                    // losing its record.
                    if let Err(mpsc::error::SendError(Msg::Event(event))) =
                        self.queue.send(msg).await
                    {
                        log_lost(&event, "the trail is closed");
                    }
                }
                Err(mpsc::error::TrySendError::Closed(msg)) => {
                    if let Msg::Event(event) = msg {
                        log_lost(&event, "the trail is closed");
                    }
                }
            }
        })
    }
}

/// Keeps events in memory, for tests.
#[derive(Default)]
pub struct MemoryAudit {
    events: Mutex<Vec<AuditEvent>>,
}

impl MemoryAudit {
    /// An empty trail.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event so far, oldest first.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Removes and returns every event so far.
    pub fn take(&self) -> Vec<AuditEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl AuditSink for MemoryAudit {
    fn record(&self, event: AuditEvent) -> Recording<'_> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
        Box::pin(std::future::ready(()))
    }
}

impl<S: AuditSink + ?Sized> AuditSink for std::sync::Arc<S> {
    fn record(&self, event: AuditEvent) -> Recording<'_> {
        (**self).record(event)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A writer the test can read while the sink owns it; counts flushes.
    #[derive(Clone, Default)]
    struct Shared {
        bytes: Arc<Mutex<Vec<u8>>>,
        flushes: Arc<Mutex<usize>>,
    }

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            *self.flushes.lock().unwrap() += 1;
            Ok(())
        }
    }

    impl Shared {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.bytes.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    /// A writer that blocks until the test opens the gate.
    struct Gated {
        inner: Shared,
        gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (open, cv) = &*self.gate;
            let mut open = open.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            self.inner.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }

    fn event(n: u64) -> AuditEvent {
        AuditEvent {
            at: OffsetDateTime::UNIX_EPOCH,
            principal: "operator api-key:k1".into(),
            operation: Operation::Put,
            resource: "system/secrets/email".into(),
            version: Some(n),
            answered_by: None,
            outcome: Outcome::Failed("VERSION_CONFLICT".into()),
        }
    }

    #[tokio::test]
    async fn json_lines_writes_one_object_per_event_in_order() {
        let out = Shared::default();
        let sink = JsonLinesAudit::start(out.clone()).unwrap();
        for n in 1..=3 {
            sink.record(event(n)).await;
        }
        sink.flush().await;
        let lines = out.lines();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[1],
            r#"{"at":"1970-01-01T00:00:00Z","principal":"operator api-key:k1","operation":"put","resource":"system/secrets/email","version":2,"answered_by":null,"outcome":{"failed":"VERSION_CONFLICT"}}"#
        );
        assert!(lines[2].contains(r#""version":3"#));
    }

    #[tokio::test]
    async fn close_writes_everything_queued_and_later_events_do_not_reach_the_file() {
        let out = Shared::default();
        // Held shut until every event is queued, so batching is observable.
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let sink = JsonLinesAudit::start(Gated {
            inner: out.clone(),
            gate: gate.clone(),
        })
        .unwrap();
        for n in 1..=500 {
            sink.record(event(n)).await;
        }
        {
            let (open, cv) = &*gate;
            *open.lock().unwrap() = true;
            cv.notify_all();
        }
        sink.close().await;
        let lines = out.lines();
        assert_eq!(lines.len(), 500);
        assert!(lines[499].contains(r#""version":500"#));
        // Batched: the batch the writer held when the gate shut, then the
        // rest at once; not one flush per event.
        let flushes = *out.flushes.lock().unwrap();
        assert!((1..=3).contains(&flushes), "{flushes} flushes");
        // After close: logged instead, and the call still returns.
        sink.record(event(501)).await;
        sink.close().await;
        sink.flush().await;
        assert_eq!(out.lines().len(), 500);
    }

    #[tokio::test]
    async fn a_full_queue_makes_callers_wait_and_loses_nothing() {
        let out = Shared::default();
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let sink = Arc::new(
            JsonLinesAudit::with_capacity(
                Gated {
                    inner: out.clone(),
                    gate: gate.clone(),
                },
                2,
            )
            .unwrap(),
        );
        // The writer is stuck writing its first batch (at most BATCH_BYTES,
        // about 1300 of these events); the queue of 2 fills up behind it.
        const EVENTS: u64 = 3000;
        let writer = {
            let sink = sink.clone();
            tokio::spawn(async move {
                for n in 1..=EVENTS {
                    sink.record(event(n)).await;
                }
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            !writer.is_finished(),
            "the caller should be waiting for room"
        );
        assert!(sink.saturated.load(Ordering::Relaxed));
        {
            let (open, cv) = &*gate;
            *open.lock().unwrap() = true;
            cv.notify_all();
        }
        writer.await.unwrap();
        sink.close().await;
        let versions: Vec<String> = out
            .lines()
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["version"].to_string()
            })
            .collect();
        let want: Vec<String> = (1..=EVENTS).map(|n| n.to_string()).collect();
        assert_eq!(versions, want);
    }
}
