//! Application state and assembly, shared by `serve`, the CLI and the tests: open the
//! database, upgrade opshub's own tables, load the master key, bootstrap the first admin
//! token, build the router.

use std::ops::Deref;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::crypto::{self, Keyring, MasterKey};
use crate::db::{Db, DbOptions, Dialect};
use crate::metrics::Metrics;
use crate::tokens::Authenticator;

/// Everything a request handler or worker needs; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub db: Db,
    pub keys: Keyring,
    pub auth: Authenticator,
    pub metrics: Metrics,
    pub kv: crate::kv::Kv,
    pub webhooks: crate::webhooks::Webhooks,
    /// The webhook log's writer and source cache.
    pub webhook_log: crate::webhook_log::Runtime,
    pub shutdown: CancellationToken,
    /// Background loops, so shutdown can wait for in-flight work to finish.
    pub tasks: tokio_util::task::TaskTracker,
}

impl AppState {
    /// State over an opened database and keyring; background work is started separately
    /// (see [`App::build`]), so the CLI can use the same operations without it.
    pub fn new(config: Config, db: Db, keys: Keyring) -> AppState {
        let webhook_log = crate::webhook_log::Runtime::start(db.clone());
        AppState(Arc::new(Inner {
            webhook_log,
            db,
            keys,
            auth: Authenticator::default(),
            metrics: Metrics::default(),
            kv: crate::kv::Kv::default(),
            webhooks: crate::webhooks::Webhooks::new(&config),
            shutdown: CancellationToken::new(),
            tasks: tokio_util::task::TaskTracker::new(),
            config,
        }))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The built application: its state, router and OpenAPI document, plus the admin token
/// created on first start (to be shown once by the caller).
pub struct App {
    pub state: AppState,
    pub router: axum::Router,
    pub openapi: utoipa::openapi::OpenApi,
    pub first_admin_token: Option<String>,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let keys = load_keyring(&config)?;
        let db = open_db(&config).await?;
        let first_admin_token =
            crate::tokens::bootstrap(&db, config.admin_token.as_deref()).await?;
        let state = AppState::new(config, db, keys);
        crate::kv::watch::spawn(&state);
        for _ in 0..state.config.webhook_workers {
            state
                .tasks
                .spawn(crate::webhooks::worker::run(state.clone()));
        }
        let (router, openapi) = crate::http::router(state.clone());
        Ok(App {
            state,
            router,
            openapi,
            first_admin_token,
        })
    }
}

/// Connects and brings opshub's own tables up to date.
pub async fn open_db(config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect(&DbOptions {
        url: config.database_url.clone(),
        pg_schema: config.pg_schema.clone(),
        max_connections: config.db_pool_size,
    })
    .await?;
    crate::schema::upgrade(&db).await?;
    Ok(db)
}

/// The master keyring: `OPSHUB_MASTER_KEY`, plus `OPSHUB_MASTER_KEY_PREVIOUS` for reading
/// values written before a rotation. The current key comes from `OPSHUB_MASTER_KEY`, else `OPSHUB_MASTER_KEY_FILE`, else (SQLite only)
/// a key file generated beside the database. PostgreSQL and MySQL refuse to go on without
/// a configured key, since a generated one would differ per instance.
pub fn load_keyring(config: &Config) -> Result<Keyring, ConfigError> {
    let mut ring = current_key(config)?;
    for text in &config.master_key_previous {
        let key = MasterKey::from_base64(text)
            .map_err(|e| ConfigError::MasterKey(format!("OPSHUB_MASTER_KEY_PREVIOUS: {e}")))?;
        ring = ring.with_previous(key);
    }
    Ok(ring)
}

fn current_key(config: &Config) -> Result<Keyring, ConfigError> {
    let bad = |e: crypto::CryptoError| ConfigError::MasterKey(e.to_string());
    if let Some(text) = &config.master_key {
        return Ok(Keyring::new(MasterKey::from_base64(text).map_err(bad)?));
    }
    if let Some(path) = &config.master_key_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::MasterKey(format!(
                "cannot read OPSHUB_MASTER_KEY_FILE {}: {e}",
                path.display()
            ))
        })?;
        return Ok(Keyring::new(MasterKey::from_base64(&text).map_err(bad)?));
    }
    if config.dialect != Dialect::Sqlite {
        return Err(ConfigError::MasterKey(
            "a master key is required with PostgreSQL or MySQL: set OPSHUB_MASTER_KEY (base64 of 32 \
             random bytes, e.g. `openssl rand -base64 32`) or OPSHUB_MASTER_KEY_FILE, the same on every instance"
                .into(),
        ));
    }
    let Some(db_file) = crate::db::sqlite_path(&config.database_url) else {
        tracing::warn!(
            "in-memory SQLite and no master key: using a throw-away key for this process"
        );
        return Ok(Keyring::new(MasterKey::generate().0));
    };
    let path = crypto::key_file_beside(&db_file);
    let (key, created) = crypto::load_or_create_key_file(&path).map_err(bad)?;
    if created {
        tracing::warn!(
            path = %path.display(),
            "no master key configured: generated one beside the database (mode 0600); \
             back it up, since secrets cannot be read without it"
        );
    }
    Ok(Keyring::new(key))
}
