//! Extractors that turn axum's rejections into opshub's error shape: malformed JSON is 400
//! `malformed_json`, a body of the wrong shape 422 `invalid_body`, a missing JSON content
//! type 415, an oversized body 413, a bad query string 400 `invalid_query`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::error::ApiError;

/// `axum::Json` with opshub's errors.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rej) => Err(json_rejection(&rej, state.config.max_body_bytes)),
        }
    }
}

fn json_rejection(rej: &JsonRejection, limit: usize) -> ApiError {
    match rej.status() {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(
            "the request body must be JSON with Content-Type: application/json".into(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit },
        StatusCode::UNPROCESSABLE_ENTITY => {
            ApiError::unprocessable("invalid_body", serde_message(rej))
        }
        _ => ApiError::bad_request("malformed_json", serde_message(rej)),
    }
}

/// axum prefixes serde's precise message with a generic sentence; keep only serde's part.
fn serde_message(rej: &JsonRejection) -> String {
    let text = rej.body_text();
    match text.split_once(": ") {
        Some((_, detail)) if !detail.is_empty() => format!("invalid JSON body: {detail}"),
        _ => text,
    }
}

/// `axum::extract::Query` with opshub's errors.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(rej) => Err(query_rejection(&rej)),
        }
    }
}

fn query_rejection(rej: &QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", rej.body_text())
}

/// `axum::extract::Path` with opshub's errors.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(rej) => Err(path_rejection(&rej)),
        }
    }
}

fn path_rejection(rej: &PathRejection) -> ApiError {
    ApiError::bad_request("invalid_path", rej.body_text())
}
