//! Routes of the outbound-webhook module: `/webhooks` (CRUD, rotate-secret, test, digest),
//! `/events` (publish, route), `/deliveries` (list, detail with attempts, retry, recover),
//! and the stateless `/digest` and `/verify`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{
    DeliveryDetail, DeliveryView, Digest, DigestRequest, EventView, NewEvent, NewWebhook,
    RecoverRequest, RouteRequest, VerifyRequest, VerifyResult, WebhookPatch, WebhookView,
    WithSecret,
};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::http::{ApiJson, ApiPath, ApiQuery};
use crate::page::{Page, PageQuery};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
        .routes(routes!(rotate_secret))
        .routes(routes!(send_test))
        .routes(routes!(webhook_digest))
        .routes(routes!(publish))
        .routes(routes!(route))
        .routes(routes!(deliveries))
        .routes(routes!(delivery))
        .routes(routes!(retry))
        .routes(routes!(recover))
        .routes(routes!(digest))
        .routes(routes!(verify))
}

/// List webhooks (never their secrets).
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", params(PageQuery), responses((status = 200, body = Page<WebhookView>)))]
async fn list(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<WebhookView>>> {
    Ok(Json(super::list(&app, q.validate()?).await?))
}

/// Create a webhook; the answer holds its `whsec_` secret, shown this once.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = NewWebhook,
    responses((status = 201, body = WithSecret), (status = 409, description = "name taken"), (status = 422, description = "invalid field")))]
async fn create(
    State(app): State<AppState>,
    ApiJson(new): ApiJson<NewWebhook>,
) -> ApiResult<(StatusCode, Json<WithSecret>)> {
    Ok((StatusCode::CREATED, Json(super::create(&app, new).await?)))
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = WebhookView), (status = 404, description = "unknown id")))]
async fn get(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<WebhookView>> {
    Ok(Json(WebhookView::from(&super::get(&app, &id).await?)))
}

/// Change some fields. Setting `isActive: true` re-enables a disabled webhook.
#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)), request_body = WebhookPatch,
    responses((status = 200, body = WebhookView), (status = 404, description = "unknown id")))]
async fn update(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<WebhookPatch>,
) -> ApiResult<Json<WebhookView>> {
    Ok(Json(super::update(&app, &id, patch).await?))
}

#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, description = "unknown id")))]
async fn delete(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    super::delete(&app, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new secret (shown once); the previous one keeps signing beside it for 24 h.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/rotate-secret", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = WithSecret)))]
async fn rotate_secret(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<WithSecret>> {
    Ok(Json(super::rotate_secret(&app, &id).await?))
}

/// Queue a signed `webhook.test` event for this webhook only.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/test", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 202, body = DeliveryView)))]
async fn send_test(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<(StatusCode, Json<DeliveryView>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(super::send_test(&app, &id).await?),
    ))
}

/// The headers a receiver would get for `payload`, signed with this webhook's secret(s).
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/digest", tag = "webhooks", params(("id" = String, Path)), request_body = DigestRequest,
    responses((status = 200, body = Digest)))]
async fn webhook_digest(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<DigestRequest>,
) -> ApiResult<Json<Digest>> {
    if req.secret.is_some() {
        return Err(ApiError::unprocessable(
            "invalid_digest",
            "this route signs with the stored secret; omit `secret`",
        ));
    }
    let w = super::get(&app, &id).await?;
    let keys = super::signing_keys(&app, &w, &crate::db::time::now())?;
    Ok(Json(super::digest(
        &keys,
        &req.payload,
        req.id,
        req.timestamp,
    )))
}

/// Publish an event: one delivery per matching active webhook, committed with the event.
#[utoipa::path(post, path = "/api/v1/events", tag = "events", request_body = NewEvent,
    responses((status = 202, body = EventView), (status = 200, body = EventView, description = "a repeat of an id seen within 24 h")))]
async fn publish(
    State(app): State<AppState>,
    ApiJson(new): ApiJson<NewEvent>,
) -> ApiResult<(StatusCode, Json<EventView>)> {
    let event = super::publish(&app, new).await?;
    let status = if event.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(event)))
}

/// Which webhooks an event of this type would reach (nothing is written).
#[utoipa::path(post, path = "/api/v1/events/route", tag = "events", request_body = RouteRequest,
    responses((status = 200, body = Vec<WebhookView>)))]
async fn route(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<RouteRequest>,
) -> ApiResult<Json<Vec<WebhookView>>> {
    Ok(Json(super::route(&app, &req.event_type).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryQuery {
    webhook_id: Option<String>,
    /// pending, succeeded or failed
    #[param(pattern = "^(pending|succeeded|failed)$")]
    status: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Deliveries, newest first.
#[utoipa::path(get, path = "/api/v1/deliveries", tag = "deliveries", params(DeliveryQuery), responses((status = 200, body = Page<DeliveryView>)))]
async fn deliveries(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> ApiResult<Json<Page<DeliveryView>>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .validate()?;
    Ok(Json(
        super::deliveries(&app, q.webhook_id.as_deref(), q.status.as_deref(), page).await?,
    ))
}

/// One delivery with every attempt (status, duration, response headers and body, error).
#[utoipa::path(get, path = "/api/v1/deliveries/{id}", tag = "deliveries", params(("id" = String, Path)),
    responses((status = 200, body = DeliveryDetail), (status = 404, description = "unknown id")))]
async fn delivery(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<DeliveryDetail>> {
    Ok(Json(super::delivery(&app, &id).await?))
}

/// Send a delivery again now.
#[utoipa::path(post, path = "/api/v1/deliveries/{id}/retry", tag = "deliveries", params(("id" = String, Path)),
    responses((status = 202, body = DeliveryDetail), (status = 409, description = "already queued")))]
async fn retry(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<(StatusCode, Json<DeliveryDetail>)> {
    Ok((StatusCode::ACCEPTED, Json(super::retry(&app, &id).await?)))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recovered {
    requeued: u64,
}

/// Re-queue every failed delivery created in a time range (optionally of one webhook).
#[utoipa::path(post, path = "/api/v1/deliveries/recover", tag = "deliveries", request_body = RecoverRequest,
    responses((status = 202, body = Recovered)))]
async fn recover(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<RecoverRequest>,
) -> ApiResult<(StatusCode, Json<Recovered>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(Recovered {
            requeued: super::recover(&app, req).await?,
        }),
    ))
}

/// The Standard Webhooks headers for `payload` signed with `secret`.
#[utoipa::path(post, path = "/api/v1/digest", tag = "webhooks", request_body = DigestRequest, responses((status = 200, body = Digest)))]
async fn digest(ApiJson(req): ApiJson<DigestRequest>) -> ApiResult<Json<Digest>> {
    let secret = req
        .secret
        .as_deref()
        .ok_or_else(|| ApiError::unprocessable("invalid_digest", "`secret` is required"))?;
    let key = super::sign::parse_secret(secret)
        .map_err(|e| ApiError::unprocessable("invalid_secret", format!("invalid secret: {e}")))?;
    Ok(Json(super::digest(
        &[key],
        &req.payload,
        req.id,
        req.timestamp,
    )))
}

/// Check Standard Webhooks headers and a raw body against a secret.
#[utoipa::path(post, path = "/api/v1/verify", tag = "webhooks", request_body = VerifyRequest, responses((status = 200, body = VerifyResult)))]
async fn verify(ApiJson(req): ApiJson<VerifyRequest>) -> ApiResult<Json<VerifyResult>> {
    Ok(Json(super::verify(&req)?))
}
