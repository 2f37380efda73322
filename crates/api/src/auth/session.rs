//! Caches that spare a dashboard's repeated calls an RSA verification and a
//! user query each time, without making either less exact.
//!
//! - [`TokenCache`]: session tokens that verified, keyed by the SHA-256 of
//!   the token (the token itself is never kept), each until the token's own
//!   `exp` (plus the configured leeway, as the verifier allows) and for at
//!   most [`TOKEN_TTL`]. An entry also records the JWKS generation it was
//!   verified under: when the key set changes (a key retired), every entry
//!   of the older set stops counting, so a token of a removed key is
//!   checked again, and refused.
//! - [`UserCache`]: the stored user behind a token's subject, for at most
//!   [`USER_TTL`]. A cached user is only used by reads that confirm it in
//!   their own statement (my-stats, the admin overview): when the stored row
//!   differs (time zone, e-mail, subject moved to another user, user gone),
//!   the request forgets the entry and starts again from the database.
//!
//! Both are bounded ([`MAX_ENTRIES`]): when full, expired entries go first,
//! then everything (a burst of new sessions costs one re-verification each).

use super::jwt::VerifiedToken;
use charlie_store::AuthUser;
use sha2::{Digest, Sha256};
use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Longest a verified token is trusted without a new signature check.
pub const TOKEN_TTL: Duration = Duration::from_secs(300);
/// Longest a user lookup is reused (and only where it is confirmed).
pub const USER_TTL: Duration = Duration::from_secs(300);
/// Entries per cache.
pub const MAX_ENTRIES: usize = 10_000;

/// A bounded map whose entries expire.
#[derive(Debug)]
struct Bounded<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> Bounded<K, V> {
    fn new(capacity: usize) -> Self {
        Bounded {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn get<Q: Eq + Hash + ?Sized>(&self, key: &Q, now: Instant) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let mut map = self.entries.lock().ok()?;
        match map.get(key) {
            Some((v, until)) if now < *until => Some(v.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    fn insert(&self, key: K, value: V, until: Instant, now: Instant) {
        let Ok(mut map) = self.entries.lock() else {
            return;
        };
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, (_, u)| now < *u);
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(key, (value, until));
    }

    fn remove<Q: Eq + Hash + ?Sized>(&self, key: &Q)
    where
        K: Borrow<Q>,
    {
        if let Ok(mut map) = self.entries.lock() {
            map.remove(key);
        }
    }

    fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// A verified token and the key-set generation it was verified under.
#[derive(Debug, Clone)]
struct Verified {
    token: Arc<VerifiedToken>,
    generation: u64,
    /// `exp + leeway`, in Unix seconds: accepted up to this second, as the
    /// verifier does.
    refuse_from: i64,
}

/// Tokens that verified (see the module documentation).
#[derive(Debug)]
pub struct TokenCache {
    map: Bounded<[u8; 32], Verified>,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::with_capacity(MAX_ENTRIES)
    }
}

impl TokenCache {
    pub fn with_capacity(capacity: usize) -> Self {
        TokenCache {
            map: Bounded::new(capacity),
        }
    }

    fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The token's claims if it verified under key-set `generation` and is
    /// not past `exp + leeway` at `unix_now`.
    pub fn get(&self, token: &str, generation: u64, unix_now: i64) -> Option<Arc<VerifiedToken>> {
        let key = Self::key(token);
        let hit = self.map.get(&key, Instant::now())?;
        if hit.generation != generation || unix_now > hit.refuse_from {
            self.map.remove(&key);
            return None;
        }
        Some(hit.token)
    }

    /// Remembers a token that just verified. `exp` is its `exp` claim;
    /// `leeway` the verifier's, in seconds. A token without a numeric `exp`
    /// is not kept.
    pub fn insert(&self, token: &str, verified: Arc<VerifiedToken>, generation: u64, leeway: u64) {
        let Some(exp) = verified.claim("exp").and_then(|v| {
            v.as_i64().or_else(|| {
                v.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.floor() as i64)
            })
        }) else {
            return;
        };
        let refuse_from = exp.saturating_add(i64::try_from(leeway).unwrap_or(i64::MAX));
        let now = Instant::now();
        self.map.insert(
            Self::key(token),
            Verified {
                token: verified,
                generation,
                refuse_from,
            },
            now + TOKEN_TTL,
            now,
        );
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Stored users by token subject (see the module documentation).
#[derive(Debug)]
pub struct UserCache {
    map: Bounded<String, AuthUser>,
}

impl Default for UserCache {
    fn default() -> Self {
        UserCache {
            map: Bounded::new(MAX_ENTRIES),
        }
    }
}

impl UserCache {
    pub fn get(&self, subject: &str) -> Option<AuthUser> {
        self.map.get(subject, Instant::now())
    }

    pub fn insert(&self, subject: &str, user: AuthUser) {
        let now = Instant::now();
        self.map
            .insert(subject.to_owned(), user, now + USER_TTL, now);
    }

    pub fn forget(&self, subject: &str) {
        self.map.remove(subject);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value, json};

    fn verified(exp: Value) -> Arc<VerifiedToken> {
        let mut claims = Map::new();
        claims.insert("sub".into(), json!("u1"));
        claims.insert("exp".into(), exp);
        Arc::new(VerifiedToken {
            subject: "u1".into(),
            claims,
        })
    }

    #[test]
    fn a_cached_token_counts_until_its_exp_plus_leeway_and_no_longer() {
        let cache = TokenCache::default();
        cache.insert("t", verified(json!(1_000)), 0, 30);
        assert!(cache.get("t", 0, 1_000).is_some());
        assert!(
            cache.get("t", 0, 1_030).is_some(),
            "the leeway's last second"
        );
        assert!(cache.get("t", 0, 1_031).is_none(), "expired");
        assert!(
            cache.get("t", 0, 1_000).is_none(),
            "an expired entry is dropped"
        );
        assert!(cache.get("other", 0, 1_000).is_none());
    }

    #[test]
    fn a_new_key_set_generation_drops_older_entries() {
        let cache = TokenCache::default();
        cache.insert("t", verified(json!(2_000)), 3, 0);
        assert!(cache.get("t", 3, 1_000).is_some());
        assert!(cache.get("t", 4, 1_000).is_none());
        assert!(cache.get("t", 3, 1_000).is_none(), "the entry is gone");
    }

    #[test]
    fn tokens_without_a_numeric_exp_are_not_kept() {
        let cache = TokenCache::default();
        cache.insert("t", verified(json!("soon")), 0, 0);
        assert!(cache.is_empty());
        cache.insert("f", verified(json!(1_500.9)), 0, 0);
        assert!(cache.get("f", 0, 1_500).is_some());
        assert!(cache.get("f", 0, 1_501).is_none());
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = TokenCache::with_capacity(100);
        for i in 0..1_000 {
            cache.insert(&format!("t{i}"), verified(json!(i64::MAX)), 0, 0);
            assert!(cache.len() <= 100, "{} entries", cache.len());
        }
        assert!(cache.get("t999", 0, 0).is_some(), "the newest is kept");
    }

    #[test]
    fn users_are_forgotten_on_demand() {
        let cache = UserCache::default();
        let user = AuthUser {
            id: uuid::Uuid::nil(),
            email: None,
            timezone: Some("Europe/Paris".into()),
        };
        cache.insert("s", user.clone());
        assert_eq!(cache.get("s"), Some(user));
        cache.forget("s");
        assert_eq!(cache.get("s"), None);
    }
}
