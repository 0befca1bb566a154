//! Capture of `/ingest/{source}` requests and the group-commit writer that makes them
//! durable. A request is read (within its source's body limit), verified, turned into a
//! [`Capture`] and handed to the one [`Writer`] of the process, which takes everything
//! queued, links it into the chain in order under the chain-head row lock, inserts it in one
//! transaction and only then acknowledges each request. Nothing is answered 2xx before its
//! transaction committed.

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Uri, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::{mpsc, oneshot};

use super::chain;
use super::model::{Capture, REDACTED, SourceConfig};
use super::store;
use super::verify::{self, SignatureStatus};
use crate::db::{Any, Db, time};
use crate::error::{ApiError, ApiResult};
use sqlx::pool::PoolConnection;

/// Most captures committed in one transaction.
const MAX_BATCH: usize = 1024;
/// Times the writer yields to let ready requests join a batch (see [`gather_more`]).
const GATHER_YIELDS: usize = 2;
/// Captures waiting for the writer before senders wait too (backpressure).
const QUEUE: usize = 16 * 1024;

/// An incoming request's head, as the handler received it.
pub struct Incoming {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
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
    // hyper gives names lowercased, grouped by name in order of first arrival, with
    // repeated headers in their arrival order.
    let raw: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
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

struct Job {
    capture: Capture,
    ack: oneshot::Sender<Result<i64, String>>,
}

/// The process's one writer: a task that commits queued captures in batches.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task on the current runtime. One task per process: several
    /// (tried) only queue on the chain-head row lock and made PostgreSQL slower.
    pub fn spawn(db: Db) -> Writer {
        let (jobs, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, rx));
        Writer { jobs }
    }

    /// Queues a capture and waits until it is committed; its seq.
    pub async fn append(&self, capture: Capture) -> ApiResult<i64> {
        let (ack, done) = oneshot::channel();
        let unavailable = || ApiError::Unavailable("the webhook log writer has stopped".into());
        self.jobs
            .send(Job { capture, ack })
            .await
            .map_err(|_| unavailable())?;
        match done.await.map_err(|_| unavailable())? {
            Ok(seq) => Ok(seq),
            Err(cause) => Err(ApiError::Internal(anyhow::anyhow!(
                "cannot store the request: {cause}"
            ))),
        }
    }
}

async fn run(db: Db, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    // The writer keeps its own connection: a pool checkout pings the server first, a round
    // trip per batch that shows in every request's latency.
    let mut conn = None;
    loop {
        let taken = tokio::select! {
            taken = rx.recv_many(&mut jobs, MAX_BATCH) => taken,
            // Closing the pool waits for every checked-out connection: give ours back.
            () = db.pool().close_event() => {
                conn = None;
                rx.recv_many(&mut jobs, MAX_BATCH).await
            }
        };
        if taken == 0 {
            return;
        }
        gather_more(&mut rx, &mut jobs).await;
        let (captures, acks): (Vec<Capture>, Vec<_>) =
            jobs.drain(..).map(|j| (j.capture, j.ack)).unzip();
        let started = std::time::Instant::now();
        let result = write_batch(&db, &mut conn, captures).await;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        tracing::debug!(rows = acks.len(), micros, "webhook log batch");
        match result {
            Ok(first_seq) => {
                for (i, ack) in acks.into_iter().enumerate() {
                    // A client that went away does not care; the row is stored anyway.
                    let _ = ack.send(Ok(first_seq + i as i64));
                }
            }
            Err(e) => {
                // The connection may be broken; the next batch takes a fresh one.
                conn = None;
                tracing::error!(error = %e, rows = acks.len(), "webhook log batch failed");
                for ack in acks {
                    let _ = ack.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// Lets the request tasks that are ready run once more and takes what they queued, so a
/// batch that just finished is not followed by a near-empty one: each commit costs about the
/// same whatever its size.
async fn gather_more(rx: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>) {
    for _ in 0..GATHER_YIELDS {
        if jobs.len() >= MAX_BATCH {
            return;
        }
        tokio::task::yield_now().await;
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
    }
}

/// One transaction: lock the head, link, insert, move the head, commit. The first seq.
async fn write_batch(
    db: &Db,
    conn: &mut Option<PoolConnection<Any>>,
    captures: Vec<Capture>,
) -> Result<i64, sqlx::Error> {
    let conn = match conn {
        Some(c) => c,
        None => conn.insert(db.pool().acquire().await?),
    };
    let mut tx = db.begin_write_on(conn).await?;
    let head = store::lock_head(&mut tx, db).await?;
    let (rows, new_head) = chain::link(&head, captures);
    store::append(&mut tx, db, &rows, &new_head).await?;
    tx.commit().await?;
    Ok(head.seq + 1)
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
