//! End-user authentication: every way a session token can be refused,
//! the key sources (PEM, JWKS with rotation and a refetch rate limit, the
//! development key), cookie auth, admins, first-sight users and CORS.

use crate::helpers::{TestApp, Vars, json, spawn_app_with};
use actix_web::{App, HttpResponse, HttpServer, test as actix_test, web};
use charlie_api::{
    AppState, Settings,
    auth::{AdminUser, Authenticator, CurrentUser},
    config::Env,
};
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{Jwk, PublicKeyUse},
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::{
    collections::HashMap,
    net::TcpListener,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

const A_PRIVATE: &str = include_str!("../keys/test-a-private.pem");
const A_PUBLIC: &str = include_str!("../keys/test-a-public.pem");
const B_PRIVATE: &str = include_str!("../keys/test-b-private.pem");
const OTHER_PRIVATE: &str = include_str!("../keys/test-other-private.pem");
const DEMO_PUBLIC: &str = include_str!("../../dev-keys/demo-public.pem");

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Valid claims for `sub`: issued now, expiring in ten minutes.
fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iat": now(), "nbf": now(), "exp": now() + 600})
}

fn sign(private_pem: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    let key = EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// Unpadded base64url, to forge tokens the library would refuse to make.
fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn pem_vars() -> Vars {
    HashMap::from([("AUTH_PUBLIC_KEY_PEM", A_PUBLIC.to_owned())])
}

async fn me_with(app: &TestApp, token: &str) -> (StatusCode, Value) {
    app.get_as("/api/v1/analytics/me", token).await
}

/// Asserts a 401 with the JSON error body and `WWW-Authenticate`, and that
/// the message mentions `needle`.
async fn assert_unauthorized(app: &TestApp, token: &str, needle: &str) {
    let resp = app
        .client
        .get(app.url("/api/v1/analytics/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "token {token}");
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let body = json(resp).await;
    assert_eq!(body["code"], "unauthorized", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.to_lowercase().contains(needle),
        "`{message}` should mention `{needle}`"
    );
}

#[tokio::test]
async fn a_valid_token_identifies_the_user() {
    let app = spawn_app_with(pem_vars()).await;
    let (status, body) = me_with(&app, &sign(A_PRIVATE, None, &claims("user_1"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["user_id"]
            .as_str()
            .unwrap()
            .parse::<uuid::Uuid>()
            .is_ok()
    );
    assert_eq!(body["email"], Value::Null);
    assert_eq!(body["is_admin"], false);
}

#[tokio::test]
async fn a_missing_token_is_401() {
    let app = spawn_app_with(pem_vars()).await;
    let resp = app.get("/api/v1/analytics/me").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let body = json(resp).await;
    assert_eq!(body["code"], "unauthorized");
    assert!(body["message"].as_str().unwrap().contains("missing"));
}

#[tokio::test]
async fn garbage_and_malformed_tokens_are_401() {
    let app = spawn_app_with(pem_vars()).await;
    for token in [
        "garbage",
        "a.b",
        "a.b.c",
        "eyJhbGciOiJSUzI1NiJ9.!!!.???",
        "cs_0123456789abcdef",
    ] {
        assert_unauthorized(&app, token, "malformed").await;
    }
    let valid = sign(A_PRIVATE, None, &claims("user_1"));
    assert_unauthorized(&app, &format!("{valid}.extra"), "malformed").await;
    let oversized = "x".repeat(20_000);
    assert_unauthorized(&app, &oversized, "malformed").await;
}

#[tokio::test]
async fn alg_none_is_401() {
    let app = spawn_app_with(pem_vars()).await;
    for alg in ["none", "None", "NONE"] {
        let header = b64url(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
        let payload = b64url(claims("user_1").to_string().as_bytes());
        assert_unauthorized(&app, &format!("{header}.{payload}."), "algorithm").await;
    }
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_as_secret_is_401() {
    let app = spawn_app_with(pem_vars()).await;
    for secret in [A_PUBLIC, A_PUBLIC.trim()] {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims("user_1"),
            &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_unauthorized(&app, &token, "hs256").await;
    }
}

#[tokio::test]
async fn expired_tokens_are_401_beyond_the_leeway() {
    let app = spawn_app_with(pem_vars()).await;
    let mut c = claims("user_1");
    c["exp"] = json!(now() - 120);
    assert_unauthorized(&app, &sign(A_PRIVATE, None, &c), "expired").await;
    // Within the default 30 s leeway: clock skew, accepted.
    c["exp"] = json!(now() - 10);
    let (status, _) = me_with(&app, &sign(A_PRIVATE, None, &c)).await;
    assert_eq!(status, StatusCode::OK);
    // A token without `exp` never expires: refused.
    let c = json!({"sub": "user_1"});
    assert_unauthorized(&app, &sign(A_PRIVATE, None, &c), "exp").await;
}

#[tokio::test]
async fn the_leeway_is_configurable() {
    let mut vars = pem_vars();
    vars.insert("AUTH_LEEWAY_SECONDS", "0".into());
    let app = spawn_app_with(vars).await;
    let mut c = claims("user_1");
    c["exp"] = json!(now() - 10);
    assert_unauthorized(&app, &sign(A_PRIVATE, None, &c), "expired").await;
}

#[tokio::test]
async fn tokens_not_valid_yet_are_401() {
    let app = spawn_app_with(pem_vars()).await;
    let mut c = claims("user_1");
    c["nbf"] = json!(now() + 300);
    assert_unauthorized(&app, &sign(A_PRIVATE, None, &c), "not valid yet").await;
    c["nbf"] = json!(now() + 10);
    let (status, _) = me_with(&app, &sign(A_PRIVATE, None, &c)).await;
    assert_eq!(status, StatusCode::OK, "nbf within the leeway");
}

#[tokio::test]
async fn the_issuer_is_checked_when_configured() {
    let mut vars = pem_vars();
    vars.insert("AUTH_ISSUER", "https://clerk.example.com".into());
    let app = spawn_app_with(vars).await;
    let mut c = claims("user_1");
    c["iss"] = json!("https://evil.example.com");
    assert_unauthorized(&app, &sign(A_PRIVATE, None, &c), "issuer").await;
    let c = claims("user_1");
    assert_unauthorized(&app, &sign(A_PRIVATE, None, &c), "iss").await;
    let mut c = claims("user_1");
    c["iss"] = json!("https://clerk.example.com");
    let (status, _) = me_with(&app, &sign(A_PRIVATE, None, &c)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_audience_is_checked_when_configured() {
    let mut vars = pem_vars();
    vars.insert("AUTH_AUDIENCE", "charlie-stats, other-api".into());
    let app = spawn_app_with(vars).await;
    let mut c = claims("user_1");
    c["aud"] = json!("somebody-else");
    assert_unauthorized(&app, &sign(A_PRIVATE, None, &c), "audience").await;
    let c = claims("user_1");
    assert_unauthorized(&app, &sign(A_PRIVATE, None, &c), "aud").await;
    for aud in [json!("charlie-stats"), json!(["x", "other-api"])] {
        let mut c = claims("user_1");
        c["aud"] = aud;
        let (status, _) = me_with(&app, &sign(A_PRIVATE, None, &c)).await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_bad_signature_is_401() {
    let app = spawn_app_with(pem_vars()).await;
    let foreign = sign(OTHER_PRIVATE, None, &claims("user_1"));
    assert_unauthorized(&app, &foreign, "signature").await;
    // A valid token whose payload was changed after signing.
    let valid = sign(A_PRIVATE, None, &claims("user_1"));
    let parts: Vec<&str> = valid.split('.').collect();
    let forged = b64url(claims("admin").to_string().as_bytes());
    let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
    assert_unauthorized(&app, &tampered, "signature").await;
}

#[tokio::test]
async fn a_token_without_a_subject_is_401() {
    let app = spawn_app_with(pem_vars()).await;
    let c = json!({"exp": now() + 600});
    assert_unauthorized(&app, &sign(A_PRIVATE, None, &c), "sub").await;
    let mut c = claims("");
    assert_unauthorized(&app, &sign(A_PRIVATE, None, &c), "sub").await;
    c["sub"] = json!("x".repeat(300));
    assert_unauthorized(&app, &sign(A_PRIVATE, None, &c), "sub").await;
}

#[tokio::test]
async fn the_session_cookie_authenticates_like_a_bearer_token() {
    let app = spawn_app_with(pem_vars()).await;
    let token = sign(A_PRIVATE, None, &claims("user_cookie"));
    let resp = app
        .client
        .get(app.url("/api/v1/analytics/me"))
        .header("Cookie", format!("theme=dark; __session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (_, by_header) = me_with(&app, &token).await;
    assert_eq!(json(resp).await["user_id"], by_header["user_id"]);
    // A bad cookie is refused like a bad header.
    let resp = app
        .client
        .get(app.url("/api/v1/analytics/me"))
        .header("Cookie", "__session=garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_unknown_subject_becomes_a_user_on_first_sight_once() {
    let app = spawn_app_with(pem_vars()).await;
    let mut c = claims("user_new");
    c["email"] = json!("new@example.com");
    let token = sign(A_PRIVATE, None, &c);
    let requests = (0..8).map(|_| me_with(&app, &token));
    let answers = futures_util::future::join_all(requests).await;
    let first = answers[0].1["user_id"].clone();
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body["user_id"], first);
        assert_eq!(body["email"], "new@example.com");
    }
    let rows = app
        .store
        .scalar_for_tests(
            "SELECT COUNT(*) FROM users WHERE external_id = 'user_new' AND email = 'new@example.com'",
        )
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

/// The platform's `user.upsert` (through ingestion) and a token for the
/// same `external_id` are the same user.
async fn ingest_user(app: &TestApp, external_id: &str, email: &str, tz: &str) -> uuid::Uuid {
    let id = uuid::Uuid::now_v7();
    let item = json!({"id": id, "type": "user.upsert", "timestamp": "2026-01-01T00:00:00Z",
                      "body": {"external_id": external_id, "email": email, "timezone": tz}});
    let catalog = charlie_pricing::Catalog::builtin();
    let report = charlie_api::service::ingest::ingest(
        &app.store,
        &[item],
        &catalog,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert!(report.results[0].error.is_none());
    id
}

#[tokio::test]
async fn a_known_subject_maps_to_the_ingested_user() {
    let app = spawn_app_with(pem_vars()).await;
    let id = ingest_user(&app, "user_known", "known@example.com", "Asia/Kolkata").await;
    let (status, body) = me_with(&app, &sign(A_PRIVATE, None, &claims("user_known"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["user_id"], id.to_string());
    assert_eq!(body["email"], "known@example.com");
}

#[tokio::test]
async fn admins_by_email_claim_or_stored_email_case_insensitively() {
    let mut vars = pem_vars();
    vars.insert("ADMIN_EMAILS", "ops@example.com, Boss@Example.com".into());
    let app = spawn_app_with(vars).await;
    let mut c = claims("user_boss");
    c["email"] = json!("boss@EXAMPLE.com");
    let (_, body) = me_with(&app, &sign(A_PRIVATE, None, &c)).await;
    assert_eq!(body["is_admin"], true, "{body}");
    c["email"] = json!("intern@example.com");
    c["sub"] = json!("user_intern");
    let (_, body) = me_with(&app, &sign(A_PRIVATE, None, &c)).await;
    assert_eq!(body["is_admin"], false, "{body}");
    // No e-mail in the token: the stored one counts.
    ingest_user(&app, "user_ops", "OPS@example.com", "UTC").await;
    let (_, body) = me_with(&app, &sign(A_PRIVATE, None, &claims("user_ops"))).await;
    assert_eq!(body["is_admin"], true, "{body}");
}

#[tokio::test]
async fn the_email_claim_name_is_configurable() {
    let mut vars = pem_vars();
    vars.insert("ADMIN_EMAILS", "boss@example.com".into());
    vars.insert("AUTH_EMAIL_CLAIM", "primary_email".into());
    let app = spawn_app_with(vars).await;
    let mut c = claims("user_boss");
    c["email"] = json!("someone@example.com");
    c["primary_email"] = json!("boss@example.com");
    let (_, body) = me_with(&app, &sign(A_PRIVATE, None, &c)).await;
    assert_eq!(body["email"], "boss@example.com");
    assert_eq!(body["is_admin"], true);
}

#[tokio::test]
async fn admins_by_a_nested_role_claim() {
    let mut vars = pem_vars();
    vars.insert("AUTH_ROLE_CLAIM", "public_metadata.role".into());
    vars.insert("AUTH_ADMIN_ROLE", "founder".into());
    let app = spawn_app_with(vars).await;
    for (role, admin) in [
        (json!("founder"), true),
        (json!(["member", "founder"]), true),
        (json!("member"), false),
        (json!("admin"), false),
        (json!({"founder": true}), false),
    ] {
        let mut c = claims("user_role");
        c["public_metadata"] = json!({"role": role.clone()});
        let (_, body) = me_with(&app, &sign(A_PRIVATE, None, &c)).await;
        assert_eq!(body["is_admin"], admin, "role {role}");
    }
    // The role at the top level does not count when a path is configured.
    let mut c = claims("user_role");
    c["role"] = json!("founder");
    let (_, body) = me_with(&app, &sign(A_PRIVATE, None, &c)).await;
    assert_eq!(body["is_admin"], false);
}

#[tokio::test]
async fn the_default_role_claim_is_role_admin() {
    let app = spawn_app_with(pem_vars()).await;
    let mut c = claims("user_role");
    c["role"] = json!("admin");
    let (_, body) = me_with(&app, &sign(A_PRIVATE, None, &c)).await;
    assert_eq!(body["is_admin"], true);
}

/// A JWKS endpoint on 127.0.0.1 whose keys the test can change, counting
/// its hits.
struct JwksServer {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    hits: Arc<AtomicUsize>,
}

fn jwk(private_pem: &str, kid: &str) -> Value {
    let key = EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    serde_json::to_value(jwk).unwrap()
}

async fn jwks_server(keys: Vec<Value>) -> JwksServer {
    let keys = Arc::new(Mutex::new(keys));
    let hits = Arc::new(AtomicUsize::new(0));
    let (k, h) = (keys.clone(), hits.clone());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let (k, h) = (k.clone(), h.clone());
        App::new().route(
            "/.well-known/jwks.json",
            web::get().to(move || {
                let (k, h) = (k.clone(), h.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    // An unusable key next to the real ones must not spoil the set.
                    let mut keys = k.lock().unwrap().clone();
                    keys.push(json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}));
                    HttpResponse::Ok().json(json!({"keys": keys}))
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    JwksServer {
        url: format!("http://127.0.0.1:{port}/.well-known/jwks.json"),
        keys,
        hits,
    }
}

/// An app on a JWKS serving key A, and a token of key A that it accepted
/// `times` times.
async fn app_on_jwks_a(times: usize) -> (JwksServer, TestApp, String) {
    let jwks = jwks_server(vec![jwk(A_PRIVATE, "key-a")]).await;
    let app = spawn_app_with(HashMap::from([("AUTH_JWKS_URL", jwks.url.clone())])).await;
    let token_a = sign(A_PRIVATE, Some("key-a"), &claims("user_1"));
    for _ in 0..times {
        let (status, body) = me_with(&app, &token_a).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    (jwks, app, token_a)
}

#[tokio::test]
async fn jwks_keys_are_cached_and_rotation_fetches_the_new_kid() {
    let (jwks, app, token_a) = app_on_jwks_a(3).await;
    assert_eq!(jwks.hits.load(Ordering::SeqCst), 1, "keys are cached");

    // The provider rotates: key B is published, with a new kid.
    jwks.keys.lock().unwrap().push(jwk(B_PRIVATE, "key-b"));
    let token_b = sign(B_PRIVATE, Some("key-b"), &claims("user_1"));
    let (status, body) = me_with(&app, &token_b).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        jwks.hits.load(Ordering::SeqCst),
        2,
        "an unknown kid refetches"
    );
    let (status, _) = me_with(&app, &token_a).await;
    assert_eq!(status, StatusCode::OK, "the old key still works");

    // A token signed by another key under a known kid.
    let forged = sign(OTHER_PRIVATE, Some("key-a"), &claims("user_1"));
    assert_unauthorized(&app, &forged, "signature").await;
    // The set's HMAC key is never used, whatever the token says.
    let hs = jsonwebtoken::encode(
        &Header {
            kid: Some("hmac".into()),
            ..Header::new(Algorithm::HS256)
        },
        &claims("user_1"),
        &EncodingKey::from_secret(b"secret").unwrap(),
    )
    .unwrap();
    assert_unauthorized(&app, &hs, "hs256").await;
}

#[tokio::test]
async fn unknown_kids_are_401_and_cannot_hammer_the_jwks_host() {
    let jwks = jwks_server(vec![jwk(A_PRIVATE, "key-a")]).await;
    let app = spawn_app_with(HashMap::from([("AUTH_JWKS_URL", jwks.url.clone())])).await;
    let (status, _) = me_with(&app, &sign(A_PRIVATE, Some("key-a"), &claims("u"))).await;
    assert_eq!(status, StatusCode::OK);
    for i in 0..25 {
        let token = sign(OTHER_PRIVATE, Some(&format!("made-up-{i}")), &claims("u"));
        assert_unauthorized(&app, &token, "unknown key").await;
    }
    let hits = jwks.hits.load(Ordering::SeqCst);
    assert!(hits <= 4, "{hits} JWKS fetches for 25 unknown kids");
    // Known keys keep working meanwhile.
    let (status, _) = me_with(&app, &sign(A_PRIVATE, Some("key-a"), &claims("u"))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn an_unreachable_jwks_host_is_503_not_a_crash() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/jwks.json",
        closed.local_addr().unwrap().port()
    );
    drop(closed);
    let app = spawn_app_with(HashMap::from([("AUTH_JWKS_URL", url)])).await;
    let (status, body) = me_with(&app, &sign(A_PRIVATE, Some("key-a"), &claims("u"))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "unavailable");
}

#[tokio::test]
async fn the_development_key_works_in_development_only() {
    let token = charlie_devtools::demo::demo_token(
        &settings(&[]),
        "user_demo",
        "demo@example.com",
        false,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    // Development with nothing configured: the demo key is the key.
    let app = spawn_app_with(Vars::new()).await;
    let (status, _) = me_with(&app, &token).await;
    assert_eq!(status, StatusCode::OK);
    // Development with a real key configured: both are accepted.
    let app = spawn_app_with(pem_vars()).await;
    let (status, _) = me_with(&app, &token).await;
    assert_eq!(status, StatusCode::OK);
    // Production: refused, with a message that says why.
    let mut vars = pem_vars();
    vars.insert("APP_ENV", "production".into());
    let app = spawn_app_with(vars).await;
    assert_unauthorized(&app, &token, "development").await;
    // The same key under another kid is no better.
    let c = claims("user_demo");
    let demo_private = include_str!("../../dev-keys/demo-private.pem");
    assert_unauthorized(&app, &sign(demo_private, None, &c), "signature").await;
    let (status, _) = me_with(&app, &sign(A_PRIVATE, None, &c)).await;
    assert_eq!(status, StatusCode::OK, "real keys work in production");
}

/// Settings from a list of variables (plus a throw-away database URL).
fn settings(vars: &[(&'static str, &str)]) -> Settings {
    let mut env: HashMap<&str, &str> = vars.iter().copied().collect();
    env.entry("DATABASE_URL").or_insert("sqlite::memory:");
    Settings::from_env(&env).unwrap()
}

#[test]
fn production_refuses_the_development_key_as_configured_key() {
    let env: HashMap<&str, &str> = HashMap::from([
        ("APP_ENV", "production"),
        ("DATABASE_URL", "postgres://db/x"),
        ("AUTH_PUBLIC_KEY_PEM", DEMO_PUBLIC),
    ]);
    let err = Settings::from_env(&env).unwrap_err();
    assert_eq!(err.var, "AUTH_PUBLIC_KEY_PEM");
    assert!(err.to_string().contains("development key"), "{err}");
    // Without a key source at all, production does not start either.
    let env: HashMap<&str, &str> = HashMap::from([
        ("APP_ENV", "production"),
        ("DATABASE_URL", "postgres://db/x"),
    ]);
    assert_eq!(Settings::from_env(&env).unwrap_err().var, "AUTH_JWKS_URL");
}

#[test]
fn the_public_key_may_come_with_escaped_newlines() {
    let escaped = A_PUBLIC.trim().replace('\n', "\\n");
    let s = settings(&[("AUTH_PUBLIC_KEY_PEM", &escaped)]);
    assert!(s.auth.public_key_pem.is_some());
    struct One<'a>(&'a str, &'a str);
    impl Env for One<'_> {
        fn get(&self, key: &str) -> Option<String> {
            match key {
                k if k == self.0 => Some(self.1.to_owned()),
                "DATABASE_URL" => Some("sqlite::memory:".into()),
                _ => None,
            }
        }
    }
    let err = Settings::from_env(&One("AUTH_PUBLIC_KEY_PEM", A_PRIVATE)).unwrap_err();
    assert_eq!(err.var, "AUTH_PUBLIC_KEY_PEM");
    assert!(err.reason.contains("private key"), "{}", err.reason);
}

/// `AdminUser` on a tiny admin-only route, in process.
#[tokio::test]
async fn admin_routes_answer_403_to_non_admins_and_401_without_a_token() {
    let app = spawn_app_with(pem_vars()).await;
    let settings = settings(&[
        ("AUTH_PUBLIC_KEY_PEM", A_PUBLIC),
        ("ADMIN_EMAILS", "boss@example.com"),
    ]);
    let state = AppState {
        store: app.store.clone(),
        auth: Arc::new(Authenticator::new(&settings).unwrap()),
        catalog: Arc::new(charlie_pricing::Catalog::builtin()),
        settings: Arc::new(settings),
        metrics: Arc::new(charlie_api::observability::Metrics::new()),
        limits: Arc::new(charlie_api::ratelimit::RateLimits::default()),
    };
    async fn admin_only(admin: AdminUser) -> HttpResponse {
        HttpResponse::Ok().json(json!({"admin": admin.email}))
    }
    async fn anyone(user: CurrentUser) -> HttpResponse {
        HttpResponse::Ok().json(json!({"user": user.external_id}))
    }
    let service = actix_test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .route("/admin-only", web::get().to(admin_only))
            .route("/anyone", web::get().to(anyone)),
    )
    .await;
    let call = |path: &'static str, token: Option<String>| {
        let mut req = actix_test::TestRequest::get().uri(path);
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        req.to_request()
    };
    let mut boss = claims("user_boss");
    boss["email"] = json!("boss@example.com");
    let mut intern = claims("user_intern");
    intern["email"] = json!("intern@example.com");
    let boss = sign(A_PRIVATE, None, &boss);
    let intern = sign(A_PRIVATE, None, &intern);

    let resp = actix_test::call_service(&service, call("/admin-only", None)).await;
    assert_eq!(resp.status().as_u16(), 401);
    let resp = actix_test::call_service(&service, call("/admin-only", Some(intern.clone()))).await;
    assert_eq!(resp.status().as_u16(), 403);
    let body: Value = actix_test::read_body_json(resp).await;
    assert_eq!(body["code"], "forbidden");
    let resp = actix_test::call_service(&service, call("/anyone", Some(intern))).await;
    assert_eq!(resp.status().as_u16(), 200);
    let resp = actix_test::call_service(&service, call("/admin-only", Some(boss))).await;
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = actix_test::read_body_json(resp).await;
    assert_eq!(body["admin"], "boss@example.com");
}

#[tokio::test]
async fn cors_allows_the_configured_origins_with_credentials_only() {
    let mut vars = pem_vars();
    vars.insert(
        "CORS_ALLOWED_ORIGINS",
        "https://app.example.com, http://localhost:5173".into(),
    );
    let app = spawn_app_with(vars).await;
    let token = sign(A_PRIVATE, None, &claims("user_cors"));
    let resp = app
        .client
        .get(app.url("/api/v1/analytics/me"))
        .header("Origin", "https://app.example.com")
        .header("Cookie", format!("__session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(resp.headers()["access-control-allow-credentials"], "true");
    // The frontend may read the request id to quote it in a support request.
    let exposed = resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    // PUT routes (preferences, budgets) pass their preflight.
    let preflight = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            app.url("/api/v1/analytics/me/preferences"),
        )
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "PUT")
        .header(
            "Access-Control-Request-Headers",
            "content-type, authorization",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let methods = preflight.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("PUT"), "{methods}");

    // Another origin is served, but without `Access-Control-Allow-Origin`:
    // its scripts cannot read the answer.
    let resp = app
        .client
        .get(app.url("/health"))
        .header("Origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // (actix-cors still sends `Access-Control-Allow-Credentials`, which
    // grants nothing without `Access-Control-Allow-Origin`.)
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    // Preflight of the frontend's credentialed request.
    let resp = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/analytics/me"))
        .header("Origin", "http://localhost:5173")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    assert_eq!(resp.headers()["access-control-allow-credentials"], "true");
    let resp = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/analytics/me"))
        .header("Origin", "https://evil.example.com")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}

/// Ingests `items` through the ingest service, failing on any item error.
async fn ingest_items(app: &TestApp, items: Vec<Value>) {
    let catalog = charlie_pricing::Catalog::builtin();
    let report = charlie_api::service::ingest::ingest(
        &app.store,
        &items,
        &catalog,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    for r in &report.results {
        assert!(r.error.is_none(), "{:?}", r.error);
    }
}

#[tokio::test]
async fn a_verified_token_is_not_trusted_past_its_exp() {
    let mut vars = pem_vars();
    vars.insert("AUTH_LEEWAY_SECONDS", "0".into());
    let app = spawn_app_with(vars).await;
    let mut c = claims("user_short");
    c["exp"] = json!(now() + 2);
    let token = sign(A_PRIVATE, None, &c);
    for _ in 0..2 {
        let (status, body) = me_with(&app, &token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // The second call was answered from the token cache; past `exp` the
    // cache must not answer for it.
    tokio::time::sleep(std::time::Duration::from_millis(3_200)).await;
    assert_unauthorized(&app, &token, "expired").await;
}

#[tokio::test]
async fn a_key_retired_from_the_jwks_no_longer_verifies_its_cached_tokens() {
    // The second call is answered from the token cache.
    let (jwks, app, token_a) = app_on_jwks_a(2).await;
    // The provider retires key A (compromised, say) and publishes key B.
    *jwks.keys.lock().unwrap() = vec![jwk(B_PRIVATE, "key-b")];
    let token_b = sign(B_PRIVATE, Some("key-b"), &claims("user_1"));
    let (status, body) = me_with(&app, &token_b).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The set changed: key A's tokens are checked again, and refused.
    assert_unauthorized(&app, &token_a, "unknown key").await;
}

#[tokio::test]
async fn dashboards_see_a_changed_user_at_once_despite_the_user_cache() {
    let mut vars = pem_vars();
    vars.insert("ADMIN_EMAILS", "boss@example.com".into());
    let app = spawn_app_with(vars).await;
    let id = ingest_user(&app, "user_dash", "someone@example.com", "Asia/Kolkata").await;
    // No e-mail in the token: the stored one decides who is an admin.
    let token = sign(A_PRIVATE, None, &claims("user_dash"));
    let stats = "/api/v1/analytics/my-stats?days=7";
    let overview = "/api/v1/analytics/admin/overview?days=7";
    for _ in 0..2 {
        let (status, body) = app.get_as(stats, &token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["timezone"], "Asia/Kolkata");
        let (status, _) = app.get_as(overview, &token).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let upsert = |email: &str, tz: &str, day: u32| {
        json!({"id": id, "type": "user.upsert", "timestamp": format!("2026-01-{day:02}T00:00:00Z"),
               "body": {"external_id": "user_dash", "email": email, "timezone": tz}})
    };
    // The platform moves the user and makes them an admin (stored e-mail).
    ingest_items(&app, vec![upsert("boss@example.com", "America/Denver", 2)]).await;
    let (status, body) = app.get_as(stats, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["timezone"], "America/Denver", "{body}");
    let (status, body) = app.get_as(overview, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["timezone"], "America/Denver", "{body}");
    // And takes the admin e-mail away again: refused at once.
    ingest_items(
        &app,
        vec![upsert("nobody@example.com", "America/Denver", 3)],
    )
    .await;
    let (status, body) = app.get_as(overview, &token).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "forbidden");
}

#[tokio::test]
async fn a_subject_taken_over_by_the_platforms_user_shows_that_users_stats_at_once() {
    let app = spawn_app_with(pem_vars()).await;
    let token = sign(A_PRIVATE, None, &claims("user_early"));
    let stats = "/api/v1/analytics/my-stats?days=7";
    // First sight: a placeholder user, cached for this subject.
    for _ in 0..2 {
        let (status, body) = app.get_as(stats, &token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["total_messages"], 0);
    }
    // The platform's record of the same person replaces the placeholder,
    // with a conversation and a message.
    let now = time::OffsetDateTime::now_utc();
    let at = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (user, conversation) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    ingest_items(
        &app,
        vec![
            json!({"id": user, "type": "user.upsert", "timestamp": at,
                   "body": {"external_id": "user_early", "email": "early@example.com"}}),
            json!({"id": conversation, "type": "conversation.upsert", "timestamp": at,
                   "body": {"user_id": user}}),
            json!({"id": uuid::Uuid::now_v7(), "type": "message.create", "timestamp": at,
                   "body": {"conversation_id": conversation, "role": "user"}}),
        ],
    )
    .await;
    let (status, body) = app.get_as(stats, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total_messages"], 1, "{body}");
    let (_, me) = me_with(&app, &token).await;
    assert_eq!(me["user_id"], user.to_string());
}
