//! Rate limits: a token bucket per service key and per signed-in user.
//!
//! A bucket holds up to `burst` tokens and refills at `per_second`; each
//! authenticated request takes one. An empty bucket answers 429 with
//! `Retry-After` (the seconds until a token is back) before anything is
//! read or written, so a client that retries after a 429 loses nothing.
//! Buckets live in this process: with N instances behind a load balancer
//! the effective limit is up to N times the configured one.

use crate::{
    ApiError, AppState,
    config::env::{ConfigError, Env, parse_bool, parse_var},
};
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// One limit: tokens per second and bucket size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets kept before idle ones are dropped (a full bucket is the same
/// as no bucket, so dropping it changes nothing).
const MAX_BUCKETS: usize = 100_000;

/// Token buckets for one kind of caller, keyed by its id.
#[derive(Debug)]
pub struct Limiter {
    rate: Rate,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    pub fn new(rate: Rate) -> Limiter {
        Limiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key` at `now`; `Err(wait)` when none is left.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let Rate { per_second, burst } = self.rate;
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_second < burst
            });
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refilled = now.saturating_duration_since(bucket.at).as_secs_f64() * per_second;
        bucket.tokens = (bucket.tokens + refilled).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }
}

/// The limits of the service: `None` where limiting is off.
#[derive(Debug, Default)]
pub struct RateLimits {
    pub service_keys: Option<Limiter>,
    pub users: Option<Limiter>,
}

/// `RATE_LIMIT_*`: on by default in production, off in development.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitSettings {
    /// `RATE_LIMIT_ENABLED`.
    pub enabled: bool,
    /// `RATE_LIMIT_SERVICE_KEY_PER_SECOND` (default 100) and
    /// `RATE_LIMIT_SERVICE_KEY_BURST` (default 400): ingestion, OTLP and
    /// budget calls per service key.
    pub service_key: Rate,
    /// `RATE_LIMIT_USER_PER_SECOND` (default 5) and `RATE_LIMIT_USER_BURST`
    /// (default 30): analytics calls per signed-in user (admins included).
    pub user: Rate,
}

impl RateLimitSettings {
    pub fn from_env(env: &dyn Env, production: bool) -> Result<Self, ConfigError> {
        let rate = |per: &'static str, burst: &'static str, d: (f64, f64)| {
            let r = Rate {
                per_second: parse_var(env, per, d.0)?,
                burst: parse_var(env, burst, d.1)?,
            };
            if !(r.per_second > 0.0 && r.per_second.is_finite()) {
                return Err(ConfigError::new(per, "must be a number above 0"));
            }
            if !(r.burst >= 1.0 && r.burst.is_finite()) {
                return Err(ConfigError::new(burst, "must be at least 1"));
            }
            Ok(r)
        };
        Ok(RateLimitSettings {
            enabled: parse_bool(env, "RATE_LIMIT_ENABLED", production)?,
            service_key: rate(
                "RATE_LIMIT_SERVICE_KEY_PER_SECOND",
                "RATE_LIMIT_SERVICE_KEY_BURST",
                (100.0, 400.0),
            )?,
            user: rate(
                "RATE_LIMIT_USER_PER_SECOND",
                "RATE_LIMIT_USER_BURST",
                (5.0, 30.0),
            )?,
        })
    }

    /// The limiters these settings ask for.
    pub fn limiters(&self) -> RateLimits {
        if !self.enabled {
            return RateLimits::default();
        }
        RateLimits {
            service_keys: Some(Limiter::new(self.service_key)),
            users: Some(Limiter::new(self.user)),
        }
    }
}

/// Which limit a request is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    ServiceKey,
    User,
}

impl Caller {
    pub fn as_str(self) -> &'static str {
        match self {
            Caller::ServiceKey => "service_key",
            Caller::User => "user",
        }
    }
}

/// Takes a token for `key`, or answers 429 (counted in `/metrics`).
pub fn check(state: &AppState, caller: Caller, key: &str) -> Result<(), ApiError> {
    let limiter = match caller {
        Caller::ServiceKey => &state.limits.service_keys,
        Caller::User => &state.limits.users,
    };
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.take(key, Instant::now()).map_err(|wait| {
        state.metrics.observe_rate_limited(caller);
        let retry_after = wait.as_secs_f64().ceil().max(1.0) as u64;
        ApiError::TooManyRequests {
            message: format!(
                "rate limit reached for this {}; retry in {retry_after} s",
                match caller {
                    Caller::ServiceKey => "API key",
                    Caller::User => "user",
                }
            ),
            retry_after,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let limiter = Limiter::new(Rate {
            per_second: 2.0,
            burst: 3.0,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take("k", t0), Ok(()));
        }
        let wait = limiter.take("k", t0).err();
        assert_eq!(wait, Some(Duration::from_millis(500)));
        // Another key has its own bucket.
        assert_eq!(limiter.take("other", t0), Ok(()));
        // Half a second later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(limiter.take("k", t1), Ok(()));
        assert!(limiter.take("k", t1).is_err());
        // Idle long enough, the bucket is full again (never above its size).
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.take("k", t2), Ok(()));
        }
        assert!(limiter.take("k", t2).is_err());
    }
}
