//! `/api/v1/procedures` on every backend: deploy order by dependsOn and cycles, rollback,
//! bad input refused with nothing written, a failing script rolled back and recorded,
//! deploy under the migration lock. Drift states: `procedures_drift.rs`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, Resp, TestApp};

backend_tests!(
    options_are_checked_even_with_nothing_to_deploy,
    deploy_all_orders_by_dependencies_and_refuses_cycles,
    rollback_runs_the_down_script_and_is_refused_without_one,
    bad_input_is_refused_with_nothing_written,
    a_failing_script_is_recorded_and_rolled_back,
    deploy_waits_for_the_migration_lock,
);

pub const SETUP: &str = "CREATE TABLE orders (id INT PRIMARY KEY, total INT);\
                     CREATE TABLE audit (n INT)";

/// Runs SQL directly on the managed database, as someone bypassing opshub would.
pub async fn exec(app: &TestApp, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(app.state.db.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

pub async fn create(app: &TestApp, body: Value) -> Value {
    let r = app.post("/api/v1/procedures", body).await;
    r.assert_status(201);
    r.json.clone()
}

pub async fn patch(app: &TestApp, id: &str, body: Value) -> Resp {
    Resp::from(
        app.req(reqwest::Method::PATCH, &format!("/api/v1/procedures/{id}"))
            .json(&body)
            .send()
            .await
            .expect("sent"),
    )
    .await
}

pub async fn deploy_all(app: &TestApp) -> Value {
    let r = app.post("/api/v1/procedures/deploy", json!({})).await;
    r.assert_status(200);
    r.json.clone()
}

/// name -> (state, item) from the drift report.
pub async fn drift(app: &TestApp) -> (Value, std::collections::BTreeMap<String, Value>) {
    let r = app.get("/api/v1/procedures/drift").await;
    r.assert_status(200);
    let items = r.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| (i["name"].as_str().expect("name").to_string(), i.clone()))
        .collect();
    (r.json.clone(), items)
}

pub async fn state_of(app: &TestApp, name: &str) -> String {
    let (_, items) = drift(app).await;
    items[name]["state"].as_str().expect("state").to_string()
}

async fn deploy_all_orders_by_dependencies_and_refuses_cycles(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    exec(&app, SETUP).await;
    let view = |name: &str, from: &str| {
        let head = if backend == Backend::Sqlite {
            "CREATE VIEW"
        } else {
            "CREATE OR REPLACE VIEW"
        };
        format!("{head} {name} AS SELECT id FROM {from}")
    };
    // Names and versions alone would order them a, m, z: dependencies come first.
    create(
        &app,
        json!({"name": "z_base", "version": "2", "upScript": view("v_base", "orders")}),
    )
    .await;
    create(
        &app,
        json!({"name": "m_mid", "version": "1", "upScript": view("v_mid", "v_base"), "dependsOn": ["z_base"]}),
    )
    .await;
    let a = create(
        &app,
        json!({"name": "a_top", "version": "1", "upScript": view("v_top", "v_mid"), "dependsOn": ["m_mid"]}),
    )
    .await;
    create(
        &app,
        json!({"name": "b_free", "version": "1", "sort": 5, "upScript": view("v_free", "orders")}),
    )
    .await;

    let plan = app
        .post("/api/v1/procedures/deploy", json!({"dryRun": true}))
        .await;
    plan.assert_status(200);
    let names: Vec<&str> = plan.json["plan"]
        .as_array()
        .expect("plan")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["b_free", "z_base", "m_mid", "a_top"]);
    assert_eq!(plan.json["plan"][0]["reason"], "pending");
    assert_eq!(
        state_of(&app, "a_top").await,
        "pending",
        "a dry run deploys nothing"
    );

    let done = deploy_all(&app).await;
    assert_eq!(done["deployed"].as_array().map(Vec::len), Some(4), "{done}");
    let noop = deploy_all(&app).await;
    assert_eq!(
        noop["deployed"],
        json!([]),
        "only pending or changed deploy"
    );

    let id = a["id"].as_str().expect("id");
    patch(&app, "z_base", json!({"dependsOn": ["a_top"]}))
        .await
        .assert_error(422, "dependency_cycle");
    let unknown = patch(&app, id, json!({"dependsOn": ["nope"]})).await;
    unknown.assert_error(422, "unknown_dependency");
    let got = app.get(&format!("/api/v1/procedures/{id}")).await;
    assert_eq!(got.json["dependsOn"], json!(["m_mid"]), "nothing written");
    app.req(reqwest::Method::DELETE, "/api/v1/procedures/z_base")
        .send()
        .await
        .expect("sent");
    assert_eq!(
        app.get("/api/v1/procedures/z_base").await.status,
        200,
        "a deployed procedure with dependents is not deleted"
    );
}

async fn rollback_runs_the_down_script_and_is_refused_without_one(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    exec(&app, SETUP).await;
    let up = match backend {
        Backend::Sqlite => "CREATE VIEW v1 AS SELECT id FROM orders",
        _ => "CREATE OR REPLACE VIEW v1 AS SELECT id FROM orders",
    };
    let with = create(
        &app,
        json!({"name": "with_down", "upScript": up, "downScript": "DROP VIEW v1"}),
    )
    .await;
    let without = create(
        &app,
        json!({"name": "without_down", "upScript": up.replace("v1", "v2")}),
    )
    .await;
    deploy_all(&app).await;
    let refused = app
        .post(
            &format!(
                "/api/v1/procedures/{}/rollback",
                without["id"].as_str().expect("id")
            ),
            json!({}),
        )
        .await;
    refused.assert_error(409, "no_down_script");
    let id = with["id"].as_str().expect("id");
    let done = app
        .post(&format!("/api/v1/procedures/{id}/rollback"), json!({}))
        .await;
    done.assert_status(200);
    assert_eq!(done.json["isExecuted"], false);
    assert_eq!(done.json["executedAt"], Value::Null);
    assert_eq!(state_of(&app, "with_down").await, "pending");
    let gone = sqlx::raw_sql("SELECT * FROM v1")
        .execute(app.state.db.pool())
        .await;
    assert!(gone.is_err(), "the down script dropped the view");
    app.post(&format!("/api/v1/procedures/{id}/rollback"), json!({}))
        .await
        .assert_error(409, "not_deployed");
    deploy_all(&app).await;
    assert_eq!(
        state_of(&app, "with_down").await,
        "in_sync",
        "deployable again"
    );
}

async fn bad_input_is_refused_with_nothing_written(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let view = "CREATE VIEW v AS SELECT 1 AS one";
    let cases = [
        (
            json!({"name": "x", "upScript": "SELECT 1; CREATE TABLE t (a INT)"}),
            422,
            "no_create",
        ),
        (
            json!({"name": "x", "type": "trigger", "upScript": view}),
            422,
            "type_mismatch",
        ),
        (
            json!({"name": "x", "upScript": view, "dependsOn": ["ghost"]}),
            422,
            "unknown_dependency",
        ),
        (
            json!({"name": "x", "upScript": view, "hash": "abc"}),
            422,
            "invalid_body",
        ),
        (
            json!({"name": "x", "upScript": view, "dependsOn": ["x"]}),
            422,
            "dependency_cycle",
        ),
        (
            json!({"name": " x", "upScript": view}),
            422,
            "invalid_procedure",
        ),
        (
            json!({"name": "x", "upScript": "CREATE VIEW v AS SELECT 'open"}),
            422,
            "invalid_script",
        ),
    ];
    for (body, status, code) in cases {
        app.post("/api/v1/procedures", body)
            .await
            .assert_error(status, code);
    }
    if backend == Backend::Sqlite {
        app.post(
            "/api/v1/procedures",
            json!({"name": "f", "upScript": "CREATE FUNCTION f() RETURNS int AS 'select 1'"}),
        )
        .await
        .assert_error(422, "unsupported_type");
    }
    let list = app.get("/api/v1/procedures").await;
    assert_eq!(list.json["items"], json!([]), "nothing written");
    create(&app, json!({"name": "x", "upScript": view})).await;
    app.post("/api/v1/procedures", json!({"name": "x", "upScript": view}))
        .await
        .assert_error(409, "duplicate_name");
    app.get("/api/v1/procedures/nope")
        .await
        .assert_error(404, "procedure_not_found");
    let id = app.get("/api/v1/procedures/x").await.json["id"].clone();
    patch(&app, id.as_str().expect("id"), json!({"type": "function"}))
        .await
        .assert_error(422, "type_mismatch");
}

async fn a_failing_script_is_recorded_and_rolled_back(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ok = match backend {
        Backend::Sqlite => "CREATE VIEW ok_view AS SELECT 1 AS one",
        _ => "CREATE OR REPLACE VIEW ok_view AS SELECT 1 AS one",
    };
    create(&app, json!({"name": "a_ok", "upScript": ok})).await;
    let bad = match backend {
        Backend::Sqlite => "CREATE TRIGGER bad AFTER INSERT ON no_such_table BEGIN SELECT 1; END",
        _ => "CREATE VIEW bad_view AS SELECT * FROM no_such_table",
    };
    create(&app, json!({"name": "b_bad", "upScript": bad})).await;
    create(
        &app,
        json!({"name": "c_later", "upScript": ok.replace("ok_view", "later_view")}),
    )
    .await;
    let r = app.post("/api/v1/procedures/deploy", json!({})).await;
    r.assert_error(422, "deploy_failed");
    let details = &r.json["error"]["details"];
    assert_eq!(details["deployed"][0]["name"], "a_ok");
    assert_eq!(details["failed"]["name"], "b_bad");
    assert_eq!(details["notAttempted"][0]["name"], "c_later");
    let bad = app.get("/api/v1/procedures/b_bad").await;
    assert_eq!(bad.json["isExecuted"], false);
    assert!(
        bad.json["lastError"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );
    assert_eq!(state_of(&app, "c_later").await, "pending");
}

async fn deploy_waits_for_the_migration_lock(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let up = match backend {
        Backend::Sqlite => "CREATE VIEW lv AS SELECT 1 AS one",
        _ => "CREATE OR REPLACE VIEW lv AS SELECT 1 AS one",
    };
    create(&app, json!({"name": "lv", "upScript": up})).await;
    let held = opshub::migrations::lock::MigrationLock::acquire(
        &app.state.db,
        "migration-runner",
        Duration::ZERO,
    )
    .await
    .expect("lock");
    let r = app
        .post("/api/v1/procedures/deploy", json!({"lockTimeout": 0}))
        .await;
    r.assert_error(409, "locked");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("migration-runner"))
    );
    held.release().await;
    deploy_all(&app).await;
    assert_eq!(state_of(&app, "lv").await, "in_sync");
}

/// Schemathesis: `POST /procedures/deploy` took any `lockTimeout` when nothing was pending,
/// while deploying one procedure refused the same value.
async fn options_are_checked_even_with_nothing_to_deploy(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.post("/api/v1/procedures/deploy", json!({"lockTimeout": 86_401}))
        .await
        .assert_error(400, "invalid_option");
    app.post("/api/v1/procedures/deploy", json!({"lockTimeout": 5}))
        .await
        .assert_status(200);
    let r = app
        .req(reqwest::Method::POST, "/api/v1/procedures/deploy")
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("sent");
    Resp::from(r)
        .await
        .assert_error(415, "unsupported_media_type");
    let r = app
        .req(reqwest::Method::POST, "/api/v1/procedures/deploy")
        .header("content-type", "application/json")
        .body("null")
        .send()
        .await
        .expect("sent");
    Resp::from(r).await.assert_status(200);
}
