//! `/api/v1/migrations`: CRUD, run, rollback, status, validate, history, and the recovery
//! verbs (resolve, resume, baseline). Runs execute in a task of their own, so a request
//! that times out or a client that disconnects never cancels a migration half-way.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{
    HistoryEntry, Migration, MigrationPatch, MigrationRef, NewMigration, RollbackOptions,
    RunOptions, RunReport,
};
use super::run::{Runner, detached};
use super::validate::{Status, ValidationReport};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::http::auth::Caller;
use crate::http::{ApiJson, ApiPath, ApiQuery};
use crate::page::{Page, PageQuery};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
        .routes(routes!(run))
        .routes(routes!(rollback))
        .routes(routes!(status))
        .routes(routes!(validate))
        .routes(routes!(history))
        .routes(routes!(resolve))
        .routes(routes!(resume))
        .routes(routes!(baseline))
}

fn runner(app: &AppState, caller: &Caller) -> Runner {
    Runner {
        actor: format!("api:{}", caller.0.name),
        lock_timeout: Duration::from_secs(app.config.migration_lock_timeout_secs),
    }
}

/// A report with a failed migration is an error response carrying the whole report.
fn report_or_error(report: RunReport) -> ApiResult<Json<RunReport>> {
    let Some(failed) = &report.failed else {
        return Ok(Json(report));
    };
    Err(ApiError::Unprocessable {
        code: "migration_failed",
        message: format!(
            "migration {:?} failed{}: {}",
            failed.migration.name,
            if failed.dirty {
                " and is dirty"
            } else {
                " and was rolled back"
            },
            failed.error
        ),
        details: serde_json::to_value(&report).unwrap_or_default(),
    })
}

/// List migrations in natural order (version, executionOrder, name).
#[utoipa::path(get, path = "/api/v1/migrations", tag = "migrations", params(PageQuery),
    responses((status = 200, body = Page<Migration>)))]
async fn list(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<Migration>>> {
    Ok(Json(super::list(&app.db, q.validate()?).await?))
}

/// Create a migration (inactive unless `isActive` is true).
#[utoipa::path(post, path = "/api/v1/migrations", tag = "migrations", request_body = NewMigration,
    responses((status = 201, body = Migration), (status = 409, description = "duplicate name"),
        (status = 422, description = "empty or unsplittable script, bad version")))]
async fn create(
    State(app): State<AppState>,
    ApiJson(new): ApiJson<NewMigration>,
) -> ApiResult<(StatusCode, Json<Migration>)> {
    Ok((
        StatusCode::CREATED,
        Json(super::create(&app.db, new).await?),
    ))
}

/// One migration.
#[utoipa::path(get, path = "/api/v1/migrations/{id}", tag = "migrations", params(("id" = String, Path)),
    responses((status = 200, body = Migration), (status = 404, description = "unknown id")))]
async fn get(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Migration>> {
    Ok(Json(super::get(&app.db, &id).await?))
}

/// Update a migration (activate it with `{"isActive": true}`). Scripts of an executed
/// migration are frozen: 409 `migration_executed`.
#[utoipa::path(patch, path = "/api/v1/migrations/{id}", tag = "migrations", params(("id" = String, Path)),
    request_body = MigrationPatch,
    responses((status = 200, body = Migration), (status = 404, description = "unknown id"),
        (status = 409, description = "migration_executed or duplicate_name")))]
async fn update(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<MigrationPatch>,
) -> ApiResult<Json<Migration>> {
    Ok(Json(super::update(&app.db, &id, patch).await?))
}

/// Delete a migration that is not executed.
#[utoipa::path(delete, path = "/api/v1/migrations/{id}", tag = "migrations", params(("id" = String, Path)),
    responses((status = 200, body = Migration), (status = 404, description = "unknown id"),
        (status = 409, description = "migration_executed")))]
async fn delete(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Migration>> {
    Ok(Json(super::delete(&app.db, &id).await?))
}

/// Run pending migrations under the lock; `dryRun` returns the plan with its SQL.
#[utoipa::path(post, path = "/api/v1/migrations/run", tag = "migrations", request_body = RunOptions,
    responses((status = 200, body = RunReport),
        (status = 409, description = "locked, dirty or out_of_order"),
        (status = 422, description = "migration_failed (details: the report) or invalid_script")))]
async fn run(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(opts): ApiJson<RunOptions>,
) -> ApiResult<Json<RunReport>> {
    let (r, db) = (runner(&app, &caller), app.db.clone());
    report_or_error(detached(async move { r.up(&db, &opts).await }).await?)
}

/// Roll back executed migrations, newest first, with the down scripts stored at apply.
#[utoipa::path(post, path = "/api/v1/migrations/rollback", tag = "migrations", request_body = RollbackOptions,
    responses((status = 200, body = RunReport),
        (status = 409, description = "locked, dirty, no_down_script or nothing_to_roll_back"),
        (status = 422, description = "migration_failed")))]
async fn rollback(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(opts): ApiJson<RollbackOptions>,
) -> ApiResult<Json<RunReport>> {
    let (r, db) = (runner(&app, &caller), app.db.clone());
    report_or_error(detached(async move { r.down(&db, &opts).await }).await?)
}

/// Every migration's state with counts.
#[utoipa::path(get, path = "/api/v1/migrations/status", tag = "migrations",
    responses((status = 200, body = Status)))]
async fn status(State(app): State<AppState>) -> ApiResult<Json<Status>> {
    Ok(Json(super::validate::status(&app.db).await?))
}

/// Changed scripts of executed migrations, out-of-order and dirty ones.
#[utoipa::path(get, path = "/api/v1/migrations/validate", tag = "migrations",
    responses((status = 200, body = ValidationReport)))]
async fn validate(State(app): State<AppState>) -> ApiResult<Json<ValidationReport>> {
    Ok(Json(super::validate::validate(&app.db).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
struct HistoryQuery {
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    cursor: Option<String>,
    /// Only this migration's entries.
    migration_id: Option<String>,
}

/// Every up/down attempt, newest first.
#[utoipa::path(get, path = "/api/v1/migrations/history", tag = "migrations", params(HistoryQuery),
    responses((status = 200, body = Page<HistoryEntry>)))]
async fn history(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<Page<HistoryEntry>>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .validate()?;
    Ok(Json(
        super::history(&app.db, page, q.migration_id.as_deref()).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Resolution {
    /// `applied` or `rolledBack`.
    state: ResolvedState,
}

#[derive(Debug, Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "camelCase")]
enum ResolvedState {
    Applied,
    RolledBack,
}

/// Declare a (dirty) migration applied or rolled back, running nothing.
#[utoipa::path(post, path = "/api/v1/migrations/{id}/resolve", tag = "migrations",
    params(("id" = String, Path)), request_body = Resolution,
    responses((status = 200, body = Migration), (status = 404, description = "unknown id")))]
async fn resolve(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Resolution>,
) -> ApiResult<Json<Migration>> {
    let (r, db) = (runner(&app, &caller), app.db.clone());
    let applied = matches!(body.state, ResolvedState::Applied);
    Ok(Json(
        detached(async move { r.resolve(&db, &id, applied).await }).await?,
    ))
}

/// Continue a dirty migration at the statement that failed.
#[utoipa::path(post, path = "/api/v1/migrations/{id}/resume", tag = "migrations",
    params(("id" = String, Path)),
    responses((status = 200, body = RunReport), (status = 404, description = "unknown id"),
        (status = 409, description = "not_dirty or resume_unsafe")))]
async fn resume(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<RunReport>> {
    let (r, db) = (runner(&app, &caller), app.db.clone());
    report_or_error(detached(async move { r.resume(&db, &id, None).await }).await?)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Baseline {
    #[schema(pattern = "^[A-Za-z0-9]+([._][A-Za-z0-9]+)*$", max_length = 64)]
    version: String,
}

/// Mark every migration up to `version` executed without running it.
#[utoipa::path(post, path = "/api/v1/migrations/baseline", tag = "migrations", request_body = Baseline,
    responses((status = 200, body = Vec<MigrationRef>)))]
async fn baseline(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Baseline>,
) -> ApiResult<Json<Vec<MigrationRef>>> {
    let (r, db) = (runner(&app, &caller), app.db.clone());
    Ok(Json(
        detached(async move { r.baseline(&db, &body.version).await }).await?,
    ))
}
