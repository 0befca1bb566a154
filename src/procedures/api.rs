//! `/api/v1/procedures`: CRUD, deploy one, deploy all, drift, rollback. Deploys run in a
//! task of their own, so an abandoned request never stops one half-way. The deploy and
//! rollback bodies are optional (`{}` is the default).

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{
    DeployOptions, DeployReport, DriftReport, NewProcedure, Procedure, ProcedurePatch,
};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::http::auth::Caller;
use crate::http::{ApiJson, ApiPath, ApiQuery};
use crate::migrations::run::Runner;
use crate::page::{Page, PageQuery};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
        .routes(routes!(deploy_one))
        .routes(routes!(deploy_all))
        .routes(routes!(drift))
        .routes(routes!(rollback))
}

fn runner(app: &AppState, caller: &Caller) -> Runner {
    Runner {
        actor: format!("api:{}", caller.0.name),
        lock_timeout: Duration::from_secs(app.config.migration_lock_timeout_secs),
    }
}

async fn detached<T: Send + 'static>(
    f: impl Future<Output = ApiResult<T>> + Send + 'static,
) -> ApiResult<T> {
    tokio::spawn(f)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("procedure task failed: {e}")))?
}

/// An optional JSON body: empty is the type's default; a present one must be sent as JSON,
/// as every other body is (415 otherwise).
fn optional_body<T: DeserializeOwned + Default>(headers: &HeaderMap, body: &Bytes) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        });
    if !json {
        return Err(ApiError::UnsupportedMediaType(
            "the request body must be JSON with Content-Type: application/json".into(),
        ));
    }
    // `null` reads as no options, as the document allows.
    let parsed: Option<T> = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            ApiError::unprocessable("invalid_body", format!("invalid JSON body: {e}"))
        }
        _ => ApiError::bad_request("malformed_json", format!("invalid JSON body: {e}")),
    })?;
    Ok(parsed.unwrap_or_default())
}

/// A report with a failed procedure is an error response carrying the whole report.
fn report_or_error(report: DeployReport) -> ApiResult<Json<DeployReport>> {
    let Some(failed) = &report.failed else {
        return Ok(Json(report));
    };
    Err(ApiError::Unprocessable {
        code: "deploy_failed",
        message: format!(
            "procedure {:?} failed to deploy and was rolled back: {}",
            failed.procedure.name, failed.error
        ),
        details: serde_json::to_value(&report).unwrap_or_default(),
    })
}

/// List procedures (version, sort, name).
#[utoipa::path(get, path = "/api/v1/procedures", tag = "procedures", params(PageQuery),
    responses((status = 200, body = Page<Procedure>)))]
async fn list(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<Procedure>>> {
    Ok(Json(super::list(&app.db, q.validate()?).await?))
}

/// Create a procedure; `type` is read from the script's CREATE when omitted.
#[utoipa::path(post, path = "/api/v1/procedures", tag = "procedures", request_body = NewProcedure,
    responses((status = 201, body = Procedure), (status = 409, description = "duplicate_name"),
        (status = 422, description = "no_create, type_mismatch, unsupported_type, \
            unknown_dependency, dependency_cycle, invalid_script")))]
async fn create(
    State(app): State<AppState>,
    ApiJson(new): ApiJson<NewProcedure>,
) -> ApiResult<(StatusCode, Json<Procedure>)> {
    Ok((
        StatusCode::CREATED,
        Json(super::create(&app.db, new).await?),
    ))
}

/// One procedure, by id or name.
#[utoipa::path(get, path = "/api/v1/procedures/{id}", tag = "procedures", params(("id" = String, Path)),
    responses((status = 200, body = Procedure), (status = 404, description = "unknown id")))]
async fn get(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Procedure>> {
    Ok(Json(super::get(&app.db, &id).await?))
}

/// Update a procedure; a deployed one whose script changes reads as `changed`.
#[utoipa::path(patch, path = "/api/v1/procedures/{id}", tag = "procedures", params(("id" = String, Path)),
    request_body = ProcedurePatch,
    responses((status = 200, body = Procedure), (status = 404, description = "unknown id"),
        (status = 409, description = "duplicate_name or has_dependents"),
        (status = 422, description = "invalid script, type or dependencies")))]
async fn update(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<ProcedurePatch>,
) -> ApiResult<Json<Procedure>> {
    Ok(Json(super::update(&app.db, &id, patch).await?))
}

/// Delete a procedure record that is not deployed and has no dependents.
#[utoipa::path(delete, path = "/api/v1/procedures/{id}", tag = "procedures", params(("id" = String, Path)),
    responses((status = 200, body = Procedure), (status = 404, description = "unknown id"),
        (status = 409, description = "procedure_deployed or has_dependents")))]
async fn delete(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Procedure>> {
    Ok(Json(super::delete(&app.db, &id).await?))
}

/// Deploy one procedure (whatever its state) under the migration lock.
#[utoipa::path(post, path = "/api/v1/procedures/{id}/deploy", tag = "procedures",
    params(("id" = String, Path)), request_body(content = Option<DeployOptions>, description = "optional"),
    responses((status = 200, body = DeployReport), (status = 404, description = "unknown id"),
        (status = 409, description = "locked or dependencies_not_deployed"),
        (status = 422, description = "deploy_failed (details: the report)")))]
async fn deploy_one(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<DeployReport>> {
    let opts: DeployOptions = optional_body(&headers, &body)?;
    let (r, db) = (runner(&app, &caller), app.db.clone());
    report_or_error(
        detached(async move { super::deploy::deploy_one(&db, &r, &id, &opts).await }).await?,
    )
}

/// Deploy every pending or changed procedure, dependencies first; `dryRun` shows the plan.
#[utoipa::path(post, path = "/api/v1/procedures/deploy", tag = "procedures",
    request_body(content = Option<DeployOptions>, description = "optional"),
    responses((status = 200, body = DeployReport),
        (status = 409, description = "locked"),
        (status = 422, description = "deploy_failed (details: the report) or dependency_cycle")))]
async fn deploy_all(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<DeployReport>> {
    let opts: DeployOptions = optional_body(&headers, &body)?;
    let (r, db) = (runner(&app, &caller), app.db.clone());
    report_or_error(detached(async move { super::deploy::deploy_all(&db, &r, &opts).await }).await?)
}

/// Every procedure's drift state, with a unified diff of deployed vs live definitions.
#[utoipa::path(get, path = "/api/v1/procedures/drift", tag = "procedures",
    responses((status = 200, body = DriftReport)))]
async fn drift(State(app): State<AppState>) -> ApiResult<Json<DriftReport>> {
    Ok(Json(super::drift::drift(&app.db).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RollbackBody {
    /// Seconds to wait for the migration lock.
    #[schema(maximum = 86400)]
    lock_timeout: Option<u64>,
}

/// Run the procedure's downScript and mark it not deployed.
#[utoipa::path(post, path = "/api/v1/procedures/{id}/rollback", tag = "procedures",
    params(("id" = String, Path)), request_body(content = Option<RollbackBody>, description = "optional"),
    responses((status = 200, body = Procedure), (status = 404, description = "unknown id"),
        (status = 409, description = "no_down_script, not_deployed or locked"),
        (status = 422, description = "rollback_failed")))]
async fn rollback(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Procedure>> {
    let b: RollbackBody = optional_body(&headers, &body)?;
    let (r, db) = (runner(&app, &caller), app.db.clone());
    Ok(Json(
        detached(async move { super::deploy::rollback(&db, &r, &id, b.lock_timeout).await })
            .await?,
    ))
}
