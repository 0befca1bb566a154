//! Migrations through the API on every backend: records and their validation, the seed
//! workflow (create → activate → run), natural order, `to`/`steps`/`dryRun`, the first
//! failure rolling back and stopping (with its history), out-of-order refusal. Shared
//! helpers for the other `migrations_*` files live here.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Row;

use crate::backend_tests;
use crate::helpers::{Backend, Resp, TestApp};

backend_tests!(
    records_validate_input_and_bad_input_writes_nothing,
    create_activate_run_then_scripts_are_frozen,
    runs_in_natural_order_with_to_steps_and_dry_run,
    first_failure_rolls_back_its_migration_records_the_error_and_stops,
    out_of_order_pending_is_refused_unless_allowed,
);

pub async fn create(
    app: &TestApp,
    name: &str,
    version: &str,
    up: &str,
    down: Option<&str>,
) -> Value {
    let r = app
        .post(
            "/api/v1/migrations",
            json!({"name": name, "version": version, "upScript": up, "downScript": down, "isActive": true}),
        )
        .await;
    r.assert_status(201);
    r.json.clone()
}

pub async fn patch(app: &TestApp, id: &str, body: Value) -> Resp {
    Resp::from(
        app.req(Method::PATCH, &format!("/api/v1/migrations/{id}"))
            .json(&body)
            .send()
            .await
            .expect("sent"),
    )
    .await
}

async fn delete(app: &TestApp, id: &str) -> Resp {
    Resp::from(
        app.req(Method::DELETE, &format!("/api/v1/migrations/{id}"))
            .send()
            .await
            .expect("sent"),
    )
    .await
}

pub async fn run(app: &TestApp, opts: Value) -> Resp {
    app.post("/api/v1/migrations/run", opts).await
}

pub fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|m| m["name"].as_str().expect("name").to_string())
        .collect()
}

/// Whether a table exists, asked of the database itself.
pub async fn table_exists(app: &TestApp, table: &str) -> bool {
    let db = &app.state.db;
    let sql = format!("SELECT COUNT(*) AS n FROM {table}");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(db.pool())
        .await
        .is_ok()
}

async fn count(app: &TestApp) -> usize {
    app.get("/api/v1/migrations?limit=1000").await.json["items"]
        .as_array()
        .expect("items")
        .len()
}

async fn records_validate_input_and_bad_input_writes_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let r = app
        .post(
            "/api/v1/migrations",
            json!({"name": "init", "version": "1", "upScript": "CREATE TABLE a (x INT)"}),
        )
        .await;
    r.assert_status(201);
    let m = &r.json;
    assert_eq!(m["isActive"], false, "the API creates inactive migrations");
    assert_eq!(
        (m["isExecuted"].clone(), m["transactional"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(
        (m["executionOrder"].clone(), m["downScript"].clone()),
        (json!(0), Value::Null)
    );
    for key in [
        "id",
        "createdAt",
        "updatedAt",
        "upScript",
        "executedAt",
        "checksum",
        "lastError",
    ] {
        assert!(m.get(key).is_some(), "{key} in {m}");
    }
    let bad = [
        (
            json!({"name": "init", "version": "2", "upScript": "SELECT 1"}),
            409,
            "duplicate_name",
        ),
        (
            json!({"name": "e", "version": "2", "upScript": "  -- only a comment\n"}),
            422,
            "invalid_migration",
        ),
        (
            json!({"name": "v", "version": "1..2", "upScript": "SELECT 1"}),
            422,
            "invalid_migration",
        ),
        (
            json!({"name": "q", "version": "2", "upScript": "SELECT 'open"}),
            422,
            "invalid_migration",
        ),
        (
            json!({"name": "c", "version": "2", "upScript": "SELECT 1; COMMIT;"}),
            422,
            "invalid_migration",
        ),
        (
            json!({"name": "", "version": "2", "upScript": "SELECT 1"}),
            422,
            "invalid_migration",
        ),
        (json!({"name": "x", "version": "2"}), 422, "invalid_body"),
    ];
    for (body, status, code) in bad {
        app.post("/api/v1/migrations", body.clone())
            .await
            .assert_error(status, code);
    }
    assert_eq!(count(&app).await, 1, "bad input wrote nothing");
    let unknown = "00000000-0000-0000-0000-000000000000";
    app.get(&format!("/api/v1/migrations/{unknown}"))
        .await
        .assert_error(404, "migration_not_found");
    patch(&app, unknown, json!({"isActive": true}))
        .await
        .assert_error(404, "migration_not_found");
    delete(&app, unknown)
        .await
        .assert_error(404, "migration_not_found");
    let id = m["id"].as_str().expect("id");
    patch(&app, id, json!({"version": "x y"}))
        .await
        .assert_error(422, "invalid_migration");
    patch(&app, id, json!({"bogus": 1}))
        .await
        .assert_error(422, "invalid_body");
    assert_eq!(
        app.get(&format!("/api/v1/migrations/{id}")).await.json["version"],
        "1"
    );
    app.post("/api/v1/migrations/rollback", json!({}))
        .await
        .assert_error(409, "nothing_to_roll_back");
    run(&app, json!({"steps": 0}))
        .await
        .assert_error(400, "invalid_option");
    run(&app, json!({"lockTimeout": 100_000_000_000u64}))
        .await
        .assert_error(400, "invalid_option");
    delete(&app, id).await.assert_status(200);
    assert_eq!(count(&app).await, 0);
}

async fn create_activate_run_then_scripts_are_frozen(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let r = app
        .post(
            "/api/v1/migrations",
            json!({"name": "init", "version": "1", "upScript": "CREATE TABLE seeded (x INT)\r\n"}),
        )
        .await;
    let id = r.json["id"].as_str().expect("id").to_string();
    let nothing = run(&app, json!({})).await;
    nothing.assert_status(200);
    assert_eq!(
        nothing.json["applied"],
        json!([]),
        "inactive migrations do not run"
    );
    patch(&app, &id, json!({"isActive": true}))
        .await
        .assert_status(200);
    let done = run(&app, json!({})).await;
    done.assert_status(200);
    assert_eq!(names(&done.json["applied"]), ["init"]);
    let m = app.get(&format!("/api/v1/migrations/{id}")).await.json;
    assert_eq!(m["isExecuted"], true);
    assert!(m["executedAt"].as_str().is_some_and(|t| t.ends_with('Z')));
    // SHA-256 of the script with CRLF normalised to LF.
    let expected = opshub::crypto::sha256_hex(b"CREATE TABLE seeded (x INT)\n");
    assert_eq!(m["checksum"], expected.as_str());
    assert!(table_exists(&app, "seeded").await);
    patch(&app, &id, json!({"upScript": "SELECT 2"}))
        .await
        .assert_error(409, "migration_executed");
    patch(&app, &id, json!({"downScript": "DROP TABLE seeded"}))
        .await
        .assert_error(409, "migration_executed");
    delete(&app, &id)
        .await
        .assert_error(409, "migration_executed");
    let ok = patch(&app, &id, json!({"description": "the first table"})).await;
    ok.assert_status(200);
    assert_eq!(ok.json["description"], "the first table");
    let again = run(&app, json!({})).await;
    assert_eq!(
        again.json["applied"],
        json!([]),
        "an executed migration runs once"
    );
}

async fn runs_in_natural_order_with_to_steps_and_dry_run(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    for (name, v) in [
        ("ten", "10"),
        ("two", "2"),
        ("one_one", "1.1"),
        ("one", "1"),
        ("ts", "20260101000000"),
    ] {
        create(
            &app,
            name,
            v,
            &format!("CREATE TABLE t_{name} (x INT)"),
            None,
        )
        .await;
    }
    let plan = run(&app, json!({"dryRun": true})).await;
    plan.assert_status(200);
    assert_eq!(
        names(&plan.json["plan"]),
        ["one", "one_one", "two", "ten", "ts"]
    );
    assert_eq!(
        plan.json["plan"][0]["statements"],
        json!(["CREATE TABLE t_one (x INT)"])
    );
    assert_eq!(plan.json["plan"][0]["mode"], "transaction");
    assert!(
        !table_exists(&app, "t_one").await,
        "a dry run executes nothing"
    );
    assert_eq!(
        app.get("/api/v1/migrations/status").await.json["pending"],
        5
    );
    let to = run(&app, json!({"to": "1.1"})).await;
    assert_eq!(names(&to.json["applied"]), ["one", "one_one"]);
    let step = run(&app, json!({"steps": 1})).await;
    assert_eq!(names(&step.json["applied"]), ["two"]);
    let rest = run(&app, json!({})).await;
    assert_eq!(names(&rest.json["applied"]), ["ten", "ts"]);
    let listed = app.get("/api/v1/migrations?limit=2").await.json;
    assert_eq!(names(&listed["items"]), ["one", "one_one"]);
    let cursor = listed["nextCursor"].as_str().expect("more");
    let next = app
        .get(&format!("/api/v1/migrations?limit=2&cursor={cursor}"))
        .await
        .json;
    assert_eq!(names(&next["items"]), ["two", "ten"]);
}

async fn first_failure_rolls_back_its_migration_records_the_error_and_stops(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    create(&app, "a", "1", "CREATE TABLE fa (x INT)", None).await;
    let b = create(&app, "b", "2", "INSERT INTO fa VALUES (1);\nCREATE TABLE fb (x INT);\nINSERT INTO no_such_table VALUES (1);", None).await;
    create(&app, "c", "3", "CREATE TABLE fc (x INT)", None).await;
    let r = run(&app, json!({})).await;
    r.assert_error(422, "migration_failed");
    let report = &r.json["error"]["details"];
    assert_eq!(names(&report["applied"]), ["a"]);
    assert_eq!(report["failed"]["name"], "b");
    assert_eq!(names(&report["notAttempted"]), ["c"]);
    let b_id = b["id"].as_str().expect("id");
    let b_now = app.get(&format!("/api/v1/migrations/{b_id}")).await.json;
    assert!(
        b_now["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("no_such_table")),
        "{b_now}"
    );
    assert_eq!(b_now["isExecuted"], false);
    assert!(
        !table_exists(&app, "fc").await,
        "nothing after the failure ran"
    );
    if backend == Backend::Mysql {
        // MySQL's CREATE TABLE committed implicitly: the migration is dirty, not clean.
        assert_eq!(report["failed"]["dirty"], true);
        let blocked = run(&app, json!({})).await;
        blocked.assert_error(409, "dirty");
        let msg = blocked.json["error"]["message"].as_str().expect("message");
        assert!(
            msg.contains("2 of 3 statements completed") && msg.contains("no_such_table"),
            "{msg}"
        );
        app.post(
            &format!("/api/v1/migrations/{b_id}/resolve"),
            json!({"state": "rolledBack"}),
        )
        .await
        .assert_status(200);
        sqlx::raw_sql("DROP TABLE fb; DELETE FROM fa")
            .execute(app.state.db.pool())
            .await
            .expect("undo by hand");
    } else {
        assert_eq!(report["failed"]["dirty"], false);
        assert!(
            !table_exists(&app, "fb").await,
            "the failed migration left nothing behind"
        );
        let rows: i64 = sqlx::query("SELECT COUNT(*) AS n FROM fa")
            .fetch_one(app.state.db.pool())
            .await
            .expect("count")
            .try_get("n")
            .expect("n");
        assert_eq!(rows, 0, "its insert was rolled back too");
    }
    patch(
        &app,
        b_id,
        json!({"upScript": "INSERT INTO fa VALUES (1);\nCREATE TABLE fb (x INT);"}),
    )
    .await
    .assert_status(200);
    let fixed = run(&app, json!({})).await;
    fixed.assert_status(200);
    assert_eq!(names(&fixed.json["applied"]), ["b", "c"]);
    let history = app
        .get(&format!("/api/v1/migrations/history?migrationId={b_id}"))
        .await
        .json;
    let items = history["items"].as_array().expect("items");
    let outcomes: Vec<(bool, &str)> = items
        .iter()
        .map(|h| {
            (
                h["success"].as_bool().expect("bool"),
                h["direction"].as_str().expect("dir"),
            )
        })
        .collect();
    let expected: &[(bool, &str)] = if backend == Backend::Mysql {
        &[(true, "up"), (true, "resolve_rolled_back"), (false, "up")]
    } else {
        &[(true, "up"), (false, "up")]
    };
    assert_eq!(outcomes, expected, "newest first");
    assert!(
        items[0]["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("api:"))
    );
    assert!(
        items
            .iter()
            .all(|h| h["durationMs"].is_i64() && h["startedAt"].is_string())
    );
}

async fn out_of_order_pending_is_refused_unless_allowed(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    create(&app, "two", "2", "CREATE TABLE oo2 (x INT)", None).await;
    run(&app, json!({})).await.assert_status(200);
    create(&app, "one", "1", "CREATE TABLE oo1 (x INT)", None).await;
    let refused = run(&app, json!({})).await;
    refused.assert_error(409, "out_of_order");
    assert_eq!(
        names(&refused.json["error"]["details"]["migrations"]),
        ["one"]
    );
    let report = app.get("/api/v1/migrations/validate").await.json;
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"][0]["code"], "out_of_order");
    assert_eq!(
        app.get("/api/v1/migrations/status").await.json["outOfOrder"],
        1
    );
    let allowed = run(&app, json!({"outOfOrder": true})).await;
    allowed.assert_status(200);
    assert_eq!(names(&allowed.json["applied"]), ["one"]);
}
