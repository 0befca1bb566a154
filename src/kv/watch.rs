//! Keeping every instance current. Each process polls the one-row revision counter (every
//! second) and, when it moved, reads the changes since the revision it knew, invalidating
//! those keys and waking change-feed streams. On PostgreSQL a LISTEN connection also
//! delivers each change within milliseconds; the poller stays as the safety net for lost
//! notifications (LISTEN has no replay) and is the mechanism on SQLite and MySQL.

use std::time::Duration;

use sqlx::postgres::PgListener;

use super::store;
use crate::app::AppState;
use crate::db::Dialect;

const POLL_EVERY: Duration = Duration::from_secs(1);

/// Starts the poller (and the PostgreSQL listener) until shutdown.
pub fn spawn(app: &AppState) {
    tokio::spawn(poll(app.clone()));
    if app.db.dialect() == Dialect::Postgres {
        tokio::spawn(listen(app.clone()));
    }
}

async fn poll(app: AppState) {
    let mut seen = match store::current_revision(&app.db).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "kv poller cannot read the revision; starting from 0");
            0
        }
    };
    app.kv
        .revision
        .send_if_modified(|r| std::mem::replace(r, (*r).max(seen)) < seen);
    let mut tick = tokio::time::interval(POLL_EVERY);
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match catch_up(&app, seen).await {
            Ok(latest) => seen = latest,
            Err(e) => tracing::warn!(error = %e, "kv poll failed"),
        }
    }
}

/// Applies every change after `seen`; returns the newest revision applied.
async fn catch_up(app: &AppState, mut seen: i64) -> Result<i64, sqlx::Error> {
    if store::current_revision(&app.db).await? <= seen {
        return Ok(seen);
    }
    loop {
        let batch = store::changes_since(&app.db, seen, 1000).await?;
        for (entry, _) in &batch {
            app.kv.changed(&entry.key, entry.revision);
            seen = seen.max(entry.revision);
        }
        if batch.len() < 1000 {
            return Ok(seen);
        }
    }
}

async fn listen(app: AppState) {
    let channel = super::notify_channel(&app.db);
    loop {
        let mut listener = match PgListener::connect(&app.config.database_url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "kv listener cannot connect; retrying in 5 s");
                if sleep_or_stop(&app, Duration::from_secs(5)).await {
                    return;
                }
                continue;
            }
        };
        if let Err(e) = listener.listen(&channel).await {
            tracing::warn!(error = %e, "kv listener cannot LISTEN; retrying in 5 s");
            if sleep_or_stop(&app, Duration::from_secs(5)).await {
                return;
            }
            continue;
        }
        // Anything may have changed while we were not listening.
        app.kv.cache.clear();
        loop {
            let next = tokio::select! {
                _ = app.shutdown.cancelled() => return,
                n = listener.try_recv() => n,
            };
            match next {
                Ok(Some(n)) => apply_notification(&app, n.payload()),
                // The connection dropped and was re-established: notifications were lost.
                Ok(None) => app.kv.cache.clear(),
                Err(e) => {
                    tracing::warn!(error = %e, "kv listener failed; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Payload `"<revision> <key>"`; a hint only (anyone connected may NOTIFY), so it only
/// ever invalidates.
fn apply_notification(app: &AppState, payload: &str) {
    let Some((rev, key)) = payload.split_once(' ') else {
        return;
    };
    app.kv.changed(key, rev.parse::<i64>().unwrap_or(0));
}

/// Sleeps; true when shutdown came first.
async fn sleep_or_stop(app: &AppState, d: Duration) -> bool {
    tokio::select! {
        _ = app.shutdown.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}
