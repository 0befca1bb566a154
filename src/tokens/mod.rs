//! API tokens: create, list, revoke, first-start bootstrap, and request authentication.
//! A presented token is hashed and looked up by hash, then the hashes are compared in
//! constant time; valid lookups are cached for a few seconds (a revocation reaches other
//! instances within that time, this one at once).

pub mod api;
pub mod cli;
pub mod model;
mod store;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sha2::Digest;
use subtle::ConstantTimeEq;

use crate::db::{Db, time};
use crate::error::{ApiError, ApiResult};
use crate::page::{Page, PageRequest};
use model::{CreatedToken, NewToken, Scope, Token};

const CACHE_TTL: Duration = Duration::from_secs(5);

/// Creates a token; the returned text is the only copy there will ever be.
pub async fn create(db: &Db, new: NewToken) -> ApiResult<CreatedToken> {
    new.validate()
        .map_err(|m| ApiError::unprocessable("invalid_token", m))?;
    let text = model::generate();
    let record = insert_token(db, new.name.trim(), new.scope, &text).await?;
    Ok(CreatedToken {
        record,
        token: text,
    })
}

async fn insert_token(db: &Db, name: &str, scope: Scope, text: &str) -> ApiResult<Token> {
    let record = Token {
        id: uuid::Uuid::now_v7().to_string(),
        name: name.to_string(),
        scope,
        prefix: model::prefix(text),
        created_at: time::now(),
        last_used_at: None,
        revoked_at: None,
    };
    store::insert(db, &record, &model::hash(text)).await?;
    Ok(record)
}

pub async fn list(db: &Db, page: PageRequest) -> ApiResult<Page<Token>> {
    let items = store::list(db, page.after.as_deref(), page.limit + 1).await?;
    Ok(Page::from_overfetch(items, page.limit, |t| t.id.clone()))
}

pub async fn get(db: &Db, id: &str) -> ApiResult<Token> {
    store::find(db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("token_not_found", format!("no token with id {id}")))
}

/// Revokes the active token with this id or name.
pub async fn revoke(db: &Db, auth: &Authenticator, id_or_name: &str) -> ApiResult<Token> {
    let found = store::find_active(db, id_or_name).await?;
    let token = match found.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(ApiError::not_found(
                "token_not_found",
                format!("no active token has id or name {id_or_name:?}"),
            ));
        }
        many => {
            let ids: Vec<&str> = many.iter().map(|t| t.id.as_str()).collect();
            return Err(ApiError::Conflict {
                code: "ambiguous_token_name",
                message: format!(
                    "{} active tokens are named {id_or_name:?}; revoke by id",
                    many.len()
                ),
                details: serde_json::json!({ "ids": ids }),
            });
        }
    };
    let now = time::now();
    store::revoke(db, &token.id, &now).await?;
    auth.forget_all();
    Ok(Token {
        revoked_at: Some(now),
        ..token
    })
}

/// First start: installs `supplied` (from `OPSHUB_ADMIN_TOKEN`) if it is not stored yet, or
/// creates and returns an admin token when the database never had one.
pub async fn bootstrap(db: &Db, supplied: Option<&str>) -> anyhow::Result<Option<String>> {
    if let Some(text) = supplied {
        anyhow::ensure!(
            text.len() >= model::MIN_SUPPLIED_LEN,
            "OPSHUB_ADMIN_TOKEN must be at least {} characters",
            model::MIN_SUPPLIED_LEN
        );
        let hash = model::hash(text);
        if store::find_by_hash(db, &hash).await?.is_none()
            && let Err(e) = insert_token(db, "admin (OPSHUB_ADMIN_TOKEN)", Scope::Admin, text).await
            // Several instances starting at once on a fresh database all try; one wins.
            && store::find_by_hash(db, &hash).await?.is_none()
        {
            anyhow::bail!("cannot store OPSHUB_ADMIN_TOKEN: {e}");
        }
        store::claim_bootstrap(db, &time::now()).await?;
        return Ok(None);
    }
    if store::count_active_admin(db).await? > 0 || !store::claim_bootstrap(db, &time::now()).await?
    {
        return Ok(None);
    }
    let text = model::generate();
    insert_token(db, "admin (first start)", Scope::Admin, &text)
        .await
        .map_err(|e| anyhow::anyhow!("cannot store the first admin token: {e}"))?;
    Ok(Some(text))
}

/// Resolves bearer tokens to their record, with a short-lived cache keyed by the token's
/// SHA-256 (raw bytes: no hex text on the hot path; read-locked, so requests do not queue).
#[derive(Default)]
pub struct Authenticator {
    cache: RwLock<TokenCache>,
}

/// Token digest → the token and when it was looked up.
type TokenCache = HashMap<[u8; 32], (Arc<Token>, Instant)>;

impl Authenticator {
    /// The active token `presented` stands for, or 401.
    pub async fn authenticate(&self, db: &Db, presented: &str) -> ApiResult<Arc<Token>> {
        let digest: [u8; 32] = sha2::Sha256::digest(presented.as_bytes()).into();
        if let Some(t) = self.cached(&digest) {
            return Ok(t);
        }
        let hash = hex::encode(digest);
        let invalid = || ApiError::Unauthorized("the token is not valid".into());
        let (token, stored_hash) = store::find_by_hash(db, &hash).await?.ok_or_else(invalid)?;
        // The lookup already matched; the constant-time compare keeps the final decision
        // free of early exits should the lookup ever become a prefix or range match.
        if !bool::from(stored_hash.as_bytes().ct_eq(hash.as_bytes())) || token.revoked_at.is_some()
        {
            return Err(invalid());
        }
        // Once per cache period, so a busy token does not write on every request.
        store::touch(db, &token.id, &time::now()).await?;
        let token = Arc::new(token);
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(digest, (token.clone(), Instant::now()));
        }
        Ok(token)
    }

    fn cached(&self, digest: &[u8; 32]) -> Option<Arc<Token>> {
        let cache = self.cache.read().ok()?;
        let (token, at) = cache.get(digest)?;
        (at.elapsed() < CACHE_TTL).then(|| token.clone())
    }

    /// Drops every cached token, after a revocation.
    pub fn forget_all(&self) {
        if let Ok(mut cache) = self.cache.write() {
            cache.clear();
        }
    }
}
