//! Publishing and the delivery queue as users see it: publish (outbox), routing dry-run,
//! test events, delivery listings, manual retry and time-range recovery.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::json;
use tokio::sync::oneshot;

use super::model::{DeliveryDetail, DeliveryView, EventView, NewEvent, WebhookView};
use super::{Indexed, get, model, pattern, queue, store};
use crate::app::AppState;
use crate::db::time;
use crate::error::{ApiError, ApiResult};
use crate::page::{Page, PageRequest};

/// Most events committed in one transaction.
const MAX_BATCH: usize = 512;

/// A publish waiting for the group commit.
pub(crate) struct Job {
    id: String,
    /// The client chose the id (an idempotency key) rather than opshub.
    chosen: bool,
    event_type: String,
    body: String,
    at: String,
    ack: oneshot::Sender<ApiResult<Published>>,
}

/// What the commit did with one event.
enum Published {
    /// Stored, with this many deliveries queued.
    New(i64),
    /// The id exists already: answer with the first event.
    Repeat,
}

/// Publishes an event: the event row and one delivery per matching active endpoint commit
/// in one transaction; workers then send them. A repeated `id` within 24 h returns the
/// first event and creates nothing. Concurrent publishes share one transaction (group
/// commit): nothing is acknowledged before its rows committed, and a request alone still
/// costs one commit.
pub async fn publish(app: &AppState, new: NewEvent) -> ApiResult<EventView> {
    pattern::validate_event_type(&new.event_type).map_err(|e| {
        ApiError::unprocessable(
            "invalid_event",
            format!("invalid event type {:?}: {e}", new.event_type),
        )
    })?;
    if let Some(id) = &new.id {
        model::validate_event_id(id)
            .map_err(|e| ApiError::unprocessable("invalid_event", e.message))?;
    }
    let id = new
        .id
        .clone()
        .unwrap_or_else(|| format!("msg_{}", uuid::Uuid::now_v7().simple()));
    let at = time::now();
    let body = json!({ "type": new.event_type, "timestamp": at, "data": new.payload }).to_string();
    let (ack, done) = oneshot::channel();
    let job = Job {
        id: id.clone(),
        chosen: new.id.is_some(),
        event_type: new.event_type.clone(),
        body,
        at: at.clone(),
        ack,
    };
    if app.webhooks.outbox.push(job) {
        tokio::spawn(lead(app.clone()));
    }
    let published = done
        .await
        .map_err(|_| ApiError::Unavailable("the publisher stopped; try again".into()))??;
    match published {
        Published::New(deliveries) => Ok(EventView {
            id,
            event_type: new.event_type,
            created_at: at,
            deliveries,
            duplicate: false,
        }),
        Published::Repeat => repeated(app, &id).await,
    }
}

/// The leader of the group commit: commits batches until no publish is waiting.
async fn lead(app: AppState) {
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

async fn repeated(app: &AppState, id: &str) -> ApiResult<EventView> {
    let (event_type, created_at, deliveries) =
        store::find_event(&app.db, id).await?.ok_or_else(|| {
            ApiError::conflict(
                "event_id_conflict",
                format!("event {id} is being published concurrently"),
            )
        })?;
    let age = time::parse(&created_at)
        .map(|t| time::parse(&time::now()).map(|n| n - t).unwrap_or_default());
    if age.is_ok_and(|a| a.whole_seconds() < 24 * 3600) {
        return Ok(EventView {
            id: id.to_string(),
            event_type,
            created_at,
            deliveries,
            duplicate: true,
        });
    }
    Err(ApiError::conflict(
        "event_id_used",
        format!("event id {id} was used more than 24 h ago; ids are never reused"),
    ))
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

/// Which webhooks an event of this type would reach (nothing is written).
pub async fn route(app: &AppState, event_type: &str) -> ApiResult<Vec<WebhookView>> {
    pattern::validate_event_type(event_type).map_err(|e| {
        ApiError::unprocessable(
            "invalid_event",
            format!("invalid event type {event_type:?}: {e}"),
        )
    })?;
    let generation = store::generation(&app.db, app.db.pool()).await?;
    let index = app.webhooks.endpoints(&app.db, generation).await?;
    Ok(index
        .matches(event_type)
        .iter()
        .filter_map(|id| index.get(id))
        .map(|w| WebhookView::from(w.as_ref()))
        .collect())
}

/// Sends a signed `webhook.test` event to one webhook (through the normal queue).
pub async fn send_test(app: &AppState, id: &str) -> ApiResult<DeliveryView> {
    let w = get(app, id).await?;
    let event_id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    let now = time::now();
    let body = json!({ "type": "webhook.test", "timestamp": now, "data": { "webhookId": w.id, "test": true } }).to_string();
    let mut tx = app.db.begin_write().await?;
    let event = store::NewEventRow {
        id: &event_id,
        event_type: "webhook.test",
        body: &body,
        at: &now,
    };
    store::insert_events(&app.db, &mut tx, &[event]).await?;
    let delivery = store::NewDeliveryRow::new(&event_id, &w.id, &now);
    store::insert_deliveries(&app.db, &mut tx, &[delivery]).await?;
    tx.commit().await?;
    app.webhooks.queued();
    let page = queue::list_deliveries(&app.db, Some(&w.id), None, None, 1).await?;
    page.into_iter()
        .next()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("test delivery vanished")))
}

pub async fn deliveries(
    app: &AppState,
    webhook_id: Option<&str>,
    status: Option<&str>,
    page: PageRequest,
) -> ApiResult<Page<DeliveryView>> {
    if let Some(s) = status
        && !["pending", "succeeded", "failed"].contains(&s)
    {
        return Err(ApiError::bad_request(
            "invalid_status",
            "status is pending, succeeded or failed",
        ));
    }
    let rows = queue::list_deliveries(
        &app.db,
        webhook_id,
        status,
        page.after.as_deref(),
        page.limit + 1,
    )
    .await?;
    Ok(Page::from_overfetch(rows, page.limit, |d| d.id.clone()))
}

pub async fn delivery(app: &AppState, id: &str) -> ApiResult<DeliveryDetail> {
    let delivery = queue::find_delivery(&app.db, id).await?.ok_or_else(|| {
        ApiError::not_found("delivery_not_found", format!("no delivery with id {id}"))
    })?;
    Ok(DeliveryDetail {
        attempts_log: queue::attempts(&app.db, id).await?,
        delivery,
    })
}

/// Puts one delivery back in the queue, due now.
pub async fn retry(app: &AppState, id: &str) -> ApiResult<DeliveryDetail> {
    let current = delivery(app, id).await?;
    if current.delivery.status == "pending" {
        return Err(ApiError::conflict(
            "delivery_pending",
            "the delivery is already queued",
        ));
    }
    queue::requeue(&app.db, Some(id), None, &time::now()).await?;
    app.webhooks.queued();
    delivery(app, id).await
}

/// Re-queues every failed delivery created in [since, until) (optionally one webhook's).
pub async fn recover(app: &AppState, req: model::RecoverRequest) -> ApiResult<u64> {
    let parse = |field: &str, v: &str| {
        time::parse(v).map(time::format).map_err(|_| {
            ApiError::unprocessable("invalid_range", format!("{field} must be an RFC 3339 time"))
        })
    };
    let since = parse("since", &req.since)?;
    let until = match &req.until {
        Some(u) => parse("until", u)?,
        None => time::now(),
    };
    let n = queue::requeue(
        &app.db,
        None,
        Some((&since, &until, req.webhook_id.as_deref())),
        &time::now(),
    )
    .await?;
    if n > 0 {
        app.webhooks.queued();
    }
    Ok(n)
}
