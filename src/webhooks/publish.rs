//! Publishing and the delivery queue as users see it: publish (outbox), routing dry-run,
//! test events, delivery listings, manual retry and time-range recovery.

use serde_json::json;

use super::model::{DeliveryDetail, DeliveryView, EventView, NewEvent, WebhookView};
use super::{get, model, pattern, queue, store};
use crate::app::AppState;
use crate::db::time;
use crate::error::{ApiError, ApiResult};
use crate::page::{Page, PageRequest};

/// Publishes an event: the event row and one delivery per matching active endpoint commit
/// in one transaction; workers then send them. A repeated `id` within 24 h returns the
/// first event and creates nothing.
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
    let now = time::now();
    let body = json!({ "type": new.event_type, "timestamp": now, "data": new.payload }).to_string();
    let (mut tx, targets) = routed_tx(app, &new.event_type).await?;
    if let Err(e) = store::insert_event(&app.db, &mut tx, &id, &new.event_type, &body, &now).await {
        drop(tx);
        return if crate::db::is_unique_violation(&e) {
            repeated(app, &id).await
        } else {
            Err(e.into())
        };
    }
    store::insert_deliveries(&app.db, &mut tx, &id, &targets, &now).await?;
    tx.commit().await?;
    if !targets.is_empty() {
        app.webhooks.wake.notify_waiters();
    }
    Ok(EventView {
        id,
        event_type: new.event_type,
        created_at: now,
        deliveries: targets.len() as i64,
        duplicate: false,
    })
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

/// A write transaction plus the endpoints the event reaches, consistent with each other.
/// The index is brought up to date BEFORE the write lock is taken: reloading it needs
/// another pooled connection, and on SQLite every other connection may be waiting for
/// this transaction's write lock (a deadlock that surfaced as 500s under load). Inside the
/// transaction only the generation is re-read; if an endpoint changed in between, retry.
async fn routed_tx(
    app: &AppState,
    event_type: &str,
) -> ApiResult<(crate::db::WriteTx, Vec<String>)> {
    for _ in 0..5 {
        let seen = store::generation(&app.db, app.db.pool()).await?;
        app.webhooks.endpoints(&app.db, seen).await?;
        let mut tx = app.db.begin_write().await?;
        let generation = store::generation(&app.db, &mut *tx).await?;
        if let Some(targets) = app.webhooks.matches_at(generation, event_type) {
            return Ok((tx, targets));
        }
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
    let ids = app.webhooks.route(&app.db, generation, event_type).await?;
    let by_id = app.webhooks.endpoints(&app.db, generation).await?;
    Ok(ids
        .iter()
        .filter_map(|id| by_id.get(id))
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
    store::insert_event(&app.db, &mut tx, &event_id, "webhook.test", &body, &now).await?;
    store::insert_deliveries(
        &app.db,
        &mut tx,
        &event_id,
        std::slice::from_ref(&w.id),
        &now,
    )
    .await?;
    tx.commit().await?;
    app.webhooks.wake.notify_waiters();
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
    app.webhooks.wake.notify_waiters();
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
        app.webhooks.wake.notify_waiters();
    }
    Ok(n)
}
