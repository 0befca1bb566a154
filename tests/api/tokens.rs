//! API tokens: scopes, 401/403, SHA-256 storage, revocation, first-start bootstrap.

use reqwest::Method;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::backend_tests;
use crate::helpers::{Backend, Resp, TestApp, TestDb, test_config};

backend_tests!(
    scopes_decide_what_a_token_may_do,
    tokens_are_stored_only_as_sha256,
    revoked_token_stops_working_at_once,
    first_start_creates_exactly_one_admin_token,
);

async fn call(app: &TestApp, token: Option<&str>, method: Method, path: &str) -> Resp {
    let mut req = app
        .client
        .request(method.clone(), format!("{}{path}", app.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if method == Method::POST {
        req = req.json(&json!({"name": "n", "scope": "read"}));
    }
    Resp::from(req.send().await.expect("sent")).await
}

async fn scopes_decide_what_a_token_may_do(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (read, write) = (app.token("read").await, app.token("write").await);
    let none = call(&app, None, Method::GET, "/api/v1/tokens").await;
    none.assert_error(401, "unauthorized");
    assert!(none.headers.contains_key("www-authenticate"));
    call(
        &app,
        Some("opshub_not-a-real-token"),
        Method::GET,
        "/metrics",
    )
    .await
    .assert_error(401, "unauthorized");
    call(&app, Some(""), Method::GET, "/metrics")
        .await
        .assert_error(401, "unauthorized");
    // read: GETs only; write: everything but tokens; admin: everything.
    call(&app, Some(&read), Method::GET, "/metrics")
        .await
        .assert_status(200);
    call(&app, Some(&read), Method::GET, "/api/v1/tokens")
        .await
        .assert_error(403, "forbidden");
    call(&app, Some(&write), Method::GET, "/metrics")
        .await
        .assert_status(200);
    call(&app, Some(&write), Method::POST, "/api/v1/tokens")
        .await
        .assert_error(403, "forbidden");
    call(&app, Some(&app.admin_token), Method::POST, "/api/v1/tokens")
        .await
        .assert_status(201);
    let wrong_scheme = app
        .client
        .get(format!("{}/metrics", app.base))
        .header("authorization", format!("Basic {read}"));
    Resp::from(wrong_scheme.send().await.expect("sent"))
        .await
        .assert_error(401, "unauthorized");
}

async fn tokens_are_stored_only_as_sha256(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let created = app
        .post("/api/v1/tokens", json!({"name": "ci", "scope": "write"}))
        .await;
    created.assert_status(201);
    let text = created.json["token"].as_str().expect("token").to_string();
    let id = created.json["id"].as_str().expect("id").to_string();
    let listed = app.get("/api/v1/tokens").await;
    assert!(!listed.text.contains(&text), "lists never show the token");
    let one = app.get(&format!("/api/v1/tokens/{id}")).await;
    assert!(one.json.get("token").is_none() && !one.text.contains(&text));
    let db = &app.state.db;
    let row = sqlx::query(db.sql("SELECT * FROM opshub_tokens WHERE id = ?"))
        .bind(&id)
        .fetch_one(db.pool())
        .await
        .expect("row");
    let expected: String = Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        row.try_get::<String, _>("token_hash").expect("hash"),
        expected
    );
    for i in 0..row.len() {
        if let Ok(v) = row.try_get::<String, _>(i) {
            assert!(!v.contains(&text), "column {i} holds the token text");
        }
    }
}

async fn revoked_token_stops_working_at_once(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let created = app
        .post("/api/v1/tokens", json!({"name": "temp", "scope": "read"}))
        .await;
    let (text, id) = (
        created.json["token"].as_str().expect("t").to_string(),
        created.json["id"].as_str().expect("id").to_string(),
    );
    call(&app, Some(&text), Method::GET, "/metrics")
        .await
        .assert_status(200);
    let r = Resp::from(
        app.req(Method::DELETE, &format!("/api/v1/tokens/{id}"))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    r.assert_status(200);
    assert!(r.json["revokedAt"].is_string());
    call(&app, Some(&text), Method::GET, "/metrics")
        .await
        .assert_error(401, "unauthorized");
    let again = Resp::from(
        app.req(Method::DELETE, &format!("/api/v1/tokens/{id}"))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    again.assert_error(404, "token_not_found");
    app.get("/api/v1/tokens/no-such-id")
        .await
        .assert_error(404, "token_not_found");
}

async fn first_start_creates_exactly_one_admin_token(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let first = opshub::app::App::build(test_config(&db, &[]))
        .await
        .expect("builds");
    assert!(first.first_admin_token.is_some());
    let second = opshub::app::App::build(test_config(&db, &[]))
        .await
        .expect("builds again");
    assert!(
        second.first_admin_token.is_none(),
        "a restart prints no new token"
    );
    // A supplied admin token is installed and creates no generated one.
    let Some(db2) = TestDb::create(backend).await else {
        return;
    };
    let supplied = "opshub_supplied-admin-token-for-tests-0123456789";
    let app = opshub::app::App::build(test_config(&db2, &[("OPSHUB_ADMIN_TOKEN", supplied)]))
        .await
        .expect("builds");
    assert!(app.first_admin_token.is_none());
    let token = app
        .state
        .auth
        .authenticate(&app.state.db, supplied)
        .await
        .expect("supplied token works");
    assert_eq!(token.scope, opshub::tokens::model::Scope::Admin);
    let short =
        opshub::app::App::build(test_config(&db2, &[("OPSHUB_ADMIN_TOKEN", "short")])).await;
    assert!(short.is_err(), "a guessable admin token is refused");
}
