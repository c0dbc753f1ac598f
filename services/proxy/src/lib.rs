//! The token proxy: a caller names a connection, a method and a path; the
//! proxy injects the connection's credential as the catalog says, refreshes
//! it through the broker when needed, and forwards the call to the
//! integration's API, so that no caller ever holds a token (seed 001's
//! OAuth proxy; design brief §2 and §4).
//!
//! A call goes: [`grpc`] (wire types → a checked [`forward::Call`]) →
//! [`forward::Forwarder`]: [`forward::Forwarder::authorize`] (another
//! tenant's connection is NOT_FOUND) → [`limits`] (the tenant's rate, as at
//! the edge) → [`access`] (the credential, cached per connection, single
//! flight) → [`target`] (the path under the API's base URL: the SSRF guard's
//! first half) → [`headers`] (the caller's credentials and hop-by-hop
//! headers dropped, the credential injected) → the egress guard
//! (`locksmith-egress`: the addresses connected to, no redirect followed) →
//! retries and the one refresh-and-retry on a 401 → the response streamed
//! back, and one [`audit`] event per call.
//!
//! # Where the time goes
//!
//! Measured with perf on release builds under `tests/bench/proxy.sh`: in
//! each of the edge and the proxy about half of a call's CPU is socket I/O
//! and TLS (a writev per message each way, HTTP/2 framing between the hops,
//! HTTP/1.1 over TLS to the API), then tracing spans (kept: problems and
//! logs carry trace ids), the forwarded principal's decoding, URL building
//! and reqwest's plumbing; this crate's own code is a few percent. Removed
//! after profiling: cloning every tonic client per request at the edge,
//! parsing the caller's certificate per request, glibc malloc contention,
//! and a futex wake per audit event. Tried and dropped: corking the edge's
//! HTTP/2 writes to the proxy (a flush held back one scheduler turn) cut
//! its `writev`s from 2.35 to 1.13 per call with no gain in calls per
//! second, and one or two connections instead of four gained within noise:
//! the cost is spread over the whole stack of each hop, not in one place.

pub mod access;
pub mod audit;
pub mod changes;
pub mod config;
pub mod error;
pub mod flight;
pub mod forward;
pub mod grpc;
pub mod headers;
pub mod limits;
pub mod server;
pub mod target;
