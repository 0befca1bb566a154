//! The in-process cache of `isCached` keys: the rendered JSON body of a GET, so a hit costs
//! a map lookup and a reference-count increment. Entries expire after a safety TTL even if
//! an invalidation is lost; writers invalidate their own entries at once and other
//! instances' through `kv::watch`.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::body::Bytes;

/// How long an entry may be served without being re-read, whatever happens to
/// notifications.
pub const SAFETY_TTL: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Cached {
    pub body: Bytes,
    pub version: i64,
    at: Instant,
}

pub struct Cache {
    map: RwLock<HashMap<String, Cached>>,
    ttl: Duration,
}

impl Default for Cache {
    fn default() -> Cache {
        Cache {
            map: RwLock::default(),
            ttl: SAFETY_TTL,
        }
    }
}

impl Cache {
    pub fn get(&self, key: &str) -> Option<Cached> {
        let map = self.map.read().ok()?;
        map.get(key).filter(|c| c.at.elapsed() < self.ttl).cloned()
    }

    pub fn put(&self, key: &str, body: Bytes, version: i64) {
        if let Ok(mut map) = self.map.write() {
            // Bounded: configuration stores are small, but a runaway client must not grow
            // memory without limit.
            if map.len() >= 100_000 {
                map.clear();
            }
            map.insert(
                key.to_string(),
                Cached {
                    body,
                    version,
                    at: Instant::now(),
                },
            );
        }
    }

    pub fn invalidate(&self, key: &str) {
        if let Ok(mut map) = self.map.write() {
            map.remove(key);
        }
    }

    pub fn clear(&self) {
        if let Ok(mut map) = self.map.write() {
            map.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_until_invalidated_or_expired() {
        let c = Cache::default();
        c.put("a", Bytes::from_static(b"{}"), 3);
        assert_eq!(c.get("a").map(|h| h.version), Some(3));
        c.invalidate("a");
        assert!(c.get("a").is_none());
        let short = Cache {
            map: RwLock::default(),
            ttl: Duration::ZERO,
        };
        short.put("a", Bytes::from_static(b"{}"), 1);
        assert!(short.get("a").is_none(), "expired entries are not served");
    }
}
