//! Capture of `/ingest/{source}` requests: the body read within the source's limit, the
//! signature checked on the raw headers, the headers redacted, the row built. Making it
//! durable is the writer's job (`writer.rs`).

use std::net::SocketAddr;

use super::model::{Capture, REDACTED, SourceConfig};
use super::verify::{self, SignatureStatus};
use crate::db::time;
use crate::error::{ApiError, ApiResult};
use axum::body::Body;
use axum::http::{HeaderMap, Method, Uri, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// An incoming request's head, as the handler received it.
pub struct Incoming {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    /// The same headers in arrival order, when the connection could tell
    /// ([`crate::http::conn`]).
    pub arrival: Option<Vec<crate::http::conn::RawHeader>>,
    pub remote: SocketAddr,
}

/// Reads the body within the source's limit: 413 as soon as it is exceeded, whether the
/// client announced the length or not.
pub async fn read_body(body: Body, headers: &HeaderMap, limit: i64) -> ApiResult<Vec<u8>> {
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    let too_large = ApiError::PayloadTooLarge { limit: limit_usize };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit_usize as u64) {
        return Err(too_large);
    }
    match Limited::new(body, limit_usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large),
        Err(e) => Err(ApiError::bad_request(
            "body_read_failed",
            format!("the request body could not be read: {e}"),
        )),
    }
}

/// Header values as text: UTF-8 when they are, otherwise each byte as one Latin-1
/// character, so no byte is lost (HTTP's historical header charset).
fn header_text(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_string(),
        Err(_) => raw.iter().map(|&b| char::from(b)).collect(),
    }
}

/// Builds the row to store and checks the signature (on the unredacted headers).
pub fn capture(src: &SourceConfig, req: &Incoming, body: Vec<u8>) -> Capture {
    // Arrival order when the connection kept the head; otherwise hyper's: lowercased,
    // grouped by name in order of first arrival, repeated headers in arrival order.
    let raw: Vec<(String, Vec<u8>)> = req.arrival.clone().unwrap_or_else(|| {
        req.headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect()
    });
    let stored: Vec<[String; 2]> = raw
        .iter()
        .map(|(n, v)| {
            let value = if src.redacts(n) {
                REDACTED.to_string()
            } else {
                header_text(v)
            };
            [n.clone(), value]
        })
        .collect();
    let status = verify::verify(
        src.source.verifier,
        src.secret.as_deref().unwrap_or(""),
        &raw,
        &body,
        time::unix_now(),
    );
    Capture {
        id: uuid::Uuid::now_v7().to_string(),
        source: src.source.name.clone(),
        method: req.method.as_str().to_string(),
        path: req.uri.path().to_string(),
        query: req.uri.query().map(String::from),
        headers: serde_json::Value::from(stored).to_string(),
        content_type: req
            .headers
            .get(header::CONTENT_TYPE)
            .map(|v| header_text(v.as_bytes())),
        body,
        remote_addr: req.remote.to_string(),
        received_at: time::now(),
        signature_status: status.as_str().to_string(),
        signature_reason: match status {
            SignatureStatus::Invalid(code) => Some(code),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_header_bytes_survive_as_latin1() {
        assert_eq!(header_text(b"plain"), "plain");
        let text = header_text(&[b'a', 0xE9]);
        assert_eq!(text, "a\u{e9}");
        let back: Vec<u8> = text.chars().map(|c| c as u8).collect();
        assert_eq!(back, vec![b'a', 0xE9]);
    }
}
