//! opshub's own tables: created and upgraded automatically, identical on every backend,
//! safe to upgrade from several processes at once, SQLite tuned for concurrency.

use opshub::schema;
use sqlx::Row;

use crate::backend_tests;
use crate::helpers::{Backend, TestDb, test_config};

backend_tests!(concurrent_upgrades_apply_each_step_once);

async fn concurrent_upgrades_apply_each_step_once(backend: Backend) {
    let Some(tdb) = TestDb::create(backend).await else {
        return;
    };
    let config = test_config(&tdb, &[]);
    let runs = (0..3).map(|_| {
        let c = config.clone();
        async move { opshub::app::open_db(&c).await }
    });
    let dbs = futures_join_all(runs).await;
    let db = dbs.into_iter().next().expect("one");
    let rows = sqlx::query(db.sql(
        "SELECT version FROM opshub_schema_version WHERE component = 'core' ORDER BY version",
    ))
    .fetch_all(db.pool())
    .await
    .expect("versions");
    let versions: Vec<i64> = rows
        .iter()
        .map(|r| r.try_get("version").expect("v"))
        .collect();
    assert_eq!(
        versions,
        (1..=schema::latest_version("core")).collect::<Vec<_>>()
    );
}

async fn futures_join_all<
    F: std::future::Future<Output = anyhow::Result<opshub::db::Db>> + Send + 'static,
>(
    futs: impl Iterator<Item = F>,
) -> Vec<opshub::db::Db> {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task").expect("upgrade succeeds"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_ends_with_the_same_tables_and_columns() {
    let mut described = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres, Backend::Mysql] {
        let Some(tdb) = TestDb::create(backend).await else {
            continue;
        };
        let db = opshub::app::open_db(&test_config(&tdb, &[]))
            .await
            .expect("opens");
        described.push((backend, schema::describe(&db).await.expect("describe")));
        db.close().await;
    }
    let (_, reference) = &described[0];
    assert!(
        reference
            .iter()
            .any(|(t, c)| t == "opshub_tokens" && c == "token_hash"),
        "{reference:?}"
    );
    for (backend, cols) in &described[1..] {
        assert_eq!(cols, reference, "{backend:?} differs from SQLite");
    }
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode_with_busy_timeout_and_foreign_keys() {
    let Some(tdb) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let db = opshub::app::open_db(&test_config(&tdb, &[]))
        .await
        .expect("opens");
    let mut conn = db.pool().acquire().await.expect("conn");
    let one = |sql: &'static str| sqlx::query(sql);
    let mode: String = one("PRAGMA journal_mode")
        .fetch_one(&mut *conn)
        .await
        .expect("pragma")
        .get(0);
    let fk: i64 = one("PRAGMA foreign_keys")
        .fetch_one(&mut *conn)
        .await
        .expect("pragma")
        .get(0);
    let busy: i64 = one("PRAGMA busy_timeout")
        .fetch_one(&mut *conn)
        .await
        .expect("pragma")
        .get(0);
    assert_eq!((mode.as_str(), fk), ("wal", 1));
    assert!(busy >= 5000, "busy timeout {busy}");
}

#[tokio::test]
async fn refuses_a_database_upgraded_by_a_newer_opshub() {
    let Some(tdb) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let config = test_config(&tdb, &[]);
    let db = opshub::app::open_db(&config).await.expect("opens");
    sqlx::query(db.sql(
        "INSERT INTO opshub_schema_version (component, version, applied_at) VALUES ('core', ?, ?)",
    ))
    .bind(schema::latest_version("core") + 1)
    .bind("2099-01-01T00:00:00.000000Z")
    .execute(db.pool())
    .await
    .expect("insert");
    let err = opshub::app::open_db(&config).await.expect_err("too new");
    assert!(err.to_string().contains("newer than this binary"), "{err}");
}
