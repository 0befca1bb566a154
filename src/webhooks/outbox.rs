//! The outbox's group commit: publishes queue as jobs; a leader task writes every event
//! waiting, with one delivery per matching endpoint, in one transaction (one statement on
//! PostgreSQL), leases to this process what its delivery loops have room for (see
//! [`super::handoff`]) and answers each job once its rows are committed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::oneshot;

use super::{Indexed, queue, store};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};

/// Most events committed in one transaction.
const MAX_BATCH: usize = 512;

/// A publish waiting for the group commit.
pub(crate) struct Job {
    pub(super) id: String,
    /// The client chose the id (an idempotency key) rather than opshub.
    pub(super) chosen: bool,
    pub(super) event_type: String,
    pub(super) body: String,
    pub(super) at: String,
    pub(super) ack: oneshot::Sender<ApiResult<Published>>,
}

/// What the commit did with one event.
pub(super) enum Published {
    /// Stored, with this many deliveries queued.
    New(i64),
    /// The id exists already: answer with the first event.
    Repeat,
}

/// The leader of the group commit: commits batches until no publish is waiting.
pub(super) async fn lead(app: AppState) {
    struct Abandon<'a>(&'a AppState);
    impl Drop for Abandon<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.webhooks.outbox.abandon();
            }
        }
    }
    let _guard = Abandon(&app);
    loop {
        crate::batch::gather().await;
        let jobs = app.webhooks.outbox.take(MAX_BATCH);
        if jobs.is_empty() {
            return;
        }
        match commit_batch(&app, &jobs).await {
            Ok(results) => {
                for (job, r) in jobs.into_iter().zip(results) {
                    // A client that went away does not care; its event is stored anyway.
                    let _ = job.ack.send(Ok(r));
                }
            }
            Err(e) => {
                // A conflict with another instance's publish of the same id, or a broken
                // connection: each event on its own then, so one cannot fail the others.
                tracing::debug!(error = %e, events = jobs.len(), "batch publish failed; publishing one by one");
                for job in jobs {
                    let r = publish_one(&app, &job).await;
                    let _ = job.ack.send(r);
                }
            }
        }
    }
}

/// Commits a batch of events with their deliveries; one outcome per job, in order. As
/// many deliveries as this process's delivery loops have free slots for are inserted
/// leased to it and handed to the loops after the commit (see [`super::handoff`]).
async fn commit_batch(app: &AppState, jobs: &[Job]) -> ApiResult<Vec<Published>> {
    let mut handed = Vec::new();
    let mut granted = 0;
    // No later than the start of any lease the batch writes.
    let leased_at = std::time::Instant::now();
    let result = commit_rows(app, jobs, &mut granted, &mut handed).await;
    let handed = if result.is_ok() { handed } else { Vec::new() };
    app.webhooks.handoff.hand(granted, handed, leased_at);
    result
}

/// Writes a batch; the deliveries the local loops have room for (`granted`) are leased to
/// this process and pushed onto `handed`. PostgreSQL takes the whole batch in one statement (see
/// [`store::publish_pg`]); the others a transaction.
async fn commit_rows(
    app: &AppState,
    jobs: &[Job],
    granted: &mut usize,
    handed: &mut Vec<queue::Claimed>,
) -> ApiResult<Vec<Published>> {
    if app.db.dialect() == crate::db::Dialect::Postgres && jobs.len() <= store::PG_BATCH_EVENTS {
        return commit_rows_pg(app, jobs, granted, handed).await;
    }
    commit_rows_tx(app, jobs, granted, handed).await
}

/// [`commit_rows`] as one transaction (any database).
async fn commit_rows_tx(
    app: &AppState,
    jobs: &[Job],
    granted: &mut usize,
    handed: &mut Vec<queue::Claimed>,
) -> ApiResult<Vec<Published>> {
    let (mut tx, index) = routed_tx(app).await?;
    let (_, lease_until) = super::worker::lease_window(app, ::time::OffsetDateTime::now_utc());
    // Ids opshub made are new by construction; only chosen ones may exist already.
    let chosen: Vec<&str> = jobs
        .iter()
        .filter(|j| j.chosen)
        .map(|j| j.id.as_str())
        .collect();
    let stored: HashSet<String> = if chosen.is_empty() {
        HashSet::new()
    } else {
        store::existing_events(&app.db, &mut tx, &chosen)
            .await?
            .into_iter()
            .collect()
    };
    let rows = Rows::plan(app, jobs, &index, stored, &lease_until, (granted, handed));
    store::insert_events(&app.db, &mut tx, &rows.events).await?;
    store::insert_deliveries(&app.db, &mut tx, &rows.deliveries).await?;
    tx.commit().await?;
    if rows.deliveries.len() > handed.len() {
        app.webhooks.queued();
    }
    Ok(rows.results)
}

/// PostgreSQL: the batch is one statement, one round trip instead of five (BEGIN, the
/// generation, two INSERTs, COMMIT). The statement inserts only if the endpoint generation
/// is the one the rows were routed with; otherwise the index is reloaded and the batch
/// routed again. Events whose id exists (an idempotency key, perhaps committed by another
/// instance a moment ago) are skipped by the database and answered as repeats.
async fn commit_rows_pg(
    app: &AppState,
    jobs: &[Job],
    granted: &mut usize,
    handed: &mut Vec<queue::Claimed>,
) -> ApiResult<Vec<Published>> {
    let (_, lease_until) = super::worker::lease_window(app, ::time::OffsetDateTime::now_utc());
    let mut index = match app.webhooks.current() {
        Some(index) => index,
        None => {
            let generation = store::generation(&app.db, app.db.pool()).await?;
            app.webhooks.endpoints(&app.db, generation).await?
        }
    };
    for _ in 0..5 {
        let mut rows = Rows::plan(
            app,
            jobs,
            &index,
            HashSet::new(),
            &lease_until,
            (granted, handed),
        );
        if rows.deliveries.len() > store::PG_BATCH_DELIVERIES {
            // Many endpoints per event: the transaction path chunks the rows.
            drop(rows);
            return commit_rows_tx(app, jobs, granted, handed).await;
        }
        let outcome =
            store::publish_pg(&app.db, index.generation, &rows.events, &rows.deliveries).await?;
        let Some(inserted) = outcome.inserted else {
            index = app.webhooks.endpoints(&app.db, outcome.generation).await?;
            continue;
        };
        // Events the database skipped exist already: repeats, with nothing handed.
        for (job, result) in jobs.iter().zip(rows.results.iter_mut()) {
            if matches!(result, Published::New(_)) && !inserted.contains(&job.id) {
                *result = Published::Repeat;
            }
        }
        handed.retain(|d| inserted.contains(&d.event_id));
        let queued = rows
            .deliveries
            .iter()
            .filter(|d| inserted.contains(d.event_id))
            .count();
        if queued > handed.len() {
            app.webhooks.queued();
        }
        return Ok(rows.results);
    }
    Err(ApiError::Unavailable(
        "webhook endpoints keep changing; try again".into(),
    ))
}

/// A batch's rows, routed with one index.
struct Rows<'a> {
    events: Vec<store::NewEventRow<'a>>,
    deliveries: Vec<store::NewDeliveryRow<'a>>,
    /// One per job, in order.
    results: Vec<Published>,
}

impl<'a> Rows<'a> {
    /// Routes `jobs` (skipping ids in `seen` and repeats within the batch), reserves room
    /// in this process's delivery loops (`granted`, given back by [`commit_batch`]) and
    /// leases that many deliveries to this process until `lease_until`, recording them in
    /// `handed`.
    fn plan(
        app: &'a AppState,
        jobs: &'a [Job],
        index: &Indexed,
        mut seen: HashSet<String>,
        lease_until: &'a str,
        (granted, handed): (&mut usize, &mut Vec<queue::Claimed>),
    ) -> Rows<'a> {
        // A plan made before (an earlier try of this batch) gives its room back.
        let handoff = &app.webhooks.handoff;
        handoff.give_back(std::mem::take(granted));
        handed.clear();
        let mut routes: HashMap<&str, Vec<String>> = HashMap::new();
        for job in jobs {
            routes
                .entry(&job.event_type)
                .or_insert_with(|| index.matches(&job.event_type));
        }
        // Room in this process's delivery loops for as many deliveries as can start now.
        if !app.shutdown.is_cancelled() {
            let wanted = jobs.iter().map(|j| routes[j.event_type.as_str()].len());
            *granted = handoff.reserve(wanted.sum());
        }
        let worker = app.webhooks.worker_id.as_str();
        let mut rows = Rows {
            events: Vec::new(),
            deliveries: Vec::new(),
            results: Vec::new(),
        };
        for job in jobs {
            if !seen.insert(job.id.clone()) {
                rows.results.push(Published::Repeat);
                continue;
            }
            let targets = &routes[job.event_type.as_str()];
            rows.events.push(store::NewEventRow {
                id: &job.id,
                event_type: &job.event_type,
                body: &job.body,
                at: &job.at,
            });
            for w in targets {
                let mut row = store::NewDeliveryRow::new(&job.id, w, &job.at);
                if handed.len() < *granted {
                    row.leased = Some((lease_until, worker));
                    handed.push(queue::Claimed {
                        id: row.id.clone(),
                        attempts: 0,
                        event_id: job.id.clone(),
                        webhook_id: w.clone(),
                        body: job.body.clone(),
                    });
                }
                rows.deliveries.push(row);
            }
            rows.results.push(Published::New(targets.len() as i64));
        }
        rows
    }
}

/// One event in its own transaction (the fallback when a batch fails).
async fn publish_one(app: &AppState, job: &Job) -> ApiResult<Published> {
    let (mut tx, index) = routed_tx(app).await?;
    let event = store::NewEventRow {
        id: &job.id,
        event_type: &job.event_type,
        body: &job.body,
        at: &job.at,
    };
    if let Err(e) = store::insert_events(&app.db, &mut tx, &[event]).await {
        return if crate::db::is_unique_violation(&e) {
            Ok(Published::Repeat)
        } else {
            Err(e.into())
        };
    }
    let targets = index.matches(&job.event_type);
    let deliveries: Vec<_> = targets
        .iter()
        .map(|w| store::NewDeliveryRow::new(&job.id, w, &job.at))
        .collect();
    store::insert_deliveries(&app.db, &mut tx, &deliveries).await?;
    tx.commit().await?;
    if !deliveries.is_empty() {
        app.webhooks.queued();
    }
    Ok(Published::New(targets.len() as i64))
}

/// A write transaction plus the routing index, consistent with each other.
/// The index is brought up to date BEFORE the write lock is taken: reloading it needs
/// another pooled connection, and on SQLite every other connection may be waiting for
/// this transaction's write lock (a deadlock that surfaced as 500s under load). Inside the
/// transaction only the generation is read; if the index does not reflect it (an endpoint
/// changed), the transaction is dropped, the index reloaded outside it, and it retries.
async fn routed_tx(app: &AppState) -> ApiResult<(crate::db::WriteTx, Arc<Indexed>)> {
    let mut load = match app.webhooks.current() {
        Some(_) => None,
        None => Some(store::generation(&app.db, app.db.pool()).await?),
    };
    for _ in 0..5 {
        if let Some(generation) = load {
            app.webhooks.endpoints(&app.db, generation).await?;
        }
        let mut tx = app.db.begin_write().await?;
        let generation = store::generation(&app.db, &mut *tx).await?;
        if let Some(index) = app.webhooks.at(generation) {
            return Ok((tx, index));
        }
        drop(tx);
        load = Some(generation);
    }
    Err(ApiError::Unavailable(
        "webhook endpoints keep changing; try again".into(),
    ))
}
