//! Bearer-token authentication for `/api/v1/*` and `/metrics`. The scope a request needs
//! follows SPEC §2: token management needs admin, other writes need write, reads need read.
//! Routes needing more (secret reveal) check [`Caller`] in their handler.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::ApiError;
use crate::tokens::model::{Scope, Token};

/// The authenticated token of the current request.
#[derive(Debug, Clone)]
pub struct Caller(pub std::sync::Arc<Token>);

impl Caller {
    /// 403 unless the caller's scope is at least `needed`.
    pub fn require(&self, needed: Scope) -> Result<(), ApiError> {
        if self.0.scope >= needed {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this needs a token with {} scope; this one has {}",
                needed.as_str(),
                self.0.scope.as_str()
            )))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".into()))
    }
}

/// The scope a request needs by route and method.
fn needed_scope(method: &Method, path: &str) -> Scope {
    if path.starts_with("/api/v1/tokens") {
        Scope::Admin
    } else if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        Scope::Read
    } else {
        Scope::Write
    }
}

pub async fn require_token(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(presented) = presented.filter(|t| !t.is_empty()) else {
        return challenge(ApiError::Unauthorized(
            "a bearer token is required: send Authorization: Bearer <token>".into(),
        ));
    };
    let token = match app.auth.authenticate(&app.db, presented).await {
        Ok(t) => t,
        Err(e @ ApiError::Unauthorized(_)) => return challenge(e),
        Err(e) => return e.into_response(),
    };
    let caller = Caller(token);
    if let Err(e) = caller.require(needed_scope(req.method(), req.uri().path())) {
        return e.into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn challenge(e: ApiError) -> Response {
    let mut resp = e.into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"opshub\""),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_routes_need_admin_writes_need_write_reads_need_read() {
        assert_eq!(needed_scope(&Method::GET, "/api/v1/tokens"), Scope::Admin);
        assert_eq!(needed_scope(&Method::POST, "/api/v1/kv/x"), Scope::Write);
        assert_eq!(needed_scope(&Method::DELETE, "/api/v1/kv/x"), Scope::Write);
        assert_eq!(needed_scope(&Method::GET, "/api/v1/kv/x"), Scope::Read);
        assert_eq!(needed_scope(&Method::GET, "/metrics"), Scope::Read);
    }
}
