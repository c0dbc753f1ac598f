//! The gRPC face of the proxy: `Call` (whole bodies) and `StreamCall`
//! (streamed both ways, flat memory). Prost types stop here: a request head
//! becomes a checked [`Call`], an [`Answer`] becomes response messages.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, stream};
use http::{HeaderMap, Method};
use locksmith_auth::Principal;
use locksmith_domain::ConnectionRef;
use locksmith_proto::proxy::v1::{self as pb, token_proxy_service_server::TokenProxyService};
use time::OffsetDateTime;
use tonic::{Request, Response, Status, Streaming};

use crate::{
    audit::{Audit, CallEvent, CallOutcome, Ticket},
    error::ProxyError,
    forward::{Answer, Body, Call, Forwarder},
    headers,
    target::ApiPath,
};

/// The longest connection name accepted (and audited).
const MAX_CONNECTION_LEN: usize = 1024;

/// Reads the time: the system clock in the server, a fixed one in tests.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// The service.
pub struct ProxyApi {
    forwarder: Arc<Forwarder>,
    audit: Audit,
    clock: Clock,
}

impl ProxyApi {
    /// The service over `forwarder`, auditing to `audit`.
    pub fn new(forwarder: Arc<Forwarder>, audit: Audit, clock: Clock) -> Self {
        Self {
            forwarder,
            audit,
            clock,
        }
    }

    /// The call's audit event in the making: what was checked of its head,
    /// else the caller's text (bounded).
    fn ticket(
        &self,
        principal: &Principal,
        head: &pb::RequestHead,
        checked: Option<&CheckedHead>,
        now: OffsetDateTime,
    ) -> Ticket {
        let connection: String = head.connection.chars().take(MAX_CONNECTION_LEN).collect();
        let (integration, path) = checked.map_or_else(Default::default, |c| {
            (c.connection.integration.to_string(), c.path.template())
        });
        Ticket::new(
            Arc::clone(&self.audit),
            CallEvent {
                at: now,
                principal: principal.describe(),
                connection,
                integration,
                method: head.method.chars().take(16).collect(),
                host: String::new(),
                path,
                status: None,
                bytes_in: 0,
                bytes_out: 0,
                duration_ms: 0,
                attempts: 0,
                refreshed: false,
                outcome: CallOutcome::Answered,
            },
        )
    }
}

/// A request head, checked.
struct CheckedHead {
    connection: ConnectionRef,
    method: Method,
    path: ApiPath,
    headers: HeaderMap,
}

impl CheckedHead {
    fn into_call(self, principal: Principal, body: Body) -> Call {
        Call {
            principal,
            connection: self.connection,
            method: self.method,
            path: self.path,
            headers: self.headers,
            body,
        }
    }
}

fn checked_head(head: &pb::RequestHead) -> Result<CheckedHead, ProxyError> {
    let connection = ConnectionRef::parse(&head.connection).map_err(|_| {
        ProxyError::invalid(
            "head.connection",
            "must be a connection's resource name: tenants/{t}[/orgs/{o}[/bots/{b}|/users/{u}]]/integrations/{integration}",
        )
    })?;
    let method = Method::from_bytes(head.method.as_bytes())
        .ok()
        .filter(|_| !head.method.is_empty() && head.method.bytes().all(|b| b.is_ascii_uppercase()))
        .ok_or_else(|| {
            ProxyError::invalid("head.method", "must be an HTTP method in capitals (`GET`)")
        })?;
    // CONNECT would open a tunnel; TRACE would echo the injected
    // credential back to the caller.
    if method == Method::CONNECT || method == Method::TRACE {
        return Err(ProxyError::invalid(
            "head.method",
            "CONNECT and TRACE are not proxied",
        ));
    }
    let path = ApiPath::parse(&head.path).map_err(|e| ProxyError::path(&e))?;
    let headers = headers::upstream_request_headers(
        head.headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_ref())),
    )
    .map_err(|e| ProxyError::header(&e))?;
    Ok(CheckedHead {
        connection,
        method,
        path,
        headers,
    })
}

fn response_head(answer: &Answer) -> pb::ResponseHead {
    pb::ResponseHead {
        status: u32::from(answer.status.as_u16()),
        headers: answer
            .headers
            .iter()
            .map(|(name, value)| pb::Header {
                name: name.as_str().to_owned(),
                value: Bytes::copy_from_slice(value.as_bytes()),
            })
            .collect(),
    }
}

fn failed(e: &ProxyError) -> CallOutcome {
    CallOutcome::Failed(e.code().reason().to_owned())
}

fn note_answer(ticket: &mut Ticket, answer: &Answer) {
    ticket.update(|e| {
        e.host = answer.body.host().to_owned();
        e.status = Some(answer.status.as_u16());
        e.attempts = answer.attempts;
        e.refreshed = answer.refreshed;
    });
}

/// The response stream of StreamCall.
pub type ResponseStream =
    Pin<Box<dyn Stream<Item = Result<pb::StreamCallResponse, Status>> + Send>>;

#[tonic::async_trait]
impl TokenProxyService for ProxyApi {
    async fn call(
        &self,
        request: Request<pb::CallRequest>,
    ) -> Result<Response<pb::CallResponse>, Status> {
        let principal = Principal::of(&request)?.clone();
        let now = (self.clock)();
        let pb::CallRequest { head, body } = request.into_inner();
        let head = head.unwrap_or_default();
        let checked = checked_head(&head);
        let mut ticket = self.ticket(&principal, &head, checked.as_ref().ok(), now);
        let config = *self.forwarder.config();
        let outcome = async {
            let checked = checked?;
            let len = u64::try_from(body.len()).unwrap_or(u64::MAX);
            if len > config.max_unary_bytes {
                return Err(ProxyError::RequestTooLarge {
                    limit: config.max_unary_bytes,
                });
            }
            ticket.update(|e| e.bytes_in = len);
            let call = checked.into_call(principal, Body::Full(body));
            let mut answer = self.forwarder.forward(call, now).await?;
            note_answer(&mut ticket, &answer);
            let limit = config.max_unary_bytes.min(config.max_response_bytes);
            let mut body = BytesMut::new();
            while let Some(chunk) = answer.body.chunk().await.map_err(ProxyError::egress)? {
                if u64::try_from(body.len() + chunk.len()).unwrap_or(u64::MAX) > limit {
                    return Err(ProxyError::ResponseTooLarge {
                        host: answer.body.host().to_owned(),
                        limit,
                        hint: "; use StreamCall for larger responses",
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(pb::CallResponse {
                head: Some(response_head(&answer)),
                body: body.freeze(),
            })
        };
        match tokio::time::timeout(config.total_timeout, outcome).await {
            Ok(Ok(response)) => {
                let out = u64::try_from(response.body.len()).unwrap_or(u64::MAX);
                ticket.update(|e| e.bytes_out = out);
                ticket.finish(CallOutcome::Answered).await;
                Ok(Response::new(response))
            }
            Ok(Err(e)) => {
                ticket.finish(failed(&e)).await;
                Err(e.into())
            }
            Err(_) => {
                let e = ProxyError::CallTimeout {
                    limit: config.total_timeout,
                };
                ticket.finish(failed(&e)).await;
                Err(e.into())
            }
        }
    }

    type StreamCallStream = ResponseStream;

    async fn stream_call(
        &self,
        request: Request<Streaming<pb::StreamCallRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let principal = Principal::of(&request)?.clone();
        let now = (self.clock)();
        let mut inbound = request.into_inner();
        let first = inbound.message().await?.unwrap_or_default();
        let checked = match &first.head {
            Some(head) => checked_head(head),
            None => Err(ProxyError::invalid(
                "head",
                "the first message must carry the request head",
            )),
        };
        let head = first.head.unwrap_or_default();
        let mut ticket = self.ticket(&principal, &head, checked.as_ref().ok(), now);
        let config = *self.forwarder.config();
        let bytes_in = Arc::new(AtomicU64::new(0));
        let started = async {
            let checked = checked?;
            let body = request_body(
                first.body,
                inbound,
                config.replay_buffer_bytes,
                Arc::clone(&bytes_in),
            )
            .await?;
            self.forwarder
                .forward(checked.into_call(principal, body), now)
                .await
        };
        let answer = match tokio::time::timeout(config.total_timeout, started).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                ticket.finish(failed(&e)).await;
                return Err(e.into());
            }
            Err(_) => {
                let e = ProxyError::CallTimeout {
                    limit: config.total_timeout,
                };
                ticket.finish(failed(&e)).await;
                return Err(e.into());
            }
        };
        note_answer(&mut ticket, &answer);
        Ok(Response::new(response_stream(answer, ticket, bytes_in)))
    }
}

/// The request body: the first message's bytes and whatever follows, whole
/// if it ends within `replay_buffer` bytes (so it can be sent again),
/// streamed otherwise.
async fn request_body(
    first: Bytes,
    mut inbound: Streaming<pb::StreamCallRequest>,
    replay_buffer: usize,
    counted: Arc<AtomicU64>,
) -> Result<Body, ProxyError> {
    let mut size = first.len();
    let mut buffered = vec![first];
    while size <= replay_buffer {
        match inbound.message().await {
            Ok(Some(message)) => {
                if message.head.is_some() {
                    return Err(ProxyError::invalid(
                        "head",
                        "only the first message may carry the head",
                    ));
                }
                size += message.body.len();
                buffered.push(message.body);
            }
            Ok(None) => {
                counted.store(u64::try_from(size).unwrap_or(u64::MAX), Ordering::Relaxed);
                let mut whole = BytesMut::with_capacity(size);
                for chunk in buffered {
                    whole.extend_from_slice(&chunk);
                }
                return Ok(Body::Full(whole.freeze()));
            }
            Err(status) => {
                tracing::debug!(%status, "the caller's request stream failed");
                return Err(ProxyError::invalid(
                    "body",
                    "the request stream ended with an error",
                ));
            }
        }
    }
    counted.store(u64::try_from(size).unwrap_or(u64::MAX), Ordering::Relaxed);
    let prefix = stream::iter(buffered.into_iter().map(Ok));
    let rest = inbound.map(move |message| match message {
        Ok(message) if message.head.is_none() => {
            counted.fetch_add(
                u64::try_from(message.body.len()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            Ok(message.body)
        }
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "only the first message may carry the head",
        )),
        Err(status) => Err(std::io::Error::other(status.message().to_owned())),
    });
    Ok(Body::Stream(Box::pin(prefix.chain(rest))))
}

struct Streamed {
    head: Option<pb::ResponseHead>,
    answer: Answer,
    ticket: Option<Ticket>,
    bytes_in: Arc<AtomicU64>,
    bytes_out: u64,
    done: bool,
}

impl Streamed {
    async fn end(&mut self, outcome: CallOutcome) {
        self.done = true;
        let (bytes_in, bytes_out) = (self.bytes_in.load(Ordering::Relaxed), self.bytes_out);
        if let Some(mut ticket) = self.ticket.take() {
            ticket.update(|e| {
                e.bytes_in = bytes_in;
                e.bytes_out = bytes_out;
            });
            ticket.finish(outcome).await;
        }
    }
}

/// The head with the first body chunk, then one message per chunk; an API
/// that fails or stalls mid-body ends the stream with its status.
fn response_stream(answer: Answer, ticket: Ticket, bytes_in: Arc<AtomicU64>) -> ResponseStream {
    let state = Streamed {
        head: Some(response_head(&answer)),
        answer,
        ticket: Some(ticket),
        bytes_in,
        bytes_out: 0,
        done: false,
    };
    Box::pin(stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        match st.answer.body.chunk().await {
            Ok(Some(chunk)) => {
                st.bytes_out += u64::try_from(chunk.len()).unwrap_or(u64::MAX);
                let message = pb::StreamCallResponse {
                    head: st.head.take(),
                    body: chunk,
                };
                Some((Ok(message), st))
            }
            Ok(None) => {
                st.end(CallOutcome::Answered).await;
                // An empty body: the head alone.
                let head = st.head.take()?;
                Some((
                    Ok(pb::StreamCallResponse {
                        head: Some(head),
                        body: Bytes::new(),
                    }),
                    st,
                ))
            }
            Err(e) => {
                let e = ProxyError::egress(e);
                st.end(failed(&e)).await;
                Some((Err(e.into()), st))
            }
        }
    }))
}
