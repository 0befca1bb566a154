//! SQL for endpoints, events, deliveries and attempts, and nothing else.

use std::collections::HashSet;

use sqlx::{Any, AnyConnection, Executor, Row};

use super::model::Webhook;
use crate::db::{AnyRow, Db, flag};

const WEBHOOK_COLUMNS: &str = "id, name, endpoint, events, secret_ct, prev_secret_ct, prev_secret_until, service, \
     metadata, headers, is_active, description, disabled_reason, retry_schedule, failing_since, created_at, updated_at";

pub(super) fn decode_json<T: serde::de::DeserializeOwned>(
    r: &AnyRow,
    col: &str,
) -> Result<T, sqlx::Error> {
    let text: String = r.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn webhook_from_row(r: &AnyRow) -> Result<Webhook, sqlx::Error> {
    Ok(Webhook {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        endpoint: r.try_get("endpoint")?,
        events: decode_json(r, "events")?,
        secret_ct: r.try_get("secret_ct")?,
        prev_secret_ct: r.try_get("prev_secret_ct")?,
        prev_secret_until: r.try_get("prev_secret_until")?,
        service: r.try_get("service")?,
        metadata: decode_json(r, "metadata")?,
        headers: decode_json(r, "headers")?,
        is_active: r.try_get::<i64, _>("is_active")? != 0,
        description: r.try_get("description")?,
        disabled_reason: r.try_get("disabled_reason")?,
        retry_schedule: r.try_get("retry_schedule")?,
        failing_since: r.try_get("failing_since")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Inserts or (when `exists`) updates an endpoint, and bumps the generation so every
/// instance rebuilds its pattern index.
pub async fn save(
    db: &Db,
    conn: &mut AnyConnection,
    w: &Webhook,
    exists: bool,
) -> Result<(), sqlx::Error> {
    let sql = if exists {
        db.sql(
            "UPDATE opshub_webhooks SET name = ?, endpoint = ?, events = ?, secret_ct = ?, prev_secret_ct = ?,
             prev_secret_until = ?, service = ?, metadata = ?, headers = ?, is_active = ?, description = ?,
             disabled_reason = ?, retry_schedule = ?, failing_since = ?, created_at = ?, updated_at = ? WHERE id = ?",
        )
    } else {
        db.sql(
            "INSERT INTO opshub_webhooks (name, endpoint, events, secret_ct, prev_secret_ct, prev_secret_until,
             service, metadata, headers, is_active, description, disabled_reason, retry_schedule, failing_since,
             created_at, updated_at, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
    };
    sqlx::query(sql)
        .bind(w.name.clone())
        .bind(w.endpoint.clone())
        .bind(serde_json::to_string(&w.events).unwrap_or_default())
        .bind(w.secret_ct.clone())
        .bind(w.prev_secret_ct.clone())
        .bind(w.prev_secret_until.clone())
        .bind(w.service.clone())
        .bind(w.metadata.to_string())
        .bind(serde_json::to_string(&w.headers).unwrap_or_default())
        .bind(flag(w.is_active))
        .bind(w.description.clone())
        .bind(w.disabled_reason.clone())
        .bind(w.retry_schedule.clone())
        .bind(w.failing_since.clone())
        .bind(w.created_at.clone())
        .bind(w.updated_at.clone())
        .bind(w.id.clone())
        .execute(&mut *conn)
        .await?;
    bump_generation(db, conn).await
}

pub(super) async fn bump_generation(db: &Db, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql("UPDATE opshub_webhooks_gen SET generation = generation + 1 WHERE id = 1"))
        .execute(conn)
        .await
        .map(|_| ())
}

/// The endpoint-configuration generation (changes whenever any endpoint changes).
pub async fn generation<'c>(
    db: &Db,
    exec: impl Executor<'c, Database = Any>,
) -> Result<i64, sqlx::Error> {
    sqlx::query(db.sql("SELECT generation FROM opshub_webhooks_gen WHERE id = 1"))
        .fetch_one(exec)
        .await?
        .try_get("generation")
}

pub async fn delete(db: &Db, conn: &mut AnyConnection, id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(db.sql("DELETE FROM opshub_webhooks WHERE id = ?"))
        .bind(id)
        .execute(&mut *conn)
        .await?;
    bump_generation(db, conn).await?;
    Ok(done.rows_affected() > 0)
}

pub async fn find<'c>(
    db: &Db,
    exec: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<Option<Webhook>, sqlx::Error> {
    let sql = db.sql_dynamic(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM opshub_webhooks WHERE id = ?"
    ));
    let row = sqlx::query(sql).bind(id).fetch_optional(exec).await?;
    row.as_ref().map(webhook_from_row).transpose()
}

pub async fn list(db: &Db, after: Option<&str>, limit: u32) -> Result<Vec<Webhook>, sqlx::Error> {
    let sql = db.sql_dynamic(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM opshub_webhooks WHERE id > ? ORDER BY id LIMIT {limit}"
    ));
    let rows = sqlx::query(sql)
        .bind(after.unwrap_or(""))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(webhook_from_row).collect()
}

/// Every endpoint (active or not), for the in-memory index and the sender's cache.
pub async fn all(db: &Db) -> Result<Vec<Webhook>, sqlx::Error> {
    let sql = db.sql_dynamic(&format!("SELECT {WEBHOOK_COLUMNS} FROM opshub_webhooks"));
    let rows = sqlx::query(sql).fetch_all(db.pool()).await?;
    rows.iter().map(webhook_from_row).collect()
}

/// Inserts an event; a duplicate id is a unique violation for the caller to resolve.
/// One event row to insert.
pub struct NewEventRow<'a> {
    pub id: &'a str,
    pub event_type: &'a str,
    pub body: &'a str,
    pub at: &'a str,
}

/// Inserts events, many per statement.
pub async fn insert_events(
    db: &Db,
    conn: &mut AnyConnection,
    events: &[NewEventRow<'_>],
) -> Result<(), sqlx::Error> {
    for chunk in crate::db::pow2_chunks(events, 128) {
        let values = vec!["(?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!("INSERT INTO opshub_events (id, type, body, created_at) VALUES {values}");
        let mut q = sqlx::query(db.sql_dynamic(&sql));
        for e in chunk {
            q = q.bind(e.id).bind(e.event_type).bind(e.body).bind(e.at);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Which of these event ids already exist.
pub async fn existing_events(
    db: &Db,
    conn: &mut AnyConnection,
    ids: &[&str],
) -> Result<Vec<String>, sqlx::Error> {
    let mut found = Vec::new();
    for chunk in crate::db::pow2_chunks(ids, 256) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!("SELECT id FROM opshub_events WHERE id IN ({marks})");
        let mut q = sqlx::query(db.sql_dynamic(&sql));
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *conn).await? {
            found.push(r.try_get("id")?);
        }
    }
    Ok(found)
}

/// (type, created_at, number of deliveries) of an event.
pub async fn find_event(db: &Db, id: &str) -> Result<Option<(String, String, i64)>, sqlx::Error> {
    let row = sqlx::query(db.sql(
        "SELECT e.type, e.created_at, (SELECT COUNT(*) FROM opshub_deliveries d WHERE d.event_id = e.id) AS n
         FROM opshub_events e WHERE e.id = ?",
    ))
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        Ok((
            r.try_get("type")?,
            r.try_get("created_at")?,
            r.try_get("n")?,
        ))
    })
    .transpose()
}

/// One pending delivery per webhook id for `event_id`, due at `at`.
pub async fn insert_deliveries(
    db: &Db,
    conn: &mut AnyConnection,
    deliveries: &[NewDeliveryRow<'_>],
) -> Result<(), sqlx::Error> {
    for chunk in crate::db::pow2_chunks(deliveries, 256) {
        let values = vec!["(?, ?, ?, 'pending', 0, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO opshub_deliveries (id, event_id, webhook_id, status, attempts, next_attempt_at,
             created_at, updated_at, lease_until, leased_by) VALUES {values}"
        );
        let mut q = sqlx::query(db.sql_dynamic(&sql));
        for d in chunk {
            q = bind_delivery(q, d, 3);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Most events, and deliveries, [`publish_pg`] takes in one statement.
pub const PG_BATCH_EVENTS: usize = 512;
pub const PG_BATCH_DELIVERIES: usize = 2048;

/// What [`publish_pg`] did.
pub struct PgPublished {
    /// The endpoint generation the database holds.
    pub generation: i64,
    /// Ids of the events inserted; `None` when the generation was not the expected one
    /// (nothing was written).
    pub inserted: Option<HashSet<String>>,
}

/// PostgreSQL: events and their deliveries in ONE statement (its own transaction), written
/// only if the endpoint generation is `expected`. An event whose id exists is skipped
/// with its deliveries (`ON CONFLICT DO NOTHING` waits for a concurrent insert of the same
/// id to commit or roll back, so the answer is final).
pub async fn publish_pg(
    db: &Db,
    expected: i64,
    events: &[NewEventRow<'_>],
    deliveries: &[NewDeliveryRow<'_>],
) -> Result<PgPublished, sqlx::Error> {
    let event_rows = vec!["(?, ?, ?, ?)"; events.len().max(1)].join(", ");
    let delivery_rows = vec!["(?, ?, ?, ?, ?, ?)"; deliveries.len().max(1)].join(", ");
    let sql = format!(
        "WITH g AS (SELECT generation FROM opshub_webhooks_gen WHERE id = 1),
         ev AS (
             INSERT INTO opshub_events (id, type, body, created_at)
             SELECT v.id, v.type, v.body, v.at FROM (VALUES {event_rows}) v (id, type, body, at)
             WHERE v.id IS NOT NULL AND (SELECT generation FROM g) = ?
             ON CONFLICT (id) DO NOTHING
             RETURNING id),
         dl AS (
             INSERT INTO opshub_deliveries (id, event_id, webhook_id, status, attempts,
                 next_attempt_at, created_at, updated_at, lease_until, leased_by)
             SELECT d.id, d.event_id, d.webhook_id, 'pending', 0, d.at, d.at, d.at, d.until, d.by
             FROM (VALUES {delivery_rows}) d (id, event_id, webhook_id, at, until, by)
             JOIN ev ON ev.id = d.event_id)
         SELECT g.generation, ev.id FROM g LEFT JOIN ev ON true"
    );
    let mut q = sqlx::query(db.sql_dynamic(&sql));
    if events.is_empty() {
        q = q
            .bind(None::<String>)
            .bind(None::<String>)
            .bind(None::<String>)
            .bind(None::<String>);
    }
    for e in events {
        q = q.bind(e.id).bind(e.event_type).bind(e.body).bind(e.at);
    }
    q = q.bind(expected);
    if deliveries.is_empty() {
        for _ in 0..6 {
            q = q.bind(None::<String>);
        }
    }
    for d in deliveries {
        q = bind_delivery(q, d, 1);
    }
    let rows = q.fetch_all(db.pool()).await?;
    let generation: i64 = match rows.first() {
        Some(r) => r.try_get("generation")?,
        None => return Err(sqlx::Error::RowNotFound),
    };
    if generation != expected {
        return Ok(PgPublished {
            generation,
            inserted: None,
        });
    }
    let mut inserted = HashSet::new();
    for r in &rows {
        if let Some(id) = r.try_get::<Option<String>, _>("id")? {
            inserted.insert(id);
        }
    }
    Ok(PgPublished {
        generation,
        inserted: Some(inserted),
    })
}

type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;

/// Binds a delivery row: id, event, endpoint, its time `ats` times (due, created,
/// updated), then the lease (until, by).
fn bind_delivery<'q>(mut q: AnyQuery<'q>, d: &NewDeliveryRow<'_>, ats: usize) -> AnyQuery<'q> {
    q = q
        .bind(d.id.clone())
        .bind(d.event_id.to_string())
        .bind(d.webhook_id.clone());
    for _ in 0..ats {
        q = q.bind(d.at.to_string());
    }
    let (until, by) = d.leased.unzip();
    q.bind(until.map(str::to_string))
        .bind(by.map(str::to_string))
}

/// One delivery to queue: an event for an endpoint, due at once.
pub struct NewDeliveryRow<'a> {
    pub id: String,
    pub event_id: &'a str,
    pub webhook_id: String,
    pub at: &'a str,
    /// Leased already (until, to which worker): handed to this process's loops.
    pub leased: Option<(&'a str, &'a str)>,
}

impl<'a> NewDeliveryRow<'a> {
    pub fn new(event_id: &'a str, webhook_id: &str, at: &'a str) -> Self {
        NewDeliveryRow {
            id: uuid::Uuid::now_v7().to_string(),
            event_id,
            webhook_id: webhook_id.to_string(),
            at,
            leased: None,
        }
    }
}

/// A success: the endpoint is healthy again (no-op when it already was).
pub async fn clear_failing(db: &Db, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql("UPDATE opshub_webhooks SET failing_since = NULL WHERE id = ? AND failing_since IS NOT NULL"))
        .bind(id)
        .execute(db.pool())
        .await
        .map(|_| ())
}

/// A failure: starts the failure clock if it is not running; returns when it started.
pub async fn mark_failing(db: &Db, id: &str, now: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query(
        db.sql(
            "UPDATE opshub_webhooks SET failing_since = COALESCE(failing_since, ?) WHERE id = ?",
        ),
    )
    .bind(now)
    .bind(id)
    .execute(db.pool())
    .await?;
    let row = sqlx::query(db.sql("SELECT failing_since FROM opshub_webhooks WHERE id = ?"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row
        .map(|r| r.try_get::<Option<String>, _>("failing_since"))
        .transpose()?
        .flatten())
}

/// Disables an endpoint with a reason (and tells every instance's index).
pub async fn disable(db: &Db, id: &str, reason: &str, now: &str) -> Result<(), sqlx::Error> {
    let mut tx = db.begin_write().await?;
    sqlx::query(db.sql("UPDATE opshub_webhooks SET is_active = 0, disabled_reason = ?, updated_at = ? WHERE id = ?"))
        .bind(reason)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    bump_generation(db, &mut tx).await?;
    tx.commit().await
}

/// Every stored endpoint secret: (webhook id, current ct, previous ct).
pub async fn secret_cts(
    db: &Db,
    conn: &mut AnyConnection,
) -> Result<Vec<(String, String, Option<String>)>, sqlx::Error> {
    let rows = sqlx::query(db.sql("SELECT id, secret_ct, prev_secret_ct FROM opshub_webhooks"))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("id")?,
                r.try_get("secret_ct")?,
                r.try_get("prev_secret_ct")?,
            ))
        })
        .collect()
}

/// Replaces an endpoint's secret ciphertexts (same secrets, re-encrypted).
pub async fn set_secret_cts(
    db: &Db,
    conn: &mut AnyConnection,
    id: &str,
    ct: &str,
    prev: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql("UPDATE opshub_webhooks SET secret_ct = ?, prev_secret_ct = ? WHERE id = ?"))
        .bind(ct)
        .bind(prev.map(str::to_string))
        .bind(id)
        .execute(conn)
        .await
        .map(|_| ())
}
