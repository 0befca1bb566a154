//! The listener `serve` uses, and what it knows about each connection: the peer address,
//! and for connections that talk to `/ingest/`, the raw bytes of the latest request head.
//!
//! hyper hands a handler its headers grouped by name, so `A: 1`, `B: 2`, `A: 3` arrives as
//! `A: 1, A: 3, B: 2`. SPEC §6 promises the headers of a captured request in arrival order,
//! so the connection keeps a small window of what it read, and the capture re-parses the
//! head from it. The raw order is used only when its headers are exactly the ones hyper
//! parsed (same names, same values, same count); anything else — a head that left the
//! window, a pipelined request, a connection that began with a non-ingest request —
//! falls back to hyper's grouping, which keeps every value and the order within a name.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::http::{HeaderMap, Method, Uri};
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Bytes of the current request kept per ingest connection; a head further back than this
/// falls back to grouped order.
const WINDOW: usize = 128 * 1024;
/// Enough of a connection's first bytes to see its first request's target.
const SNIFF: usize = 64;
/// Prefix of the request targets whose connections are recorded.
const INGEST: &[u8] = b"/ingest/";

/// A TCP listener whose connections record what they read (see the module docs).
pub struct RecordingListener(pub TcpListener);

impl Listener for RecordingListener {
    type Io = Recorded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Recorded, SocketAddr) {
        let (stream, addr) = Listener::accept(&mut self.0).await;
        // Small JSON answers go out at once instead of waiting for the peer's ACK.
        let _ = stream.set_nodelay(true);
        let io = Recorded {
            inner: stream,
            window: Arc::default(),
        };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// A connection: the stream, and the window its reads are copied into.
pub struct Recorded {
    inner: TcpStream,
    window: Arc<Mutex<Window>>,
}

#[derive(Default)]
struct Window {
    bytes: Vec<u8>,
    /// None until the first request's target is known; then whether to keep recording.
    recording: Option<bool>,
}

impl Window {
    fn push(&mut self, new: &[u8]) {
        if self.recording == Some(false) {
            return;
        }
        self.bytes.extend_from_slice(new);
        if self.recording.is_none() {
            self.recording = first_target(&self.bytes).map(|t| t.starts_with(INGEST));
            if self.recording.is_none() && self.bytes.len() >= SNIFF {
                self.recording = Some(false);
            }
            if self.recording == Some(false) {
                self.bytes = Vec::new();
                return;
            }
        }
        if self.bytes.len() > WINDOW {
            let excess = self.bytes.len() - WINDOW;
            self.bytes.drain(..excess);
        }
    }
}

/// The request target of the first request line, once it is complete.
fn first_target(bytes: &[u8]) -> Option<&[u8]> {
    let mut parts = bytes.splitn(3, |&b| b == b' ');
    let _method = parts.next()?;
    let target = parts.next()?;
    parts.next()?;
    Some(target)
}

impl AsyncRead for Recorded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            let new = &buf.filled()[before..];
            if !new.is_empty()
                && let Ok(mut w) = self.window.lock()
            {
                w.push(new);
            }
        }
        polled
    }
}

impl AsyncWrite for Recorded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What a handler can learn about its connection (`ConnectInfo<Conn>`).
#[derive(Clone)]
pub struct Conn {
    pub remote: SocketAddr,
    window: Option<Arc<Mutex<Window>>>,
}

impl Connected<IncomingStream<'_, RecordingListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, RecordingListener>) -> Conn {
        Conn {
            remote: *stream.remote_addr(),
            window: Some(stream.io().window.clone()),
        }
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Conn {
        Conn {
            remote: *stream.remote_addr(),
            window: None,
        }
    }
}

/// A header as it arrived: lowercased name, value bytes.
pub type RawHeader = (String, Vec<u8>);

impl Conn {
    /// The headers of the request being handled, in arrival order, when the window still
    /// holds its head and that head parses to exactly `headers`.
    pub fn arrival_order(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Option<Vec<RawHeader>> {
        let window = self.window.as_ref()?.lock().ok()?;
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        let line = format!("{method} {target} HTTP/1.");
        let line = line.as_bytes();
        // The latest matching head is this request's: search from the end.
        let mut end = window.bytes.len();
        while let Some(start) = rfind(&window.bytes[..end], line) {
            if let Some(found) = parse_head(&window.bytes[start..])
                && same_headers(&found, headers)
            {
                return Some(found);
            }
            end = start;
        }
        None
    }

    /// The request's body has been read: forget what the window holds, so the next
    /// request on this connection starts a fresh window.
    pub fn finished(&self) {
        if let Some(w) = &self.window
            && let Ok(mut w) = w.lock()
        {
            w.bytes = Vec::new();
        }
    }
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() > hay.len() {
        return None;
    }
    (0..=hay.len() - needle.len())
        .rev()
        .find(|&i| &hay[i..i + needle.len()] == needle)
}

fn parse_head(bytes: &[u8]) -> Option<Vec<RawHeader>> {
    let mut slots = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => Some(
            req.headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                .collect(),
        ),
        _ => None,
    }
}

/// Whether `found` is `headers` in another order: same count, and per name the same values
/// in the same order.
fn same_headers(found: &[RawHeader], headers: &HeaderMap) -> bool {
    if found.len() != headers.len() {
        return false;
    }
    headers.keys().all(|name| {
        let ours = found
            .iter()
            .filter(|(n, _)| n == name.as_str())
            .map(|(_, v)| v.as_slice());
        ours.eq(headers.get_all(name).iter().map(|v| v.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Vec<u8> {
        raw.replace('\n', "\r\n").into_bytes()
    }

    fn conn_with(bytes: &[u8]) -> Conn {
        let mut w = Window::default();
        w.push(bytes);
        Conn {
            remote: SocketAddr::from(([127, 0, 0, 1], 1)),
            window: Some(Arc::new(Mutex::new(w))),
        }
    }

    fn grouped(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(n.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    #[test]
    fn interleaved_headers_come_back_in_arrival_order() {
        let raw = head("POST /ingest/s?x=1 HTTP/1.1\nA: 1\nB: 2\nA: 3\nContent-Length: 2\n\n{}");
        let conn = conn_with(&raw);
        let headers = grouped(&[("a", "1"), ("b", "2"), ("a", "3"), ("content-length", "2")]);
        let uri: Uri = "/ingest/s?x=1".parse().expect("uri");
        let order = conn
            .arrival_order(&Method::POST, &uri, &headers)
            .expect("found");
        let names: Vec<&str> = order.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "a", "content-length"]);
        assert_eq!(order[2].1, b"3");
    }

    #[test]
    fn a_fake_head_in_a_body_or_an_earlier_request_is_not_taken() {
        let first = head("POST /ingest/s HTTP/1.1\nA: old\nContent-Length: 40\n\n");
        let body = head("POST /ingest/s HTTP/1.1\nA: fake\n\nxxxxxx");
        let second = head("POST /ingest/s HTTP/1.1\nB: 2\nA: new\n\n");
        let conn = conn_with(&[first, body, second].concat());
        let headers = grouped(&[("a", "new"), ("b", "2")]);
        let uri: Uri = "/ingest/s".parse().expect("uri");
        let order = conn
            .arrival_order(&Method::POST, &uri, &headers)
            .expect("found");
        assert_eq!(order[0], ("b".to_string(), b"2".to_vec()));
        // A head whose headers differ from hyper's is never used.
        let other = grouped(&[("a", "new"), ("b", "3")]);
        assert!(conn.arrival_order(&Method::POST, &uri, &other).is_none());
    }

    #[test]
    fn only_ingest_connections_record() {
        let api = conn_with(&head("GET /api/v1/kv/x HTTP/1.1\nA: 1\n\n"));
        let uri: Uri = "/api/v1/kv/x".parse().expect("uri");
        assert!(
            api.arrival_order(&Method::GET, &uri, &grouped(&[("a", "1")]))
                .is_none()
        );
        let mut w = Window::default();
        w.push(b"POST /ingest/");
        w.push(b"s HTTP/1.1\r\n");
        assert_eq!(w.recording, Some(true));
    }

    #[test]
    fn the_window_keeps_only_the_latest_bytes() {
        let mut w = Window::default();
        w.push(b"POST /ingest/s HTTP/1.1\r\n");
        w.push(&vec![b'x'; WINDOW + 10]);
        assert_eq!(w.bytes.len(), WINDOW);
    }
}
