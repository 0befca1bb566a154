//! Routes about the service itself: `/healthz` (process up), `/readyz` (database reachable),
//! `/metrics` (Prometheus text, needs a read token).

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::{ApiError, ApiResult};

/// Liveness or readiness.
#[derive(Serialize, ToSchema)]
#[schema(as = Health)]
pub struct Status {
    status: &'static str,
}

pub fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

pub fn authed_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "meta", security(()),
    responses((status = 200, body = Status)))]
async fn healthz() -> axum::Json<Status> {
    axum::Json(Status { status: "ok" })
}

/// The database answers within two seconds.
#[utoipa::path(get, path = "/readyz", tag = "meta", security(()),
    responses((status = 200, body = Status), (status = 503, description = "database unreachable")))]
async fn readyz(State(app): State<AppState>) -> ApiResult<axum::Json<Status>> {
    match tokio::time::timeout(Duration::from_secs(2), app.db.ping()).await {
        Ok(Ok(())) => Ok(axum::Json(Status { status: "ready" })),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::Unavailable(
                "the database is not reachable".into(),
            ))
        }
        Err(_) => Err(ApiError::Unavailable(
            "the database did not answer within 2 s".into(),
        )),
    }
}

/// Prometheus metrics in text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, content_type = "text/plain", body = String)))]
async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let pool = app.db.pool();
    let gauges = [
        (
            "opshub_db_pool_connections",
            "Open database connections.",
            pool.size() as f64,
        ),
        (
            "opshub_db_pool_idle",
            "Idle database connections.",
            pool.num_idle() as f64,
        ),
    ];
    let wh = app.webhooks.handoff.totals();
    let counters = [
        (
            "opshub_webhook_attempts_handed_total",
            "Delivery attempts started on deliveries publish handed to this process (no claim).",
            wh.handed as f64,
        ),
        (
            "opshub_webhook_attempts_claimed_total",
            "Delivery attempts started on deliveries claimed from the queue table.",
            wh.claimed as f64,
        ),
        (
            "opshub_webhook_handoff_stale_total",
            "Handed deliveries that waited too long for a slot and were left to their leases.",
            wh.stale as f64,
        ),
    ];
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(&gauges, &counters),
    )
}
