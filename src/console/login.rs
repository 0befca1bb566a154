//! Sign-in with an API token and sign-out. The login form is itself CSRF-protected with
//! a double-submit token (a short-lived cookie and a hidden field that must agree), so no
//! other site can sign a browser in under a token of its choosing.

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::layout::{Failure, PageResult, bare};
use super::session::{
    self, LOGIN_COOKIE, SESSION_COOKIE, authorize, cookie, random_token, safe_next, same_origin,
    set_cookie, tokens_match,
};
use crate::app::AppState;
use crate::error::ApiError;
use crate::tokens::model::Scope;

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

pub async fn form(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> PageResult {
    if session::current(&app, &headers).await?.is_some() {
        return Ok(Redirect::to(safe_next(q.next.as_deref())).into_response());
    }
    Ok(login_page(
        &app,
        &headers,
        StatusCode::OK,
        q.next.as_deref(),
        None,
    ))
}

fn login_page(
    app: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    next: Option<&str>,
    error: Option<&str>,
) -> Response {
    let nonce = random_token();
    let mut resp = bare(
        status,
        "Sign in",
        html! {
            p { "Sign in with an opshub API token. A read token can look; a write or admin token can also act." }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form.stack method="post" action="/login" {
                input type="hidden" name="_csrf" value=(nonce);
                input type="hidden" name="next" value=(safe_next(next));
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button.primary type="submit" { "Sign in" }
            }
            p.hint { "Create one with " code { "opshub token create --name me --scope admin" } "." }
        },
    );
    if let Ok(v) = HeaderValue::from_str(&set_cookie(
        app,
        headers,
        LOGIN_COOKIE,
        &nonce,
        "/login",
        3600,
    )) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(rename = "_csrf", default)]
    csrf: String,
    next: Option<String>,
}

pub async fn submit(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: axum::Form<LoginForm>,
) -> PageResult {
    let form = body.0;
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !same_origin(&headers) || !tokens_match(expected, &form.csrf) {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            "the sign-in form was stale or not sent from this site; open the sign-in page again"
                .into(),
        ));
    }
    let token = match app.auth.authenticate(&app.db, form.token.trim()).await {
        Ok(t) => t,
        Err(ApiError::Unauthorized(_)) => {
            return Ok(login_page(
                &app,
                &headers,
                StatusCode::UNAUTHORIZED,
                form.next.as_deref(),
                Some("That token is not valid (unknown or revoked)."),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let id = session::open(&app, &token.id).await?;
    let mut resp = Redirect::to(safe_next(form.next.as_deref())).into_response();
    let cookies = [
        set_cookie(
            &app,
            &headers,
            SESSION_COOKIE,
            &id,
            "/",
            session::session_secs(&app),
        ),
        set_cookie(&app, &headers, LOGIN_COOKIE, "", "/login", 0),
    ];
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(resp)
}

/// Ends the session (any scope may sign out; the CSRF token is still required).
pub async fn logout(State(app): State<AppState>, req: Request) -> Result<Response, Response> {
    let headers = req.headers().clone();
    let (viewer, _) = authorize(req, &app, Scope::Read).await?;
    session::close(&app, &viewer)
        .await
        .map_err(|e| Failure::from(e).into_response())?;
    let mut resp = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&set_cookie(&app, &headers, SESSION_COOKIE, "", "/", 0)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}
