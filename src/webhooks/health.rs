//! Endpoint health as delivery attempts report it: a success clears an endpoint's failure
//! clock, a failure starts it, 410 Gone or failing for longer than the limit disables the
//! endpoint.

use std::collections::HashMap;
use std::time::Duration;

use ::time::OffsetDateTime;

use super::{retry, store};
use crate::app::AppState;
use crate::db::time;

/// What an attempt says about its endpoint's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Health {
    Succeeded(String),
    Failed(String),
    Gone(String),
}

/// How often a process repeats clearing the failure clock of an endpoint that keeps
/// succeeding. Every round of successes used to write it (a no-op update, but a statement
/// and a commit per round); a failure this process records makes the next success clear it
/// at once, and one recorded by another instance is cleared within this time.
const CLEAR_EVERY: Duration = Duration::from_secs(1);

/// True when this process cleared `id`'s failure clock within [`CLEAR_EVERY`]; otherwise
/// notes that it is about to.
fn recently_cleared(app: &AppState, id: &str) -> bool {
    let mut cleared = app
        .webhooks
        .cleared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let now = tokio::time::Instant::now();
    if cleared.get(id).is_some_and(|t| now - *t < CLEAR_EVERY) {
        return true;
    }
    if cleared.len() > 4096 {
        cleared.retain(|_, t| now - *t < CLEAR_EVERY);
    }
    cleared.insert(id.to_string(), now);
    false
}

fn forget_cleared(app: &AppState, id: &str) {
    app.webhooks
        .cleared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(id);
}

/// Updates each endpoint's failure clock once per round: a success clears it, a failure
/// starts it, 410 or failing for longer than the limit disables the endpoint.
pub(super) async fn apply(
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
        if !matches!(h, Health::Succeeded(_)) {
            forget_cleared(app, id);
        }
        match h {
            Health::Succeeded(_) if recently_cleared(app, id) => {}
            Health::Succeeded(_) => {
                if let Err(e) = store::clear_failing(&app.db, id).await {
                    forget_cleared(app, id);
                    return Err(e.into());
                }
            }
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
