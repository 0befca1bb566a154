//! Bearer-token authentication for `/api/v1/*` and `/metrics`. The scope a request needs
//! follows SPEC §2: token management needs admin, other writes need write, reads need read.
//! Routes needing more (secret reveal) check [`Caller`] in their handler.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, header};
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

/// Whether `path` is behind a bearer token: the whole API and the metrics. A route added
/// under `/api/v1` is protected without anyone remembering to.
pub fn needs_token(path: &str) -> bool {
    path == "/metrics" || path == "/api/v1" || path.starts_with("/api/v1/")
}

/// The token `req` presents, and the scope its route and method need: what
/// [`authorize`] takes (read before any await, as a request is not `Sync`).
pub fn credentials(req: &Request) -> (Option<String>, Scope) {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    (presented, needed_scope(req.method(), req.uri().path()))
}

/// The caller presenting `presented`, allowed `needed`; or the response refusing it (401
/// with a challenge, or 403).
pub async fn authorize(
    app: &AppState,
    presented: Option<&str>,
    needed: Scope,
) -> Result<Caller, Response> {
    let Some(presented) = presented else {
        return Err(challenge(ApiError::Unauthorized(
            "a bearer token is required: send Authorization: Bearer <token>".into(),
        )));
    };
    let token = match app.auth.authenticate(&app.db, presented).await {
        Ok(t) => t,
        Err(e @ ApiError::Unauthorized(_)) => return Err(challenge(e)),
        Err(e) => return Err(e.into_response()),
    };
    let caller = Caller(token);
    caller
        .require(needed)
        .map_err(IntoResponse::into_response)?;
    Ok(caller)
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

    #[test]
    fn the_api_and_metrics_need_a_token_nothing_else_does() {
        for p in ["/api/v1", "/api/v1/kv/x", "/api/v1/unknown", "/metrics"] {
            assert!(needs_token(p), "{p}");
        }
        for p in [
            "/healthz",
            "/readyz",
            "/api/openapi.json",
            "/docs",
            "/ingest/s",
            "/console",
            "/api/v1x",
            "/metricsx",
        ] {
            assert!(!needs_token(p), "{p}");
        }
    }
}
