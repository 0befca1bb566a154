//! Sending one delivery: the signed Standard Webhooks request, redirects never followed,
//! a time limit, and the first 16 KiB of the answer kept. Unless private targets are
//! allowed, every name is resolved here and only public addresses are handed to the
//! connector (so a DNS answer cannot steer a request to the metadata service or the
//! loopback), and literal IPs are judged before anything is sent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::guard;
use super::model::Webhook;
use super::sign;

/// The most of a response body that is kept.
pub const BODY_KEEP: usize = 16 * 1024;

/// What one attempt found.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub error: Option<String>,
    pub duration: Duration,
    pub retry_after: Option<String>,
    /// True when the target was refused by the SSRF guard (never retried).
    pub refused: bool,
}

pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
}

/// Resolves names and drops every forbidden address from the answer.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| guard::forbidden_reason(a.ip()).is_none())
                .collect();
            if allowed.is_empty() {
                let msg = format!(
                    "{host} resolves only to private or reserved addresses, which webhooks may not target"
                );
                return Err(Box::new(std::io::Error::other(msg))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Why `url`'s host name is not an acceptable target, if any address it resolves to now is
/// forbidden. Literal IPs are the URL check's business; a name that does not resolve is
/// not judged here.
pub async fn forbidden_by_dns(url: &str) -> Option<String> {
    let target = guard::parse_url(url).ok()?;
    if target.literal_ip.is_some() {
        return None;
    }
    let found = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .ok()?;
    found.into_iter().find_map(|a| {
        guard::forbidden_reason(a.ip())
            .map(|reason| format!("{} resolves to {}, a {reason} address", target.host, a.ip()))
    })
}

impl Sender {
    pub fn new(config: &crate::config::Config) -> Sender {
        install_tls_provider();
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(config.webhook_timeout_secs))
            .connect_timeout(Duration::from_secs(config.webhook_timeout_secs.min(10)))
            .pool_max_idle_per_host(64)
            .user_agent(concat!("opshub/", env!("CARGO_PKG_VERSION")));
        if !config.webhook_allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let client = builder
            .build()
            .expect("a client with a static configuration builds");
        Sender {
            client,
            allow_private: config.webhook_allow_private,
        }
    }

    /// Sends `body` to `w` signed with `keys` (message id `msg_id`, timestamp `ts`).
    pub async fn send(
        &self,
        w: &Webhook,
        keys: &[Vec<u8>],
        msg_id: &str,
        ts: i64,
        body: &str,
    ) -> Sent {
        let start = Instant::now();
        if !self.allow_private
            && let Err(e) = guard::check_url(&w.endpoint)
        {
            return Sent {
                error: Some(e.to_string()),
                refused: true,
                ..Sent::default()
            };
        }
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let mut req = self
            .client
            .post(&w.endpoint)
            .header("content-type", "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", ts.to_string())
            .header(
                "webhook-signature",
                sign::signature_header(&refs, msg_id, ts, body.as_bytes()),
            );
        for (k, v) in &w.headers {
            req = req.header(k, v);
        }
        let mut sent = match req.body(body.to_string()).send().await {
            Ok(resp) => read_response(resp).await,
            Err(e) => Sent {
                error: Some(describe(&e)),
                ..Sent::default()
            },
        };
        sent.duration = start.elapsed();
        sent
    }
}

/// reqwest is built without a bundled crypto provider; use ring, which sqlx already links
/// (aws-lc-rs would add minutes to every clean build here). ring has no post-quantum key
/// exchange, hence rustls' deprecation note; webhook TLS uses X25519. Installing twice is
/// harmless.
#[expect(
    deprecated,
    reason = "ring lacks post-quantum key exchange; see docs/decisions.md"
)]
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn read_response(mut resp: reqwest::Response) -> Sent {
    let status = resp.status().as_u16();
    let headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut kept = Vec::new();
    let mut error = None;
    while kept.len() < BODY_KEEP {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                kept.extend_from_slice(&chunk[..chunk.len().min(BODY_KEEP - kept.len())])
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(format!(
                    "reading the response body failed: {}",
                    describe(&e)
                ));
                break;
            }
        }
    }
    Sent {
        status: Some(status),
        headers,
        body: String::from_utf8_lossy(&kept).into_owned(),
        error,
        retry_after,
        ..Sent::default()
    }
}

/// The error and its causes in one line (reqwest's top-level message alone says little).
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
