//! A connection's bytes as hyper sees them.
//!
//! [`sniff`] reads the first bytes to tell HTTP/2 prior knowledge from
//! HTTP/1; [`EdgeIo`] hands them back to hyper before the rest of the stream.
//!
//! On HTTP/1 it also replaces hyper's canned error answers. When hyper cannot
//! parse a request head (a NUL or other invalid byte, a garbage request line,
//! a target over its 64 KiB cap, more than 100 headers or about 400 KiB of
//! head) it writes `HTTP/1.1 <status> <reason>`, `content-length: 0`, maybe
//! `connection: close` and `date`, and nothing else, then closes the
//! connection. hyper has no hook for that answer, so [`EdgeIo`] recognises
//! it in the byte stream: a 4xx or 5xx head made of only those headers, alone
//! in one write. No response of the router can look like that, because every
//! one carries `x-request-id` (and every error a `content-type`). The head is
//! swallowed and a problem+json answer of the same status written instead;
//! hyper is told its bytes went out only once the replacement has.
//!
//! The check costs a prefix comparison per write and allocates only when it
//! replaces something.

use std::{
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll, ready},
};

use axum::http::StatusCode;
use locksmith_errors::{ApiError, ErrorCode, PROBLEM_CONTENT_TYPE};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

use crate::head_limits;

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The first bytes of a connection, read to choose the protocol.
pub(super) struct Sniffed {
    buf: [u8; H2_PREFACE.len()],
    len: usize,
}

impl Sniffed {
    /// Whether the client opened with the HTTP/2 preface.
    pub(super) fn is_h2(&self) -> bool {
        self.buf[..self.len] == H2_PREFACE[..]
    }
}

/// Reads until the bytes are either the whole HTTP/2 preface or cannot be
/// its start: one read for any HTTP/1 request. `None` when the client closed
/// before sending anything. The caller bounds how long this may take.
pub(super) async fn sniff(stream: &TcpStream) -> io::Result<Option<Sniffed>> {
    let mut sniffed = Sniffed {
        buf: [0; H2_PREFACE.len()],
        len: 0,
    };
    while sniffed.len < H2_PREFACE.len() {
        stream.readable().await?;
        let n = match stream.try_read(&mut sniffed.buf[sniffed.len..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            // Silence or the start of a preface, then EOF: the client is gone.
            return Ok(None);
        }
        sniffed.len += n;
        if sniffed.buf[..sniffed.len] != H2_PREFACE[..sniffed.len] {
            break;
        }
    }
    Ok(Some(sniffed))
}

/// Where the canned-answer replacement stands.
enum Rewrite {
    /// HTTP/2: hyper writes frames, never a canned HTTP/1 head.
    Off,
    /// Watching each write for hyper's canned head.
    Watching,
    /// Writing `bytes` in place of a canned head of `replaces` bytes.
    Writing {
        bytes: Vec<u8>,
        written: usize,
        replaces: usize,
    },
    /// Replaced; hyper closes the connection next.
    Done,
}

/// The connection's stream, with the sniffed bytes put back in front.
pub(super) struct EdgeIo {
    stream: TcpStream,
    sniffed: Sniffed,
    replayed: usize,
    rewrite: Rewrite,
}

impl EdgeIo {
    /// `rewrite_errors` is for HTTP/1 connections.
    pub(super) fn new(stream: TcpStream, sniffed: Sniffed, rewrite_errors: bool) -> Self {
        Self {
            stream,
            sniffed,
            replayed: 0,
            rewrite: if rewrite_errors {
                Rewrite::Watching
            } else {
                Rewrite::Off
            },
        }
    }

    /// Takes over a write of `first` (`total` bytes in all) if it is hyper's
    /// canned error head, or continues a replacement under way; `None`
    /// leaves the write to the stream.
    fn intercept(
        &mut self,
        cx: &mut Context<'_>,
        first: &[u8],
        total: usize,
    ) -> Option<Poll<io::Result<usize>>> {
        match self.rewrite {
            Rewrite::Off | Rewrite::Done => return None,
            Rewrite::Watching => {
                let canned = CannedHead::parse(first).filter(|_| first.len() == total)?;
                let bytes = canned.replacement()?;
                self.rewrite = Rewrite::Writing {
                    bytes,
                    written: 0,
                    replaces: total,
                };
            }
            Rewrite::Writing { .. } => {}
        }
        Some(self.write_replacement(cx))
    }

    fn write_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Rewrite::Writing {
            bytes,
            written,
            replaces,
        } = &mut self.rewrite
        else {
            return Poll::Ready(Ok(0));
        };
        while *written < bytes.len() {
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        let replaces = *replaces;
        self.rewrite = Rewrite::Done;
        Poll::Ready(Ok(replaces))
    }
}

impl AsyncRead for EdgeIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let pending = &this.sniffed.buf[this.replayed..this.sniffed.len];
        if !pending.is_empty() {
            let n = pending.len().min(buf.remaining());
            buf.put_slice(&pending[..n]);
            this.replayed += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for EdgeIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(poll) = this.intercept(cx, buf, buf.len()) {
            return poll;
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !matches!(this.rewrite, Rewrite::Off | Rewrite::Done) {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            let total = bufs.iter().map(|b| b.len()).sum();
            if let Some(poll) = this.intercept(cx, first, total) {
                return poll;
            }
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    // hyper flushes and shuts down only after its writes completed, and a
    // replaced write completes only once the replacement is written: neither
    // needs to know about it.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// hyper's answer to a request head it could not parse.
#[derive(Debug, PartialEq, Eq)]
struct CannedHead<'a> {
    /// `HTTP/1.1 ` or `HTTP/1.0 `.
    version: &'a [u8],
    status: StatusCode,
    /// hyper's `date: …` line, kept: a server with a clock must send one.
    date: Option<&'a [u8]>,
}

impl<'a> CannedHead<'a> {
    fn parse(buf: &'a [u8]) -> Option<Self> {
        let version = buf
            .get(..9)
            .filter(|v| *v == b"HTTP/1.1 " || *v == b"HTTP/1.0 ")?;
        // Cheap exits first: this runs on every HTTP/1 write.
        if !matches!(buf.get(9), Some(b'4' | b'5')) {
            return None;
        }
        let status = StatusCode::from_bytes(buf.get(9..12)?).ok()?;
        let head = buf.strip_suffix(b"\r\n\r\n")?;
        let mut lines = head.split(|&b| b == b'\n');
        lines.next();
        let mut empty_body = false;
        let mut date = None;
        for line in lines {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.eq_ignore_ascii_case(b"content-length: 0") {
                empty_body = true;
            } else if line.len() > 6 && line[..6].eq_ignore_ascii_case(b"date: ") {
                date = Some(line);
            } else if !line.eq_ignore_ascii_case(b"connection: close") {
                return None;
            }
        }
        empty_body.then_some(Self {
            version,
            status,
            date,
        })
    }

    /// The problem+json answer to send instead; `None` for a status the edge
    /// has no error code for, which then goes out as hyper wrote it.
    fn replacement(&self) -> Option<Vec<u8>> {
        let (code, detail) = match self.status.as_u16() {
            400 => (
                ErrorCode::InvalidArgument,
                "the request is not valid HTTP/1.1",
            ),
            414 => (
                ErrorCode::UriTooLong,
                "the request target is longer than the edge accepts",
            ),
            431 => (
                ErrorCode::HeadersTooLarge,
                "the request headers are larger than the edge accepts",
            ),
            500 => (ErrorCode::Internal, "internal error; see the edge log"),
            _ => return None,
        };
        let rendered = head_limits::render(&ApiError::new(code, detail));
        tracing::debug!(
            status = self.status.as_u16(),
            request_id = %rendered.request_id,
            "answered a request head the HTTP/1 parser refused"
        );
        let length = rendered.body.len().to_string();
        let parts: [&[u8]; 12] = [
            self.version,
            self.status.as_str().as_bytes(),
            b" ",
            self.status.canonical_reason().unwrap_or("Error").as_bytes(),
            b"\r\ncontent-type: ",
            PROBLEM_CONTENT_TYPE.as_bytes(),
            b"\r\ncontent-length: ",
            length.as_bytes(),
            b"\r\nx-request-id: ",
            rendered.request_id.as_bytes(),
            b"\r\nconnection: close\r\n",
            self.date.unwrap_or_default(),
        ];
        let mut out = Vec::with_capacity(256 + rendered.body.len());
        for part in parts {
            out.extend_from_slice(part);
        }
        if self.date.is_some() {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rendered.body);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_canned_heads_are_recognised() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n";
        assert_eq!(
            CannedHead::parse(head),
            Some(CannedHead {
                version: b"HTTP/1.1 ",
                status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                date: Some(b"date: Thu, 01 Jan 2026 00:00:00 GMT"),
            })
        );
        let closing = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            CannedHead::parse(closing).map(|c| c.status),
            Some(StatusCode::BAD_REQUEST)
        );
    }

    #[test]
    fn other_responses_are_left_alone() {
        for head in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nx-request-id: a\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}",
            b"HTTP/1.1 400 Bad Request\r\n\r\n",
            b"{\"type\":\"urn:locksmith:error:NOT_FOUND\"}",
            b"HTTP/1.1 4",
        ] {
            assert_eq!(CannedHead::parse(head), None, "{}", head.escape_ascii());
        }
    }

    #[test]
    fn every_status_hyper_answers_keeps_its_status_in_the_replacement() {
        for status in [400u16, 414, 431, 500] {
            let head = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
            let canned = CannedHead::parse(head.as_bytes()).unwrap();
            let bytes = canned.replacement().unwrap();
            let text = String::from_utf8(bytes).unwrap();
            assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
            let (_, body) = text.split_once("\r\n\r\n").unwrap();
            let problem: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(problem["status"], status);
        }
        let teapot = CannedHead::parse(b"HTTP/1.1 418 X\r\ncontent-length: 0\r\n\r\n").unwrap();
        assert_eq!(teapot.replacement(), None);
    }
}
