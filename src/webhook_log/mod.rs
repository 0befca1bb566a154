//! The incoming webhook log (SPEC §6): ingest sources, capture of every request to
//! `/ingest/{source}`, an append-only hash-chained log, verification of that chain,
//! retention pruning behind a checkpoint, queries and replay. Rows are never updated; the
//! database refuses it (triggers in `schema/webhook_log.rs`). Operations here are shared by
//! the HTTP API and the CLI.

pub mod api;
pub mod capture;
pub mod chain;
pub mod cli;
pub mod model;
mod prune;
pub mod replay;
mod store;
pub mod verify;
pub mod writer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::crypto::Keyring;
use crate::db::{Db, time};
use crate::error::{ApiError, ApiResult};
use crate::page::{Page, PageRequest};
use model::{LogEntry, LogFilter, NewSource, Source, SourceConfig, SourcePatch};

pub use prune::{PruneReport, VerifyReport, prune, verify_chain};

/// How long a source's settings are served from memory: an edit made on another instance
/// takes effect within this time (at once on the instance that made it).
const SOURCE_CACHE_TTL: Duration = Duration::from_secs(5);

/// The per-process part of the webhook log: the writer and the source cache.
pub struct Runtime {
    pub writer: writer::Writer,
    sources: Mutex<HashMap<String, (Arc<SourceConfig>, Instant)>>,
}

impl Runtime {
    pub fn start(db: Db) -> Runtime {
        Runtime {
            writer: writer::Writer::spawn(db),
            sources: Mutex::default(),
        }
    }

    /// The source named `name` with its secret decrypted, or 404 `source_not_found`.
    pub async fn source(
        &self,
        db: &Db,
        keys: &Keyring,
        name: &str,
    ) -> ApiResult<Arc<SourceConfig>> {
        if let Ok(cache) = self.sources.lock()
            && let Some((cfg, at)) = cache.get(name)
            && at.elapsed() < SOURCE_CACHE_TTL
        {
            return Ok(cfg.clone());
        }
        let cfg = Arc::new(load_source(db, keys, name).await?);
        if cfg.source.name != name {
            // Looked up by id: ingest addresses sources by name only.
            return Err(unknown_source(name));
        }
        if let Ok(mut cache) = self.sources.lock() {
            cache.insert(name.to_string(), (cfg.clone(), Instant::now()));
        }
        Ok(cfg)
    }

    /// Forgets cached sources after a change made on this instance.
    pub fn forget_sources(&self) {
        if let Ok(mut cache) = self.sources.lock() {
            cache.clear();
        }
    }
}

fn unknown_source(key: &str) -> ApiError {
    ApiError::not_found("source_not_found", format!("no ingest source {key:?}"))
}

fn aad(id: &str) -> String {
    format!("ingest-source:{id}")
}

async fn load_source(db: &Db, keys: &Keyring, key: &str) -> ApiResult<SourceConfig> {
    let (source, stored) = store::find_source(db, key)
        .await?
        .ok_or_else(|| unknown_source(key))?;
    let secret = stored
        .map(|s| keys.decrypt(&s, &aad(&source.id)))
        .transpose()?
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    Ok(SourceConfig { source, secret })
}

fn invalid_source(message: String) -> ApiError {
    ApiError::unprocessable("invalid_source", message)
}

fn name_taken(name: &str) -> ApiError {
    ApiError::conflict(
        "source_exists",
        format!("an ingest source named {name:?} exists already"),
    )
}

pub async fn create_source(db: &Db, keys: &Keyring, new: NewSource) -> ApiResult<Source> {
    let now = time::now();
    let mut cfg = SourceConfig {
        source: Source {
            id: uuid::Uuid::now_v7().to_string(),
            name: new.name,
            verifier: new.verifier,
            has_secret: false,
            redact_headers: new.redact_headers,
            max_body_bytes: new.max_body_bytes.unwrap_or(model::DEFAULT_BODY_LIMIT),
            reject_invalid: new.reject_invalid,
            created_at: now.clone(),
            updated_at: now,
        },
        secret: new.secret,
    };
    cfg.normalise().map_err(invalid_source)?;
    let sealed = seal(keys, &cfg);
    match store::insert_source(db, &cfg.source, sealed.as_deref()).await {
        Err(e) if crate::db::is_unique_violation(&e) => Err(name_taken(&cfg.source.name)),
        other => Ok(other.map(|()| cfg.source)?),
    }
}

fn seal(keys: &Keyring, cfg: &SourceConfig) -> Option<String> {
    cfg.secret
        .as_ref()
        .map(|s| keys.encrypt(s.as_bytes(), &aad(&cfg.source.id)))
}

pub async fn update_source(
    db: &Db,
    keys: &Keyring,
    key: &str,
    patch: SourcePatch,
) -> ApiResult<Source> {
    let mut cfg = load_source(db, keys, key)
        .await?
        .patched(patch)
        .map_err(invalid_source)?;
    cfg.source.updated_at = time::now();
    let sealed = seal(keys, &cfg);
    match store::update_source(db, &cfg.source, sealed.as_deref()).await {
        Err(e) if crate::db::is_unique_violation(&e) => Err(name_taken(&cfg.source.name)),
        other => Ok(other.map(|()| cfg.source)?),
    }
}

pub async fn get_source(db: &Db, key: &str) -> ApiResult<Source> {
    Ok(store::find_source(db, key)
        .await?
        .ok_or_else(|| unknown_source(key))?
        .0)
}

pub async fn list_sources(db: &Db, page: PageRequest) -> ApiResult<Page<Source>> {
    let items = store::list_sources(db, page.after.as_deref(), page.limit + 1).await?;
    Ok(Page::from_overfetch(items, page.limit, |s| s.name.clone()))
}

/// Deletes a source; its logged requests stay (the log is append-only).
pub async fn delete_source(db: &Db, key: &str) -> ApiResult<Source> {
    let source = get_source(db, key).await?;
    store::delete_source(db, &source.id).await?;
    Ok(source)
}

fn unknown_entry(id: &str) -> ApiError {
    ApiError::not_found(
        "log_entry_not_found",
        format!("no logged request with id {id}"),
    )
}

/// One logged request, body included.
pub async fn get_entry(db: &Db, id: &str) -> ApiResult<LogEntry> {
    store::find_entry(db, id)
        .await?
        .ok_or_else(|| unknown_entry(id))
}

/// Logged requests matching `filter`, newest first; the cursor is the last seq shown.
pub async fn list_entries(
    db: &Db,
    filter: &LogFilter,
    page: PageRequest,
) -> ApiResult<Page<LogEntry>> {
    let before = page
        .after
        .as_deref()
        .map(|c| {
            c.parse::<i64>().map_err(|_| {
                ApiError::bad_request("invalid_cursor", "the cursor is not one this server issued")
            })
        })
        .transpose()?;
    let items = store::list_entries(db, filter, before, page.limit + 1).await?;
    Ok(Page::from_overfetch(items, page.limit, |e| {
        e.seq.to_string()
    }))
}

/// Sends a logged request to `url` and records the attempt; the logged row is untouched.
pub async fn replay(
    db: &Db,
    allow_private: bool,
    id: &str,
    url: &str,
) -> ApiResult<replay::Replay> {
    let entry = get_entry(db, id).await?;
    let attempt = replay::send(&entry, url, allow_private).await?;
    store::insert_replay(db, &attempt).await?;
    Ok(attempt)
}

/// The replays recorded for one logged request, oldest first.
pub async fn replays(db: &Db, id: &str) -> ApiResult<Vec<replay::Replay>> {
    get_entry(db, id).await?;
    Ok(store::list_replays(db, id).await?)
}

/// Re-encrypts every ingest-source secret not under the current master key, inside the
/// caller's transaction (for `opshub keys rotate`). Returns how many changed.
pub async fn rotate_secrets(
    db: &Db,
    keys: &Keyring,
    conn: &mut sqlx::AnyConnection,
) -> anyhow::Result<usize> {
    use sqlx::Row;
    let rows = sqlx::query(
        db.sql("SELECT id, secret FROM opshub_ingest_sources WHERE secret IS NOT NULL"),
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut changed = 0;
    for r in rows {
        let (id, ct): (String, String) = (r.try_get("id")?, r.try_get("secret")?);
        if keys.is_current(&ct) {
            continue;
        }
        let plain = keys
            .decrypt(&ct, &aad(&id))
            .map_err(|e| anyhow::anyhow!("ingest source {id}: {e}"))?;
        sqlx::query(db.sql("UPDATE opshub_ingest_sources SET secret = ? WHERE id = ?"))
            .bind(keys.encrypt(&plain, &aad(&id)))
            .bind(id)
            .execute(&mut *conn)
            .await?;
        changed += 1;
    }
    Ok(changed)
}
