//! Every drift state on every backend for every object type it has: edit the record's
//! script (changed), alter the object with SQL (drifted), both, drop it (missing), with a
//! unified diff; PostgreSQL overloads told apart; a by-hand identical redefinition (the
//! database's own rendering) is not drift.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp};
use crate::procedures::{SETUP, create, deploy_all, drift, exec, patch, state_of};

backend_tests!(
    every_drift_state_for_every_object_type,
    an_identical_redefinition_by_hand_is_not_drift,
);

/// One object type's scripts on one backend.
struct Case {
    ty: &'static str,
    /// The record's first script.
    v1: &'static str,
    /// An edit of the record's script (code change).
    v2: &'static str,
    /// An out-of-band change made directly in the database.
    alter: &'static str,
    /// Drops the object directly.
    drop: &'static str,
}

fn cases(backend: Backend) -> Vec<Case> {
    match backend {
        Backend::Sqlite => vec![
            Case {
                ty: "view",
                v1: "CREATE VIEW big_orders AS SELECT id FROM orders WHERE total > 100",
                v2: "CREATE VIEW big_orders AS SELECT id FROM orders WHERE total > 200",
                alter: "DROP VIEW big_orders; CREATE VIEW big_orders AS SELECT id FROM orders WHERE total > 500",
                drop: "DROP VIEW big_orders",
            },
            Case {
                ty: "trigger",
                v1: "CREATE TRIGGER orders_audit AFTER INSERT ON orders BEGIN INSERT INTO audit VALUES (NEW.id); END",
                v2: "CREATE TRIGGER orders_audit AFTER INSERT ON orders BEGIN INSERT INTO audit VALUES (NEW.id + 1); END",
                alter: "DROP TRIGGER orders_audit; CREATE TRIGGER orders_audit AFTER INSERT ON orders BEGIN INSERT INTO audit VALUES (0); END",
                drop: "DROP TRIGGER orders_audit",
            },
        ],
        Backend::Postgres => vec![
            Case {
                ty: "view",
                v1: "CREATE OR REPLACE VIEW big_orders AS SELECT id FROM orders WHERE total > 100",
                v2: "CREATE OR REPLACE VIEW big_orders AS SELECT id FROM orders WHERE total > 200",
                alter: "CREATE OR REPLACE VIEW big_orders AS SELECT id FROM orders WHERE total > 500",
                drop: "DROP VIEW big_orders",
            },
            Case {
                ty: "trigger",
                v1: "CREATE OR REPLACE FUNCTION audit_fn() RETURNS trigger LANGUAGE plpgsql AS $$\n\
                     BEGIN INSERT INTO audit VALUES (NEW.id); RETURN NEW; END $$;\n\
                     CREATE OR REPLACE TRIGGER orders_audit AFTER INSERT ON orders\n\
                     FOR EACH ROW EXECUTE FUNCTION audit_fn();",
                v2: "CREATE OR REPLACE FUNCTION audit_fn() RETURNS trigger LANGUAGE plpgsql AS $$\n\
                     BEGIN INSERT INTO audit VALUES (NEW.id + 1); RETURN NEW; END $$;\n\
                     CREATE OR REPLACE TRIGGER orders_audit AFTER INSERT ON orders\n\
                     FOR EACH ROW EXECUTE FUNCTION audit_fn();",
                alter: "CREATE OR REPLACE TRIGGER orders_audit BEFORE INSERT ON orders \
                        FOR EACH ROW EXECUTE FUNCTION audit_fn()",
                drop: "DROP TRIGGER orders_audit ON orders",
            },
            Case {
                ty: "function",
                v1: "CREATE OR REPLACE FUNCTION add_tax(x integer) RETURNS integer LANGUAGE sql AS $$ SELECT x * 2 $$",
                v2: "CREATE OR REPLACE FUNCTION add_tax(x integer) RETURNS integer LANGUAGE sql AS $$ SELECT x * 3 $$",
                alter: "CREATE OR REPLACE FUNCTION add_tax(x integer) RETURNS integer LANGUAGE sql AS $$ SELECT x * 9 $$",
                drop: "DROP FUNCTION add_tax(integer)",
            },
            Case {
                ty: "procedure",
                v1: "CREATE OR REPLACE PROCEDURE reset_audit() LANGUAGE sql AS $$ DELETE FROM audit $$",
                v2: "CREATE OR REPLACE PROCEDURE reset_audit() LANGUAGE sql AS $$ DELETE FROM audit WHERE n > 0 $$",
                alter: "CREATE OR REPLACE PROCEDURE reset_audit() LANGUAGE sql AS $$ DELETE FROM audit WHERE n < 0 $$",
                drop: "DROP PROCEDURE reset_audit()",
            },
        ],
        Backend::Mysql => vec![
            Case {
                ty: "view",
                v1: "CREATE OR REPLACE VIEW big_orders AS SELECT id FROM orders WHERE total > 100",
                v2: "CREATE OR REPLACE VIEW big_orders AS SELECT id FROM orders WHERE total > 200",
                alter: "CREATE OR REPLACE VIEW big_orders AS SELECT id FROM orders WHERE total > 500",
                drop: "DROP VIEW big_orders",
            },
            Case {
                ty: "trigger",
                v1: "CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW INSERT INTO audit VALUES (NEW.id)",
                v2: "CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW INSERT INTO audit VALUES (NEW.id + 1)",
                alter: "DROP TRIGGER orders_audit; CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW INSERT INTO audit VALUES (0)",
                drop: "DROP TRIGGER orders_audit",
            },
            Case {
                ty: "function",
                v1: "CREATE FUNCTION add_tax(x INT) RETURNS INT DETERMINISTIC RETURN x * 2",
                v2: "CREATE FUNCTION add_tax(x INT) RETURNS INT DETERMINISTIC RETURN x * 3",
                alter: "DROP FUNCTION add_tax; CREATE FUNCTION add_tax(x INT) RETURNS INT DETERMINISTIC RETURN x * 9",
                drop: "DROP FUNCTION add_tax",
            },
            Case {
                ty: "procedure",
                v1: "CREATE PROCEDURE reset_audit()\nBEGIN\n  DELETE FROM audit;\nEND",
                v2: "CREATE PROCEDURE reset_audit()\nBEGIN\n  DELETE FROM audit WHERE n > 0;\nEND",
                alter: "DROP PROCEDURE reset_audit; CREATE PROCEDURE reset_audit() BEGIN DELETE FROM audit WHERE n < 0; END",
                drop: "DROP PROCEDURE reset_audit",
            },
        ],
    }
}

async fn every_drift_state_for_every_object_type(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    exec(&app, SETUP).await;
    for c in cases(backend) {
        let name = format!("p_{}", c.ty);
        let p = create(&app, json!({"name": name, "upScript": c.v1})).await;
        assert_eq!(p["type"], c.ty, "type read from the CREATE");
        let hex: String = Sha256::digest(c.v1.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(p["hash"], hex, "hash is SHA-256 hex of upScript");
        let id = p["id"].as_str().expect("id").to_string();
        assert_eq!(state_of(&app, &name).await, "pending", "{}", c.ty);

        let report = deploy_all(&app).await;
        assert_eq!(report["deployed"][0]["name"], name.as_str(), "{report}");
        let got = app.get(&format!("/api/v1/procedures/{id}")).await;
        assert_eq!(got.json["isExecuted"], true);
        assert_eq!(got.json["deployedHash"], hex);
        assert!(
            got.json["catalogHash"]
                .as_str()
                .is_some_and(|h| h.len() == 64)
        );
        assert_eq!(state_of(&app, &name).await, "in_sync", "{}", c.ty);

        patch(&app, &id, json!({"upScript": c.v2}))
            .await
            .assert_status(200);
        assert_eq!(state_of(&app, &name).await, "changed", "{}", c.ty);

        exec(&app, c.alter).await;
        let (_, items) = drift(&app).await;
        assert_eq!(items[&name]["state"], "changed_and_drifted", "{}", c.ty);
        let diff = items[&name]["diff"].as_str().expect("a diff");
        assert!(
            diff.starts_with("--- deployed\n+++ live\n@@ ")
                && diff.contains("\n-")
                && diff.contains("\n+"),
            "{}: {diff}",
            c.ty
        );

        patch(&app, &id, json!({"upScript": c.v1}))
            .await
            .assert_status(200);
        assert_eq!(state_of(&app, &name).await, "drifted", "{}", c.ty);

        let again = app
            .post(&format!("/api/v1/procedures/{id}/deploy"), json!({}))
            .await;
        again.assert_status(200);
        assert_eq!(
            state_of(&app, &name).await,
            "in_sync",
            "redeploy restores {}",
            c.ty
        );

        exec(&app, c.drop).await;
        let (report, items) = drift(&app).await;
        assert_eq!(items[&name]["state"], "missing", "{}", c.ty);
        assert_eq!(report["inSync"], false);
        assert!(
            !items[&name]["missingObjects"]
                .as_array()
                .expect("list")
                .is_empty()
        );
        app.post(&format!("/api/v1/procedures/{id}/deploy"), json!({}))
            .await
            .assert_status(200);
        assert_eq!(state_of(&app, &name).await, "in_sync", "{}", c.ty);
    }
    let (report, _) = drift(&app).await;
    assert_eq!(report["inSync"], true, "{report}");
    if backend == Backend::Postgres {
        overloads_are_told_apart(&app).await;
    }
}

/// Two PostgreSQL functions with one name: altering one makes only its record drift.
async fn overloads_are_told_apart(app: &TestApp) {
    create(
        app,
        json!({"name": "area_int", "upScript":
            "CREATE OR REPLACE FUNCTION area(x integer) RETURNS integer LANGUAGE sql AS $$ SELECT x * x $$"}),
    )
    .await;
    create(
        app,
        json!({"name": "area_text", "upScript":
            "CREATE OR REPLACE FUNCTION area(x text) RETURNS integer LANGUAGE sql AS $$ SELECT length(x) $$"}),
    )
    .await;
    deploy_all(app).await;
    exec(
        app,
        "CREATE OR REPLACE FUNCTION area(x text) RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$",
    )
    .await;
    let (_, items) = drift(app).await;
    assert_eq!(items["area_int"]["state"], "in_sync");
    assert_eq!(items["area_text"]["state"], "drifted");
    exec(app, "DROP FUNCTION area(integer)").await;
    let (_, items) = drift(app).await;
    assert_eq!(items["area_int"]["state"], "missing");
    assert_eq!(items["area_text"]["state"], "drifted");
}

async fn an_identical_redefinition_by_hand_is_not_drift(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    exec(&app, SETUP).await;
    // Odd spacing and case: the database renders it its own way, and that is the baseline.
    let script = match backend {
        Backend::Sqlite => "create   view  v_total as select   SUM(total) AS t from orders",
        _ => "create  or replace   view  v_total as select   SUM(total) AS t from orders",
    };
    create(&app, json!({"name": "v_total", "upScript": script})).await;
    deploy_all(&app).await;
    assert_eq!(state_of(&app, "v_total").await, "in_sync");
    let by_hand = match backend {
        Backend::Sqlite => format!("DROP VIEW v_total; {script}"),
        _ => script.to_string(),
    };
    exec(&app, &by_hand).await;
    assert_eq!(state_of(&app, "v_total").await, "in_sync");
}
