//! `/api/v1/tokens`: list, create (the token text is in this one response only), get,
//! revoke. All need an admin token (see `http::auth`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{CreatedToken, NewToken, Token};
use crate::app::AppState;
use crate::error::ApiResult;
use crate::http::{ApiJson, ApiPath, ApiQuery};
use crate::page::{Page, PageQuery};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, revoke))
}

/// List tokens (never their text).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", params(PageQuery),
    responses((status = 200, body = Page<Token>)))]
async fn list(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<Token>>> {
    Ok(Json(super::list(&app.db, q.validate()?).await?))
}

/// Create a token; the response carries its text, which is not stored and not shown again.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 422, description = "invalid name or scope")))]
async fn create(
    State(app): State<AppState>,
    ApiJson(new): ApiJson<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    Ok((
        StatusCode::CREATED,
        Json(super::create(&app.db, new).await?),
    ))
}

/// One token by id.
#[utoipa::path(get, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path)),
    responses((status = 200, body = Token), (status = 404, description = "unknown id")))]
async fn get(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Token>> {
    Ok(Json(super::get(&app.db, &id).await?))
}

/// Revoke a token by id or name; it stops working at once on this instance and within
/// seconds on others.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path)),
    responses((status = 200, body = Token), (status = 404, description = "no active token with that id or name"),
        (status = 409, description = "ambiguous_token_name: several active tokens have that name (details: their ids)")))]
async fn revoke(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Token>> {
    Ok(Json(super::revoke(&app.db, &app.auth, &id).await?))
}
