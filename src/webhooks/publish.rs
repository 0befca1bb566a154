//! Publishing and the delivery queue as users see it: publish (outbox), routing dry-run,
//! test events, delivery listings, manual retry and time-range recovery.

use serde_json::json;
use tokio::sync::oneshot;

use super::model::{DeliveryDetail, DeliveryView, EventView, NewEvent, WebhookView};
use super::outbox::{Job, Published, lead};
use super::{get, model, pattern, queue, store};
use crate::app::AppState;
use crate::db::time;
use crate::error::{ApiError, ApiResult};
use crate::page::{Page, PageRequest};

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
