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
mod digest;
pub mod guard;
pub mod handoff;
mod health;
pub mod model;
mod outbox;
pub mod pattern;
mod publish;
mod queue;
pub mod retry;
pub mod sign;
mod store;
pub mod worker;

pub use digest::{digest, verify};
pub use publish::{deliveries, delivery, publish, recover, retry, route, send_test};

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::json;

use crate::app::AppState;
use crate::db::{Db, time};
use crate::error::{ApiError, ApiResult};
use crate::page::{Page, PageRequest};
use model::{Invalid, NewWebhook, Webhook, WebhookPatch, WebhookView, WithSecret};

/// How long a rotated-out secret keeps signing beside the new one.
pub const PREVIOUS_SECRET_GRACE_SECS: i64 = 24 * 3600;

/// Per-process webhook state: the routing index (with the generation it reflects), the
/// sender, and the worker's wake-up.
pub struct Webhooks {
    index: RwLock<Option<Arc<Indexed>>>,
    /// Publishes waiting for the next group commit (see [`publish`]).
    outbox: crate::batch::Batcher<outbox::Job>,
    /// Deliveries publish leased to this process, on their way to its delivery loops.
    pub handoff: handoff::Handoff,
    pub sender: deliver::Sender,
    /// Rung when deliveries become claimable in the table (see [`Webhooks::queued`]).
    wake: tokio::sync::Notify,
    /// How many times it was rung: a loop busy when it rang still sees that it did.
    wakes: std::sync::atomic::AtomicU64,
    pub worker_id: String,
    /// Endpoints whose failure clock this process cleared, and when (see `health.rs`).
    cleared: std::sync::Mutex<HashMap<String, tokio::time::Instant>>,
}

/// The routing index as of one generation; shared, immutable, replaced whole.
pub struct Indexed {
    generation: i64,
    patterns: pattern::PatternIndex<String>,
    by_id: HashMap<String, Arc<Webhook>>,
}

impl Indexed {
    /// Active endpoints matching `event_type`.
    pub fn matches(&self, event_type: &str) -> Vec<String> {
        self.patterns.matches(event_type)
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Webhook>> {
        self.by_id.get(id)
    }
}

impl Webhooks {
    pub fn new(config: &crate::config::Config) -> Webhooks {
        Webhooks {
            index: RwLock::new(None),
            // Two batches in flight where the database commits them in parallel; SQLite
            // has one writer.
            outbox: crate::batch::Batcher::new(if config.database_url.starts_with("sqlite") {
                1
            } else {
                2
            }),
            handoff: handoff::Handoff::default(),
            sender: deliver::Sender::new(config),
            wake: tokio::sync::Notify::new(),
            wakes: std::sync::atomic::AtomicU64::new(0),
            cleared: std::sync::Mutex::default(),
            worker_id: format!(
                "{}-{}",
                std::process::id(),
                &uuid::Uuid::now_v7().simple().to_string()[20..]
            ),
        }
    }

    /// The index at `generation` or newer, reloading every endpoint when it is older.
    async fn refresh(&self, db: &Db, generation: i64) -> Result<Arc<Indexed>, sqlx::Error> {
        if let Some(current) = self.current().filter(|i| i.generation >= generation) {
            return Ok(current);
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
        let fresh = Arc::new(Indexed {
            generation,
            patterns,
            by_id,
        });
        if let Ok(mut slot) = self.index.write()
            && slot.as_ref().is_none_or(|i| i.generation < generation)
        {
            *slot = Some(fresh.clone());
        }
        Ok(fresh)
    }

    /// Deliveries became claimable in the table (queued unleased, re-queued): the loops
    /// claim at their next turn.
    pub fn queued(&self) {
        self.wakes
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        self.wake.notify_waiters();
    }

    fn current(&self) -> Option<Arc<Indexed>> {
        self.index.read().ok().and_then(|i| i.clone())
    }

    /// The index if it reflects exactly `generation`; touches no database, so it is safe
    /// inside a write transaction.
    fn at(&self, generation: i64) -> Option<Arc<Indexed>> {
        self.current().filter(|i| i.generation == generation)
    }

    /// The endpoints as of `generation` or newer.
    pub async fn endpoints(&self, db: &Db, generation: i64) -> Result<Arc<Indexed>, sqlx::Error> {
        self.refresh(db, generation).await
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

/// Re-encrypts every endpoint secret (current and previous) not under the current master
/// key, inside the caller's transaction. Returns how many endpoints changed.
pub async fn rotate_secrets(
    app: &AppState,
    conn: &mut sqlx::AnyConnection,
) -> anyhow::Result<usize> {
    let mut changed = 0;
    let reseal = |id: &str, ct: &str| -> anyhow::Result<String> {
        if app.keys.is_current(ct) {
            return Ok(ct.to_string());
        }
        let plain = app
            .keys
            .decrypt(ct, &secret_aad(id))
            .map_err(|e| anyhow::anyhow!("webhook {id}: {e}"))?;
        Ok(app.keys.encrypt(&plain, &secret_aad(id)))
    };
    for (id, ct, prev) in store::secret_cts(&app.db, conn).await? {
        let new_ct = reseal(&id, &ct)?;
        let new_prev = prev.as_deref().map(|p| reseal(&id, p)).transpose()?;
        if new_ct != ct || new_prev != prev {
            store::set_secret_cts(&app.db, conn, &id, &new_ct, new_prev.as_deref()).await?;
            changed += 1;
        }
    }
    Ok(changed)
}
