//! Console sessions and the checks every request passes. A session is a random cookie
//! (`HttpOnly`, `SameSite=Strict`, `Secure` over HTTPS) whose SHA-256 keys a row in
//! `opshub_console_sessions`; the row names the API token it was opened with and holds the
//! session's CSRF token. Every request re-reads the row and the token, so logout, expiry
//! and revocation take effect at once on every instance sharing the database.
//!
//! A state-changing request ([`Act`]) must also carry the CSRF token in the form field
//! `_csrf` (compared in constant time), come from this origin (`Origin`/`Referer`,
//! `Sec-Fetch-Site`), and have the scope it needs.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::layout::Failure;
use super::store::{self, SessionRow};
use crate::app::AppState;
use crate::crypto::{random_bytes, sha256_hex};
use crate::db::time;
use crate::error::ApiError;
use crate::tokens::model::Scope;

pub const SESSION_COOKIE: &str = "opshub_session";
/// The login form's own CSRF token (double submit: cookie and hidden field must agree).
pub const LOGIN_COOKIE: &str = "opshub_login";

/// The signed-in operator of the current request.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub name: String,
    pub scope: Scope,
    pub csrf: String,
    id_hash: String,
}

impl Viewer {
    pub fn can(&self, needed: Scope) -> bool {
        self.scope >= needed
    }

    /// 403 unless the session's token has at least `needed`.
    pub fn require(&self, needed: Scope) -> Result<(), Failure> {
        if self.can(needed) {
            return Ok(());
        }
        Err(Failure::new(
            StatusCode::FORBIDDEN,
            format!(
                "this needs a token with {} scope; you signed in with a {} token",
                needed.as_str(),
                self.scope.as_str()
            ),
        ))
    }

    /// The actor name recorded by operations run from the console.
    pub fn actor(&self) -> String {
        format!("console:{}", self.name)
    }
}

/// A random value for a cookie or a CSRF token: 256 bits, URL-safe.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// The value of cookie `name` in the request.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value with the console's flags; `max_age` 0 deletes the cookie.
pub fn set_cookie(
    app: &AppState,
    headers: &HeaderMap,
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
) -> String {
    let secure = app
        .config
        .console_secure_cookie
        .unwrap_or_else(|| came_over_https(headers));
    format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Whether the browser spoke HTTPS: opshub itself serves plain HTTP, so behind a
/// terminating proxy this is the proxy's `X-Forwarded-Proto`. Trusting it is harmless: a
/// forged value can only make a cookie stricter.
fn came_over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// Opens a session for an authenticated token; returns the cookie value.
pub async fn open(app: &AppState, token_id: &str) -> Result<String, ApiError> {
    let id = random_token();
    let now = time::now();
    store::delete_expired(&app.db, &now).await?;
    let row = SessionRow {
        token_id: token_id.to_string(),
        csrf: random_token(),
        expires_at: time::in_secs(session_secs(app)),
    };
    store::insert(&app.db, &sha256_hex(id.as_bytes()), &row, &now).await?;
    Ok(id)
}

pub fn session_secs(app: &AppState) -> i64 {
    i64::from(app.config.console_session_hours) * 3600
}

/// Ends the viewer's session.
pub async fn close(app: &AppState, viewer: &Viewer) -> Result<(), ApiError> {
    Ok(store::delete(&app.db, &viewer.id_hash).await?)
}

/// The session the request's cookie names, if it is live: not expired, its token not
/// revoked. A dead session's row is removed on the way.
pub async fn current(app: &AppState, headers: &HeaderMap) -> Result<Option<Viewer>, ApiError> {
    let Some(id) = cookie(headers, SESSION_COOKIE).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let id_hash = sha256_hex(id.as_bytes());
    let Some(row) = store::find(&app.db, &id_hash).await? else {
        return Ok(None);
    };
    let token = match crate::tokens::get(&app.db, &row.token_id).await {
        Ok(t) => Some(t),
        Err(ApiError::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let live = row.expires_at > time::now();
    match token {
        Some(t) if live && t.revoked_at.is_none() => Ok(Some(Viewer {
            name: t.name,
            scope: t.scope,
            csrf: row.csrf,
            id_hash,
        })),
        _ => {
            store::delete(&app.db, &id_hash).await?;
            Ok(None)
        }
    }
}

/// Where a signed-out request is sent: the login page, remembering the page it wanted.
fn to_login(parts: &Parts) -> Response {
    let wanted = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let target = if wanted == "/" {
        "/login".to_string()
    } else {
        format!("/login?next={}", percent_encode(wanted))
    };
    Redirect::to(&target).into_response()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A local path to return to after login; anything else (another host, `//evil`) is `/`.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Viewer, Response> {
        match current(app, &parts.headers).await {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(to_login(parts)),
            Err(e) => Err(Failure::from(e).into_response()),
        }
    }
}

/// True when the request plainly comes from this site's own pages: `Sec-Fetch-Site` is not
/// cross-site, and `Origin` (else `Referer`) names this host. A request with neither
/// header (not a browser) is left to the CSRF token.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if matches!(get("sec-fetch-site"), Some("cross-site" | "same-site")) {
        return false;
    }
    let hosts: Vec<&str> = [get("host"), get("x-forwarded-host")]
        .into_iter()
        .flatten()
        .collect();
    let claimed = match (get("origin"), get("referer")) {
        (Some(origin), _) => origin,
        (None, Some(referer)) => referer,
        (None, None) => return true,
    };
    let authority = claimed
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or(""));
    authority.is_some_and(|a| hosts.contains(&a))
}

/// Constant-time equality of two CSRF tokens.
pub fn tokens_match(expected: &str, given: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(rename = "_csrf", default)]
    csrf: String,
}

fn forbidden(message: &str) -> Response {
    Failure::new(StatusCode::FORBIDDEN, message.to_string()).into_response()
}

/// Authorises a state-changing form post: live session, same origin, the session's CSRF
/// token, and `needed` scope. Returns the viewer and the raw form body.
pub async fn authorize(
    req: Request,
    app: &AppState,
    needed: Scope,
) -> Result<(Viewer, Bytes), Response> {
    let (mut parts, body) = req.into_parts();
    let viewer = Viewer::from_request_parts(&mut parts, app).await?;
    if !same_origin(&parts.headers) {
        return Err(forbidden(
            "this form was not sent from the console's own pages",
        ));
    }
    let bytes = Bytes::from_request(Request::from_parts(parts, body), app)
        .await
        .map_err(|_| {
            Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the form is too large".into(),
            )
            .into_response()
        })?;
    let field: CsrfField = serde_urlencoded::from_bytes(&bytes).unwrap_or(CsrfField {
        csrf: String::new(),
    });
    if !tokens_match(&viewer.csrf, &field.csrf) {
        return Err(forbidden(
            "the form's security token is missing or stale; reload the page and try again",
        ));
    }
    viewer
        .require(needed)
        .map_err(IntoResponse::into_response)?;
    Ok((viewer, bytes))
}

/// A form post that changes something: authorised as in [`authorize`] with write scope,
/// then parsed into `T`. Handlers needing admin check [`Viewer::require`] themselves.
pub struct Act<T> {
    pub viewer: Viewer,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for Act<T> {
    type Rejection = Response;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, Response> {
        let (viewer, bytes) = authorize(req, app, Scope::Write).await?;
        let form = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                format!("the form is incomplete: {e}"),
            )
            .into_response()
        })?;
        Ok(Act { viewer, form })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origin_must_name_this_host() {
        assert!(same_origin(&headers(&[
            ("host", "a:1"),
            ("origin", "http://a:1")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "a:1"),
            ("origin", "http://evil")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "a:1"),
            ("origin", "null")
        ])));
        assert!(same_origin(&headers(&[
            ("host", "a:1"),
            ("referer", "http://a:1/kv")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "a:1"),
            ("referer", "http://b/kv")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "a:1"),
            ("origin", "http://a:1"),
            ("sec-fetch-site", "cross-site")
        ])));
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/kv?x=1")), "/kv?x=1");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn cookies_are_found_among_others() {
        let h = headers(&[("cookie", "a=1; opshub_session=xyz; b=2")]);
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
        assert!(!tokens_match("", ""));
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
    }
}
