//! SQL of the delivery queue, and nothing else: leasing due deliveries, recording attempt
//! outcomes in batches, listing deliveries and attempts, re-queueing.

use sqlx::Row;

use super::model::{AttemptView, DeliveryView};
use super::store::decode_json;
use crate::db::{AnyRow, Db, Dialect};

/// A delivery taken by a worker for one attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub attempts: i64,
    pub event_id: String,
    pub webhook_id: String,
    pub body: String,
}

/// Leases up to `limit` due deliveries to `worker` until `lease_until`. A lease that has run
/// out (its worker died) makes the delivery claimable again.
pub async fn claim(
    db: &Db,
    worker: &str,
    now: &str,
    lease_until: &str,
    limit: u32,
) -> Result<Vec<Claimed>, sqlx::Error> {
    if db.dialect() == Dialect::Postgres {
        return claim_pg(db, worker, now, lease_until, limit).await;
    }
    // MySQL skips rows another worker is claiming; SQLite has one writer at a time
    // (BEGIN IMMEDIATE) and needs no row lock.
    let lock = if db.dialect() == Dialect::Mysql {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let mut tx = db.begin_write().await?;
    let select = format!(
        "SELECT id FROM opshub_deliveries WHERE status = 'pending' AND next_attempt_at <= ?
         AND (lease_until IS NULL OR lease_until < ?) ORDER BY next_attempt_at LIMIT {limit}{lock}"
    );
    let ids: Vec<String> = sqlx::query(db.sql_dynamic(&select))
        .bind(now)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        // Commit (not drop): release any range locks the empty scan took, right now.
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let mut rows = Vec::with_capacity(ids.len());
    for chunk in crate::db::pow2_chunks(&ids, 256) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let update = format!(
            "UPDATE opshub_deliveries SET lease_until = ?, leased_by = ? WHERE id IN ({marks})"
        );
        let mut q = sqlx::query(db.sql_dynamic(&update))
            .bind(lease_until)
            .bind(worker);
        for id in chunk {
            q = q.bind(id.clone());
        }
        q.execute(&mut *tx).await?;
        let fetch = format!(
            "SELECT d.id, d.attempts, d.event_id, d.webhook_id, e.body FROM opshub_deliveries d
             JOIN opshub_events e ON e.id = d.event_id WHERE d.id IN ({marks})"
        );
        let mut q = sqlx::query(db.sql_dynamic(&fetch));
        for id in chunk {
            q = q.bind(id.clone());
        }
        rows.extend(q.fetch_all(&mut *tx).await?);
    }
    tx.commit().await?;
    rows.iter().map(claimed_from_row).collect()
}

/// PostgreSQL: the same claim as one statement (one round trip, its own transaction): lock
/// due rows skipping those another worker holds, lease them, and return them with their
/// event bodies.
async fn claim_pg(
    db: &Db,
    worker: &str,
    now: &str,
    lease_until: &str,
    limit: u32,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let sql = db.sql(
        "WITH due AS (
             SELECT id FROM opshub_deliveries WHERE status = 'pending' AND next_attempt_at <= ?
             AND (lease_until IS NULL OR lease_until < ?) ORDER BY next_attempt_at
             LIMIT ? FOR UPDATE SKIP LOCKED),
         leased AS (
             UPDATE opshub_deliveries d SET lease_until = ?, leased_by = ? FROM due
             WHERE d.id = due.id RETURNING d.id, d.attempts, d.event_id, d.webhook_id)
         SELECT l.id, l.attempts, l.event_id, l.webhook_id, e.body
         FROM leased l JOIN opshub_events e ON e.id = l.event_id",
    );
    sqlx::query(sql)
        .bind(now)
        .bind(now)
        .bind(i64::from(limit))
        .bind(lease_until)
        .bind(worker)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(claimed_from_row)
        .collect()
}

/// Gives up this worker's leases on deliveries it never started (at shutdown).
pub async fn release(db: &Db, worker: &str, ids: &[String]) -> Result<(), sqlx::Error> {
    for chunk in crate::db::pow2_chunks(ids, 256) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!(
            "UPDATE opshub_deliveries SET lease_until = NULL, leased_by = NULL
             WHERE leased_by = ? AND status = 'pending' AND id IN ({marks})"
        );
        let mut q = sqlx::query(db.sql_dynamic(&sql)).bind(worker);
        for id in chunk {
            q = q.bind(id.clone());
        }
        q.execute(db.pool()).await?;
    }
    Ok(())
}

fn claimed_from_row(r: &AnyRow) -> Result<Claimed, sqlx::Error> {
    Ok(Claimed {
        id: r.try_get("id")?,
        attempts: r.try_get("attempts")?,
        event_id: r.try_get("event_id")?,
        webhook_id: r.try_get("webhook_id")?,
        body: r.try_get("body")?,
    })
}

/// What one attempt changes: the delivery's new state and the attempt's log row.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: String,
    pub attempt: i64,
    pub started_at: String,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub response_headers: String,
    pub response_body: String,
    pub error: Option<String>,
    /// pending (retry at `next_attempt_at`), succeeded or failed.
    pub new_status: &'static str,
    pub next_attempt_at: String,
    pub delivered_at: Option<String>,
}

/// Writes a batch of attempt outcomes in one transaction, releasing their leases.
pub async fn record(
    db: &Db,
    worker: &str,
    records: &[AttemptRecord],
    now: &str,
) -> Result<(), sqlx::Error> {
    if db.dialect() == Dialect::Postgres {
        return record_pg(db, worker, records, now).await;
    }
    let mut tx = db.begin_write().await?;
    for chunk in crate::db::pow2_chunks(records, 128) {
        let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO opshub_delivery_attempts (id, delivery_id, attempt, started_at, duration_ms, status_code,
             response_headers, response_body, error, worker) VALUES {values}"
        );
        bind_attempts(sqlx::query(db.sql_dynamic(&sql)), chunk, worker)
            .execute(&mut *tx)
            .await?;
    }
    // Successes (nearly all records) become one statement per status code; the rest one
    // statement each.
    let mut succeeded: std::collections::BTreeMap<Option<i64>, Vec<&AttemptRecord>> =
        Default::default();
    for r in records {
        if r.new_status == "succeeded" {
            succeeded.entry(r.status_code).or_default().push(r);
            continue;
        }
        sqlx::query(db.sql(
            "UPDATE opshub_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, lease_until = NULL,
             leased_by = NULL, last_status = ?, last_error = ?, updated_at = ?, delivered_at = ? WHERE id = ?",
        ))
        .bind(r.new_status)
        .bind(r.attempt)
        .bind(r.next_attempt_at.clone())
        .bind(r.status_code)
        .bind(r.error.clone())
        .bind(now)
        .bind(r.delivered_at.clone())
        .bind(r.delivery_id.clone())
        .execute(&mut *tx)
        .await?;
    }
    for (status, group) in succeeded {
        for chunk in crate::db::pow2_chunks(&group, 256) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "UPDATE opshub_deliveries SET status = 'succeeded', attempts = attempts + 1, lease_until = NULL,
                 leased_by = NULL, last_status = ?, last_error = NULL, updated_at = ?, delivered_at = ? WHERE id IN ({marks})"
            );
            let mut q = sqlx::query(db.sql_dynamic(&sql))
                .bind(status)
                .bind(now)
                .bind(now);
            for r in chunk {
                q = q.bind(r.delivery_id.clone());
            }
            q.execute(&mut *tx).await?;
        }
    }
    tx.commit().await
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Binds the attempt rows of `chunk`, ten values each, in the column order of
/// `opshub_delivery_attempts (id, delivery_id, attempt, started_at, duration_ms,
/// status_code, response_headers, response_body, error, worker)`.
fn bind_attempts<'q>(mut q: AnyQuery<'q>, chunk: &[AttemptRecord], worker: &str) -> AnyQuery<'q> {
    for r in chunk {
        q = q
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(r.delivery_id.clone())
            .bind(r.attempt)
            .bind(r.started_at.clone())
            .bind(r.duration_ms)
            .bind(r.status_code)
            .bind(r.response_headers.clone())
            .bind(r.response_body.clone())
            .bind(r.error.clone())
            .bind(worker);
    }
    q
}

/// PostgreSQL: each chunk of outcomes is ONE statement (its own transaction, one round
/// trip): the attempt rows are inserted and the deliveries updated from a VALUES list.
async fn record_pg(
    db: &Db,
    worker: &str,
    records: &[AttemptRecord],
    now: &str,
) -> Result<(), sqlx::Error> {
    for chunk in crate::db::pow2_chunks(records, 128) {
        let attempts = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let outcomes = vec!["(?, ?, ?::bigint, ?, ?::bigint, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "WITH logged AS (
                 INSERT INTO opshub_delivery_attempts (id, delivery_id, attempt, started_at,
                     duration_ms, status_code, response_headers, response_body, error, worker)
                 VALUES {attempts}),
             v (id, status, attempts, next_at, last_status, last_error, delivered_at) AS (
                 VALUES {outcomes})
             UPDATE opshub_deliveries d SET status = v.status, attempts = v.attempts,
                 next_attempt_at = v.next_at, lease_until = NULL, leased_by = NULL,
                 last_status = v.last_status, last_error = v.last_error, updated_at = ?,
                 delivered_at = v.delivered_at
             FROM v WHERE d.id = v.id"
        );
        let mut q = bind_attempts(sqlx::query(db.sql_dynamic(&sql)), chunk, worker);
        for r in chunk {
            q = q
                .bind(r.delivery_id.clone())
                .bind(r.new_status)
                .bind(r.attempt)
                .bind(r.next_attempt_at.clone())
                .bind(r.status_code)
                .bind(r.error.clone())
                .bind(r.delivered_at.clone());
        }
        // Planned afresh on every call (an unnamed statement, one extra round trip): a
        // cached plan made while the table was small joins by scanning all of it, and
        // kept doing so as it grew (7 ms per call at 20,000 rows, most of the database's
        // time in bench/webhooks.sh).
        q.bind(now).persistent(false).execute(db.pool()).await?;
    }
    Ok(())
}

const DELIVERY_COLUMNS: &str = "d.id, d.event_id, e.type AS event_type, d.webhook_id, d.status, d.attempts, \
     d.next_attempt_at, d.last_status, d.last_error, d.created_at, d.delivered_at";

fn delivery_from_row(r: &AnyRow) -> Result<DeliveryView, sqlx::Error> {
    let status: String = r.try_get("status")?;
    Ok(DeliveryView {
        id: r.try_get("id")?,
        event_id: r.try_get("event_id")?,
        event_type: r.try_get("event_type")?,
        webhook_id: r.try_get("webhook_id")?,
        next_attempt_at: if status == "pending" {
            r.try_get("next_attempt_at")?
        } else {
            None
        },
        status,
        attempts: r.try_get("attempts")?,
        last_status: r.try_get("last_status")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        delivered_at: r.try_get("delivered_at")?,
    })
}

/// Deliveries newest first (by id, which is time-ordered), optionally filtered.
pub async fn list_deliveries(
    db: &Db,
    webhook_id: Option<&str>,
    status: Option<&str>,
    before: Option<&str>,
    limit: u32,
) -> Result<Vec<DeliveryView>, sqlx::Error> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM opshub_deliveries d JOIN opshub_events e ON e.id = d.event_id
         WHERE (? = '' OR d.webhook_id = ?) AND (? = '' OR d.status = ?) AND (? = '' OR d.id < ?)
         ORDER BY d.id DESC LIMIT {limit}"
    );
    let (w, s, b) = (
        webhook_id.unwrap_or(""),
        status.unwrap_or(""),
        before.unwrap_or(""),
    );
    let rows = sqlx::query(db.sql_dynamic(&sql))
        .bind(w)
        .bind(w)
        .bind(s)
        .bind(s)
        .bind(b)
        .bind(b)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(delivery_from_row).collect()
}

pub async fn find_delivery(db: &Db, id: &str) -> Result<Option<DeliveryView>, sqlx::Error> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM opshub_deliveries d JOIN opshub_events e ON e.id = d.event_id WHERE d.id = ?"
    );
    let row = sqlx::query(db.sql_dynamic(&sql))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(delivery_from_row).transpose()
}

pub async fn attempts(db: &Db, delivery_id: &str) -> Result<Vec<AttemptView>, sqlx::Error> {
    let rows = sqlx::query(db.sql(
        "SELECT attempt, started_at, duration_ms, status_code, response_headers, response_body, error
         FROM opshub_delivery_attempts WHERE delivery_id = ? ORDER BY attempt",
    ))
    .bind(delivery_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AttemptView {
                attempt: r.try_get("attempt")?,
                started_at: r.try_get("started_at")?,
                duration_ms: r.try_get("duration_ms")?,
                status_code: r.try_get("status_code")?,
                response_headers: decode_json(r, "response_headers")?,
                response_body: r.try_get("response_body")?,
                error: r.try_get("error")?,
            })
        })
        .collect()
}

/// Puts deliveries back in the queue, due at `now`: one by id, or every failed one created
/// in [since, until) (optionally of one webhook). Returns how many.
pub async fn requeue(
    db: &Db,
    id: Option<&str>,
    range: Option<(&str, &str, Option<&str>)>,
    now: &str,
) -> Result<u64, sqlx::Error> {
    let q = match (id, range) {
        (Some(id), _) => sqlx::query(db.sql(
            "UPDATE opshub_deliveries SET status = 'pending', next_attempt_at = ?, lease_until = NULL, updated_at = ?
             WHERE id = ? AND status <> 'pending'",
        ))
        .bind(now)
        .bind(now)
        .bind(id),
        (None, Some((since, until, webhook))) => sqlx::query(db.sql(
            "UPDATE opshub_deliveries SET status = 'pending', next_attempt_at = ?, lease_until = NULL, updated_at = ?
             WHERE status = 'failed' AND created_at >= ? AND created_at < ? AND (? = '' OR webhook_id = ?)",
        ))
        .bind(now)
        .bind(now)
        .bind(since)
        .bind(until)
        .bind(webhook.unwrap_or(""))
        .bind(webhook.unwrap_or("")),
        (None, None) => return Ok(0),
    };
    Ok(q.execute(db.pool()).await?.rows_affected())
}
