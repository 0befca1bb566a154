//! The delivery worker. `run` is a loop that keeps a fixed number of attempts in flight:
//! as slots free up it starts what publish handed over (see `handoff.rs`) and leases due
//! deliveries from the table, sends them outside any transaction, and records whatever
//! finished together in one transaction; it sleeps until a hand-over, a queued delivery or
//! the one-second tick (retries, other instances' events, expired leases) wakes it. Several loops run per
//! process. `run_once` is one synchronous round (lease, send all, record) that the tests
//! drive with explicit clock values. A worker that dies loses its leases when they run
//! out, and the deliveries go to whoever claims next.

use std::time::Duration;

use ::time::OffsetDateTime;
use tokio::task::JoinSet;

use super::Indexed;
use super::health::{self, Health};
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

/// The longest a loop with free slots goes without looking for due deliveries in the table.
const CLAIM_EVERY: Duration = Duration::from_secs(1);

/// How long finished attempts wait to be recorded together.
const RECORD_LINGER: Duration = Duration::from_millis(5);

/// An attempt's outcome and what it says about its endpoint.
type Finished = (AttemptRecord, Option<Health>);

/// A delivery loop: keeps up to `OPSHUB_WEBHOOK_CONCURRENCY` attempts in flight, leasing
/// more as soon as slots free up, and records finished attempts in batches (one
/// transaction for everything that finished together). A slow receiver holds only its own
/// slots; the loop keeps sending to everyone else. On shutdown it stops leasing, lets the
/// attempts in flight finish (each within its time limit) and records them.
pub async fn run(app: AppState) {
    let slots = app.config.webhook_concurrency.clamp(1, BATCH);
    let handoff = &app.webhooks.handoff;
    handoff.register(slots, true);
    let mut inflight: JoinSet<Finished> = JoinSet::new();
    // Finished attempts not yet recorded, and when the oldest finished. Recording waits a
    // little so that one transaction takes many: every write transaction competes with
    // publishing (on SQLite for the one write lock). Leases run much longer than this.
    let mut finished: Vec<Finished> = Vec::new();
    let mut oldest: Option<tokio::time::Instant> = None;
    // The last claim found fewer due deliveries than free slots: claim again when the
    // table got new claimable rows here (the wake counter moved) or a second passed
    // (retries coming due, other instances' rows, expired leases), not before. Finished
    // attempts do not count: handed deliveries finish all the time, and a claim after each
    // was most of the database's work while the table held nothing to claim.
    let mut idle = false;
    let mut seen_wakes = 0;
    let mut last_claim = tokio::time::Instant::now();
    loop {
        let stopping = app.shutdown.is_cancelled();
        // Armed before the counter is read, so a ring between the two still wakes the select.
        let woken = app.webhooks.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let wakes = app
            .webhooks
            .wakes
            .load(std::sync::atomic::Ordering::Acquire);
        if wakes != seen_wakes || last_claim.elapsed() >= CLAIM_EVERY {
            seen_wakes = wakes;
            idle = false;
        }
        let linger_over = oldest.is_some_and(|t| t.elapsed() >= RECORD_LINGER);
        if !finished.is_empty()
            && (linger_over || inflight.is_empty() || stopping || finished.len() >= slots / 2)
        {
            if let Err(e) = record_finished(
                &app,
                std::mem::take(&mut finished),
                OffsetDateTime::now_utc(),
            )
            .await
            {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "recording delivery attempts failed; they are retried when their leases run out"
                );
            }
            oldest = None;
        }
        if stopping && inflight.is_empty() {
            handoff.register(slots, false);
            release_handed(&app).await;
            return;
        }
        // Deliveries publish leased to this process first, whenever a slot is free. The
        // bell is armed before looking, so a hand-over right after the look still wakes us.
        let ready = handoff.ready.notified();
        tokio::pin!(ready);
        ready.as_mut().enable();
        let free = slots - inflight.len();
        if !stopping && free > 0 {
            let (handed, stale) = handoff.take(free);
            if stale > 0 {
                tracing::warn!(
                    stale,
                    "handed deliveries waited too long for a free slot; they are claimed when their leases run out"
                );
            }
            if !handed.is_empty() {
                let n = handed.len();
                if let Err(e) = start(&app, handed, OffsetDateTime::now_utc(), &mut inflight).await
                {
                    handoff.finished(n);
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "starting handed deliveries failed; they are claimed when their leases run out"
                    );
                }
            }
        }
        // Lease in batches: when a quarter of the slots is free, or everything is.
        let free = slots - inflight.len();
        let room = !stopping && free > 0 && (free >= slots.div_ceil(4) || inflight.is_empty());
        if room && !idle {
            last_claim = tokio::time::Instant::now();
            match lease(&app, OffsetDateTime::now_utc(), free, &mut inflight).await {
                Ok(n) => {
                    handoff.started(n);
                    idle = n < free;
                }
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "leasing deliveries failed");
                    idle = true;
                }
            }
        }
        let record_at = oldest.map(|t| t + RECORD_LINGER);
        tokio::select! {
            Some(first) = inflight.join_next(), if !inflight.is_empty() => {
                let rest = std::iter::from_fn(|| inflight.try_join_next());
                let joined: Vec<_> = std::iter::once(first).chain(rest).collect();
                handoff.finished(joined.len());
                for joined in joined {
                    match joined {
                        Ok(done) => finished.push(done),
                        // Its lease runs out and a later round retries it.
                        Err(e) => tracing::error!(error = %e, "a delivery attempt panicked"),
                    }
                }
                oldest.get_or_insert_with(tokio::time::Instant::now);
            }
            () = tokio::time::sleep_until(record_at.unwrap_or_else(tokio::time::Instant::now)), if record_at.is_some() => {}
            () = &mut woken, if !stopping => {}
            () = &mut ready, if !stopping && inflight.len() < slots => {}
            // Without room a finished attempt wakes the loop; and only with room would the
            // tick lead to a claim (a tick in the past must not spin the loop).
            () = tokio::time::sleep_until(last_claim + CLAIM_EVERY), if room => {}
            _ = app.shutdown.cancelled(), if !stopping => {}
        }
    }
}

/// The lease of a delivery claimed at `now`: longer than one attempt can take, short
/// enough that a dead worker's work moves on within seconds. (now, lease end) as text.
pub(super) fn lease_window(app: &AppState, now: OffsetDateTime) -> (String, String) {
    let lease = i64::try_from(app.config.webhook_timeout_secs).unwrap_or(15) + 5;
    (
        time::format(now),
        time::format(now + ::time::Duration::seconds(lease)),
    )
}

/// Leases up to `n` deliveries due at `now` and starts an attempt for each; how many.
async fn lease(
    app: &AppState,
    now: OffsetDateTime,
    n: usize,
    inflight: &mut JoinSet<Finished>,
) -> anyhow::Result<usize> {
    let (now_text, lease_until) = lease_window(app, now);
    let limit = u32::try_from(n).unwrap_or(1);
    let worker = &app.webhooks.worker_id;
    let claimed = queue::claim(&app.db, worker, &now_text, &lease_until, limit).await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let generation = store::generation(&app.db, app.db.pool()).await?;
    let endpoints = app.webhooks.endpoints(&app.db, generation).await?;
    let count = claimed.len();
    spawn_attempts(app, &endpoints, claimed, now, inflight);
    Ok(count)
}

/// Starts attempts for deliveries publish handed over (leased to this process already),
/// with the newest endpoints this process knows: publish refreshed them in its
/// transaction a moment ago.
async fn start(
    app: &AppState,
    handed: Vec<Claimed>,
    now: OffsetDateTime,
    inflight: &mut JoinSet<Finished>,
) -> anyhow::Result<()> {
    let endpoints = match app.webhooks.current() {
        Some(index) => index,
        None => {
            let generation = store::generation(&app.db, app.db.pool()).await?;
            app.webhooks.endpoints(&app.db, generation).await?
        }
    };
    spawn_attempts(app, &endpoints, handed, now, inflight);
    Ok(())
}

fn spawn_attempts(
    app: &AppState,
    endpoints: &std::sync::Arc<Indexed>,
    deliveries: Vec<Claimed>,
    now: OffsetDateTime,
    inflight: &mut JoinSet<Finished>,
) {
    for c in deliveries {
        let (app, endpoints) = (app.clone(), endpoints.clone());
        inflight.spawn(async move { attempt(&app, &endpoints, c, now).await });
    }
}

/// At shutdown: deliveries handed over but never started go back to the queue at once
/// (instead of when their leases run out), for the next instance to claim.
async fn release_handed(app: &AppState) {
    let ids: Vec<String> = app
        .webhooks
        .handoff
        .drain()
        .into_iter()
        .map(|c| c.id)
        .collect();
    if ids.is_empty() {
        return;
    }
    if let Err(e) = queue::release(&app.db, &app.webhooks.worker_id, &ids).await {
        tracing::warn!(
            error = format!("{e:#}"),
            deliveries = ids.len(),
            "releasing unstarted deliveries failed; they are claimed when their leases run out"
        );
    }
}

/// Records finished attempts in one transaction, then their endpoints' health.
async fn record_finished(
    app: &AppState,
    finished: Vec<Finished>,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    if finished.is_empty() {
        return Ok(());
    }
    let (records, health): (Vec<_>, Vec<_>) = finished.into_iter().unzip();
    let at = time::format(OffsetDateTime::now_utc());
    queue::record(&app.db, &app.webhooks.worker_id, &records, &at).await?;
    health::apply(app, health.into_iter().flatten().collect(), now).await
}

/// One round at time `now`, as the tests drive it: lease what is due (at most one loop's
/// slots), send it all, record. Returns how many deliveries it handled.
pub async fn run_once(app: &AppState, now: OffsetDateTime) -> anyhow::Result<usize> {
    let slots = app.config.webhook_concurrency.clamp(1, BATCH);
    let mut inflight = JoinSet::new();
    let n = lease(app, now, slots, &mut inflight).await?;
    let finished: Vec<Finished> = inflight.join_all().await;
    record_finished(app, finished, now).await?;
    Ok(n)
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
