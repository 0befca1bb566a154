//! `opshub migrate …` through the built binary, as a user runs it: exit codes, folders in
//! each common layout imported and run on every backend (idempotently), three runners at
//! once applying 200 migrations exactly once, and a SIGKILLed lock holder that does not
//! block the next run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Row;

use crate::backend_tests;
use crate::helpers::{Backend, TestDb, test_config};

const BIN: &str = env!("CARGO_BIN_EXE_opshub");

backend_tests!(
    imports_and_runs_each_folder_layout_idempotently,
    three_runners_apply_two_hundred_migrations_exactly_once,
    a_sigkilled_holder_does_not_block_the_next_run,
    a_runner_that_waits_past_the_lock_timeout_exits_7_naming_the_holder,
);

fn opshub(db: &TestDb) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(db.dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("OPSHUB_DATABASE_URL", &db.url)
        .env("OPSHUB_LOG", "warn");
    cmd
}

fn migrate(db: &TestDb, args: &[&str]) -> Output {
    opshub(db)
        .arg("migrate")
        .args(args)
        .output()
        .expect("run opshub")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn fixture(layout: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/migrations")
        .join(layout)
}

async fn open(db: &TestDb) -> opshub::db::Db {
    opshub::app::open_db(&test_config(db, &[]))
        .await
        .expect("open")
}

async fn scalar(db: &opshub::db::Db, sql: &str) -> i64 {
    sqlx::query(db.sql_dynamic(sql))
        .fetch_one(db.pool())
        .await
        .expect(sql)
        .try_get(0)
        .expect("integer")
}

#[tokio::test]
async fn exit_codes_follow_the_spec() {
    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let new = |name: &str, version: &str, up: &str, extra: &[&str]| {
        let mut args = vec!["new", "--name", name, "--version", version, "--up", up];
        args.extend_from_slice(extra);
        migrate(&db, &args)
    };
    assert_eq!(
        code(&new(
            "a",
            "1",
            "CREATE TABLE a (x INT)",
            &["--down", "DROP TABLE a"]
        )),
        0
    );
    assert_eq!(
        code(&migrate(&db, &["status", "--check"])),
        3,
        "pending found by a check"
    );
    let plan = migrate(&db, &["up", "--dry-run"]);
    assert!(String::from_utf8_lossy(&plan.stdout).contains("CREATE TABLE a (x INT);"));
    let up = migrate(&db, &["up", "--json"]);
    assert_eq!(code(&up), 0, "{}", stderr(&up));
    assert_eq!(stdout_json(&up)["applied"][0]["name"], "a");
    assert_eq!(code(&migrate(&db, &["status", "--check"])), 0);
    assert_eq!(code(&new("a", "2", "SELECT 1", &[])), 2, "duplicate name");
    assert_eq!(code(&new("b", "1..2", "SELECT 1", &[])), 2, "bad version");
    assert_eq!(code(&new("b", "2", "", &[])), 2, "empty script");
    assert_eq!(
        code(&migrate(&db, &["resolve", "no-such-id", "--applied"])),
        2,
        "unknown id"
    );

    assert_eq!(
        code(&new("bad", "2", "INSERT INTO nope VALUES (1)", &[])),
        0
    );
    let failed = migrate(&db, &["up"]);
    assert_eq!(code(&failed), 1, "{}", stderr(&failed));
    assert!(
        stderr(&failed).contains("rolled back and stays pending"),
        "{}",
        stderr(&failed)
    );
    let list = stdout_json(&migrate(&db, &["list", "--json"]));
    let bad_id = list[1]["id"].as_str().expect("id").to_string();
    assert_eq!(code(&migrate(&db, &["resolve", &bad_id, "--applied"])), 0);

    assert_eq!(code(&new("zero", "0", "CREATE TABLE z (x INT)", &[])), 0);
    assert_eq!(code(&migrate(&db, &["up"])), 4, "out of order");
    assert_eq!(code(&migrate(&db, &["validate"])), 4);
    assert_eq!(code(&migrate(&db, &["up", "--out-of-order"])), 0);
    assert_eq!(code(&migrate(&db, &["validate"])), 0);

    let state = open(&db).await;
    sqlx::query(
        state.sql(
            "UPDATE opshub_migrations SET up_script = 'CREATE TABLE a (y INT)' WHERE name = 'a'",
        ),
    )
    .execute(state.pool())
    .await
    .expect("edit");
    let invalid = migrate(&db, &["validate", "--json"]);
    assert_eq!(code(&invalid), 4);
    assert_eq!(
        stdout_json(&invalid)["errors"][0]["code"],
        "checksum_mismatch"
    );

    let dirty = new(
        "dirty",
        "3",
        "CREATE TABLE d1 (x INT);\nINSERT INTO nope VALUES (1);",
        &["--no-transaction"],
    );
    assert_eq!(code(&dirty), 0);
    assert_eq!(
        code(&migrate(&db, &["up"])),
        6,
        "its own failure leaves it dirty"
    );
    let again = migrate(&db, &["up"]);
    assert_eq!(code(&again), 6, "a dirty migration blocks the run");
    assert!(
        stderr(&again).contains("1 of 2 statements completed"),
        "{}",
        stderr(&again)
    );
    assert_eq!(code(&migrate(&db, &["status"])), 6);

    let held =
        opshub::migrations::lock::MigrationLock::acquire(&state, "test-holder", Duration::ZERO)
            .await
            .expect("lock");
    let locked = migrate(&db, &["down", "--lock-timeout", "0"]);
    assert_eq!(code(&locked), 7, "{}", stderr(&locked));
    assert!(
        stderr(&locked).contains("test-holder"),
        "names the holder: {}",
        stderr(&locked)
    );
    held.release().await;
    state.close().await;
}

async fn imports_and_runs_each_folder_layout_idempotently(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let expected = [("flyway", 3, 1), ("golang", 3, 0), ("dbmate", 2, 0)];
    for (layout, migrations, repeatables) in expected {
        let dir = fixture(layout);
        let dir = dir.to_str().expect("utf8 path");
        let first = migrate(&db, &["import", dir, "--json"]);
        assert_eq!(code(&first), 0, "{layout}: {}", stderr(&first));
        let report = stdout_json(&first);
        assert_eq!(
            report["created"].as_array().map(Vec::len),
            Some(migrations),
            "{layout}: {report}"
        );
        assert_eq!(
            report["repeatables"]["created"].as_array().map(Vec::len),
            Some(repeatables),
            "R__ scripts become procedures: {report}"
        );
        let up = migrate(&db, &["up", "--dir", dir, "--json"]);
        assert_eq!(code(&up), 0, "{layout}: {}", stderr(&up));
        assert_eq!(
            stdout_json(&up)["applied"].as_array().map(Vec::len),
            Some(migrations),
            "{layout}"
        );
        let again = stdout_json(&migrate(&db, &["import", dir, "--json"]));
        assert_eq!(
            again["created"],
            serde_json::json!([]),
            "{layout}: importing twice changes nothing"
        );
        assert_eq!(again["updated"], serde_json::json!([]));
        assert_eq!(again["unchanged"], migrations);
    }
    let state = open(&db).await;
    assert_eq!(scalar(&state, "SELECT COUNT(*) FROM fw_users").await, 1);
    assert_eq!(
        scalar(&state, "SELECT COUNT(*) FROM fw_names").await,
        1,
        "up --dir deployed the repeatable view after the migrations"
    );
    assert_eq!(scalar(&state, "SELECT COUNT(*) FROM dm_notes").await, 1);
    let status = stdout_json(&migrate(&db, &["status", "--json"]));
    assert_eq!(
        (status["executed"].clone(), status["pending"].clone()),
        (8.into(), 0.into())
    );
    let down = migrate(&db, &["down", "--steps", "1", "--json"]);
    assert_eq!(code(&down), 0, "{}", stderr(&down));
    assert_eq!(
        scalar(&state, "SELECT COUNT(*) FROM dm_notes").await,
        0,
        "dbmate down section ran"
    );

    // A changed file of an executed migration is a validation failure; nothing is written.
    let changed = db.dir().join("changed");
    std::fs::create_dir_all(&changed).expect("dir");
    for f in [
        "000003_create_orders.up.sql",
        "000004_add_total.up.sql",
        "000010_create_items.up.sql",
    ] {
        std::fs::copy(fixture("golang").join(f), changed.join(f)).expect("copy");
    }
    std::fs::write(
        changed.join("000004_add_total.up.sql"),
        "ALTER TABLE gm_orders ADD grand_total INT;\n",
    )
    .expect("edit");
    std::fs::write(
        changed.join("000020_more.up.sql"),
        "CREATE TABLE gm_more (id INT);\n",
    )
    .expect("new file");
    let refused = migrate(&db, &["import", changed.to_str().expect("utf8")]);
    assert_eq!(code(&refused), 4, "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("already executed"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        scalar(
            &state,
            "SELECT COUNT(*) FROM opshub_migrations WHERE name = '000020_more'"
        )
        .await,
        0
    );
    state.close().await;
}

async fn three_runners_apply_two_hundred_migrations_exactly_once(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let dir = db.dir().join("many");
    std::fs::create_dir_all(&dir).expect("dir");
    for i in 1..=200 {
        // On PostgreSQL every tenth runs CREATE INDEX CONCURRENTLY (statement by statement)
        // while the other runners poll for the lock: waiting must not block it.
        let concurrently = if backend == Backend::Postgres && i % 10 == 0 {
            "CONCURRENTLY "
        } else {
            ""
        };
        let sql = format!(
            "CREATE TABLE many_{i} (a INT);\nCREATE INDEX {concurrently}many_{i}_a ON many_{i} (a);\n"
        );
        std::fs::write(dir.join(format!("{i:04}_table_{i}.up.sql")), sql).expect("write");
    }
    let dir = dir.to_str().expect("utf8").to_string();
    let children: Vec<_> = (0..3)
        .map(|_| {
            opshub(&db)
                .args([
                    "migrate",
                    "up",
                    "--dir",
                    &dir,
                    "--json",
                    "--lock-timeout",
                    "300",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut applied = 0;
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert_eq!(code(&out), 0, "every runner succeeds: {}", stderr(&out));
        applied += stdout_json(&out)["applied"].as_array().map_or(0, Vec::len);
    }
    assert_eq!(
        applied, 200,
        "the runners together applied each migration once"
    );
    let state = open(&db).await;
    let ups =
        "SELECT COUNT(*) FROM opshub_migration_history WHERE direction = 'up' AND success = 1";
    assert_eq!(scalar(&state, ups).await, 200);
    let distinct = "SELECT COUNT(DISTINCT migration_id) FROM opshub_migration_history";
    assert_eq!(scalar(&state, distinct).await, 200);
    assert_eq!(
        scalar(
            &state,
            "SELECT COUNT(*) FROM opshub_migrations WHERE is_executed = 1"
        )
        .await,
        200
    );
    state.close().await;
}

fn slow_script(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "SELECT pg_sleep(120)",
        Backend::Mysql => "SELECT SLEEP(120)",
        // Unbounded recursion: runs until the process dies.
        Backend::Sqlite => {
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c WHERE x < 0"
        }
    }
}

async fn a_sigkilled_holder_does_not_block_the_next_run(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let made = migrate(
        &db,
        &[
            "new",
            "--name",
            "slow",
            "--version",
            "1",
            "--up",
            slow_script(backend),
        ],
    );
    assert_eq!(code(&made), 0, "{}", stderr(&made));
    let mut holder = opshub(&db)
        .args(["migrate", "up"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let state = open(&db).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Wait until the runner holds the lock (its holder row is written once it does).
    while scalar(&state, "SELECT COUNT(*) FROM opshub_migration_lock").await == 0 {
        assert!(Instant::now() < deadline, "the runner never took the lock");
        assert!(
            holder.try_wait().expect("poll").is_none(),
            "the runner exited early"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    holder.kill().expect("SIGKILL");
    holder.wait().expect("reaped");
    sqlx::query(state.sql("UPDATE opshub_migrations SET up_script = 'CREATE TABLE after_kill (a INT)' WHERE name = 'slow'"))
        .execute(state.pool())
        .await
        .expect("make it fast");
    // The lease is 30 s; the next run waits at most 10 s and must get through.
    let next = migrate(&db, &["up", "--lock-timeout", "10", "--json"]);
    assert_eq!(code(&next), 0, "{}", stderr(&next));
    assert_eq!(stdout_json(&next)["applied"][0]["name"], "slow");
    assert_eq!(scalar(&state, "SELECT COUNT(*) FROM after_kill").await, 0);
    state.close().await;
}

async fn a_runner_that_waits_past_the_lock_timeout_exits_7_naming_the_holder(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let made = migrate(
        &db,
        &[
            "new",
            "--name",
            "w",
            "--version",
            "1",
            "--up",
            "CREATE TABLE waited (a INT)",
        ],
    );
    assert_eq!(code(&made), 0, "{}", stderr(&made));
    let state = open(&db).await;
    let held = opshub::migrations::lock::MigrationLock::acquire(&state, "deploy-7", Duration::ZERO)
        .await
        .expect("lock");
    let waited = migrate(&db, &["up", "--lock-timeout", "1"]);
    assert_eq!(code(&waited), 7, "{}", stderr(&waited));
    let err = stderr(&waited);
    assert!(
        err.contains("deploy-7") && err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    held.release().await;
    assert_eq!(code(&migrate(&db, &["up", "--lock-timeout", "1"])), 0);
    assert_eq!(scalar(&state, "SELECT COUNT(*) FROM waited").await, 0);
    state.close().await;
}
