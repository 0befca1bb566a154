//! Replay of a logged request to a URL the caller names, recorded in its own table; the
//! logged row never changes. The target is an outbound call chosen by a user, so private,
//! loopback and link-local addresses are refused unless `OPSHUB_WEBHOOK_ALLOW_PRIVATE` is
//! true; the checked address is the one connected to (no second DNS lookup).

use std::net::{IpAddr, SocketAddr};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::Uri;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::model::{LogEntry, REDACTED};
use crate::error::{ApiError, ApiResult};

/// How long a replay may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(15);
/// Headers that describe the original connection, not the request, and are not replayed.
const HOP_HEADERS: [&str; 6] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
];

/// One replay attempt.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Replay {
    pub id: String,
    pub log_id: String,
    pub url: String,
    /// The target's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Why no answer came (connection refused, timeout, …).
    pub error: Option<String>,
    pub duration_ms: i64,
    pub created_at: String,
}

/// `POST /webhook-logs/{id}/replay`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplayRequest {
    pub url: String,
}

/// Whether an address is one a user-given URL must not reach by default.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || (o[0] == 100 && (o[1] & 0xC0) == 64)
                || o[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

fn bad_url(message: impl Into<String>) -> ApiError {
    ApiError::unprocessable("invalid_replay_url", message)
}

/// Parses the target and resolves it to the addresses that may be used.
async fn resolve(url: &str, allow_private: bool) -> ApiResult<(Uri, Vec<SocketAddr>)> {
    let uri: Uri = url.parse().map_err(|e| bad_url(format!("url: {e}")))?;
    let scheme = uri.scheme_str().unwrap_or_default();
    if !matches!(scheme, "http" | "https") {
        return Err(bad_url("url must be http:// or https://"));
    }
    let host = uri
        .host()
        .ok_or_else(|| bad_url("url has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| bad_url(format!("cannot resolve {host}: {e}")))?
        .collect();
    if !allow_private && (addrs.is_empty() || addrs.iter().any(|a| is_private(a.ip()))) {
        return Err(ApiError::unprocessable(
            "replay_target_forbidden",
            format!(
                "{host} resolves to a private, loopback or link-local address; set \
                 OPSHUB_WEBHOOK_ALLOW_PRIVATE=true to allow such targets"
            ),
        ));
    }
    Ok((uri, addrs))
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector<PinnedResolver>>;

/// A resolver that answers every name with the addresses checked above, so the target
/// cannot swap in a private address between the check and the connection.
#[derive(Clone)]
struct PinnedResolver(Vec<SocketAddr>);

impl tower::Service<Name> for PinnedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Name) -> Self::Future {
        std::future::ready(Ok(self.0.clone().into_iter()))
    }
}

/// An HTTP/1 client over rustls (ring, webpki roots) that connects only to `addrs`.
fn client(addrs: Vec<SocketAddr>) -> ApiResult<Client<Connector, Full<Bytes>>> {
    let mut http = HttpConnector::new_with_resolver(PinnedResolver(addrs));
    http.enforce_http(false);
    http.set_connect_timeout(Some(TIMEOUT));
    // ring lacks post-quantum key exchange (hence the deprecation), but it is the provider
    // sqlx already compiles in; aws-lc-rs would double the TLS build time.
    #[expect(
        deprecated,
        reason = "ring is the provider already compiled in for sqlx"
    )]
    let provider = rustls::crypto::ring::default_provider();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map_err(|e| ApiError::Internal(e.into()))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// The stored request as an outgoing one: same method, headers (but hop-by-hop and
/// redacted ones) and exact body, plus `x-opshub-replay-of`.
fn outgoing(entry: &LogEntry, uri: Uri) -> ApiResult<hyper::Request<Full<Bytes>>> {
    let c = &entry.capture;
    let mut req = hyper::Request::builder().method(c.method.as_str()).uri(uri);
    let headers: Vec<(String, String)> = serde_json::from_str(&c.headers).unwrap_or_default();
    for (name, value) in headers {
        if HOP_HEADERS.contains(&name.as_str()) || value == REDACTED {
            continue;
        }
        req = req.header(name, value);
    }
    req.header("x-opshub-replay-of", &c.id)
        .body(Full::new(Bytes::from(c.body.clone())))
        .map_err(|e| ApiError::Internal(e.into()))
}

/// Sends `entry` to `url` and describes what happened (the caller records it).
pub async fn send(entry: &LogEntry, url: &str, allow_private: bool) -> ApiResult<Replay> {
    let (uri, addrs) = resolve(url, allow_private).await?;
    let request = outgoing(entry, uri)?;
    let started = Instant::now();
    let outcome = tokio::time::timeout(TIMEOUT, client(addrs)?.request(request)).await;
    let (status, error) = match outcome {
        Ok(Ok(resp)) => (Some(resp.status().as_u16()), None),
        Ok(Err(e)) if e.is_connect() => (None, Some("could not connect".to_string())),
        Ok(Err(_)) => (None, Some("request failed".to_string())),
        Err(_) => (None, Some("timed out".to_string())),
    };
    Ok(Replay {
        id: uuid::Uuid::now_v7().to_string(),
        log_id: entry.capture.id.clone(),
        url: url.to_string(),
        status,
        error,
        duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        created_at: crate::db::time::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_private_loopback_and_link_local_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(!is_private(ip.parse().expect("ip")), "{ip}");
        }
    }
}
