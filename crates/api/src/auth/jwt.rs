//! Verification of end users' session tokens: Clerk-compatible RS256 JWTs.
//!
//! Keys come from a JWKS endpoint (cached; refetched, within a rate limit,
//! when a token names an unknown `kid`, so key rotation works), from one PEM
//! public key, and, in development only, from the committed demo key that
//! `charlie-dev demo` signs its tokens with.
//!
//! Only RS256 is accepted. The algorithm comes from our configuration, never
//! from the token: a token saying `none`, or HS256 "signed" with the public
//! key as an HMAC secret, is refused before any key is touched.

use super::keys::{RsaKey, demo_key};
use crate::config::{AppEnv, Settings};
use jsonwebtoken::{
    Algorithm, EncodingKey, Header, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, Jwk, PublicKeyUse},
};
use serde_json::{Map, Value};
use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::{Mutex, RwLock};

/// The `kid` of the development key.
pub const DEMO_KEY_ID: &str = "charlie-stats-demo";
/// The development key pair, committed on purpose: it is public, so tokens
/// signed with it prove nothing, and the server accepts them only when
/// `APP_ENV=development`.
const DEMO_PRIVATE_PEM: &str = include_str!("../../dev-keys/demo-private.pem");

/// Refetches of the JWKS allowed in a burst, and how often one more is
/// allowed after that. A flood of tokens with made-up `kid`s costs the JWKS
/// host at most this.
const JWKS_REFETCH_BURST: f64 = 3.0;
const JWKS_REFETCH_EVERY: Duration = Duration::from_secs(20);
/// Keys older than this are refreshed on the next request (still rate
/// limited; the old keys stay in use when the refresh fails).
const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
/// Time limit and size limit of one JWKS fetch.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
const JWKS_MAX_BYTES: usize = 256 * 1024;
/// Longest token looked at; Clerk's are about 1 kB.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token was refused. Every variant is a 401 except `KeysUnavailable`
/// (503: we could not fetch any key to check it with).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "missing session token: send `Authorization: Bearer <token>` or the `__session` cookie"
    )]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token algorithm `{0}` is not accepted: only RS256 is")]
    Algorithm(String),
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token is signed with an unknown key (kid `{0}`)")]
    UnknownKey(String),
    #[error("the token is signed with the development key, accepted only when APP_ENV=development")]
    DemoKeyRefused,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token's issuer is not accepted")]
    Issuer,
    #[error("the token's audience is not accepted")]
    Audience,
    #[error("the token lacks the `{0}` claim")]
    MissingClaim(String),
    #[error("the token's `{0}` claim is invalid")]
    InvalidClaim(String),
    #[error("cannot fetch the signing keys: {0}")]
    KeysUnavailable(String),
}

impl From<AuthError> for crate::ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::KeysUnavailable(_) => {
                tracing::warn!(error = %e, "session token not checked");
                crate::ApiError::Unavailable(
                    "the signing keys of session tokens cannot be fetched; try again shortly"
                        .into(),
                )
            }
            other => crate::ApiError::Unauthorized(other.to_string()),
        }
    }
}

/// The claims of a verified token.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// `sub`: the user's `external_id`.
    pub subject: String,
    /// Every claim, for the e-mail and role claims.
    pub claims: Map<String, Value>,
}

impl VerifiedToken {
    /// The value at `path`: the claim named exactly `path` if there is one
    /// (claim names such as `https://example.com/role` contain dots), else
    /// the dotted path through nested objects (`public_metadata.role`).
    pub fn claim(&self, path: &str) -> Option<&Value> {
        if let Some(v) = self.claims.get(path) {
            return Some(v);
        }
        let mut parts = path.split('.');
        let mut current = self.claims.get(parts.next()?)?;
        for part in parts {
            current = current.as_object()?.get(part)?;
        }
        Some(current)
    }

    /// The string at `path`, trimmed, if non-empty.
    pub fn claim_str(&self, path: &str) -> Option<&str> {
        self.claim(path)?
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// Whether the claim at `path` is `role`, or a list holding it.
    pub fn has_role(&self, path: &str, role: &str) -> bool {
        match self.claim(path) {
            Some(Value::String(s)) => s.trim() == role,
            Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(role)),
            _ => false,
        }
    }
}

/// Signs a token with the development key (RS256, `kid` [`DEMO_KEY_ID`]),
/// for `charlie-dev demo` and tests. The server accepts it only in
/// development.
pub fn sign_demo_token(claims: &Value) -> Result<String, String> {
    let key = EncodingKey::from_rsa_pem(DEMO_PRIVATE_PEM.as_bytes())
        .map_err(|e| format!("the development key cannot be read: {e}"))?;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(DEMO_KEY_ID.to_owned());
    jsonwebtoken::encode(&header, claims, &key).map_err(|e| format!("cannot sign: {e}"))
}

/// The JWKS cache.
struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: RwLock<KeyCache>,
    /// Held while fetching, so that concurrent misses fetch once; also holds
    /// the rate limiter.
    fetch: Mutex<Bucket>,
    /// Moduli refused in this environment (the development key in production).
    refused: Vec<Vec<u8>>,
    /// Bumped whenever a fetch changes the key set: cached verifications
    /// made under another generation no longer count.
    generation: AtomicU64,
}

/// Keys by `kid`, and when they were fetched (`None`: never).
type KeyCache = (HashMap<String, RsaKey>, Option<Instant>);

/// A token bucket: `tokens` refetches available now.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let regained = now.duration_since(self.at).as_secs_f64() / JWKS_REFETCH_EVERY.as_secs_f64();
        self.tokens = (self.tokens + regained).min(JWKS_REFETCH_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// The keys that may have signed a token with this `kid` (without one:
    /// every key of the set). Fetches the set when the cache is empty,
    /// stale, or lacks the `kid`, within the rate limit; when the limit is
    /// reached or the fetch fails, answers from the cache.
    async fn lookup(&self, kid: Option<&str>) -> Result<Vec<RsaKey>, AuthError> {
        let pick = |keys: &HashMap<String, RsaKey>| -> Vec<RsaKey> {
            match kid {
                Some(kid) => keys.get(kid).cloned().into_iter().collect(),
                None => keys.values().cloned().collect(),
            }
        };
        let cached = |cache: &KeyCache| -> Option<Vec<RsaKey>> {
            let fresh = cache.1.is_some_and(|t| t.elapsed() < JWKS_MAX_AGE);
            let found = pick(&cache.0);
            (fresh && !found.is_empty()).then_some(found)
        };
        if let Some(found) = cached(&*self.keys.read().await) {
            return Ok(found);
        }
        let mut bucket = self.fetch.lock().await;
        // Another request may have fetched while this one waited.
        let (stale, ever_fetched) = {
            let cache = self.keys.read().await;
            if let Some(found) = cached(&cache) {
                return Ok(found);
            }
            (pick(&cache.0), cache.1.is_some())
        };
        if !bucket.take() {
            tracing::debug!(?kid, "JWKS refetch rate limit reached");
            return if ever_fetched {
                Ok(stale)
            } else {
                Err(AuthError::KeysUnavailable(
                    "earlier fetches failed; retrying later".into(),
                ))
            };
        }
        match self.download().await {
            Ok(keys) => {
                let found = pick(&keys);
                let mut cache = self.keys.write().await;
                let changed = cache.0.len() != keys.len()
                    || keys.iter().any(|(kid, k)| {
                        cache.0.get(kid).is_none_or(|old| old.modulus != k.modulus)
                    });
                if changed {
                    self.generation.fetch_add(1, Ordering::SeqCst);
                }
                *cache = (keys, Some(Instant::now()));
                Ok(found)
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "cannot fetch the JWKS");
                if ever_fetched {
                    Ok(stale)
                } else {
                    Err(AuthError::KeysUnavailable(e))
                }
            }
        }
    }

    /// Fetches and reads the key set: RSA signing keys with a `kid`; others
    /// are skipped, one bad key does not spoil the set.
    async fn download(&self) -> Result<HashMap<String, RsaKey>, String> {
        let mut resp = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > JWKS_MAX_BYTES {
                return Err(format!("larger than {JWKS_MAX_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let doc: Value = serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
        let items = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("no `keys` array")?;
        let mut keys = HashMap::new();
        for item in items {
            let Ok(jwk) = serde_json::from_value::<Jwk>(item.clone()) else {
                continue;
            };
            let (Some(kid), AlgorithmParameters::RSA(rsa)) = (&jwk.common.key_id, &jwk.algorithm)
            else {
                continue;
            };
            let for_signing = !matches!(
                jwk.common.public_key_use,
                Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
            );
            let rs256 = jwk
                .common
                .key_algorithm
                .is_none_or(|a| a == jsonwebtoken::jwk::KeyAlgorithm::RS256);
            if !for_signing || !rs256 {
                continue;
            }
            match RsaKey::from_components(&rsa.n, &rsa.e) {
                Ok(key) if self.refused.contains(&key.modulus) => {
                    tracing::warn!(
                        kid,
                        "the JWKS serves the development key; ignored in production"
                    );
                }
                Ok(key) => {
                    keys.insert(kid.clone(), key);
                }
                Err(e) => tracing::warn!(kid, error = %e, "JWKS key skipped"),
            }
        }
        tracing::info!(url = %self.url, keys = keys.len(), "fetched the JWKS");
        Ok(keys)
    }
}

/// Verifies session tokens and decides who is an admin. Built once at
/// start-up from [`Settings`]; shared by every request.
#[derive(Debug)]
pub struct Authenticator {
    validation: Validation,
    jwks: Option<Jwks>,
    pem_key: Option<RsaKey>,
    /// The development key, in development only.
    demo: Option<RsaKey>,
    email_claim: String,
    role_claim: String,
    admin_role: String,
    admin_emails: Vec<String>,
    leeway: u64,
    /// Tokens that verified (`session.rs`).
    tokens: super::session::TokenCache,
    /// Stored users by subject, for reads that confirm them (`session.rs`).
    pub(crate) users: super::session::UserCache,
}

impl Authenticator {
    /// Reads the key sources of `settings` (the JWKS itself is fetched on
    /// the first request).
    pub fn new(settings: &Settings) -> Result<Authenticator, String> {
        let auth = &settings.auth;
        let development = settings.app_env == AppEnv::Development;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = auth.leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &auth.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if auth.audience.is_empty() {
            // Clerk's session tokens carry no `aud` unless configured; with
            // none configured, any `aud` is accepted.
            validation.validate_aud = false;
        } else {
            validation.set_audience(&auth.audience);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        let demo_modulus = demo_key()
            .map_err(|e| format!("the development key cannot be read: {e}"))?
            .modulus;
        let pem_key = auth
            .public_key_pem
            .as_deref()
            .map(RsaKey::from_pem)
            .transpose()
            .map_err(|e| format!("invalid configuration: AUTH_PUBLIC_KEY_PEM: {e}"))?;
        if !development && pem_key.as_ref().is_some_and(|k| k.modulus == demo_modulus) {
            return Err("invalid configuration: AUTH_PUBLIC_KEY_PEM: this is the development key, refused when APP_ENV=production".into());
        }
        let jwks = match &auth.jwks_url {
            None => None,
            Some(url) => Some(Jwks {
                url: url.clone(),
                client: reqwest::Client::builder()
                    .timeout(JWKS_TIMEOUT)
                    .user_agent(concat!("charlie-stats/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| format!("cannot build the JWKS client: {e}"))?,
                keys: RwLock::new((HashMap::new(), None)),
                fetch: Mutex::new(Bucket {
                    tokens: JWKS_REFETCH_BURST,
                    at: Instant::now(),
                }),
                refused: if development {
                    Vec::new()
                } else {
                    vec![demo_modulus]
                },
                generation: AtomicU64::new(0),
            }),
        };
        let demo = if development { Some(demo_key()?) } else { None };
        Ok(Authenticator {
            validation,
            jwks,
            pem_key,
            demo,
            email_claim: auth.email_claim.clone(),
            role_claim: auth.role_claim.clone(),
            admin_role: auth.admin_role.clone(),
            admin_emails: settings.admin_emails.clone(),
            leeway: auth.leeway_seconds,
            tokens: super::session::TokenCache::default(),
            users: super::session::UserCache::default(),
        })
    }

    /// The JWKS generation cached verifications must match (0 without a JWKS).
    fn key_generation(&self) -> u64 {
        self.jwks
            .as_ref()
            .map_or(0, |j| j.generation.load(Ordering::SeqCst))
    }

    /// Checks a token, from the cache of tokens that verified when it holds
    /// this one (same key set, not past `exp` + leeway), else fully (see
    /// [`Authenticator::verify_uncached`]), remembering a success.
    pub async fn verify(&self, token: &str) -> Result<Arc<VerifiedToken>, AuthError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let generation = self.key_generation();
        if let Some(hit) = self.tokens.get(token, generation, now) {
            return Ok(hit);
        }
        let verified = Arc::new(self.verify_uncached(token).await?);
        // The generation read before verifying: a key set that changed in
        // between makes this entry stale at once, never wrongly fresh.
        self.tokens
            .insert(token, verified.clone(), generation, self.leeway);
        Ok(verified)
    }

    /// Checks a token: shape, algorithm, signature, then the claims.
    pub async fn verify_uncached(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed("too long".into()));
        }
        if token.split('.').count() != 3 {
            return Err(AuthError::Malformed(
                "a JWT has three dot-separated parts".into(),
            ));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::Json(_) => AuthError::Malformed(
                "unreadable header or unsupported algorithm (only RS256 is accepted)".into(),
            ),
            _ => AuthError::Malformed("unreadable header".into()),
        })?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.as_deref();
        if kid == Some(DEMO_KEY_ID) {
            let demo = self.demo.as_ref().ok_or(AuthError::DemoKeyRefused)?;
            return self.check(token, demo);
        }
        // Static keys first: they need no lookup.
        for key in self.pem_key.iter().chain(self.demo.iter()) {
            match self.check(token, key) {
                Err(AuthError::BadSignature) => continue,
                other => return other,
            }
        }
        if let Some(jwks) = &self.jwks {
            let keys = jwks.lookup(kid).await?;
            if let (true, Some(kid)) = (keys.is_empty(), kid) {
                // The kid is the caller's text: echo a bounded part of it.
                return Err(AuthError::UnknownKey(kid.chars().take(64).collect()));
            }
            for key in &keys {
                match self.check(token, key) {
                    Err(AuthError::BadSignature) => continue,
                    other => return other,
                }
            }
        }
        Err(AuthError::BadSignature)
    }

    /// Verifies the signature with `key`, then the claims.
    fn check(&self, token: &str, key: &RsaKey) -> Result<VerifiedToken, AuthError> {
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &self.validation)
            .map_err(|e| match e.into_kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidIssuer => AuthError::Issuer,
                ErrorKind::InvalidAudience => AuthError::Audience,
                ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(c),
                ErrorKind::InvalidClaimFormat(c) => AuthError::InvalidClaim(c),
                ErrorKind::InvalidAlgorithm => AuthError::Algorithm("?".into()),
                ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                    AuthError::Malformed("unreadable claims or signature".into())
                }
                other => AuthError::Malformed(format!("{other:?}")),
            })?;
        let subject = match data.claims.get("sub") {
            Some(Value::String(s))
                if !s.trim().is_empty()
                    && s.chars().count() <= charlie_store::MAX_EXTERNAL_ID_CHARS =>
            {
                s.clone()
            }
            _ => return Err(AuthError::InvalidClaim("sub".into())),
        };
        Ok(VerifiedToken {
            subject,
            claims: data.claims,
        })
    }

    /// The e-mail address the token carries (`AUTH_EMAIL_CLAIM`).
    pub fn email<'t>(&self, token: &'t VerifiedToken) -> Option<&'t str> {
        token.claim_str(&self.email_claim)
    }

    /// Admin: `email` is in `ADMIN_EMAILS` (case-insensitive), or the role
    /// claim holds the admin role.
    pub fn is_admin(&self, token: &VerifiedToken, email: Option<&str>) -> bool {
        let by_email = email.is_some_and(|e| {
            let e = e.trim().to_ascii_lowercase();
            self.admin_emails.contains(&e)
        });
        by_email || token.has_role(&self.role_claim, &self.admin_role)
    }
}
