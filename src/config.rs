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
//! | `OPSHUB_ADMIN_TOKEN` | — | admin token to install on first start instead of a generated one |
//! | `OPSHUB_LOG` | `info` | log filter (`tracing` env-filter syntax) |
//! | `OPSHUB_LOG_FORMAT` | `text` | `text` or `json` |
//! | `OPSHUB_MAX_BODY_BYTES` | `1048576` | largest accepted API request body |
//! | `OPSHUB_REQUEST_TIMEOUT_SECS` | `30` | per-request time limit of the API |
//! | `OPSHUB_DB_POOL_SIZE` | `16` | database connections per process |
//! | `OPSHUB_WEBHOOK_ALLOW_PRIVATE` | `false` | let replays (and outbound webhooks) reach private, loopback and link-local addresses |
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
    pub admin_token: Option<String>,
    pub log: String,
    pub log_format: LogFormat,
    pub max_body_bytes: usize,
    /// Outbound calls to user-given URLs may reach private addresses (tests, closed networks).
    pub webhook_allow_private: bool,
    pub request_timeout_secs: u64,
    pub db_pool_size: u32,
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

fn parse_bool(v: Option<String>, key: &'static str) -> Result<bool, ConfigError> {
    match v.as_deref().map(str::trim) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(_) => Err(ConfigError::invalid(key, "must be true or false")),
    }
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
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn no_file() -> Flags {
        Flags {
            config_file: Some(PathBuf::from("/nonexistent/opshub.toml")),
            ..Flags::default()
        }
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let dir = std::env::temp_dir().join(format!("opshub-cfg-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let file = dir.join("opshub.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1\"\nlog = \"debug\"\ndb_pool_size = 3\n",
        )
        .expect("write");
        let mut flags = Flags {
            config_file: Some(file),
            ..Flags::default()
        };
        flags.values.insert("listen", "127.0.0.1:3".into());
        let e = env(&[("OPSHUB_LISTEN", "127.0.0.1:2"), ("OPSHUB_LOG", "warn")]);
        let c = Config::resolve(&flags, &e).expect("valid");
        assert_eq!(
            (c.listen.as_str(), c.sources["listen"]),
            ("127.0.0.1:3", Source::Flag)
        );
        assert_eq!((c.log.as_str(), c.sources["log"]), ("warn", Source::Env));
        assert_eq!(
            (c.db_pool_size, c.sources["db_pool_size"]),
            (3, Source::File)
        );
        assert_eq!(c.sources["pg_schema"], Source::Default);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn warns_about_unknown_opshub_variables() {
        let c = Config::resolve(&Flags::default(), &env(&[("OPSHUB_LISTN", "x")])).expect("valid");
        assert!(c.warnings.iter().any(|w| w.contains("OPSHUB_LISTN")));
    }

    #[test]
    fn masks_secrets_and_url_passwords() {
        let e = env(&[
            ("OPSHUB_MASTER_KEY", "c2VjcmV0"),
            ("OPSHUB_ADMIN_TOKEN", "opshub_abc"),
            ("OPSHUB_DATABASE_URL", "postgres://u:pw@h/db"),
        ]);
        let c = Config::resolve(&no_file(), &e);
        assert!(c.is_err(), "a named but missing config file is an error");
        let c = Config::resolve(&Flags::default(), &e).expect("valid");
        let shown = format!("{:?}", c.display_rows());
        assert!(
            !shown.contains("c2VjcmV0") && !shown.contains("opshub_abc") && !shown.contains("pw@")
        );
        assert!(shown.contains("********"));
    }

    #[test]
    fn rejects_bad_values_naming_the_setting() {
        for (k, v) in [
            ("OPSHUB_DATABASE_URL", "redis://x"),
            ("OPSHUB_LISTEN", "nowhere"),
            ("OPSHUB_MAX_BODY_BYTES", "-1"),
            ("OPSHUB_PG_SCHEMA", "x\"; drop"),
            ("OPSHUB_LOG_FORMAT", "xml"),
        ] {
            let err = Config::resolve(&Flags::default(), &env(&[(k, v)])).expect_err(k);
            assert!(err.to_string().contains("invalid setting"), "{k}: {err}");
        }
    }
}
