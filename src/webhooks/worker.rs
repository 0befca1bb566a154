//! The delivery worker: `run_once` leases a batch of due deliveries, sends them
//! concurrently outside any transaction, and records every outcome in one transaction;
//! `run` is a dumb loop around it that sleeps until a publish wakes it (or a second
//! passes, for retries and other instances' events). Several loops run per process so
//! that one sends while another claims or records. A worker that dies loses its leases
//! when they run out, and the deliveries go to whoever claims next.

use std::collections::HashMap;
use std::time::Duration;

use ::time::OffsetDateTime;
use futures_util::StreamExt;

use super::Indexed;
use super::model::Webhook;
use super::queue::{self, AttemptRecord, Claimed};
use super::retry::{self, Outcome, RetryPolicy, RetrySchedule};
use super::store;
use crate::app::AppState;
use crate::db::time;

/// Most deliveries leased per round; never more than the loop sends at once
/// (`OPSHUB_WEBHOOK_CONCURRENCY`), so every leased delivery starts at once and ends within
/// its time limit, well inside its lease. Leasing more than that let a slow receiver keep
/// claimed deliveries queued behind it until their leases ran out and another worker took
/// them too.
const BATCH: usize = 256;

pub async fn run(app: AppState) {
    loop {
        if app.shutdown.is_cancelled() {
            return;
        }
        let n = match run_once(&app, OffsetDateTime::now_utc()).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "delivery round failed");
                0
            }
        };
        if n == 0 {
            tokio::select! {
                _ = app.shutdown.cancelled() => return,
                _ = app.webhooks.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// One round at time `now`: lease, send, record. Returns how many deliveries it handled.
pub async fn run_once(app: &AppState, now: OffsetDateTime) -> anyhow::Result<usize> {
    // Longer than one attempt can take, short enough that a dead worker's work moves on
    // within seconds.
    let lease = i64::try_from(app.config.webhook_timeout_secs).unwrap_or(15) + 5;
    let now_text = time::format(now);
    let lease_until = time::format(now + ::time::Duration::seconds(lease));
    let worker = app.webhooks.worker_id.clone();
    let concurrency = app.config.webhook_concurrency.max(1);
    let limit = u32::try_from(concurrency.min(BATCH)).unwrap_or(1);
    let claimed = queue::claim(&app.db, &worker, &now_text, &lease_until, limit).await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let generation = store::generation(&app.db, app.db.pool()).await?;
    let endpoints = app.webhooks.endpoints(&app.db, generation).await?;
    let results: Vec<(AttemptRecord, Option<Health>)> = futures_util::stream::iter(claimed)
        .map(|c| attempt(app, &endpoints, c, now))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let n = results.len();
    let (records, health): (Vec<_>, Vec<_>) = results.into_iter().unzip();
    queue::record(
        &app.db,
        &worker,
        &records,
        &time::format(OffsetDateTime::now_utc()),
    )
    .await?;
    apply_health(app, health.into_iter().flatten().collect(), now).await?;
    Ok(n)
}

/// What an attempt says about its endpoint's health.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Health {
    Succeeded(String),
    Failed(String),
    Gone(String),
}

async fn attempt(
    app: &AppState,
    endpoints: &Indexed,
    c: Claimed,
    now: OffsetDateTime,
) -> (AttemptRecord, Option<Health>) {
    let started_at = time::format(OffsetDateTime::now_utc());
    let attempt_no = c.attempts + 1;
    let base = AttemptRecord {
        delivery_id: c.id.clone(),
        attempt: attempt_no,
        started_at,
        duration_ms: 0,
        status_code: None,
        response_headers: "[]".into(),
        response_body: String::new(),
        error: None,
        new_status: "failed",
        next_attempt_at: time::format(now),
        delivered_at: None,
    };
    let Some(w) = endpoints.get(&c.webhook_id).filter(|w| w.is_active) else {
        let error = Some("the webhook was deleted or disabled before this delivery".to_string());
        return (AttemptRecord { error, ..base }, None);
    };
    let keys = match super::signing_keys(app, w, &time::format(now)) {
        Ok(k) => k,
        Err(e) => {
            return (
                AttemptRecord {
                    error: Some(format!("cannot read the signing secret: {e}")),
                    ..base
                },
                None,
            );
        }
    };
    let sent = app
        .webhooks
        .sender
        .send(
            w,
            &keys,
            &c.event_id,
            OffsetDateTime::now_utc().unix_timestamp(),
            &c.body,
        )
        .await;
    let policy = policy_for(app, w);
    let outcome = if sent.refused {
        Outcome::Failed
    } else {
        let retry_after = sent
            .retry_after
            .as_deref()
            .and_then(|v| retry::retry_after(v, now.unix_timestamp()));
        retry::classify(
            sent.status,
            retry_after,
            u32::try_from(attempt_no).unwrap_or(u32::MAX),
            jitter(),
            &policy,
        )
    };
    let record = AttemptRecord {
        duration_ms: i64::try_from(sent.duration.as_millis()).unwrap_or(i64::MAX),
        status_code: sent.status.map(i64::from),
        response_headers: serde_json::to_string(&sent.headers).unwrap_or_else(|_| "[]".into()),
        response_body: sent.body,
        error: sent.error.clone().or_else(|| {
            sent.status
                .filter(|s| !(200..300).contains(s))
                .map(|s| format!("HTTP {s}"))
        }),
        ..base
    };
    match outcome {
        Outcome::Delivered => {
            let at = Some(time::format(OffsetDateTime::now_utc()));
            (
                AttemptRecord {
                    new_status: "succeeded",
                    delivered_at: at,
                    ..record
                },
                Some(Health::Succeeded(w.id.clone())),
            )
        }
        Outcome::Retry(delay) => {
            let next =
                now + ::time::Duration::try_from(delay).unwrap_or(::time::Duration::hours(1));
            (
                AttemptRecord {
                    new_status: "pending",
                    next_attempt_at: time::format(next),
                    ..record
                },
                Some(Health::Failed(w.id.clone())),
            )
        }
        Outcome::Failed => (record, Some(Health::Failed(w.id.clone()))),
        Outcome::Disable(_) => (record, Some(Health::Gone(w.id.clone()))),
    }
}

fn policy_for(app: &AppState, w: &Webhook) -> RetryPolicy {
    let schedule = w
        .retry_schedule
        .as_deref()
        .and_then(|s| RetrySchedule::parse(s).ok())
        .unwrap_or_else(|| app.config.webhook_retry_schedule.clone());
    RetryPolicy {
        schedule,
        disable_after: app.config.webhook_disable_after,
        ..RetryPolicy::default()
    }
}

/// Uniform in [-1, 1], for ±20 % jitter.
fn jitter() -> f64 {
    let [a, b, c, d] = crate::crypto::random_bytes::<4>();
    f64::from(u32::from_le_bytes([a, b, c, d])) / f64::from(u32::MAX) * 2.0 - 1.0
}

/// Updates each endpoint's failure clock once per round: a success clears it, a failure
/// starts it, 410 or failing for longer than the limit disables the endpoint.
async fn apply_health(
    app: &AppState,
    health: Vec<Health>,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let mut verdict: HashMap<&str, &Health> = HashMap::new();
    for h in &health {
        let id = match h {
            Health::Succeeded(id) | Health::Failed(id) | Health::Gone(id) => id.as_str(),
        };
        // Gone wins over success, success over failure.
        let rank = |h: &Health| match h {
            Health::Gone(_) => 2,
            Health::Succeeded(_) => 1,
            Health::Failed(_) => 0,
        };
        if verdict.get(id).is_none_or(|old| rank(h) > rank(old)) {
            verdict.insert(id, h);
        }
    }
    let now_text = time::format(now);
    for (id, h) in verdict {
        match h {
            Health::Succeeded(_) => store::clear_failing(&app.db, id).await?,
            Health::Gone(_) => {
                store::disable(
                    &app.db,
                    id,
                    &retry::DisableReason::Gone.to_string(),
                    &now_text,
                )
                .await?
            }
            Health::Failed(_) => {
                let since = store::mark_failing(&app.db, id, &now_text).await?;
                let since_unix = since
                    .as_deref()
                    .and_then(|s| time::parse(s).ok())
                    .map(|t| t.unix_timestamp());
                if let Some(reason) = retry::auto_disable(
                    since_unix,
                    now.unix_timestamp(),
                    app.config.webhook_disable_after,
                ) {
                    store::disable(&app.db, id, &reason.to_string(), &now_text).await?;
                }
            }
        }
    }
    Ok(())
}
