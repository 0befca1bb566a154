//! The HTTP surface: the router, its common layers (request ids, tracing, metrics, body
//! limit, time limit, panic catching) and the rule that every error response, even one
//! produced outside a handler (unknown route, wrong method, layer rejections), is JSON in
//! SPEC's shape; only the web console's own HTML error pages are left as they are.

pub mod auth;
pub mod conn;
mod doc;
pub mod extract;
mod meta;

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;
use crate::error::error_body;

pub use extract::{ApiJson, ApiPath, ApiQuery};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The authenticated `/api/v1` routes of every module. Each route names its full path and
/// the routers are merged flat: a `nest` costs a prefix strip and boxed-service clones on
/// every request, and the cached KV read is the hottest route.
fn api_v1() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(crate::tokens::api::routes())
        .merge(crate::kv::api::routes())
        .merge(crate::webhooks::api::routes())
        .merge(crate::migrations::api::routes())
        .merge(crate::procedures::api::routes())
        .merge(crate::webhook_log::api::routes())
}

/// The whole application router, plus its OpenAPI document.
pub fn router(app: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let (authed, mut openapi) = OpenApiRouter::with_openapi(doc::base())
        .merge(api_v1())
        .merge(meta::authed_routes())
        .split_for_parts();
    let (public, public_doc) = meta::public_routes().split_for_parts();
    openapi.merge(public_doc);
    let (ingest, ingest_doc) = crate::webhook_log::api::public_routes();
    openapi.merge(ingest_doc);
    doc::document_errors(&mut openapi);
    let docs = utoipa_swagger_ui::SwaggerUi::new("/docs").url("/api/openapi.json", openapi.clone());
    let router = Router::new()
        .merge(authed)
        .merge(public)
        .merge(ingest)
        .merge(docs)
        .merge(crate::console::routes())
        .fallback(not_found)
        .with_state(app.clone());
    let timeout = Duration::from_secs(app.config.request_timeout_secs);
    let router = router
        // Innermost: authentication (by path, see `auth::needs_token`), then the error shape.
        .layer(middleware::from_fn_with_state(app.clone(), gate))
        .layer(DefaultBodyLimit::max(app.config.max_body_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(middleware::from_fn_with_state(app, record_metrics))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(middleware::from_fn(request_id));
    (router, openapi)
}

/// Serves `router` on `listener` until `shutdown` fires: connections record their ingest
/// heads ([`conn`]), handlers get [`conn::Conn`] as connect info.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(
        conn::RecordingListener(listener),
        router.into_make_service_with_connect_info::<conn::Conn>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
}

/// Marks a request whose `x-request-id` opshub made up (the client sent none), so the
/// webhook log can leave it out of what the client sent.
#[derive(Clone, Copy)]
pub struct GeneratedRequestId;

/// Gives every request an `x-request-id` (UUIDv7, like every other id; a client's own is
/// kept) before tracing starts its span, and echoes it on the response.
async fn request_id(mut req: Request, next: Next) -> Response {
    let id = match req.headers().get(REQUEST_ID) {
        Some(v) => v.clone(),
        None => {
            let mut buf = uuid::Uuid::encode_buffer();
            let text = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf);
            let made =
                HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("-"));
            req.headers_mut().insert(REQUEST_ID, made.clone());
            req.extensions_mut().insert(GeneratedRequestId);
            made
        }
    };
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(REQUEST_ID, id);
    resp
}

fn request_span(req: &axum::http::Request<Body>) -> tracing::Span {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    // The path only: query strings are the caller's business and stay out of logs.
    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
}

async fn not_found(req: Request) -> Response {
    let body = error_body(
        "not_found",
        &format!("no route for {} {}", req.method(), req.uri().path()),
        serde_json::json!({}),
    );
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// The innermost layer of every route. It authenticates `/api/v1/*` and `/metrics`
/// ([`auth::authorize`]; one layer for both jobs, since each `from_fn` layer costs a
/// boxed-service clone per request), and rewrites any non-JSON error response (axum's 405,
/// layer rejections) into SPEC's shape. HTML is left alone: only the console renders it,
/// as pages meant for a browser.
async fn gate(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    if auth::needs_token(req.uri().path()) {
        let (presented, needed) = auth::credentials(&req);
        match auth::authorize(&app, presented.as_deref(), needed).await {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
            }
            Err(denied) => return denied,
        }
    }
    let method = req.method().clone();
    let resp = next.run(req).await;
    let status = resp.status();
    let deliberate = resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
    });
    if !(status.is_client_error() || status.is_server_error()) || deliberate {
        return resp;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            format!("{method} is not allowed on this route"),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "the request body is too large".to_string(),
        ),
        StatusCode::SERVICE_UNAVAILABLE => (
            "timeout",
            "the request took too long and was abandoned".to_string(),
        ),
        StatusCode::NOT_FOUND => ("not_found", "not found".to_string()),
        s => (
            "http_error",
            s.canonical_reason().unwrap_or("error").to_lowercase(),
        ),
    };
    let (mut parts, _) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = error_body(code, &message, serde_json::json!({})).to_string();
    Response::from_parts(parts, Body::from(body))
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    let body = error_body("internal", "internal error", serde_json::json!({}));
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
}

async fn record_metrics(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    // The route template, not the concrete path, so ids do not explode the label set.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    app.metrics.observe_request(
        method.as_str(),
        route.as_ref().map_or("unmatched", |m| m.as_str()),
        resp.status().as_u16(),
        start.elapsed(),
    );
    resp
}
