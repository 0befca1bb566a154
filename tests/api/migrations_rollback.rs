//! Migrations after they ran, through the API on every backend: rollback with the down
//! script stored at apply time, validate (changed vs cosmetic edits), baseline, and the
//! lock naming its holder when a run gives up.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp};
use crate::migrations::{create, names, patch, run, table_exists};

backend_tests!(
    rollback_runs_the_stored_down_script_newest_first,
    validate_reports_changed_scripts_and_cosmetic_edits_as_warnings,
    baseline_marks_without_running,
    lock_timeout_names_the_holder,
);

async fn rollback_runs_the_stored_down_script_newest_first(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    create(
        &app,
        "r1",
        "1",
        "CREATE TABLE rb1 (x INT)",
        Some("DROP TABLE rb1"),
    )
    .await;
    create(
        &app,
        "r2",
        "2",
        "CREATE TABLE rb2 (x INT)",
        Some("DROP TABLE rb2"),
    )
    .await;
    run(&app, json!({})).await.assert_status(200);
    // Someone edits the down script in the database: rollback still runs what was stored
    // when the migration was applied.
    sqlx::query(
        app.state
            .db
            .sql("UPDATE opshub_migrations SET down_script = 'broken sql' WHERE name = 'r2'"),
    )
    .execute(app.state.db.pool())
    .await
    .expect("edit");
    let down = app.post("/api/v1/migrations/rollback", json!({})).await;
    down.assert_status(200);
    assert_eq!(
        names(&down.json["applied"]),
        ["r2"],
        "newest first, one by default"
    );
    assert!(!table_exists(&app, "rb2").await && table_exists(&app, "rb1").await);
    let r2 = app.get("/api/v1/migrations?limit=10").await.json["items"][1].clone();
    assert_eq!(
        (r2["isExecuted"].clone(), r2["executedAt"].clone()),
        (json!(false), Value::Null)
    );
    patch(
        &app,
        r2["id"].as_str().expect("id"),
        json!({"downScript": "DROP TABLE rb2"}),
    )
    .await
    .assert_status(200);
    let again = run(&app, json!({})).await;
    assert_eq!(
        names(&again.json["applied"]),
        ["r2"],
        "a rolled-back migration runs again"
    );
    create(&app, "r3", "3", "CREATE TABLE rb3 (x INT)", None).await;
    run(&app, json!({})).await.assert_status(200);
    let refused = app
        .post("/api/v1/migrations/rollback", json!({"to": "1"}))
        .await;
    refused.assert_error(409, "no_down_script");
    assert!(
        table_exists(&app, "rb2").await,
        "a refused rollback runs nothing"
    );
    let r3_id = app.get("/api/v1/migrations?limit=10").await.json["items"][2]["id"]
        .as_str()
        .expect("id")
        .to_string();
    app.post(
        &format!("/api/v1/migrations/{r3_id}/resolve"),
        json!({"state": "rolledBack"}),
    )
    .await
    .assert_status(200);
    let to = app
        .post("/api/v1/migrations/rollback", json!({"to": "0"}))
        .await;
    to.assert_status(200);
    assert_eq!(names(&to.json["applied"]), ["r2", "r1"]);
    assert!(!table_exists(&app, "rb1").await);
}

async fn validate_reports_changed_scripts_and_cosmetic_edits_as_warnings(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    create(&app, "real", "1", "CREATE TABLE v1 (x INT)", None).await;
    create(&app, "cosmetic", "2", "CREATE TABLE v2 (x INT);", None).await;
    run(&app, json!({})).await.assert_status(200);
    let clean = app.get("/api/v1/migrations/validate").await.json;
    assert_eq!(
        (clean["valid"].clone(), clean["warnings"].clone()),
        (json!(true), json!([]))
    );
    let db = &app.state.db;
    for (name, script) in [
        ("real", "CREATE TABLE v1 (x INT, y INT)"),
        ("cosmetic", "-- reviewed\nCREATE   TABLE v2\n  (x INT);\n"),
    ] {
        sqlx::query(db.sql("UPDATE opshub_migrations SET up_script = ? WHERE name = ?"))
            .bind(script)
            .bind(name)
            .execute(db.pool())
            .await
            .expect("edit in the database");
    }
    let report = app.get("/api/v1/migrations/validate").await.json;
    assert_eq!(report["valid"], false);
    assert_eq!(
        (
            report["errors"][0]["code"].clone(),
            report["errors"][0]["name"].clone()
        ),
        (json!("checksum_mismatch"), json!("real"))
    );
    assert_eq!(report["errors"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        (
            report["warnings"][0]["code"].clone(),
            report["warnings"][0]["name"].clone()
        ),
        (json!("cosmetic_change"), json!("cosmetic"))
    );
}

async fn baseline_marks_without_running(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    create(&app, "b1", "1", "SELECT * FROM would_fail_if_run", None).await;
    create(&app, "b2", "2", "SELECT * FROM would_fail_too", None).await;
    create(&app, "b3", "3", "CREATE TABLE bl3 (x INT)", None).await;
    let r = app
        .post("/api/v1/migrations/baseline", json!({"version": "2"}))
        .await;
    r.assert_status(200);
    assert_eq!(names(&r.json), ["b1", "b2"]);
    let after = run(&app, json!({})).await;
    after.assert_status(200);
    assert_eq!(names(&after.json["applied"]), ["b3"]);
    app.post("/api/v1/migrations/baseline", json!({"version": "?"}))
        .await
        .assert_error(400, "invalid_option");
    let history = app.get("/api/v1/migrations/history").await.json;
    assert_eq!(history["items"].as_array().map(Vec::len), Some(3));
    assert_eq!(history["items"][2]["direction"], "baseline");
    // Paging walks the same entries, newest first, without repeats.
    let first = app.get("/api/v1/migrations/history?limit=2").await.json;
    let cursor = first["nextCursor"].as_str().expect("a second page");
    let second = app
        .get(&format!(
            "/api/v1/migrations/history?limit=2&cursor={cursor}"
        ))
        .await
        .json;
    let ids: Vec<&Value> = first["items"]
        .as_array()
        .into_iter()
        .chain(second["items"].as_array())
        .flatten()
        .map(|h| &h["id"])
        .collect();
    let all: Vec<&Value> = history["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|h| &h["id"])
        .collect();
    assert_eq!(ids, all);
    assert_eq!(second["nextCursor"], Value::Null);
}

async fn lock_timeout_names_the_holder(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    create(&app, "l1", "1", "CREATE TABLE lk (x INT)", None).await;
    let db = &app.state.db;
    let held = opshub::migrations::lock::MigrationLock::acquire(
        db,
        "test-holder",
        std::time::Duration::ZERO,
    )
    .await
    .expect("free lock");
    let r = run(&app, json!({"lockTimeout": 0})).await;
    r.assert_error(409, "locked");
    let holder = &r.json["error"]["details"]["holder"];
    assert_eq!(holder["actor"], "test-holder");
    assert_eq!(holder["pid"], std::process::id());
    assert!(
        r.json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("test-holder"))
    );
    assert!(!table_exists(&app, "lk").await);
    held.release().await;
    let ok = run(&app, json!({"lockTimeout": 0})).await;
    ok.assert_status(200);
    assert_eq!(names(&ok.json["applied"]), ["l1"]);
}

/// Writes a SQLite lease as another runner would have left it.
async fn plant_lease(app: &TestApp, host: &str, pid: u32, expires_in_secs: i64) {
    let db = &app.state.db;
    let holder = json!({"host": host, "pid": pid, "actor": "cli:elsewhere", "startedAt": "2026-01-01T00:00:00.000000Z"});
    sqlx::query(db.sql(
        "INSERT INTO opshub_migration_lock (name, owner, holder, acquired_at, expires_at)
         VALUES ('migrations', 'other-owner', ?, ?, ?)",
    ))
    .bind(holder.to_string())
    .bind(opshub::db::time::now())
    .bind(opshub::db::time::in_secs(expires_in_secs))
    .execute(db.pool())
    .await
    .expect("plant lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_lease_of_another_host_blocks_until_it_expires() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    create(&app, "l1", "1", "CREATE TABLE lease1 (x INT)", None).await;
    // Another host's live lease: this runner cannot tell whether that process is alive.
    plant_lease(&app, "some-other-host", 1, 3600).await;
    let r = run(&app, json!({"lockTimeout": 0})).await;
    r.assert_error(409, "locked");
    assert_eq!(
        r.json["error"]["details"]["holder"]["host"],
        "some-other-host"
    );
    sqlx::query(app.state.db.sql("DELETE FROM opshub_migration_lock"))
        .execute(app.state.db.pool())
        .await
        .expect("clear");
    // The same lease, expired: a crashed holder never blocks past its lease.
    plant_lease(&app, "some-other-host", 1, -1).await;
    let ok = run(&app, json!({"lockTimeout": 0})).await;
    ok.assert_status(200);
    assert_eq!(names(&ok.json["applied"]), ["l1"]);
}
