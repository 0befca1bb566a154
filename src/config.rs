//! Effective configuration: command-line flag > `OPSHUB_*` environment variable >
//! `opshub.toml` (or the file named by `--config` / `OPSHUB_CONFIG`) > built-in default.
//!
//! Every setting is one row of [`SETTINGS`]; that table is the complete list of environment
//! variables opshub reads:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `OPSHUB_DATABASE_URL` | `sqlite://opshub.db` | database to manage and keep state in |
//! | `OPSHUB_LISTEN` | `127.0.0.1:8080` | HTTP listen address of `serve` |
//! | `OPSHUB_PG_SCHEMA` | `opshub` | PostgreSQL schema of opshub's own tables |
//! | `OPSHUB_MASTER_KEY` | — | base64 of 32 bytes; encrypts every secret at rest |
//! | `OPSHUB_MASTER_KEY_FILE` | — | file holding that base64 key |
//! | `OPSHUB_MASTER_KEY_PREVIOUS` | — | older keys (comma-separated base64), still accepted to decrypt during a rotation |
//! | `OPSHUB_ADMIN_TOKEN` | — | admin token to install on first start instead of a generated one |
//! | `OPSHUB_LOG` | `info` | log filter (`tracing` env-filter syntax) |
//! | `OPSHUB_LOG_FORMAT` | `text` | `text` or `json` |
//! | `OPSHUB_MAX_BODY_BYTES` | `1048576` | largest accepted API request body |
//! | `OPSHUB_REQUEST_TIMEOUT_SECS` | `30` | per-request time limit of the API |
//! | `OPSHUB_DB_POOL_SIZE` | `16` | database connections per process |
//! | `OPSHUB_WEBHOOK_ALLOW_PRIVATE` | `false` | let webhooks (and replays) target loopback/private addresses |
//! | `OPSHUB_WEBHOOK_TIMEOUT_SECS` | `15` | time limit of one delivery attempt |
//! | `OPSHUB_WEBHOOK_RETRY_SCHEDULE` | `5s,5m,30m,2h,5h,10h,10h` | delays between attempts (±20 % jitter) |
//! | `OPSHUB_WEBHOOK_DISABLE_AFTER_HOURS` | `120` | disable an endpoint failing continuously this long |
//! | `OPSHUB_WEBHOOK_CONCURRENCY` | `64` | deliveries in flight per process |
//! | `OPSHUB_WEBHOOK_WORKERS` | `4` | delivery loops per `serve` process (0: this instance only serves the API) |
//! | `OPSHUB_MIGRATION_LOCK_TIMEOUT_SECS` | `60` | how long a migration run waits for the migration lock |
//! | `OPSHUB_CONSOLE_SESSION_HOURS` | `12` | lifetime of a web console session |
//! | `OPSHUB_CONSOLE_SECURE_COOKIE` | `auto` | `Secure` session cookie: `auto` (when the request came over HTTPS, per `X-Forwarded-Proto`), `true` or `false` |
//! | `OPSHUB_CONFIG` | `opshub.toml` | the optional configuration file |
//!
//! The test harness also reads `OPSHUB_TEST_POSTGRES_URL` and `OPSHUB_TEST_MYSQL_URL`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::db::{Dialect, redact_url};

/// One configurable setting: its file key, environment variable and default.
pub struct Setting {
    pub key: &'static str,
    pub env: &'static str,
    pub default: Option<&'static str>,
    pub secret: bool,
}

const fn setting(key: &'static str, env: &'static str, default: Option<&'static str>) -> Setting {
    Setting {
        key,
        env,
        default,
        secret: false,
    }
}

pub const SETTINGS: &[Setting] = &[
    setting(
        "database_url",
        "OPSHUB_DATABASE_URL",
        Some("sqlite://opshub.db"),
    ),
    setting("listen", "OPSHUB_LISTEN", Some("127.0.0.1:8080")),
    setting("pg_schema", "OPSHUB_PG_SCHEMA", Some("opshub")),
    Setting {
        key: "master_key",
        env: "OPSHUB_MASTER_KEY",
        default: None,
        secret: true,
    },
    setting("master_key_file", "OPSHUB_MASTER_KEY_FILE", None),
    Setting {
        key: "master_key_previous",
        env: "OPSHUB_MASTER_KEY_PREVIOUS",
        default: None,
        secret: true,
    },
    Setting {
        key: "admin_token",
        env: "OPSHUB_ADMIN_TOKEN",
        default: None,
        secret: true,
    },
    setting("log", "OPSHUB_LOG", Some("info")),
    setting("log_format", "OPSHUB_LOG_FORMAT", Some("text")),
    setting("max_body_bytes", "OPSHUB_MAX_BODY_BYTES", Some("1048576")),
    setting(
        "request_timeout_secs",
        "OPSHUB_REQUEST_TIMEOUT_SECS",
        Some("30"),
    ),
    setting("db_pool_size", "OPSHUB_DB_POOL_SIZE", Some("16")),
    setting(
        "webhook_allow_private",
        "OPSHUB_WEBHOOK_ALLOW_PRIVATE",
        Some("false"),
    ),
    setting(
        "webhook_timeout_secs",
        "OPSHUB_WEBHOOK_TIMEOUT_SECS",
        Some("15"),
    ),
    setting(
        "webhook_retry_schedule",
        "OPSHUB_WEBHOOK_RETRY_SCHEDULE",
        Some("5s,5m,30m,2h,5h,10h,10h"),
    ),
    setting(
        "webhook_disable_after_hours",
        "OPSHUB_WEBHOOK_DISABLE_AFTER_HOURS",
        Some("120"),
    ),
    setting(
        "webhook_concurrency",
        "OPSHUB_WEBHOOK_CONCURRENCY",
        Some("64"),
    ),
    setting("webhook_workers", "OPSHUB_WEBHOOK_WORKERS", Some("4")),
    setting(
        "migration_lock_timeout_secs",
        "OPSHUB_MIGRATION_LOCK_TIMEOUT_SECS",
        Some("60"),
    ),
    setting(
        "console_session_hours",
        "OPSHUB_CONSOLE_SESSION_HOURS",
        Some("12"),
    ),
    setting(
        "console_secure_cookie",
        "OPSHUB_CONSOLE_SECURE_COOKIE",
        Some("auto"),
    ),
];

/// Variables that are not settings but are still opshub's (so not warned about).
const OTHER_KNOWN_ENV: &[&str] = &[
    "OPSHUB_CONFIG",
    "OPSHUB_TEST_POSTGRES_URL",
    "OPSHUB_TEST_MYSQL_URL",
];

/// Where a setting's effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Flag,
    Env,
    File,
    Default,
    Unset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The resolved configuration every command and the service run with.
#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    pub dialect: Dialect,
    pub listen: String,
    pub pg_schema: String,
    pub master_key: Option<String>,
    pub master_key_file: Option<PathBuf>,
    pub master_key_previous: Vec<String>,
    pub admin_token: Option<String>,
    pub log: String,
    pub log_format: LogFormat,
    pub max_body_bytes: usize,
    pub request_timeout_secs: u64,
    pub db_pool_size: u32,
    pub webhook_allow_private: bool,
    pub webhook_timeout_secs: u64,
    pub webhook_retry_schedule: crate::webhooks::retry::RetrySchedule,
    pub webhook_disable_after: std::time::Duration,
    pub webhook_concurrency: usize,
    pub webhook_workers: usize,
    pub migration_lock_timeout_secs: u64,
    pub console_session_hours: u32,
    /// `Secure` on the console's cookies: `None` = when the request came over HTTPS.
    pub console_secure_cookie: Option<bool>,
    /// Each setting's source, for `opshub config`.
    pub sources: BTreeMap<&'static str, Source>,
    /// Problems worth a warning once logging is up (unknown variables or file keys).
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.display_rows().into_iter().map(|(k, v, _)| (k, v)))
            .finish()
    }
}

/// Values given on the command line (each `None` when the flag was not used).
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub config_file: Option<PathBuf>,
    pub values: BTreeMap<&'static str, String>,
}

impl Config {
    /// Resolves the configuration from flags, the process environment and the file.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("OPSHUB_"))
            .collect();
        Config::resolve(flags, &env)
    }

    /// [`Config::load`] with an explicit environment, for tests.
    pub fn resolve(flags: &Flags, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let mut warnings = unknown_env_warnings(env);
        let file = read_file(flags, env, &mut warnings)?;
        let mut values = BTreeMap::new();
        let mut sources = BTreeMap::new();
        for s in SETTINGS {
            let (value, source) = if let Some(v) = flags.values.get(s.key) {
                (Some(v.clone()), Source::Flag)
            } else if let Some(v) = env.get(s.env).filter(|v| !v.is_empty()) {
                (Some(v.clone()), Source::Env)
            } else if let Some(v) = file.get(s.key) {
                (Some(v.clone()), Source::File)
            } else if let Some(d) = s.default {
                (Some(d.to_string()), Source::Default)
            } else {
                (None, Source::Unset)
            };
            sources.insert(s.key, source);
            if let Some(v) = value {
                values.insert(s.key, v);
            }
        }
        Config::from_values(values, sources, warnings)
    }

    fn from_values(
        mut v: BTreeMap<&'static str, String>,
        sources: BTreeMap<&'static str, Source>,
        warnings: Vec<String>,
    ) -> Result<Config, ConfigError> {
        let mut take = |k: &'static str| v.remove(k);
        let database_url = take("database_url").unwrap_or_default();
        let dialect = Dialect::from_url(&database_url).ok_or_else(|| {
            ConfigError::invalid(
                "database_url",
                "use sqlite://PATH, postgres://… or mysql://…",
            )
        })?;
        let pg_schema = take("pg_schema").unwrap_or_default();
        if !is_identifier(&pg_schema) {
            return Err(ConfigError::invalid(
                "pg_schema",
                "must match [a-z_][a-z0-9_]{0,62}",
            ));
        }
        let log_format = match take("log_format").as_deref() {
            Some("json") => LogFormat::Json,
            Some("text") | None => LogFormat::Text,
            Some(_) => return Err(ConfigError::invalid("log_format", "must be text or json")),
        };
        let listen = take("listen").unwrap_or_default();
        if listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::invalid(
                "listen",
                "must be HOST:PORT, e.g. 127.0.0.1:8080",
            ));
        }
        Ok(Config {
            database_url,
            dialect,
            listen,
            pg_schema,
            master_key: take("master_key"),
            master_key_file: take("master_key_file").map(PathBuf::from),
            master_key_previous: take("master_key_previous")
                .map(|v| {
                    v.split(',')
                        .map(|k| k.trim().to_string())
                        .filter(|k| !k.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            admin_token: take("admin_token"),
            log: take("log").unwrap_or_default(),
            log_format,
            max_body_bytes: parse_num(take("max_body_bytes"), "max_body_bytes", 1..=1 << 30)?,
            request_timeout_secs: parse_num(
                take("request_timeout_secs"),
                "request_timeout_secs",
                1..=3600,
            )?,
            db_pool_size: parse_num(take("db_pool_size"), "db_pool_size", 1..=1000)?,
            webhook_allow_private: parse_bool(
                take("webhook_allow_private"),
                "webhook_allow_private",
            )?,
            webhook_timeout_secs: parse_num(
                take("webhook_timeout_secs"),
                "webhook_timeout_secs",
                1..=300,
            )?,
            webhook_retry_schedule: crate::webhooks::retry::RetrySchedule::parse(
                &take("webhook_retry_schedule").unwrap_or_default(),
            )
            .map_err(|e| {
                ConfigError::invalid_owned("webhook_retry_schedule".into(), e.to_string())
            })?,
            webhook_disable_after: std::time::Duration::from_secs(
                3600 * parse_num::<u64>(
                    take("webhook_disable_after_hours"),
                    "webhook_disable_after_hours",
                    1..=24 * 365,
                )?,
            ),
            webhook_concurrency: parse_num(
                take("webhook_concurrency"),
                "webhook_concurrency",
                1..=4096,
            )?,
            webhook_workers: parse_num(take("webhook_workers"), "webhook_workers", 0..=64)?,
            migration_lock_timeout_secs: parse_num(
                take("migration_lock_timeout_secs"),
                "migration_lock_timeout_secs",
                0..=86_400,
            )?,
            console_session_hours: parse_num(
                take("console_session_hours"),
                "console_session_hours",
                1..=720,
            )?,
            console_secure_cookie: match take("console_secure_cookie").as_deref() {
                None | Some("auto") => None,
                v => Some(parse_bool(v.map(str::to_string), "console_secure_cookie")?),
            },
            sources,
            warnings,
        })
    }

    /// (key, value as shown, source) rows with secrets masked and URL passwords redacted.
    pub fn display_rows(&self) -> Vec<(&'static str, String, Source)> {
        let shown = |s: &Setting| -> String {
            let raw = match s.key {
                "database_url" => Some(redact_url(&self.database_url)),
                "listen" => Some(self.listen.clone()),
                "pg_schema" => Some(self.pg_schema.clone()),
                "master_key" => self.master_key.clone(),
                "master_key_file" => self
                    .master_key_file
                    .as_ref()
                    .map(|p| p.display().to_string()),
                "admin_token" => self.admin_token.clone(),
                "log" => Some(self.log.clone()),
                "log_format" => Some(format!("{:?}", self.log_format).to_lowercase()),
                "max_body_bytes" => Some(self.max_body_bytes.to_string()),
                "request_timeout_secs" => Some(self.request_timeout_secs.to_string()),
                "db_pool_size" => Some(self.db_pool_size.to_string()),
                "webhook_allow_private" => Some(self.webhook_allow_private.to_string()),
                "webhook_timeout_secs" => Some(self.webhook_timeout_secs.to_string()),
                "webhook_retry_schedule" => Some(self.webhook_retry_schedule.to_string()),
                "webhook_disable_after_hours" => {
                    Some((self.webhook_disable_after.as_secs() / 3600).to_string())
                }
                "webhook_concurrency" => Some(self.webhook_concurrency.to_string()),
                "webhook_workers" => Some(self.webhook_workers.to_string()),
                "migration_lock_timeout_secs" => Some(self.migration_lock_timeout_secs.to_string()),
                "console_session_hours" => Some(self.console_session_hours.to_string()),
                "console_secure_cookie" => Some(
                    self.console_secure_cookie
                        .map_or("auto".to_string(), |b| b.to_string()),
                ),
                _ => None,
            };
            match raw {
                None => String::new(),
                Some(_) if s.secret => "********".to_string(),
                Some(v) => v,
            }
        };
        SETTINGS
            .iter()
            .map(|s| {
                (
                    s.key,
                    shown(s),
                    self.sources.get(s.key).copied().unwrap_or(Source::Unset),
                )
            })
            .collect()
    }
}

fn unknown_env_warnings(env: &BTreeMap<String, String>) -> Vec<String> {
    env.keys()
        .filter(|k| k.starts_with("OPSHUB_"))
        .filter(|k| {
            !SETTINGS.iter().any(|s| s.env == k.as_str()) && !OTHER_KNOWN_ENV.contains(&k.as_str())
        })
        .map(|k| {
            format!("unknown environment variable {k} is ignored (see `opshub config --help`)")
        })
        .collect()
}

/// The file's settings as strings; a missing default file is fine, a missing named one is not.
fn read_file(
    flags: &Flags,
    env: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let named = flags
        .config_file
        .clone()
        .or_else(|| env.get("OPSHUB_CONFIG").map(PathBuf::from));
    let path = named
        .clone()
        .unwrap_or_else(|| PathBuf::from("opshub.toml"));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && named.is_none() => {
            return Ok(BTreeMap::new());
        }
        Err(e) => return Err(ConfigError::File(path, e.to_string())),
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::File(path.clone(), e.to_string()))?;
    let mut out = BTreeMap::new();
    for (k, v) in table {
        if !SETTINGS.iter().any(|s| s.key == k) {
            warnings.push(format!("unknown key {k} in {} is ignored", path.display()));
            continue;
        }
        let text = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(ConfigError::invalid_owned(
                    k,
                    format!("unsupported value {other:?}"),
                ));
            }
        };
        out.insert(k, text);
    }
    Ok(out)
}

fn parse_num<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    v: Option<String>,
    key: &'static str,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError> {
    let v = v.unwrap_or_default();
    match v.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ConfigError::invalid_owned(
            key.to_string(),
            format!(
                "{v:?} is not a number from {} to {}",
                range.start(),
                range.end()
            ),
        )),
    }
}

fn parse_bool(v: Option<String>, key: &'static str) -> Result<bool, ConfigError> {
    match v.unwrap_or_default().trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        other => Err(ConfigError::invalid_owned(
            key.to_string(),
            format!("{other:?} is not true or false"),
        )),
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && s.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid setting {key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("cannot read configuration file {0}: {1}")]
    File(PathBuf, String),
    #[error("{0}")]
    MasterKey(String),
}

impl ConfigError {
    fn invalid(key: &str, reason: &str) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_string(),
            reason: reason.to_string(),
        }
    }
    fn invalid_owned(key: String, reason: String) -> ConfigError {
        ConfigError::Invalid { key, reason }
    }
}

#[cfg(test)]
mod tests;
