//! Scripts execute exactly as written on each backend (dollar quotes, DO blocks, BEGIN
//! ATOMIC, trigger bodies, MySQL DELIMITER, `;` in comments and literals), both in one
//! transaction and statement by statement; statements that cannot run in a transaction are
//! detected before anything runs; a statement-by-statement failure leaves a dirty migration
//! that blocks runs until it is resumed or resolved.

use serde_json::{Value, json};
use sqlx::Row;

use crate::backend_tests;
use crate::helpers::{Backend, TestApp};
use crate::migrations::{patch, run, table_exists};

backend_tests!(
    scripts_run_exactly_as_written,
    statement_by_statement_failure_is_dirty_until_resumed_or_resolved,
);

/// A script full of constructs a naive `;` splitter breaks, per backend, and a query
/// whose answer proves every part ran.
fn tricky_script(backend: Backend, p: &str) -> (String, usize, String, &'static str) {
    match backend {
        Backend::Postgres => (
            format!(
                "-- a comment; with a semicolon\n\
                 CREATE TABLE {p}items (id INT PRIMARY KEY, note TEXT DEFAULT 'a;b');\n\
                 CREATE FUNCTION {p}add(a INT, b INT) RETURNS INT AS $$ SELECT a + b; $$ LANGUAGE sql;\n\
                 CREATE FUNCTION {p}tag() RETURNS TEXT AS $body$ BEGIN RETURN 'x;y'; END; $body$ LANGUAGE plpgsql;\n\
                 DO $$ BEGIN INSERT INTO {p}items VALUES (1, 'from do;'); END $$;\n\
                 CREATE FUNCTION {p}twice(a INT) RETURNS INT LANGUAGE sql BEGIN ATOMIC SELECT a * 2; END;\n\
                 /* block ; comment */ INSERT INTO {p}items (id) VALUES (2);\n"
            ),
            6,
            format!(
                "SELECT CONCAT({p}add(1, 2), {p}tag(), {p}twice(4), (SELECT COUNT(*) FROM {p}items), \
                 (SELECT note FROM {p}items WHERE id = 2)) AS r"
            ),
            "3x;y82a;b",
        ),
        Backend::Sqlite => (
            format!(
                "CREATE TABLE {p}items (id INTEGER PRIMARY KEY, note TEXT DEFAULT 'a;b');\n\
                 CREATE TABLE {p}log (msg TEXT); -- trailing comment;\n\
                 CREATE TRIGGER {p}trg AFTER INSERT ON {p}items BEGIN\n\
                   INSERT INTO {p}log VALUES ('one;');\n  INSERT INTO {p}log VALUES ('two');\nEND;\n\
                 INSERT INTO {p}items (id) VALUES (1);\n"
            ),
            4,
            format!(
                "SELECT (SELECT COUNT(*) FROM {p}log) || (SELECT msg FROM {p}log ORDER BY msg LIMIT 1) \
                 || (SELECT note FROM {p}items) AS r"
            ),
            "2one;a;b",
        ),
        Backend::Mysql => (
            format!(
                "CREATE TABLE {p}items (id INT PRIMARY KEY, note VARCHAR(20) DEFAULT 'a;b');\n\
                 CREATE TABLE {p}log (msg VARCHAR(20));\n\
                 DELIMITER //\n\
                 CREATE PROCEDURE {p}put(IN a INT) BEGIN INSERT INTO {p}items (id) VALUES (a); INSERT INTO {p}log VALUES ('p;'); END //\n\
                 CREATE TRIGGER {p}trg AFTER INSERT ON {p}items FOR EACH ROW BEGIN INSERT INTO {p}log VALUES ('t'); END //\n\
                 DELIMITER ;\n\
                 CALL {p}put(1); # hash comment;\n"
            ),
            5,
            format!(
                "SELECT CAST(CONCAT((SELECT COUNT(*) FROM {p}log), (SELECT MIN(msg) FROM {p}log), \
                 (SELECT note FROM {p}items)) AS CHAR) AS r"
            ),
            "2p;a;b",
        ),
    }
}

async fn answer(app: &TestApp, sql: String) -> String {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(app.state.db.pool())
        .await
        .expect("query")
        .try_get("r")
        .expect("text")
}

async fn scripts_run_exactly_as_written(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    for (i, transactional) in [true, false].into_iter().enumerate() {
        let p = format!("s{i}_");
        let (script, statements, check, expected) = tricky_script(backend, &p);
        let body = json!({"name": p, "version": format!("{}", i + 1), "upScript": script,
            "transactional": transactional, "isActive": true});
        app.post("/api/v1/migrations", body)
            .await
            .assert_status(201);
        let plan = run(&app, json!({"dryRun": true})).await;
        plan.assert_status(200);
        let item = &plan.json["plan"][0];
        assert_eq!(
            item["statements"].as_array().map(Vec::len),
            Some(statements),
            "{item}"
        );
        let mode = if transactional {
            "transaction"
        } else {
            "statements"
        };
        assert_eq!(item["mode"], mode);
        run(&app, json!({})).await.assert_status(200);
        assert_eq!(
            answer(&app, check).await,
            expected,
            "transactional={transactional}"
        );
    }
}

/// Statement 2 of 3 fails, in a migration that runs without a transaction.
fn failing(backend: Backend) -> (String, bool, String) {
    match backend {
        // Detected: CONCURRENTLY cannot run in a transaction, so no flag is needed.
        Backend::Postgres => (
            "CREATE TABLE nd1 (a INT);\nCREATE INDEX CONCURRENTLY nd_i ON missing_tbl (a);\nCREATE TABLE nd2 (a INT);".into(),
            true,
            "CREATE INDEX CONCURRENTLY nd_i ON nd1 (a)".into(),
        ),
        _ => (
            "CREATE TABLE nd1 (a INT);\nINSERT INTO missing_tbl VALUES (1);\nCREATE TABLE nd2 (a INT);".into(),
            false,
            "INSERT INTO nd1 VALUES (1)".into(),
        ),
    }
}

async fn statement_by_statement_failure_is_dirty_until_resumed_or_resolved(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (script, transactional, fixed_second) = failing(backend);
    let body = json!({"name": "nt", "version": "1", "upScript": script, "transactional": transactional, "isActive": true});
    let id = app.post("/api/v1/migrations", body).await.json["id"]
        .as_str()
        .expect("id")
        .to_string();
    app.post("/api/v1/migrations", json!({"name": "after", "version": "2", "upScript": "CREATE TABLE nd_after (a INT)", "isActive": true}))
        .await
        .assert_status(201);
    let plan = run(&app, json!({"dryRun": true})).await;
    assert_eq!(plan.json["plan"][0]["mode"], "statements");
    assert!(plan.json["plan"][0]["reason"].is_string());
    let failed = run(&app, json!({})).await;
    failed.assert_error(422, "migration_failed");
    assert_eq!(failed.json["error"]["details"]["failed"]["dirty"], true);
    assert!(table_exists(&app, "nd1").await && !table_exists(&app, "nd2").await);
    let blocked = run(&app, json!({})).await;
    blocked.assert_error(409, "dirty");
    let msg = blocked.json["error"]["message"].as_str().expect("message");
    assert!(
        msg.contains("1 of 3 statements completed") && msg.contains("missing_tbl"),
        "{msg}"
    );
    let info = &blocked.json["error"]["details"]["migrations"][0]["dirtyInfo"];
    assert_eq!(
        (info["completed"].clone(), info["total"].clone()),
        (json!(1), json!(3))
    );
    assert!(
        info["failedStatement"]
            .as_str()
            .is_some_and(|s| s.contains("missing_tbl"))
    );
    assert_eq!(app.get("/api/v1/migrations/status").await.json["dirty"], 1);
    let validation = app.get("/api/v1/migrations/validate").await.json;
    assert_eq!(validation["errors"][0]["code"], "dirty");
    assert!(
        !table_exists(&app, "nd_after").await,
        "nothing ran past the dirty one"
    );

    // Changing a statement that already completed makes resume unsafe.
    let edited =
        format!("CREATE TABLE nd1 (a INT, b INT);\n{fixed_second};\nCREATE TABLE nd2 (a INT);");
    patch(&app, &id, json!({"upScript": edited}))
        .await
        .assert_status(200);
    app.post(&format!("/api/v1/migrations/{id}/resume"), Value::Null)
        .await
        .assert_error(409, "resume_unsafe");
    // Fixing the failed statement and resuming runs statements 2 and 3 only.
    let fixed = format!("CREATE TABLE nd1 (a INT);\n{fixed_second};\nCREATE TABLE nd2 (a INT);");
    patch(&app, &id, json!({"upScript": fixed}))
        .await
        .assert_status(200);
    let resumed = app
        .post(&format!("/api/v1/migrations/{id}/resume"), Value::Null)
        .await;
    resumed.assert_status(200);
    assert_eq!(resumed.json["applied"][0]["name"], "nt");
    let m = app.get(&format!("/api/v1/migrations/{id}")).await.json;
    assert_eq!(
        (m["isExecuted"].clone(), m["dirty"].clone()),
        (json!(true), json!(false))
    );
    assert!(table_exists(&app, "nd2").await);
    run(&app, json!({})).await.assert_status(200);
    assert!(table_exists(&app, "nd_after").await);

    // resolve: a second dirty migration declared applied by hand.
    let body = json!({"name": "nt2", "version": "3", "upScript": "CREATE TABLE nd3 (a INT);\nINSERT INTO missing_tbl VALUES (1);",
        "transactional": false, "isActive": true});
    let id2 = app.post("/api/v1/migrations", body).await.json["id"]
        .as_str()
        .expect("id")
        .to_string();
    run(&app, json!({}))
        .await
        .assert_error(422, "migration_failed");
    let resolved = app
        .post(
            &format!("/api/v1/migrations/{id2}/resolve"),
            json!({"state": "applied"}),
        )
        .await;
    resolved.assert_status(200);
    assert_eq!(
        (
            resolved.json["isExecuted"].clone(),
            resolved.json["dirty"].clone()
        ),
        (json!(true), json!(false))
    );
    assert_eq!(run(&app, json!({})).await.json["applied"], json!([]));
    app.post(&format!("/api/v1/migrations/{id2}/resume"), Value::Null)
        .await
        .assert_error(409, "not_dirty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_concurrent_index_reports_the_invalid_index_it_left() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let script = "CREATE TABLE dup (a INT);\nINSERT INTO dup VALUES (1), (1);\n\
                  CREATE UNIQUE INDEX CONCURRENTLY dup_a ON dup (a);";
    let body = json!({"name": "cic", "version": "1", "upScript": script, "isActive": true});
    let id = app.post("/api/v1/migrations", body).await.json["id"]
        .as_str()
        .expect("id")
        .to_string();
    run(&app, json!({}))
        .await
        .assert_error(422, "migration_failed");
    let m = app.get(&format!("/api/v1/migrations/{id}")).await.json;
    assert_eq!(
        m["dirtyInfo"]["invalidIndexes"],
        json!(["public.dup_a"]),
        "{m}"
    );
    let blocked = run(&app, json!({})).await;
    let msg = blocked.json["error"]["message"].as_str().expect("message");
    assert!(
        msg.contains("INVALID indexes") && msg.contains("public.dup_a"),
        "{msg}"
    );
}

/// PostgreSQL sends `BEGIN`, the script, the record statement and `COMMIT` as one query:
/// quotes and backslashes in names and scripts survive as literals, a script ending in a
/// comment without a newline still records, and a failure at `COMMIT` (a deferred
/// constraint) rolls back the script and is recorded like any other failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_one_query_run_keeps_quotes_comments_and_commit_failures() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let up = "CREATE TABLE bs (v TEXT);\nINSERT INTO bs VALUES (E'a\\\\b''c') -- it's \\ done";
    let down = "DROP TABLE bs -- it's \\ gone";
    let name = "it's a \\ name";
    let m = crate::migrations::create(&app, name, "1", up, Some(down)).await;
    run(&app, json!({})).await.assert_status(200);
    let v: String = sqlx::query("SELECT v FROM bs")
        .fetch_one(app.state.db.pool())
        .await
        .expect("row")
        .try_get("v")
        .expect("v");
    assert_eq!(v, "a\\b'c");
    let id = m["id"].as_str().expect("id");
    let got = app.get(&format!("/api/v1/migrations/{id}")).await.json;
    assert_eq!(got["isExecuted"], true, "{got}");
    assert_eq!(got["name"], name);
    let history = app
        .get(&format!("/api/v1/migrations/history?migrationId={id}"))
        .await
        .json;
    assert_eq!(history["items"][0]["migrationName"], name, "{history}");
    assert_eq!(history["items"][0]["success"], true);
    assert!(history["items"][0]["durationMs"].as_i64() >= Some(0));
    // The down script stored with the run is the one that rolls back.
    app.post("/api/v1/migrations/rollback", json!({}))
        .await
        .assert_status(200);
    assert!(!table_exists(&app, "bs").await);

    let deferred = "CREATE TABLE dp (id INT PRIMARY KEY);\n\
        CREATE TABLE dc (pid INT REFERENCES dp (id) DEFERRABLE INITIALLY DEFERRED);\n\
        INSERT INTO dc VALUES (1);";
    let bad = crate::migrations::create(&app, "deferred", "2", deferred, None).await;
    // The first migration applies again, then the second fails at COMMIT.
    let failed = run(&app, json!({})).await;
    failed.assert_error(422, "migration_failed");
    assert!(table_exists(&app, "bs").await);
    assert!(
        !table_exists(&app, "dp").await,
        "the script was rolled back"
    );
    let bad_id = bad["id"].as_str().expect("id");
    let got = app.get(&format!("/api/v1/migrations/{bad_id}")).await.json;
    assert_eq!(got["isExecuted"], false);
    assert!(
        got["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("foreign key")),
        "{got}"
    );
    // Nothing is left half-open: the fixed migration runs.
    patch_script(&app, bad_id).await;
    let again = run(&app, json!({})).await;
    again.assert_status(200);
    assert_eq!(again.json["applied"].as_array().map(Vec::len), Some(1));
    assert!(table_exists(&app, "dp").await);
}

async fn patch_script(app: &TestApp, id: &str) {
    patch(
        app,
        id,
        json!({"upScript": "CREATE TABLE dp (id INT PRIMARY KEY);"}),
    )
    .await
    .assert_status(200);
}

/// PostgreSQL runs migrations in groups that share a transaction (a savepoint each): a
/// failure in the middle of the second group keeps every migration before it, applied and
/// recorded, and rolls back only the failing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_group_commit_keeps_what_ran_before_a_failure() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    for i in 1..=100 {
        let up = if i == 70 {
            "CREATE TABLE g70 (a INT);\nINSERT INTO missing_table VALUES (1);".to_string()
        } else {
            format!("CREATE TABLE g{i} (a INT);\nCREATE INDEX g{i}_a ON g{i} (a);")
        };
        crate::migrations::create(&app, &format!("g{i}"), &i.to_string(), &up, None).await;
    }
    let r = run(&app, json!({})).await;
    r.assert_error(422, "migration_failed");
    let details = &r.json["error"]["details"];
    assert_eq!(details["applied"].as_array().map(Vec::len), Some(69));
    assert_eq!(details["failed"]["name"], "g70");
    assert_eq!(details["notAttempted"].as_array().map(Vec::len), Some(30));
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_name ~ '^g[0-9]+$' \
         AND table_schema = current_schema()",
    )
    .fetch_one(app.state.db.pool())
    .await
    .expect("count");
    assert_eq!(tables, 69, "g70 was rolled back, g1..g69 committed");
    let executed = app.get("/api/v1/migrations?limit=200").await.json;
    let items = executed["items"].as_array().expect("items");
    let done = items.iter().filter(|m| m["isExecuted"] == true).count();
    assert_eq!(done, 69, "records match the schema");
    let g70 = items.iter().find(|m| m["name"] == "g70").expect("g70");
    // The server's message and the script line it points at (not the line of
    // PostgreSQL's C source that sqlx's own text appends).
    assert_eq!(
        g70["lastError"], "relation \"missing_table\" does not exist (line 2 of the script)",
        "{g70}"
    );
}
