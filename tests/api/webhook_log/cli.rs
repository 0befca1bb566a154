//! `opshub source` and `opshub log` through the built binary on SQLite: secrets read from
//! stdin and never printed, list/show --raw, prune with a checkpoint, verify's exit codes.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::crash::start;
use crate::binary::opshub;
use crate::helpers::{Backend, TestDb, test_config};

fn run(db: &TestDb, args: &[&str]) -> Output {
    opshub(&db.url, db.dir()).args(args).output().expect("run")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_and_log_commands_work_on_the_database() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let mut child = opshub(&db.url, db.dir())
        .args([
            "source",
            "create",
            "gh",
            "--verifier",
            "github",
            "--secret-stdin",
        ])
        .args(["--redact", "X-Token"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"cli-secret-777\n")
        .expect("write");
    let created = child.wait_with_output().expect("done");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let listed = run(&db, &["source", "list"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("gh") && text.contains("github") && text.contains("x-token"),
        "{text}"
    );
    assert!(!text.contains("cli-secret-777"));
    let bad = run(&db, &["source", "create", "x", "--verifier", "md5"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "unknown verifier is a usage error"
    );

    let (mut server, addr) = start(&db);
    let client = reqwest::Client::new();
    for body in [&b"one"[..], &[0u8, 159, 146, 150][..], &b"three"[..]] {
        let r = client
            .post(format!("http://{addr}/ingest/gh/x"))
            .body(body.to_vec())
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status(), 200);
    }
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill");
    server.wait().expect("stopped");

    let rows = json_of(&run(&db, &["log", "list", "--json", "--source", "gh"]));
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0]["signatureStatus"], "invalid",
        "unsigned requests are logged"
    );
    let binary_id = rows[1]["id"].as_str().expect("id");
    let raw = run(&db, &["log", "show", binary_id, "--raw"]);
    assert_eq!(raw.stdout, vec![0u8, 159, 146, 150], "exact bytes");
    let cut = rows[0]["receivedAt"].as_str().expect("ts").to_string();
    let pruned = json_of(&run(&db, &["log", "prune", "--before", &cut, "--json"]));
    assert_eq!(
        (
            pruned["prunedRows"].clone(),
            pruned["checkpointSeq"].clone()
        ),
        (2.into(), 2.into())
    );
    let ok = run(&db, &["log", "verify"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("chain intact"));

    let handle = opshub::app::open_db(&test_config(&db, &[]))
        .await
        .expect("db");
    for sql in [
        "DROP TRIGGER trg_opshub_webhook_log_no_update",
        "UPDATE opshub_webhook_log SET body = X'00' WHERE seq = 3",
    ] {
        sqlx::raw_sql(handle.sql(sql))
            .execute(handle.pool())
            .await
            .expect(sql);
    }
    handle.close().await;
    let broken = run(&db, &["log", "verify"]);
    assert_eq!(broken.status.code(), Some(4), "a broken chain is exit 4");
    let err = String::from_utf8_lossy(&broken.stderr);
    assert!(err.contains("seq 3"), "{err}");
}
