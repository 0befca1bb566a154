//! `/api/v1/kv`: list, get (typed, cached, `If-None-Match`), put (`If-Match` CAS,
//! `If-None-Match: *` create-only), delete, history, rollback, the SSE change feed, and
//! `_export` / `_import` (a key never starts with `_`, so these cannot shadow a key).
//! Keys containing `/` are sent percent-encoded (`app%2Fhttp`) as one path segment.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{
    self, EntryView, ExportDoc, HistoryView, ImportReport, Precondition, PutRequest,
    RollbackRequest,
};
use super::{CacheStatus, store};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::http::auth::Caller;
use crate::http::{ApiJson, ApiPath, ApiQuery};
use crate::page::{Page, PageQuery};
use crate::tokens::model::Scope;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(changes))
        .routes(routes!(export))
        .routes(routes!(import))
        .routes(routes!(get, put, delete))
        .routes(routes!(history))
        .routes(routes!(rollback))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only keys starting with this text.
    #[serde(default)]
    prefix: String,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    cursor: Option<String>,
}

/// List keys by prefix (inactive ones included; secrets masked).
#[utoipa::path(get, path = "/api/v1/kv", tag = "kv", params(ListQuery), responses((status = 200, body = Page<EntryView>)))]
async fn list(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<EntryView>>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .validate()?;
    Ok(Json(super::list(&app, &q.prefix, page).await?))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetQuery {
    /// Return a secret's plaintext (admin tokens only).
    #[serde(default)]
    reveal: bool,
}

/// Get a key's typed value. 404 `key_not_found` or `key_inactive`; `X-Cache` says
/// hit, miss or bypass; `ETag` is the version.
#[utoipa::path(get, path = "/api/v1/kv/{key}", tag = "kv", params(("key" = String, Path), GetQuery),
    responses((status = 200, body = EntryView), (status = 304, description = "If-None-Match matched"),
        (status = 404, description = "key_not_found or key_inactive")))]
async fn get(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(key): ApiPath<String>,
    ApiQuery(q): ApiQuery<GetQuery>,
    IfNoneMatch(if_none_match): IfNoneMatch,
) -> ApiResult<Response> {
    if q.reveal {
        caller.require(Scope::Admin)?;
    }
    let served = super::get(&app, &key, q.reveal).await?;
    let etag = model::etag(served.version);
    let x_cache = match served.cache {
        CacheStatus::Hit => "hit",
        CacheStatus::Miss => "miss",
        CacheStatus::Bypass => "bypass",
    };
    let not_modified = if_none_match.is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim() == etag || t.trim() == format!("W/{etag}"))
    });
    let mut resp = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        served_body(served.body)
    };
    let h = resp.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).map_err(anyhow::Error::from)?,
    );
    h.insert("x-cache", HeaderValue::from_static(x_cache));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// The `If-None-Match` header alone: taking the whole `HeaderMap` would clone every header
/// on the hottest route.
pub struct IfNoneMatch(Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for IfNoneMatch {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Infallible> {
        Ok(IfNoneMatch(
            parts
                .headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        ))
    }
}

fn served_body(body: axum::body::Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The CAS condition of a write request.
fn precondition(headers: &HeaderMap) -> ApiResult<Precondition> {
    if let Some(v) = headers.get(header::IF_NONE_MATCH) {
        return match v.to_str() {
            Ok("*") => Ok(Precondition::Absent),
            _ => Err(ApiError::bad_request(
                "invalid_precondition",
                "on writes If-None-Match may only be *",
            )),
        };
    }
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(Precondition::None);
    };
    let text = v
        .to_str()
        .map_err(|_| ApiError::bad_request("invalid_precondition", "If-Match is not text"))?;
    match model::parse_if_match(text)
        .map_err(|m| ApiError::bad_request("invalid_precondition", m))?
    {
        Some(version) => Ok(Precondition::Version(version)),
        None => Ok(Precondition::None),
    }
}

fn written(view: EntryView, status: StatusCode) -> ApiResult<Response> {
    let etag = HeaderValue::from_str(&model::etag(view.version)).map_err(anyhow::Error::from)?;
    Ok((status, [(header::ETAG, etag)], Json(view)).into_response())
}

/// Write a new version. `If-Match: "v7"` makes it compare-and-set (412 with the current
/// version on mismatch); `If-None-Match: *` creates only.
#[utoipa::path(put, path = "/api/v1/kv/{key}", tag = "kv", params(("key" = String, Path)), request_body = PutRequest,
    responses((status = 200, body = EntryView), (status = 201, body = EntryView, description = "the key was created (version 1)"),
        (status = 412, description = "version mismatch"),
        (status = 422, description = "value does not parse as its type")))]
async fn put(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(key): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<PutRequest>,
) -> ApiResult<Response> {
    let pre = precondition(&headers)?;
    let view = super::put(&app, &key, req, pre, &caller.0.name).await?;
    let status = if view.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    written(view, status)
}

/// Delete a key (history is kept; a re-created key continues its version numbers).
#[utoipa::path(delete, path = "/api/v1/kv/{key}", tag = "kv", params(("key" = String, Path)),
    responses((status = 200, body = EntryView), (status = 404, description = "key_not_found"),
        (status = 412, description = "If-Match names another version")))]
async fn delete(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(key): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let view = super::delete(&app, &key, precondition(&headers)?, &caller.0.name).await?;
    written(view, StatusCode::OK)
}

/// Every version of a key, newest first (secrets masked).
#[utoipa::path(get, path = "/api/v1/kv/{key}/history", tag = "kv", params(("key" = String, Path), PageQuery),
    responses((status = 200, body = Page<HistoryView>)))]
async fn history(
    State(app): State<AppState>,
    ApiPath(key): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<HistoryView>>> {
    Ok(Json(super::history(&app, &key, q.validate()?).await?))
}

/// Make an earlier version current again (as a new version).
#[utoipa::path(post, path = "/api/v1/kv/{key}/rollback", tag = "kv", params(("key" = String, Path)), request_body = RollbackRequest,
    responses((status = 200, body = EntryView), (status = 404, description = "unknown key or version"),
        (status = 412, description = "If-Match names another version")))]
async fn rollback(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(key): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<RollbackRequest>,
) -> ApiResult<Response> {
    let view = super::rollback(
        &app,
        &key,
        req.version,
        precondition(&headers)?,
        &caller.0.name,
    )
    .await?;
    written(view, StatusCode::OK)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// Stream changes after this revision (default: from now). `Last-Event-ID` wins.
    since: Option<i64>,
}

/// Server-sent events, one `change` event per write (`id` = revision; data: key, version,
/// op, type, isActive, never the value). Reconnect with `Last-Event-ID` to miss nothing.
#[utoipa::path(get, path = "/api/v1/kv/changes", tag = "kv", params(ChangesQuery),
    responses((status = 200, content_type = "text/event-stream", body = String)))]
async fn changes(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ChangesQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::parse::<i64>);
    let since = match (last_id, q.since) {
        (Some(Ok(id)), _) => id,
        (Some(Err(_)), _) => {
            return Err(ApiError::bad_request(
                "invalid_last_event_id",
                "Last-Event-ID must be a revision",
            ));
        }
        (None, Some(s)) => s,
        (None, None) => store::current_revision(&app.db).await?,
    };
    Ok(Sse::new(feed(app, since)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

struct FeedState {
    app: AppState,
    last: i64,
    rx: tokio::sync::watch::Receiver<i64>,
    buffered: std::collections::VecDeque<Event>,
}

/// Reads committed changes after `since` in revision order, then waits for the next one.
/// Revisions commit in order (see `kv::store`), so reading `revision > last` never skips.
fn feed(app: AppState, since: i64) -> impl Stream<Item = Result<Event, Infallible>> {
    let rx = app.kv.revision.subscribe();
    let state = FeedState {
        app,
        last: since,
        rx,
        buffered: Default::default(),
    };
    stream::unfold(state, |mut st| async move {
        loop {
            if let Some(ev) = st.buffered.pop_front() {
                return Some((Ok(ev), st));
            }
            st.rx.borrow_and_update();
            match store::changes_since(&st.app.db, st.last, 500).await {
                Ok(rows) if !rows.is_empty() => {
                    for (e, op) in rows {
                        st.last = e.revision;
                        let data = serde_json::json!({
                            "revision": e.revision, "key": e.key, "version": e.version,
                            "op": op, "type": e.value_type, "isActive": e.is_active,
                        });
                        st.buffered.push_back(
                            Event::default()
                                .id(e.revision.to_string())
                                .event("change")
                                .data(data.to_string()),
                        );
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "kv change feed read failed; closing the stream");
                    return None;
                }
            }
            tokio::select! {
                _ = st.app.shutdown.cancelled() => return None,
                changed = st.rx.changed() => if changed.is_err() { return None },
                // Belt and braces: re-read now and then even without a wake-up.
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ExportQuery {
    #[serde(default)]
    prefix: String,
    /// Leave secrets out instead of exporting their ciphertext.
    #[serde(default)]
    omit_secrets: bool,
}

/// Export live keys as one JSON document (secrets as ciphertext or omitted).
#[utoipa::path(get, path = "/api/v1/kv/_export", tag = "kv", params(ExportQuery), responses((status = 200, body = ExportDoc)))]
async fn export(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Json<ExportDoc>> {
    Ok(Json(super::export(&app, &q.prefix, q.omit_secrets).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ImportQuery {
    /// Report what would change; write nothing.
    #[serde(default)]
    dry_run: bool,
}

/// Import a document: all entries or none (422 listing every problem).
#[utoipa::path(post, path = "/api/v1/kv/_import", tag = "kv", params(ImportQuery), request_body = ExportDoc,
    responses((status = 200, body = ImportReport),
        (status = 422, description = "import_invalid (details: the ImportReport) or invalid_document")))]
async fn import(
    State(app): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ImportQuery>,
    ApiJson(doc): ApiJson<ExportDoc>,
) -> ApiResult<Response> {
    let report = super::import(&app, doc, q.dry_run, &caller.0.name).await?;
    if report.errors.is_empty() {
        return Ok(Json(report).into_response());
    }
    Err(ApiError::Unprocessable {
        code: "import_invalid",
        message: format!(
            "{} entries are invalid; nothing was written",
            report.errors.len()
        ),
        details: serde_json::to_value(&report).map_err(anyhow::Error::from)?,
    })
}
