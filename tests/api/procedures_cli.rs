//! `opshub proc …` through the built binary on every backend: a folder of Flyway
//! repeatable scripts imported (twice, idempotently), deployed, checked for drift with
//! exit codes 0 and 5 and `--json`, a changed file read as `changed`, an object altered by
//! hand shown with a diff, and refusals with exit 2.

use std::process::{Command, Output};

use serde_json::Value;

use crate::backend_tests;
use crate::helpers::{Backend, TestDb, test_config};

const BIN: &str = env!("CARGO_BIN_EXE_opshub");

backend_tests!(imports_repeatables_deploys_and_reports_drift_with_exit_codes);

fn proc(db: &TestDb, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(db.dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("OPSHUB_DATABASE_URL", &db.url)
        .env("OPSHUB_LOG", "warn")
        .arg("proc")
        .args(args)
        .output()
        .expect("run opshub")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

/// (file, script) pairs of a repeatable folder for `backend`: a view and a trigger.
fn files(backend: Backend, total: u32) -> Vec<(&'static str, String)> {
    let view = match backend {
        Backend::Sqlite => {
            format!("CREATE VIEW big_orders AS SELECT id FROM orders WHERE total > {total};\n")
        }
        _ => format!(
            "CREATE OR REPLACE VIEW big_orders AS SELECT id FROM orders WHERE total > {total};\n"
        ),
    };
    let trigger = match backend {
        Backend::Sqlite => {
            "CREATE TRIGGER orders_audit AFTER INSERT ON orders\nBEGIN\n  INSERT INTO audit VALUES (NEW.id);\nEND;\n"
        }
        Backend::Mysql => {
            "DELIMITER //\nCREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW\nBEGIN\n  INSERT INTO audit VALUES (NEW.id);\nEND //\nDELIMITER ;\n"
        }
        Backend::Postgres => {
            "CREATE OR REPLACE FUNCTION audit_fn() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n  INSERT INTO audit VALUES (NEW.id);\n  RETURN NEW;\nEND $$;\n\nCREATE OR REPLACE TRIGGER orders_audit AFTER INSERT ON orders\n  FOR EACH ROW EXECUTE FUNCTION audit_fn();\n"
        }
    };
    vec![
        ("R__big_orders.sql", view),
        ("R__orders_audit.sql", trigger.to_string()),
    ]
}

async fn imports_repeatables_deploys_and_reports_drift_with_exit_codes(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let state = opshub::app::open_db(&test_config(&db, &[]))
        .await
        .expect("open");
    sqlx::raw_sql(
        "CREATE TABLE orders (id INT PRIMARY KEY, total INT); CREATE TABLE audit (n INT)",
    )
    .execute(state.pool())
    .await
    .expect("tables");
    let dir = db.dir().join("repeatables");
    std::fs::create_dir_all(&dir).expect("dir");
    for (f, s) in files(backend, 100) {
        std::fs::write(dir.join(f), s).expect("write");
    }
    let d = dir.to_str().expect("utf8");

    let first = proc(&db, &["import", d, "--json"]);
    assert_eq!(code(&first), 0, "{}", text(&first.stderr));
    assert_eq!(json(&first)["created"].as_array().map(Vec::len), Some(2));
    let again = json(&proc(&db, &["import", d, "--json"]));
    assert_eq!(
        (again["created"].clone(), again["unchanged"].clone()),
        (Value::Array(vec![]), 2.into())
    );

    let list = json(&proc(&db, &["list", "--json"]));
    let types: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["type"].as_str().expect("type"))
        .collect();
    assert_eq!(types, ["view", "trigger"], "type from the CREATE");

    let pending = proc(&db, &["drift"]);
    assert_eq!(code(&pending), 5, "pending is not in sync");
    let deploy = proc(&db, &["deploy"]);
    assert_eq!(code(&deploy), 0, "{}", text(&deploy.stderr));
    let clean = proc(&db, &["drift", "--json"]);
    assert_eq!(code(&clean), 0, "{}", text(&clean.stdout));
    assert_eq!(json(&clean)["inSync"], true);

    sqlx::raw_sql("INSERT INTO orders VALUES (7, 1)")
        .execute(state.pool())
        .await
        .expect("insert");
    let audited: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit")
        .fetch_one(state.pool())
        .await
        .expect("count");
    assert_eq!(audited, 1, "the deployed trigger fires");

    // A changed file: re-import updates the record, which now reads as changed.
    for (f, s) in files(backend, 250) {
        std::fs::write(dir.join(f), s).expect("write");
    }
    let updated = json(&proc(&db, &["import", d, "--json"]));
    assert_eq!(updated["updated"][0]["name"], "big_orders", "{updated}");
    let changed = proc(&db, &["drift", "--json"]);
    assert_eq!(code(&changed), 5);
    let report = json(&changed);
    assert_eq!(report["counts"]["changed"], 1, "{report}");
    assert_eq!(
        json(&proc(&db, &["deploy", "--dry-run", "--json"]))["plan"][0]["reason"],
        "changed"
    );
    assert_eq!(code(&proc(&db, &["deploy"])), 0);
    assert_eq!(code(&proc(&db, &["drift"])), 0);

    // Altered by hand: drifted, and the human report shows the diff.
    let by_hand = match backend {
        Backend::Sqlite => {
            "DROP VIEW big_orders; CREATE VIEW big_orders AS SELECT id FROM orders WHERE total > 999"
        }
        _ => "CREATE OR REPLACE VIEW big_orders AS SELECT id FROM orders WHERE total > 999",
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(by_hand.to_string()))
        .execute(state.pool())
        .await
        .expect("alter");
    let drifted = proc(&db, &["drift"]);
    assert_eq!(code(&drifted), 5);
    let out = text(&drifted.stdout);
    assert!(
        out.contains("drifted") && out.contains("--- deployed") && out.contains("999"),
        "{out}"
    );

    let refused = proc(&db, &["rollback", "big_orders"]);
    assert_eq!(
        code(&refused),
        2,
        "no downScript: {}",
        text(&refused.stderr)
    );
    assert!(text(&refused.stderr).contains("downScript"));
    let bad = proc(&db, &["create", "--name", "x", "--up", "SELECT 1"]);
    assert_eq!(code(&bad), 2);
    assert!(
        text(&bad.stderr).contains("CREATE"),
        "{}",
        text(&bad.stderr)
    );
    state.close().await;
}
