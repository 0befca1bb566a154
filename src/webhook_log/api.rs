//! HTTP adapters: `/api/v1/ingest-sources` CRUD, `/api/v1/webhook-logs` queries, verify,
//! raw body and replay (token needed), and the public `/ingest/{source}[/{*path}]` capture
//! route for any method. There is no route that updates or deletes a logged request.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::VerifyReport;
use super::capture::{self, Incoming};
use super::model::{LogQuery, LogView, NewSource, Source, SourcePatch};
use super::replay::{Replay, ReplayRequest};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, error_body};
use crate::http::GeneratedRequestId;
use crate::http::conn::Conn;
use crate::http::{ApiJson, ApiPath, ApiQuery};
use crate::page::{Page, PageQuery};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_sources, create_source))
        .routes(routes!(get_source, update_source, delete_source))
        .routes(routes!(list_logs))
        .routes(routes!(verify))
        .routes(routes!(get_log))
        .routes(routes!(raw_log))
        .routes(routes!(replay, list_replays))
}

/// The public capture routes (any method) and their documentation. The body limit is the
/// source's own, enforced while reading, so the global one is lifted here.
pub fn public_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (_, doc) = OpenApiRouter::<AppState>::new()
        .routes(routes!(ingest_doc))
        .routes(routes!(ingest_path_doc))
        .split_for_parts();
    let router = Router::new()
        .route("/ingest/{source}", any(ingest))
        .route("/ingest/{source}/{*path}", any(ingest_path))
        .layer(DefaultBodyLimit::disable());
    (router, doc)
}

/// What a captured request is answered.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Received {
    id: String,
    seq: i64,
    signature_status: String,
}

/// Capture a request to a source (any method; no token). Answered only once it is stored.
#[utoipa::path(post, path = "/ingest/{source}", tag = "webhook-log", security(()),
    params(("source" = String, Path)), request_body(content = Option<serde_json::Value>, content_type = "*/*", description = "any bytes (or none), stored exactly as sent"),
    responses((status = 200, body = Received), (status = 401, description = "signature invalid and the source rejects invalid requests (still logged)"),
        (status = 404, description = "unknown source"), (status = 413, description = "body over the source's maxBodyBytes")))]
// Documentation only: `ingest` serves the route for every method.
async fn ingest_doc() {}

/// Capture a request to a source under a sub-path (any method; no token).
#[utoipa::path(post, path = "/ingest/{source}/{path}", tag = "webhook-log", security(()),
    params(("source" = String, Path), ("path" = String, Path)), request_body(content = Option<serde_json::Value>, content_type = "*/*", description = "any bytes (or none), stored exactly as sent"),
    responses((status = 200, body = Received), (status = 401, description = "signature invalid (still logged)"),
        (status = 404, description = "unknown source"), (status = 413, description = "body too large")))]
// Documentation only: `ingest_path` serves the route for every method.
async fn ingest_path_doc() {}

async fn ingest(
    State(app): State<AppState>,
    ApiPath(source): ApiPath<String>,
    req: Request,
) -> ApiResult<Response> {
    capture_request(&app, &source, req).await
}

async fn ingest_path(
    State(app): State<AppState>,
    ApiPath((source, _)): ApiPath<(String, String)>,
    req: Request,
) -> ApiResult<Response> {
    capture_request(&app, &source, req).await
}

async fn capture_request(app: &AppState, source: &str, req: Request) -> ApiResult<Response> {
    let cfg = app.webhook_log.source(&app.db, &app.keys, source).await?;
    let (mut parts, body) = req.into_parts();
    if parts.extensions.get::<GeneratedRequestId>().is_some() {
        // Added by opshub, not sent by the client.
        parts.headers.remove("x-request-id");
    }
    let conn = parts.extensions.get::<ConnectInfo<Conn>>().map(|c| &c.0);
    let remote = conn.map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.remote);
    let arrival = conn.and_then(|c| c.arrival_order(&parts.method, &parts.uri, &parts.headers));
    let body = capture::read_body(body, &parts.headers, cfg.source.max_body_bytes).await;
    if let Some(c) = conn {
        c.finished();
    }
    let body = body?;
    let incoming = Incoming {
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        arrival,
        remote,
    };
    let row = capture::capture(&cfg, &incoming, body);
    let (id, status, reason) = (
        row.id.clone(),
        row.signature_status.clone(),
        row.signature_reason.clone(),
    );
    let seq = app.webhook_log.writer.append(row).await?;
    if cfg.source.reject_invalid && reason.is_some() {
        let body = error_body(
            "signature_invalid",
            "the request's signature does not verify; it was logged",
            json!({ "id": id, "seq": seq, "reason": reason }),
        );
        return Ok((StatusCode::UNAUTHORIZED, Json(body)).into_response());
    }
    let answer = Received {
        id,
        seq,
        signature_status: status,
    };
    Ok(Json(answer).into_response())
}

/// List ingest sources (never their secrets).
#[utoipa::path(get, path = "/api/v1/ingest-sources", tag = "webhook-log", params(PageQuery),
    responses((status = 200, body = Page<Source>)))]
async fn list_sources(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<Source>>> {
    Ok(Json(super::list_sources(&app.db, q.validate()?).await?))
}

/// Create an ingest source; its secret is encrypted at rest and never returned.
#[utoipa::path(post, path = "/api/v1/ingest-sources", tag = "webhook-log", request_body = NewSource,
    responses((status = 201, body = Source), (status = 409, description = "name taken"), (status = 422, description = "invalid source")))]
async fn create_source(
    State(app): State<AppState>,
    ApiJson(new): ApiJson<NewSource>,
) -> ApiResult<(StatusCode, Json<Source>)> {
    let created = super::create_source(&app.db, &app.keys, new).await?;
    app.webhook_log.forget_sources();
    Ok((StatusCode::CREATED, Json(created)))
}

/// One ingest source by id or name.
#[utoipa::path(get, path = "/api/v1/ingest-sources/{id}", tag = "webhook-log", params(("id" = String, Path)),
    responses((status = 200, body = Source), (status = 404, description = "unknown source")))]
async fn get_source(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Source>> {
    Ok(Json(super::get_source(&app.db, &id).await?))
}

/// Change an ingest source; absent fields stay, `"secret": null` removes the secret.
#[utoipa::path(patch, path = "/api/v1/ingest-sources/{id}", tag = "webhook-log", params(("id" = String, Path)),
    request_body = SourcePatch,
    responses((status = 200, body = Source), (status = 404, description = "unknown source"), (status = 422, description = "invalid source")))]
async fn update_source(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<SourcePatch>,
) -> ApiResult<Json<Source>> {
    let updated = super::update_source(&app.db, &app.keys, &id, patch).await?;
    app.webhook_log.forget_sources();
    Ok(Json(updated))
}

/// Delete an ingest source; requests it logged stay in the log.
#[utoipa::path(delete, path = "/api/v1/ingest-sources/{id}", tag = "webhook-log", params(("id" = String, Path)),
    responses((status = 200, body = Source), (status = 404, description = "unknown source")))]
async fn delete_source(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Source>> {
    let deleted = super::delete_source(&app.db, &id).await?;
    app.webhook_log.forget_sources();
    Ok(Json(deleted))
}

/// Logged requests, newest first, without bodies (see `/raw` and get-one).
#[utoipa::path(get, path = "/api/v1/webhook-logs", tag = "webhook-log", params(LogQuery),
    responses((status = 200, body = Page<LogView>), (status = 400, description = "bad filter or cursor")))]
async fn list_logs(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> ApiResult<Json<Page<LogView>>> {
    let filter = q
        .filter()
        .map_err(|m| ApiError::bad_request("invalid_filter", m))?;
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .validate()?;
    let found = super::list_entries(&app.db, &filter, page).await?;
    Ok(Json(Page {
        items: found
            .items
            .iter()
            .map(|e| LogView::from_entry(e, false))
            .collect(),
        next_cursor: found.next_cursor,
    }))
}

/// Walk the hash chain from the newest prune checkpoint to the head.
#[utoipa::path(get, path = "/api/v1/webhook-logs/verify", tag = "webhook-log",
    responses((status = 200, body = VerifyReport, description = "`ok` false names the first bad seq")))]
async fn verify(State(app): State<AppState>) -> ApiResult<Json<VerifyReport>> {
    Ok(Json(super::verify_chain(&app.db).await?))
}

/// One logged request with its headers and body.
#[utoipa::path(get, path = "/api/v1/webhook-logs/{id}", tag = "webhook-log", params(("id" = String, Path)),
    responses((status = 200, body = LogView), (status = 404, description = "unknown id")))]
async fn get_log(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<LogView>> {
    let entry = super::get_entry(&app.db, &id).await?;
    Ok(Json(LogView::from_entry(&entry, true)))
}

/// The exact body bytes of a logged request, with its original content type.
#[utoipa::path(get, path = "/api/v1/webhook-logs/{id}/raw", tag = "webhook-log", params(("id" = String, Path)),
    responses((status = 200, description = "the exact body bytes, with the content type they arrived with (application/octet-stream when none)"), (status = 404, description = "unknown id")))]
async fn raw_log(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<Response> {
    let entry = super::get_entry(&app.db, &id).await?;
    let c = entry.capture;
    let content_type = c
        .content_type
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut resp = Response::new(Body::from(c.body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    // The body is whatever a stranger sent: never let a browser render or sniff it.
    resp.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment"),
    );
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(resp)
}

/// Send a logged request again to a URL; the attempt is recorded apart, the row is unchanged.
#[utoipa::path(post, path = "/api/v1/webhook-logs/{id}/replay", tag = "webhook-log", params(("id" = String, Path)),
    request_body = ReplayRequest,
    responses((status = 201, body = Replay), (status = 404, description = "unknown id"), (status = 422, description = "bad or forbidden URL")))]
async fn replay(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ReplayRequest>,
) -> ApiResult<(StatusCode, Json<Replay>)> {
    let allow = app.config.webhook_allow_private;
    let done = super::replay(&app.db, allow, &id, &req.url).await?;
    Ok((StatusCode::CREATED, Json(done)))
}

/// The replays of one logged request.
#[utoipa::path(get, path = "/api/v1/webhook-logs/{id}/replay", tag = "webhook-log", params(("id" = String, Path)),
    responses((status = 200, body = Vec<Replay>), (status = 404, description = "unknown id")))]
async fn list_replays(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<Replay>>> {
    Ok(Json(super::replays(&app.db, &id).await?))
}
