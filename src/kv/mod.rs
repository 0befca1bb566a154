//! Typed key-value configuration (SPEC §7): nine validated types, secrets encrypted under
//! the master key with the key name as associated data, a version and a history row for
//! every write, compare-and-set, rollback, a change feed by store-wide revision, and an
//! in-process cache for `isCached` keys that every instance invalidates (PostgreSQL
//! LISTEN/NOTIFY, plus a revision poller on every backend as the safety net).

pub mod api;
pub mod cache;
pub mod cli;
pub mod model;
mod portable;
mod store;
pub mod value;
pub mod watch;

use axum::body::Bytes;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::db::{Db, time};
use crate::error::{ApiError, ApiResult};
use crate::page::{Page, PageRequest};
use model::{Entry, EntryView, HistoryView, Precondition, PutRequest};
use value::{TypedValue, ValueType};

pub use portable::{export, import};

/// Per-process KV state: the cache and the newest revision this process knows of.
pub struct Kv {
    pub cache: cache::Cache,
    pub revision: tokio::sync::watch::Sender<i64>,
}

impl Kv {
    /// After a commit: drop the key from this process's cache and wake change feeds.
    pub fn changed(&self, key: &str, revision: i64) {
        self.cache.invalidate(key);
        self.revision
            .send_if_modified(|r| std::mem::replace(r, (*r).max(revision)) < revision);
    }
}

impl Default for Kv {
    fn default() -> Kv {
        Kv {
            cache: cache::Cache::default(),
            revision: tokio::sync::watch::Sender::new(0),
        }
    }
}

/// The PostgreSQL channel of KV change notifications (per opshub schema, so two opshub
/// installations in one database do not hear each other).
pub fn notify_channel(db: &Db) -> String {
    format!("opshub_kv_{}", db.pg_schema())
}

/// The associated data binding a secret's ciphertext to its key.
pub(crate) fn aad(key: &str) -> String {
    format!("kv:{key}")
}

/// An entry as the API shows it; secrets masked unless `reveal`.
pub fn view(app: &AppState, e: &Entry, reveal: bool) -> ApiResult<EntryView> {
    let (value, masked) = match (e.value_type, reveal) {
        (ValueType::Secret, false) => (Value::Null, true),
        (ValueType::Secret, true) => {
            let ct = e.secret_ct.as_deref().unwrap_or_default();
            let plain = app.keys.decrypt(ct, &aad(&e.key))?;
            let text = String::from_utf8(plain).map_err(|_| stored_invalid(&e.key))?;
            (Value::String(text), false)
        }
        (ty, _) => {
            let stored = e.value.as_deref().unwrap_or_default();
            let typed = TypedValue::from_storage(ty, stored).map_err(|_| stored_invalid(&e.key))?;
            (typed.to_json(), false)
        }
    };
    Ok(EntryView {
        key: e.key.clone(),
        value_type: e.value_type,
        value,
        masked,
        is_active: e.is_active,
        is_cached: e.is_cached,
        description: e.description.clone(),
        version: e.version,
        revision: e.revision,
        updated_at: e.updated_at.clone(),
        updated_by: e.updated_by.clone(),
    })
}

fn stored_invalid(key: &str) -> ApiError {
    ApiError::Internal(anyhow::anyhow!(
        "stored value of key {key} does not decode under its type"
    ))
}

fn not_found(key: &str) -> ApiError {
    ApiError::not_found("key_not_found", format!("no key {key:?}"))
}

/// How a GET was answered, for the `X-Cache` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
    /// The key is not cached (`isCached=false`) or the read revealed a secret.
    Bypass,
}

/// A served GET: the JSON body and its version.
pub struct Served {
    pub body: Bytes,
    pub version: i64,
    pub cache: CacheStatus,
}

/// Get flow (seed flow 5): by key → inactive keys are not served → typed value → from the
/// in-process cache when `isCached`.
pub async fn get(app: &AppState, key: &str, reveal: bool) -> ApiResult<Served> {
    if !reveal && let Some(hit) = app.kv.cache.get(key) {
        return Ok(Served {
            body: hit.body,
            version: hit.version,
            cache: CacheStatus::Hit,
        });
    }
    let entry = store::find(&app.db, app.db.pool(), key)
        .await?
        .filter(|e| !e.deleted)
        .ok_or_else(|| not_found(key))?;
    if !entry.is_active {
        return Err(ApiError::not_found(
            "key_inactive",
            format!("key {key:?} exists but is inactive"),
        ));
    }
    let body =
        Bytes::from(serde_json::to_vec(&view(app, &entry, reveal)?).map_err(anyhow::Error::from)?);
    let cache = if entry.is_cached && !reveal {
        app.kv.cache.put(key, body.clone(), entry.version);
        CacheStatus::Miss
    } else {
        CacheStatus::Bypass
    };
    Ok(Served {
        body,
        version: entry.version,
        cache,
    })
}

/// Live entries under `prefix`, in key order; inactive ones included (this is the
/// management view), secrets masked.
pub async fn list(app: &AppState, prefix: &str, page: PageRequest) -> ApiResult<Page<EntryView>> {
    let rows = store::list(&app.db, prefix, page.after.as_deref(), page.limit + 1).await?;
    let views = rows
        .iter()
        .map(|e| view(app, e, false))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Page::from_overfetch(views, page.limit, |v| v.key.clone()))
}

/// How many live keys the store holds (inactive ones included).
pub async fn count(app: &AppState) -> ApiResult<i64> {
    Ok(store::count(&app.db).await?)
}

/// Writes a new version of `key`.
pub async fn put(
    app: &AppState,
    key: &str,
    req: PutRequest,
    pre: Precondition,
    actor: &str,
) -> ApiResult<EntryView> {
    model::validate_key(key).map_err(|m| ApiError::unprocessable("invalid_key", m))?;
    model::validate_description(&req.description)
        .map_err(|m| ApiError::unprocessable("invalid_description", m))?;
    let typed = value::parse_json(req.value_type, &req.value).map_err(type_mismatch)?;
    let entry = commit(app, key, pre, "put", actor, |current| {
        let keep = |f: fn(&Entry) -> bool, default: bool| current.map_or(default, f);
        Ok(Proposed {
            value: typed,
            is_active: req.is_active.unwrap_or_else(|| keep(|e| e.is_active, true)),
            is_cached: req
                .is_cached
                .unwrap_or_else(|| keep(|e| e.is_cached, false)),
            description: req
                .description
                .clone()
                .or_else(|| current.map(|e| e.description.clone()))
                .unwrap_or_default(),
        })
    })
    .await?;
    view(app, &entry, false)
}

pub(crate) fn type_mismatch(e: value::ValueError) -> ApiError {
    ApiError::Unprocessable {
        code: "type_mismatch",
        message: e.to_string(),
        details: json!({ "type": e.value_type(), "reason": e.reason() }),
    }
}

/// Deletes `key` (a tombstone version; history stays, a re-created key continues counting).
pub async fn delete(
    app: &AppState,
    key: &str,
    pre: Precondition,
    actor: &str,
) -> ApiResult<EntryView> {
    let entry = commit_raw(app, key, pre, "delete", |current, revision, version| {
        let current = current
            .filter(|e| !e.deleted)
            .ok_or_else(|| not_found(key))?;
        Ok(Entry {
            deleted: true,
            revision,
            version,
            updated_at: time::now(),
            updated_by: actor.to_string(),
            ..current.clone()
        })
    })
    .await?;
    view(app, &entry, false)
}

/// Makes version `to` current again as a new version. Secrets are re-encrypted inside the
/// server; the caller never needs to see them.
pub async fn rollback(
    app: &AppState,
    key: &str,
    to: i64,
    pre: Precondition,
    actor: &str,
) -> ApiResult<EntryView> {
    let old = store::history_version(&app.db, app.db.pool(), key, to)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "version_not_found",
                format!("key {key:?} has no version {to}"),
            )
        })?;
    if old.deleted {
        return Err(ApiError::unprocessable(
            "version_is_deletion",
            format!("version {to} of {key:?} is a deletion"),
        ));
    }
    let typed = match old.value_type {
        ValueType::Secret => {
            let plain = app
                .keys
                .decrypt(old.secret_ct.as_deref().unwrap_or_default(), &aad(key))?;
            TypedValue::Secret(String::from_utf8(plain).map_err(|_| stored_invalid(key))?)
        }
        ty => TypedValue::from_storage(ty, old.value.as_deref().unwrap_or_default())
            .map_err(|_| stored_invalid(key))?,
    };
    let entry = commit(app, key, pre, "rollback", actor, |current| {
        current
            .filter(|e| !e.deleted)
            .ok_or_else(|| not_found(key))?;
        Ok(Proposed {
            value: typed,
            is_active: old.is_active,
            is_cached: old.is_cached,
            description: old.description.clone(),
        })
    })
    .await?;
    view(app, &entry, false)
}

/// History of `key`, newest first; secrets masked.
pub async fn history(app: &AppState, key: &str, page: PageRequest) -> ApiResult<Page<HistoryView>> {
    let before = page
        .after
        .as_deref()
        .map(|c| {
            c.parse::<i64>().map_err(|_| {
                ApiError::bad_request("invalid_cursor", "the cursor is not one this server issued")
            })
        })
        .transpose()?;
    let rows = store::history(&app.db, key, before, page.limit + 1).await?;
    if rows.is_empty() && before.is_none() {
        return Err(not_found(key));
    }
    let views = rows
        .iter()
        .map(|(e, op)| {
            Ok(HistoryView {
                entry: view(app, e, false)?,
                op: op.clone(),
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Page::from_overfetch(views, page.limit, |h| {
        h.entry.version.to_string()
    }))
}

/// A proposed new state of a key; [`commit`] gives it its version and revision.
pub(crate) struct Proposed {
    pub value: TypedValue,
    pub is_active: bool,
    pub is_cached: bool,
    pub description: String,
}

/// Writes a proposed state as the next version of `key`, in one transaction with its
/// history row, after checking the precondition under the KV write lock.
pub(crate) async fn commit(
    app: &AppState,
    key: &str,
    pre: Precondition,
    op: &str,
    actor: &str,
    propose: impl FnOnce(Option<&Entry>) -> ApiResult<Proposed>,
) -> ApiResult<Entry> {
    commit_raw(app, key, pre, op, |current, revision, version| {
        let p = propose(current.filter(|e| !e.deleted))?;
        Ok(entry_from(app, key, p, revision, version, actor))
    })
    .await
}

/// The stored entry for a proposal: secrets encrypted, everything else canonical text.
pub(crate) fn entry_from(
    app: &AppState,
    key: &str,
    p: Proposed,
    revision: i64,
    version: i64,
    actor: &str,
) -> Entry {
    let (value, secret_ct) = match &p.value {
        TypedValue::Secret(s) => (None, Some(app.keys.encrypt(s.as_bytes(), &aad(key)))),
        v => (Some(v.to_storage()), None),
    };
    Entry {
        key: key.to_string(),
        value_type: p.value.value_type(),
        value,
        secret_ct,
        is_active: p.is_active,
        is_cached: p.is_cached,
        description: p.description,
        version,
        revision,
        deleted: false,
        updated_at: time::now(),
        updated_by: actor.to_string(),
    }
}

async fn commit_raw(
    app: &AppState,
    key: &str,
    pre: Precondition,
    op: &str,
    build: impl FnOnce(Option<&Entry>, i64, i64) -> ApiResult<Entry>,
) -> ApiResult<Entry> {
    let mut tx = app.db.begin_write().await?;
    let entry = commit_in(app, &mut tx, key, pre, op, build).await?;
    tx.commit().await?;
    app.kv.changed(&entry.key, entry.revision);
    Ok(entry)
}

/// The body of a write inside the caller's transaction: lock, check, version, row, history,
/// notification. The caller commits and then calls [`Kv::changed`].
async fn commit_in(
    app: &AppState,
    conn: &mut sqlx::AnyConnection,
    key: &str,
    pre: Precondition,
    op: &str,
    build: impl FnOnce(Option<&Entry>, i64, i64) -> ApiResult<Entry>,
) -> ApiResult<Entry> {
    let db = &app.db;
    let revision = store::next_revision(db, conn).await?;
    let current = store::find(db, &mut *conn, key).await?;
    check(pre, current.as_ref().filter(|e| !e.deleted))?;
    let version = current.as_ref().map_or(1, |e| e.version + 1);
    let entry = build(current.as_ref(), revision, version)?;
    store::upsert(db, conn, &entry, current.is_some(), &time::now()).await?;
    store::insert_history(db, conn, &entry, op).await?;
    store::notify(db, conn, revision, key).await?;
    Ok(entry)
}

fn check(pre: Precondition, current: Option<&Entry>) -> ApiResult<()> {
    let current_version = current.map(|e| e.version);
    let ok = match pre {
        Precondition::None => true,
        Precondition::Absent => current.is_none(),
        Precondition::Version(v) => current_version == Some(v),
    };
    if ok {
        return Ok(());
    }
    Err(ApiError::PreconditionFailed {
        message: match current_version {
            Some(v) => format!("the key is at version {v}, not the expected one"),
            None => "the key does not exist".to_string(),
        },
        details: json!({ "currentVersion": current_version }),
    })
}

/// Re-encrypts every KV secret (current and history) not under the current master key,
/// inside the caller's transaction. Returns counts per place.
pub async fn rotate_secrets(
    app: &AppState,
    conn: &mut sqlx::AnyConnection,
) -> anyhow::Result<Vec<(&'static str, usize)>> {
    let mut counts = std::collections::BTreeMap::<&'static str, usize>::new();
    for (table, key, version, ct) in store::secret_cts(&app.db, conn).await? {
        counts.entry(table).or_default();
        if app.keys.is_current(&ct) {
            continue;
        }
        let plain = app
            .keys
            .decrypt(&ct, &aad(&key))
            .map_err(|e| anyhow::anyhow!("{table} {key:?} (version {version}): {e}"))?;
        let fresh = app.keys.encrypt(&plain, &aad(&key));
        store::set_secret_ct(&app.db, conn, table, &key, version, &fresh).await?;
        *counts.entry(table).or_default() += 1;
    }
    Ok(counts.into_iter().collect())
}

/// How many KV secrets each master key id protects: ((place, key id), count).
pub async fn secret_key_ids(
    app: &AppState,
) -> anyhow::Result<std::collections::BTreeMap<(&'static str, String), usize>> {
    let mut conn = app.db.pool().acquire().await?;
    let mut out = std::collections::BTreeMap::new();
    for (table, _, _, ct) in store::secret_cts(&app.db, &mut conn).await? {
        let kid = ct.split(':').nth(1).unwrap_or("?").to_string();
        *out.entry((table, kid)).or_default() += 1;
    }
    Ok(out)
}
