//! The edge's serve loop: connection limits and malformed-request answers
//! that `axum::serve` does not offer.
//!
//! - **Connection cap.** A connection holds a semaphore permit from accept to
//!   close, and the loop takes a permit *before* it accepts. At the cap, new
//!   connections therefore wait unaccepted in the kernel's listen backlog
//!   (and are refused by the kernel once that is full) instead of being
//!   accepted and closed: a waiting client is served as soon as a slot frees,
//!   costs the edge no file descriptor or task, and cannot make the edge
//!   spend work on accept-then-close churn.
//! - **Header read timeout.** A client must send its request head within
//!   `header_read_timeout_ms`, or the connection is closed without an answer.
//!   hyper times HTTP/1 heads (also the wait for the next request on an idle
//!   keep-alive connection); before hyper gets the connection, the few bytes
//!   that tell HTTP/1 from HTTP/2 are read under the same limit. A first head
//!   may thus take up to twice the limit, never forever.
//! - **Problem bodies for refused heads.** `HeadLimits` (in
//!   [`crate::head_limits`]) refuses targets and header sections over the
//!   configured limits with 414 and 431 problem+json before the router runs.
//!   hyper's own limits are looser or yield the same status. What hyper's
//!   HTTP/1 parser refuses itself (invalid bytes, a garbage request line, its
//!   hard limits) it answers with a bodiless canned response; [`io::EdgeIo`]
//!   replaces that with a problem+json answer of the same status. The h2
//!   crate answers a header list over its own limit with a bodiless 431
//!   that cannot be rewritten in the HPACK stream, so that limit is set far
//!   above ours.
//! - **Graceful shutdown.** When `shutdown` resolves the loop stops
//!   accepting, every connection is told to finish (HTTP/1 closes once the
//!   request in flight is answered, HTTP/2 sends GOAWAY), and `serve` returns
//!   once every permit is back, that is once every connection has closed.

mod io;
#[cfg(test)]
mod tests;

use std::{convert::Infallible, future::Future, pin::pin, sync::Arc, time::Duration};

use axum::{Router, body::Body};
use futures::future::{Either, Ready, ready};
use hyper::{
    Request, Response,
    body::Incoming,
    server::conn::{http1, http2},
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::graceful::GracefulConnection,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
};
use tower::{ServiceExt, util::Oneshot};

use crate::{
    config::Limits,
    head_limits::{self, HeadLimits},
};

use self::io::EdgeIo;

/// How long to pause accepting after an error such as running out of file
/// descriptors, which retrying at once would only repeat.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// HTTP/2 counts a header as name + value + 32 bytes (RFC 9113 §6.5.2),
/// [`HeadLimits`] as name + value + 4: at most 33 / 5 times less for the
/// smallest header. With the h2 crate's limit this many times ours, it only
/// refuses lists ours refuses too, and those only when they are huge.
const H2_HEADER_LIST_FACTOR: usize = 8;

/// Limits that would make the edge serve nothing.
#[derive(Debug, thiserror::Error)]
enum LimitsError {
    #[error("limits.max_connections must be between 1 and {max}")]
    MaxConnections { max: u32 },
    #[error("limits.header_read_timeout_ms must be at least 1")]
    HeaderReadTimeout,
}

/// What every connection needs.
struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    header_read_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits for
/// every open connection to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // `acquire_many` takes a u32, and the drain below acquires them all.
    let max_connections = u32::try_from(limits.max_connections)
        .ok()
        .filter(|&n| n > 0 && n as usize <= Semaphore::MAX_PERMITS)
        .ok_or_else(|| invalid(LimitsError::MaxConnections { max: u32::MAX }))?;
    if limits.header_read_timeout_ms == 0 {
        return Err(invalid(LimitsError::HeaderReadTimeout));
    }
    let header_read_timeout = Duration::from_millis(limits.header_read_timeout_ms);

    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.max_header_list_size(
        u32::try_from(
            limits
                .max_header_bytes
                .saturating_mul(H2_HEADER_LIST_FACTOR),
        )
        .unwrap_or(u32::MAX),
    );
    let protocols = Arc::new(Protocols {
        http1: h1,
        http2: h2,
        header_read_timeout,
    });
    let service = EdgeService {
        app,
        head_limits: HeadLimits::new(limits),
    };

    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                // Only a closed semaphore fails, and this one is never closed.
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                // The client gave up before we got to it: not our problem.
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "accepting a connection failed; pausing");
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                    }
                }
            },
        };
        tokio::spawn(serve_connection(
            stream,
            permit,
            Arc::clone(&protocols),
            service.clone(),
            stop_rx.clone(),
        ));
    }

    // Connections still in the backlog are refused from here on.
    drop(listener);
    tracing::info!("edge draining connections");
    // No receiver left just means no connection is open.
    let _ = stop_tx.send(true);
    // Each connection gives its permit back when it closes.
    let _drained = permits.acquire_many(max_connections).await;
    Ok(())
}

fn invalid(error: LimitsError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, error)
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection, holding `_permit` until it closes.
async fn serve_connection(
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    protocols: Arc<Protocols>,
    service: EdgeService,
    mut stop: watch::Receiver<bool>,
) {
    let sniff = tokio::time::timeout(protocols.header_read_timeout, io::sniff(&stream));
    let sniffed = tokio::select! {
        biased;
        _ = stop.wait_for(|stop| *stop) => return,
        sniffed = sniff => sniffed,
    };
    let sniffed = match sniffed {
        Ok(Ok(Some(sniffed))) => sniffed,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "reading a new connection failed");
            return;
        }
        Err(_elapsed) => {
            tracing::debug!("no request within the header read timeout; closing");
            return;
        }
    };
    let result = if sniffed.is_h2() {
        let io = TokioIo::new(EdgeIo::new(stream, sniffed, false));
        until_stopped(protocols.http2.serve_connection(io, service), stop).await
    } else {
        let io = TokioIo::new(EdgeIo::new(stream, sniffed, true));
        until_stopped(protocols.http1.serve_connection(io, service), stop).await
    };
    // hyper's messages name what failed, never the bytes it was sent.
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection closed with an error");
    }
}

/// Drives `conn`; once `stop` turns true, lets it finish what is in flight.
async fn until_stopped<C: GracefulConnection>(
    conn: C,
    mut stop: watch::Receiver<bool>,
) -> Result<(), C::Error> {
    let mut conn = pin!(conn);
    tokio::select! {
        biased;
        result = conn.as_mut() => return result,
        // An error means `serve` is gone: stop all the same.
        _ = stop.wait_for(|stop| *stop) => {}
    }
    conn.as_mut().graceful_shutdown();
    conn.await
}

/// The router behind the head limits, as a hyper service.
#[derive(Clone)]
struct EdgeService {
    app: Router,
    head_limits: HeadLimits,
}

impl hyper::service::Service<Request<Incoming>> for EdgeService {
    type Response = Response<Body>;
    type Error = Infallible;
    // No boxing: the happy path costs what `axum::serve` costs.
    type Future =
        Either<Ready<Result<Response<Body>, Infallible>>, Oneshot<Router, Request<Incoming>>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        match self.head_limits.check(&request) {
            Some(error) => Either::Left(ready(Ok(head_limits::refusal(&error)))),
            // A `Router` clone is a reference count.
            None => Either::Right(self.app.clone().oneshot(request)),
        }
    }
}
