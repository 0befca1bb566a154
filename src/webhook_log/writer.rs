//! The group-commit writer that makes captures durable. Requests hand their row to the one
//! writer task of the process and wait; it takes everything queued, links it into the
//! chain in order, stores it in one transaction and only then acknowledges each request.
//! Nothing is answered 2xx before its row committed. Several instances share one chain:
//! the head row is locked (`FOR UPDATE`; SQLite's write lock) while a batch is linked, or,
//! on PostgreSQL once the head is known, moved by a compare-and-set in the same statement
//! that inserts the batch, falling back to the lock when another instance moved it first.

use sqlx::pool::PoolConnection;
use tokio::sync::{mpsc, oneshot};

use super::chain::{self, Head};
use super::model::Capture;
use super::store;
use crate::db::{Any, Db, Dialect};
use crate::error::{ApiError, ApiResult};

/// Most captures committed in one transaction.
const MAX_BATCH: usize = 1024;
/// Times the writer yields to let ready requests join a batch (see [`gather_more`]).
const GATHER_YIELDS: usize = 2;
/// Captures waiting for the writer before senders wait too (backpressure).
const QUEUE: usize = 16 * 1024;

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

/// What the writer keeps between batches: its own connection (a pool checkout pings the
/// server first, a round trip per batch that shows in every request's latency) and, on
/// PostgreSQL, the head it last wrote.
#[derive(Default)]
struct State {
    conn: Option<PoolConnection<Any>>,
    head: Option<Head>,
}

async fn run(db: Db, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut state = State::default();
    loop {
        let taken = tokio::select! {
            taken = rx.recv_many(&mut jobs, MAX_BATCH) => taken,
            // Closing the pool waits for every checked-out connection: give ours back.
            () = db.pool().close_event() => {
                state = State::default();
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
        let result = write_batch(&db, &mut state, captures).await;
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
                state = State::default();
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

/// Stores one batch; its first seq.
async fn write_batch(
    db: &Db,
    state: &mut State,
    mut captures: Vec<Capture>,
) -> Result<i64, sqlx::Error> {
    // SQLite: this process's writers take turns instead of meeting the database lock.
    let _turn = db.write_turn().await;
    let conn = match &mut state.conn {
        Some(c) => c,
        None => state.conn.insert(db.pool().acquire().await?),
    };
    if let Some(expected) = state.head.take() {
        let (rows, new_head) = chain::link(&expected, captures);
        if store::append_if_head(conn, db, &expected, &rows, &new_head).await? {
            state.head = Some(new_head);
            return Ok(expected.seq + 1);
        }
        // Another instance extended the chain meanwhile: relink under the lock.
        tracing::debug!("the chain head moved elsewhere; relinking the batch under the lock");
        captures = rows.into_iter().map(|e| e.capture).collect();
    }
    let mut tx = db.begin_write_on(conn).await?;
    let head = store::lock_head(&mut tx, db).await?;
    let (rows, new_head) = chain::link(&head, captures);
    store::append(&mut tx, db, &rows, &new_head).await?;
    tx.commit().await?;
    if db.dialect() == Dialect::Postgres {
        state.head = Some(new_head);
    }
    Ok(head.seq + 1)
}
