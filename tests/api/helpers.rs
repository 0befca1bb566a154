//! `TestApp`: the real application in-process on a loopback port, on a fresh database of
//! the chosen backend (a new SQLite file, or a PostgreSQL / MariaDB database created here
//! and dropped when the test ends). PostgreSQL and MariaDB come from
//! `OPSHUB_TEST_POSTGRES_URL` / `OPSHUB_TEST_MYSQL_URL`; without them a test skips with a
//! printed reason, unless `CI` is set, where a missing server is a failure.

use std::collections::BTreeMap;
use std::path::PathBuf;

use opshub::app::{App, AppState};
use opshub::config::{Config, Flags};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

/// Runs a test body once per backend: `backend_tests!(name_of_async_fn_taking_backend, …)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use $crate::helpers::Backend;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name(Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$name(Backend::Postgres).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mysql() { super::$name(Backend::Mysql).await }
        }
    )*};
}

/// A database made for one test and removed after it.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    dir: PathBuf,
    admin_url: Option<String>,
    name: String,
}

impl TestDb {
    /// A fresh database, or `None` (with the reason printed) when the backend is not
    /// configured on this machine. Panics in CI, where every backend must run.
    pub async fn create(backend: Backend) -> Option<TestDb> {
        // reqwest here has no bundled TLS provider (see webhooks::deliver); test clients too.
        opshub::webhooks::deliver::install_tls_provider();
        let dir =
            std::env::temp_dir().join(format!("opshub-test-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let name = format!("opshub_t_{}", uuid::Uuid::now_v7().simple());
        let var = match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.join("test.db").display());
                return Some(TestDb {
                    url,
                    backend,
                    dir,
                    admin_url: None,
                    name,
                });
            }
            Backend::Postgres => "OPSHUB_TEST_POSTGRES_URL",
            Backend::Mysql => "OPSHUB_TEST_MYSQL_URL",
        };
        let Some(admin_url) = std::env::var(var).ok().filter(|v| !v.is_empty()) else {
            assert!(
                std::env::var("CI").is_err(),
                "{var} must be set when CI is set: {backend:?} tests may not skip"
            );
            skip_notice(backend, var);
            return None;
        };
        admin_exec(&admin_url, &format!("CREATE DATABASE {name}")).await;
        let url = with_database(&admin_url, &name);
        Some(TestDb {
            url,
            backend,
            dir,
            admin_url: Some(admin_url),
            name,
        })
    }

    pub fn dir(&self) -> &PathBuf {
        &self.dir
    }
}

/// Says once per backend why its tests skip. Written to the stderr handle directly, since
/// libtest captures `eprintln!` of passing tests and the reason would never be seen.
fn skip_notice(backend: Backend, var: &str) {
    use std::io::Write;
    static SAID: std::sync::Mutex<Vec<Backend>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !said.contains(&backend) {
        said.push(backend);
        let _ = writeln!(
            std::io::stderr(),
            "note: {backend:?} tests skip: set {var} to run them"
        );
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
        let Some(admin) = self.admin_url.clone() else {
            return;
        };
        let sql = match self.backend {
            Backend::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            _ => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        // Drop runs inside the test's runtime, which cannot block on itself: use a thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(admin_exec(&admin, &sql));
        })
        .join();
    }
}

async fn admin_exec(admin_url: &str, sql: &str) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(admin_url)
        .await
        .expect("connect to the test server");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .expect("admin statement");
    conn.close().await.ok();
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// A fixed master key for tests (base64 of 32 bytes).
pub const TEST_MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Configuration for an app on `db`, with `extra` environment variables on top.
pub fn test_config(db: &TestDb, extra: &[(&str, &str)]) -> Config {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("OPSHUB_DATABASE_URL".into(), db.url.clone());
    env.insert("OPSHUB_MASTER_KEY".into(), TEST_MASTER_KEY.into());
    env.insert("OPSHUB_DB_POOL_SIZE".into(), "5".into());
    for (k, v) in extra {
        env.insert((*k).into(), (*v).into());
    }
    let empty = db.dir().join("empty.toml");
    std::fs::write(&empty, "").expect("config file");
    Config::resolve(
        &Flags {
            config_file: Some(empty),
            ..Flags::default()
        },
        &env,
    )
    .expect("test config is valid")
}

/// The application serving on a loopback port, with an admin token.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub admin_token: String,
    pub state: AppState,
    /// Held so the database lives as long as the app; also lets a test start a second
    /// instance on it.
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_with(backend, &[]).await
    }

    pub async fn spawn_with(backend: Backend, extra: &[(&str, &str)]) -> Option<TestApp> {
        let db = TestDb::create(backend).await?;
        let app = App::build(test_config(&db, extra))
            .await
            .expect("app builds");
        let admin_token = app
            .first_admin_token
            .clone()
            .expect("a fresh database bootstraps an admin token");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = app.state.shutdown.clone();
        let router = app.router;
        tokio::spawn(async move {
            opshub::http::serve(listener, router, stop)
                .await
                .expect("server runs");
        });
        Some(TestApp {
            base,
            client: reqwest::Client::new(),
            admin_token,
            state: app.state,
            db,
        })
    }

    /// A request to `path` carrying the admin token.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.admin_token)
    }

    pub async fn get(&self, path: &str) -> Resp {
        Resp::from(
            self.req(reqwest::Method::GET, path)
                .send()
                .await
                .expect("request sent"),
        )
        .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        Resp::from(
            self.req(reqwest::Method::POST, path)
                .json(&body)
                .send()
                .await
                .expect("request sent"),
        )
        .await
    }

    /// Creates a token of `scope` and returns its text.
    pub async fn token(&self, scope: &str) -> String {
        let r = self
            .post(
                "/api/v1/tokens",
                serde_json::json!({"name": format!("{scope} test"), "scope": scope}),
            )
            .await;
        r.assert_status(201);
        r.json["token"].as_str().expect("token text").to_string()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.state.shutdown.cancel();
    }
}

/// A response read whole: status, headers, body text and (when JSON) parsed body.
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Resp {
    pub async fn from(r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            json,
        }
    }

    pub fn assert_status(&self, expected: u16) -> &Resp {
        assert_eq!(
            self.status, expected,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// Asserts SPEC's error shape with this status and code.
    pub fn assert_error(&self, status: u16, code: &str) -> &Resp {
        self.assert_status(status);
        assert_eq!(self.json["error"]["code"], code, "body: {}", self.text);
        assert!(
            self.json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "message: {}",
            self.text
        );
        assert!(
            self.json["error"]["details"].is_object(),
            "details: {}",
            self.text
        );
        self
    }
}
