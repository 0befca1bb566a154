//! Outbound webhooks (SPEC §5): endpoints with encrypted `whsec_` secrets, event routing by
//! segment patterns through an in-memory index, the outbox (an event and its deliveries
//! commit together), background workers that lease due deliveries and send them signed
//! per Standard Webhooks, retries on a schedule, and the digest/verify helpers.
//!
//! The index is rebuilt whenever `opshub_webhooks_gen` moved; publish reads that counter in
//! its own transaction, so an endpoint committed by any instance before the publish is seen.

pub mod api;
pub mod cli;
pub mod deliver;
pub mod guard;
pub mod model;
pub mod pattern;
pub mod retry;
pub mod sign;
mod store;
pub mod worker;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::json;

use crate::app::AppState;
use crate::db::{Db, time};
use crate::error::{ApiError, ApiResult};
use crate::page::{Page, PageRequest};
use model::{
    DeliveryDetail, DeliveryView, Digest, DigestHeaders, EventView, Invalid, NewEvent, NewWebhook,
    Webhook, WebhookPatch, WebhookView, WithSecret,
};

/// How long a rotated-out secret keeps signing beside the new one.
pub const PREVIOUS_SECRET_GRACE_SECS: i64 = 24 * 3600;

/// Per-process webhook state: the routing index (with the generation it reflects), the
/// sender, and the worker's wake-up.
pub struct Webhooks {
    index: RwLock<Option<Indexed>>,
    pub sender: deliver::Sender,
    pub wake: tokio::sync::Notify,
    pub worker_id: String,
}

struct Indexed {
    generation: i64,
    patterns: pattern::PatternIndex<String>,
    by_id: HashMap<String, Arc<Webhook>>,
}

impl Webhooks {
    pub fn new(config: &crate::config::Config) -> Webhooks {
        Webhooks {
            index: RwLock::new(None),
            sender: deliver::Sender::new(config),
            wake: tokio::sync::Notify::new(),
            worker_id: format!(
                "{}-{}",
                std::process::id(),
                &uuid::Uuid::now_v7().simple().to_string()[20..]
            ),
        }
    }

    /// Brings the index up to `generation` (reloading every endpoint when it is older).
    async fn refresh(&self, db: &Db, generation: i64) -> Result<(), sqlx::Error> {
        let current = self
            .index
            .read()
            .ok()
            .and_then(|i| i.as_ref().map(|i| i.generation));
        if current == Some(generation) {
            return Ok(());
        }
        let all = store::all(db).await?;
        let mut patterns = pattern::PatternIndex::new();
        for w in all.iter().filter(|w| w.is_active) {
            if let Err(e) = patterns.insert(w.id.clone(), w.events.clone()) {
                tracing::warn!(webhook = %w.id, error = %e, "stored webhook has an invalid pattern; skipped");
            }
        }
        let by_id = all
            .into_iter()
            .map(|w| (w.id.clone(), Arc::new(w)))
            .collect();
        if let Ok(mut slot) = self.index.write()
            && slot.as_ref().is_none_or(|i| i.generation < generation)
        {
            *slot = Some(Indexed {
                generation,
                patterns,
                by_id,
            });
        }
        Ok(())
    }

    /// Active endpoints matching `event_type`, as of `generation`.
    async fn route(
        &self,
        db: &Db,
        generation: i64,
        event_type: &str,
    ) -> Result<Vec<String>, sqlx::Error> {
        self.refresh(db, generation).await?;
        Ok(self
            .index
            .read()
            .ok()
            .and_then(|i| i.as_ref().map(|i| i.patterns.matches(event_type)))
            .unwrap_or_default())
    }

    /// The endpoints with these ids, as of `generation`.
    pub async fn endpoints(
        &self,
        db: &Db,
        generation: i64,
    ) -> Result<HashMap<String, Arc<Webhook>>, sqlx::Error> {
        self.refresh(db, generation).await?;
        Ok(self
            .index
            .read()
            .ok()
            .and_then(|i| i.as_ref().map(|i| i.by_id.clone()))
            .unwrap_or_default())
    }
}

fn invalid(e: Invalid) -> ApiError {
    ApiError::Unprocessable {
        code: "invalid_webhook",
        message: e.message,
        details: json!({ "field": e.field }),
    }
}

/// Refuses an endpoint whose name resolves to a forbidden address now. A name that does
/// not resolve yet is accepted; the send-time check still applies to every attempt.
async fn check_dns(url: &str, allow_private: bool) -> ApiResult<()> {
    if allow_private {
        return Ok(());
    }
    match deliver::forbidden_by_dns(url).await {
        Some(why) => Err(invalid(Invalid {
            field: "endpoint",
            message: format!(
                "invalid endpoint: {why} (set OPSHUB_WEBHOOK_ALLOW_PRIVATE=true to allow private targets)"
            ),
        })),
        None => Ok(()),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found("webhook_not_found", format!("no webhook with id {id}"))
}

fn secret_aad(id: &str) -> String {
    format!("webhook:{id}")
}

fn name_taken(e: sqlx::Error, name: &str) -> ApiError {
    if crate::db::is_unique_violation(&e) {
        ApiError::conflict(
            "webhook_name_taken",
            format!("a webhook named {name:?} exists"),
        )
    } else {
        e.into()
    }
}

/// Creates an endpoint; the answer carries its secret, the only time it is shown.
pub async fn create(app: &AppState, new: NewWebhook) -> ApiResult<WithSecret> {
    let allow_private = app.config.webhook_allow_private;
    model::validate_name(&new.name).map_err(invalid)?;
    model::validate_endpoint(&new.endpoint, allow_private).map_err(invalid)?;
    check_dns(&new.endpoint, allow_private).await?;
    model::validate_events(&new.events).map_err(invalid)?;
    let headers = new.headers.unwrap_or_default();
    model::validate_headers(&headers).map_err(invalid)?;
    let metadata = new.metadata.unwrap_or_else(|| json!({}));
    model::validate_metadata(&metadata).map_err(invalid)?;
    if let Some(s) = &new.retry_schedule {
        model::validate_schedule(s).map_err(invalid)?;
    }
    let secret = match new.secret {
        Some(s) => {
            model::validate_secret(&s).map_err(invalid)?;
            s
        }
        None => {
            sign::generate_secret().map_err(|e| anyhow::anyhow!("cannot generate a secret: {e}"))?
        }
    };
    let id = uuid::Uuid::now_v7().to_string();
    let now = time::now();
    let w = Webhook {
        secret_ct: app.keys.encrypt(secret.as_bytes(), &secret_aad(&id)),
        id,
        name: new.name.trim().to_string(),
        endpoint: new.endpoint,
        events: new.events,
        prev_secret_ct: None,
        prev_secret_until: None,
        service: new.service,
        metadata,
        headers,
        is_active: new.is_active.unwrap_or(true),
        description: new.description.unwrap_or_default(),
        disabled_reason: None,
        retry_schedule: new.retry_schedule,
        failing_since: None,
        created_at: now.clone(),
        updated_at: now,
    };
    let mut tx = app.db.begin_write().await?;
    store::save(&app.db, &mut tx, &w, false)
        .await
        .map_err(|e| name_taken(e, &w.name))?;
    tx.commit().await?;
    Ok(WithSecret {
        webhook: WebhookView::from(&w),
        secret,
    })
}

pub async fn get(app: &AppState, id: &str) -> ApiResult<Webhook> {
    store::find(&app.db, app.db.pool(), id)
        .await?
        .ok_or_else(|| not_found(id))
}

pub async fn list(app: &AppState, page: PageRequest) -> ApiResult<Page<WebhookView>> {
    let rows = store::list(&app.db, page.after.as_deref(), page.limit + 1).await?;
    Ok(Page::from_overfetch(
        rows.iter().map(WebhookView::from).collect(),
        page.limit,
        |w| w.id.clone(),
    ))
}

/// Changes the given fields. Re-activating clears `disabledReason` and the failure clock.
pub async fn update(app: &AppState, id: &str, patch: WebhookPatch) -> ApiResult<WebhookView> {
    let mut w = get(app, id).await?;
    if let Some(name) = patch.name {
        model::validate_name(&name).map_err(invalid)?;
        w.name = name.trim().to_string();
    }
    if let Some(endpoint) = patch.endpoint {
        model::validate_endpoint(&endpoint, app.config.webhook_allow_private).map_err(invalid)?;
        check_dns(&endpoint, app.config.webhook_allow_private).await?;
        w.endpoint = endpoint;
    }
    if let Some(events) = patch.events {
        model::validate_events(&events).map_err(invalid)?;
        w.events = events;
    }
    if let Some(headers) = patch.headers {
        model::validate_headers(&headers).map_err(invalid)?;
        w.headers = headers;
    }
    if let Some(metadata) = patch.metadata {
        model::validate_metadata(&metadata).map_err(invalid)?;
        w.metadata = metadata;
    }
    if let Some(schedule) = patch.retry_schedule {
        model::validate_schedule(&schedule).map_err(invalid)?;
        w.retry_schedule = Some(schedule);
    }
    if let Some(active) = patch.is_active {
        if active && !w.is_active {
            w.disabled_reason = None;
            w.failing_since = None;
        }
        w.is_active = active;
    }
    w.service = patch.service.or(w.service);
    w.description = patch.description.unwrap_or(w.description);
    w.updated_at = time::now();
    let mut tx = app.db.begin_write().await?;
    store::save(&app.db, &mut tx, &w, true)
        .await
        .map_err(|e| name_taken(e, &w.name))?;
    tx.commit().await?;
    Ok(WebhookView::from(&w))
}

pub async fn delete(app: &AppState, id: &str) -> ApiResult<()> {
    let mut tx = app.db.begin_write().await?;
    if !store::delete(&app.db, &mut tx, id).await? {
        return Err(not_found(id));
    }
    tx.commit().await?;
    Ok(())
}

/// A new secret; the previous one keeps signing beside it for 24 h.
pub async fn rotate_secret(app: &AppState, id: &str) -> ApiResult<WithSecret> {
    let mut w = get(app, id).await?;
    let secret =
        sign::generate_secret().map_err(|e| anyhow::anyhow!("cannot generate a secret: {e}"))?;
    w.prev_secret_ct = Some(std::mem::replace(
        &mut w.secret_ct,
        app.keys.encrypt(secret.as_bytes(), &secret_aad(id)),
    ));
    w.prev_secret_until = Some(time::in_secs(PREVIOUS_SECRET_GRACE_SECS));
    w.updated_at = time::now();
    let mut tx = app.db.begin_write().await?;
    store::save(&app.db, &mut tx, &w, true).await?;
    tx.commit().await?;
    Ok(WithSecret {
        webhook: WebhookView::from(&w),
        secret,
    })
}

/// The raw signing keys of `w` at `now`: the current one, plus the previous during its
/// grace period.
pub fn signing_keys(app: &AppState, w: &Webhook, now: &str) -> ApiResult<Vec<Vec<u8>>> {
    let decode = |ct: &str| -> ApiResult<Vec<u8>> {
        let text = String::from_utf8(app.keys.decrypt(ct, &secret_aad(&w.id))?)
            .map_err(anyhow::Error::from)?;
        sign::parse_secret(&text)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored secret unusable: {e}")))
    };
    let mut keys = vec![decode(&w.secret_ct)?];
    if let (Some(ct), Some(until)) = (&w.prev_secret_ct, &w.prev_secret_until)
        && until.as_str() > now
    {
        keys.push(decode(ct)?);
    }
    Ok(keys)
}

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
    let mut tx = app.db.begin_write().await?;
    let generation = store::generation(&app.db, &mut *tx).await?;
    let targets = app
        .webhooks
        .route(&app.db, generation, &new.event_type)
        .await?;
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
    let page = store::list_deliveries(&app.db, Some(&w.id), None, None, 1).await?;
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
    let rows = store::list_deliveries(
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
    let delivery = store::find_delivery(&app.db, id).await?.ok_or_else(|| {
        ApiError::not_found("delivery_not_found", format!("no delivery with id {id}"))
    })?;
    Ok(DeliveryDetail {
        attempts_log: store::attempts(&app.db, id).await?,
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
    store::requeue(&app.db, Some(id), None, &time::now()).await?;
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
    let n = store::requeue(
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

/// The headers a receiver would get for `payload` signed with `keys`. A JSON string payload
/// is signed as its exact text (so published test vectors reproduce); any other JSON value
/// is signed in its compact form, as opshub sends bodies.
pub fn digest(
    keys: &[Vec<u8>],
    payload: &serde_json::Value,
    id: Option<String>,
    timestamp: Option<i64>,
) -> Digest {
    let body = match payload {
        serde_json::Value::String(raw) => raw.clone(),
        other => other.to_string(),
    };
    let id = id.unwrap_or_else(|| format!("msg_{}", uuid::Uuid::now_v7().simple()));
    let ts = timestamp.unwrap_or_else(|| ::time::OffsetDateTime::now_utc().unix_timestamp());
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let signature = sign::signature_header(&refs, &id, ts, body.as_bytes());
    Digest {
        headers: DigestHeaders {
            webhook_id: id,
            webhook_timestamp: ts.to_string(),
            webhook_signature: signature,
        },
        body,
    }
}

/// Checks Standard Webhooks headers against a raw body and a secret.
pub fn verify(req: &model::VerifyRequest) -> ApiResult<model::VerifyResult> {
    let key = sign::parse_secret(&req.secret)
        .map_err(|e| ApiError::unprocessable("invalid_secret", format!("invalid secret: {e}")))?;
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let now = ::time::OffsetDateTime::now_utc().unix_timestamp();
    let tolerance = req.tolerance.unwrap_or(sign::DEFAULT_TOLERANCE_SECS);
    let outcome = sign::verify(
        &[key.as_slice()],
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
        req.payload.as_bytes(),
        now,
        tolerance,
    );
    Ok(match outcome {
        Ok(()) => model::VerifyResult {
            valid: true,
            reason: None,
        },
        Err(e) => model::VerifyResult {
            valid: false,
            reason: Some(e.to_string()),
        },
    })
}
