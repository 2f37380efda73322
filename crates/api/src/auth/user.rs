//! The end-user extractors: `CurrentUser` (any signed-in user) and
//! `AdminUser` (admins only).

use super::jwt::AuthError;
use crate::{ApiError, AppState};
use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, web};
use std::{future::Future, pin::Pin};
use uuid::Uuid;

/// The cookie Clerk keeps the session token in (same-site frontends send it
/// with `credentials: "include"`).
pub const SESSION_COOKIE: &str = "__session";

/// The session token of a request: `Authorization: Bearer …` first, else
/// the `__session` cookie.
pub fn session_token(req: &HttpRequest) -> Option<String> {
    if let Some(token) = super::bearer_token(req) {
        return Some(token.to_owned());
    }
    req.cookie(SESSION_COOKIE)
        .map(|c| c.value().trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The signed-in end user of a request, from a verified session token.
/// Extracting it answers 401 (JSON error) when the token is missing or bad.
///
/// ```text
/// #[get("/api/v1/analytics/my-stats")]
/// async fn my_stats(user: CurrentUser, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
///     let stats = state.store.user_stats(user.user_id, …).await?;
///     …
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentUser {
    /// `users.id`.
    pub user_id: Uuid,
    /// The token's `sub` (`users.external_id`).
    pub external_id: String,
    /// From the token's e-mail claim, else the stored address.
    pub email: Option<String>,
    /// `ADMIN_EMAILS` holds `email`, or the role claim holds the admin role.
    pub is_admin: bool,
    /// The stored IANA time zone, if any.
    pub timezone: Option<String>,
}

impl CurrentUser {
    async fn authenticate(req: HttpRequest) -> Result<CurrentUser, ApiError> {
        if let Some(user) = req.extensions().get::<CurrentUser>() {
            return Ok(user.clone());
        }
        let state = req
            .app_data::<web::Data<AppState>>()
            .cloned()
            .ok_or_else(|| ApiError::internal("application state missing"))?;
        let token = session_token(&req).ok_or(AuthError::Missing)?;
        let verified = state.auth.verify(&token).await?;
        let token_email = state.auth.email(&verified);
        let stored = state
            .store
            .user_for_subject(&verified.subject, token_email)
            .await?;
        crate::ratelimit::check(
            &state,
            crate::ratelimit::Caller::User,
            &stored.id.to_string(),
        )?;
        let email = token_email.map(str::to_owned).or(stored.email);
        // Sentry events and error rows of this request carry the user's id
        // (never the e-mail).
        crate::observability::identify_user(&req, stored.id);
        let user = CurrentUser {
            user_id: stored.id,
            is_admin: state.auth.is_admin(&verified, email.as_deref()),
            external_id: verified.subject,
            email,
            timezone: stored.timezone,
        };
        req.extensions_mut().insert(user.clone());
        Ok(user)
    }
}

impl FromRequest for CurrentUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(CurrentUser::authenticate(req.clone()))
    }
}

/// A signed-in admin: 401 without a valid token, 403 for a non-admin.
///
/// ```text
/// #[get("/api/v1/analytics/admin/overview")]
/// async fn overview(AdminUser(admin): AdminUser) -> … { … }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUser(pub CurrentUser);

impl FromRequest for AdminUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let user = CurrentUser::authenticate(req).await?;
            if user.is_admin {
                Ok(AdminUser(user))
            } else {
                Err(ApiError::Forbidden(
                    "this endpoint is for admins only".into(),
                ))
            }
        })
    }
}

impl std::ops::Deref for AdminUser {
    type Target = CurrentUser;
    fn deref(&self) -> &CurrentUser {
        &self.0
    }
}
