//! End to end through the built binary, as a user runs it: `serve` on a real port, the
//! first admin token on stdout, SIGTERM for a graceful stop, logs that never contain a
//! secret, `opshub config` masking, `token` commands, refusal to start without a key.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{Backend, TestDb};

pub const BIN: &str = env!("CARGO_BIN_EXE_opshub");
const MASTER_KEY: &str = "c2VjcmV0LW1hc3Rlci1rZXktZm9yLWUyZS10ZXN0cyE=";

pub fn opshub(db_url: &str, dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("OPSHUB_DATABASE_URL", db_url)
        .env("OPSHUB_MASTER_KEY", MASTER_KEY);
    cmd
}

/// Reads stdout until the token banner and stderr until the listening address.
fn wait_for_start(child: &mut Child) -> (String, String, std::thread::JoinHandle<String>) {
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let token = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.trim()
                .strip_prefix("opshub_")
                .map(|rest| format!("opshub_{rest}"))
        })
        .expect("the first admin token is printed on stdout");
    let stderr = child.stderr.take().expect("stderr");
    let mut reader = BufReader::new(stderr);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    let addr = loop {
        assert!(Instant::now() < deadline, "server did not start: {seen}");
        let mut line = String::new();
        if reader.read_line(&mut line).expect("read stderr") == 0 {
            panic!("server exited early: {seen}");
        }
        seen.push_str(&line);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if let Some(a) = v["addr"].as_str() {
            break a.to_string();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe; return all of it.
    let rest = std::thread::spawn(move || {
        let mut s = seen;
        reader.read_to_string(&mut s).ok();
        s
    });
    (token, addr, rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_token_once_stops_on_sigterm_and_never_logs_secrets() {
    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let mut child = opshub(&db.url, db.dir())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("OPSHUB_LOG", "debug")
        .env("OPSHUB_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn opshub");
    let (admin, addr, logs) = wait_for_start(&mut child);
    let client = reqwest::Client::new();
    let created: serde_json::Value = client
        .post(format!("http://{addr}/api/v1/tokens"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "e2e", "scope": "read"}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let read_token = created["token"].as_str().expect("token").to_string();
    let r = client
        .get(format!("http://{addr}/api/v1/tokens"))
        .bearer_auth(&read_token)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 403);
    let r = client
        .get(format!("http://{addr}/metrics"))
        .bearer_auth("opshub_wrong")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 401);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "graceful stop exits 0, got {exit:?}");
    let logs = logs.join().expect("logs");
    assert!(
        logs.contains("shutdown requested") && logs.contains("\"stopped\""),
        "{logs}"
    );
    for secret in [
        admin.as_str(),
        read_token.as_str(),
        MASTER_KEY,
        "opshub_wrong",
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
    assert!(
        logs.contains("request_id"),
        "requests are logged with their id"
    );

    // A second start on the same database prints no new token.
    let out = opshub(&db.url, db.dir())
        .args(["token", "list", "--json"])
        .output()
        .expect("run");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json list");
    assert_eq!(list.as_array().expect("array").len(), 2);
}

#[test]
fn token_commands_create_list_and_revoke() {
    let dir = std::env::temp_dir().join(format!("opshub-cli-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let url = format!("sqlite://{}", dir.join("cli.db").display());
    let out = opshub(&url, &dir)
        .args(["token", "create", "--name", "deploy", "--scope", "write"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string();
    assert!(token.starts_with("opshub_"));
    let list = opshub(&url, &dir)
        .args(["token", "list"])
        .output()
        .expect("run");
    let text = String::from_utf8(list.stdout).expect("utf8");
    assert!(
        text.contains("deploy") && text.contains("write") && !text.contains(&token),
        "{text}"
    );
    let bad = opshub(&url, &dir)
        .args(["token", "create", "--name", "x", "--scope", "root"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2), "bad scope is a usage error");
    let revoke = opshub(&url, &dir)
        .args(["token", "revoke", "deploy"])
        .output()
        .expect("run");
    assert!(revoke.status.success());
    let again = opshub(&url, &dir)
        .args(["token", "revoke", "deploy"])
        .output()
        .expect("run");
    assert_eq!(again.status.code(), Some(2), "unknown token is exit 2");
    assert!(String::from_utf8_lossy(&again.stderr).contains("no active token"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn config_masks_secrets_shows_sources_and_warns_about_unknown_variables() {
    let dir = std::env::temp_dir().join(format!("opshub-cfg-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("opshub.toml"), "log = \"warn\"\n").expect("toml");
    let out = opshub("postgres://app:pw-in-url@db.example/x", &dir)
        .args(["config", "--json", "--log-format", "json"])
        .env(
            "OPSHUB_ADMIN_TOKEN",
            "opshub_admin-token-value-abcdefghijkl",
        )
        .env("OPSHUB_LISTN", "typo")
        .output()
        .expect("run");
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    let stderr = String::from_utf8(out.stderr).expect("utf8");
    let cfg: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(cfg["master_key"]["value"], "********");
    assert_eq!(cfg["admin_token"]["value"], "********");
    assert_eq!(cfg["log"]["source"], "file");
    assert_eq!(cfg["log_format"]["source"], "flag");
    assert_eq!(cfg["database_url"]["source"], "env");
    assert_eq!(cfg["listen"]["source"], "default");
    for secret in [MASTER_KEY, "admin-token-value", "pw-in-url"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} leaked"
        );
    }
    assert!(
        stderr.contains("OPSHUB_LISTN"),
        "unknown variable warned about: {stderr}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn postgres_and_mysql_refuse_to_start_without_a_master_key() {
    for url in [
        "postgres://postgres@127.0.0.1:1/x",
        "mysql://root@127.0.0.1:1/x",
    ] {
        let out = Command::new(BIN)
            .env_clear()
            .env("OPSHUB_DATABASE_URL", url)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{url}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("master key is required") && err.contains("OPSHUB_MASTER_KEY"),
            "{err}"
        );
    }
}

#[test]
fn sqlite_without_a_key_generates_an_owner_only_key_file_with_a_warning() {
    let dir = std::env::temp_dir().join(format!("opshub-key-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    // No database URL and no key at all: the defaults a new user gets.
    let mut child = Command::new(BIN)
        .current_dir(&dir)
        .env_clear()
        .env("OPSHUB_LOG_FORMAT", "json")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (_, _, logs) = wait_for_start(&mut child);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(child.wait().expect("wait").success());
    let logs = logs.join().expect("logs");
    assert!(
        dir.join("opshub.db").exists(),
        "the default database is ./opshub.db"
    );
    let key = dir.join("opshub.db.key");
    assert!(key.exists());
    assert!(logs.contains("generated one beside the database"), "{logs}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).expect("meta").permissions().mode() & 0o777,
            0o600
        );
    }
    std::fs::remove_dir_all(dir).ok();
}
