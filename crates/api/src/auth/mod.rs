//! Request authentication. `ServiceKey` guards the platform's ingestion
//! routes (a service API key as a bearer token); end users and admins are
//! authenticated by their session JWT (`jwt`).

mod cors;
pub mod jwt;
pub mod keys;
pub mod session;
mod user;

pub use cors::cors;
pub use jwt::{AuthError, Authenticator};
pub use user::{
    AdminUser, CurrentUser, DashboardAdmin, DashboardUser, SESSION_COOKIE, session_token,
};

use crate::{ApiError, AppState};
use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use charlie_store::ApiKeyInfo;
use std::{future::Future, pin::Pin};

/// The bearer token of a request, if it has one.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// A request made with a valid, unrevoked service API key.
#[derive(Debug, Clone)]
pub struct ServiceKey(pub ApiKeyInfo);

impl FromRequest for ServiceKey {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer_token(req).map(str::to_owned);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
            let token = token.ok_or_else(|| {
                ApiError::Unauthorized("missing API key: send `Authorization: Bearer <key>`".into())
            })?;
            match state.store.verify_api_key(&token).await? {
                Some(info) => {
                    crate::ratelimit::check(
                        &state,
                        crate::ratelimit::Caller::ServiceKey,
                        &info.id.to_string(),
                    )?;
                    Ok(ServiceKey(info))
                }
                None => Err(ApiError::Unauthorized("unknown or revoked API key".into())),
            }
        })
    }
}

/// The public key that goes with a service key for Langfuse's SDK.
pub fn langfuse_public_key(key_id: uuid::Uuid) -> String {
    format!("pk-lf-{}", key_id.simple())
}

/// A request made as Langfuse's SDK authenticates: HTTP Basic with the
/// public key (`pk-lf-…`, from `keys create --langfuse`) as user name and
/// the service key as password. Both must belong to the same active key.
#[derive(Debug, Clone)]
pub struct LangfuseKey(pub ApiKeyInfo);

fn basic_credentials(req: &HttpRequest) -> Option<(String, String)> {
    use base64::Engine;
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

impl FromRequest for LangfuseKey {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let credentials = basic_credentials(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
            let (public, secret) = credentials.ok_or_else(|| {
                ApiError::Unauthorized(
                    "missing Langfuse keys: send HTTP Basic auth with the public key and secret key"
                        .into(),
                )
            })?;
            match state.store.verify_api_key(&secret).await? {
                Some(info) if langfuse_public_key(info.id) == public => {
                    crate::ratelimit::check(
                        &state,
                        crate::ratelimit::Caller::ServiceKey,
                        &info.id.to_string(),
                    )?;
                    Ok(LangfuseKey(info))
                }
                _ => Err(ApiError::Unauthorized(
                    "unknown or revoked Langfuse keys".into(),
                )),
            }
        })
    }
}
