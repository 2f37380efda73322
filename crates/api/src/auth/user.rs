//! The end-user extractors: `CurrentUser` (any signed-in user) and
//! `AdminUser` (admins only).

use super::jwt::AuthError;
use crate::{ApiError, AppState};
use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, web};
use charlie_store::{AuthUser, dashboard::StoredUser};
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
    /// The cached row this identity was built from, until a statement of
    /// the request confirms it; `None` when it was read from the database.
    unconfirmed: Option<AuthUser>,
}

/// How the stored user behind a token is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// From the database, every time.
    Stored,
    /// From the user cache when it holds the subject; the caller confirms
    /// the row in its own statement ([`CurrentUser::confirmed_by`]).
    Cached,
}

impl CurrentUser {
    async fn authenticate(req: &HttpRequest, lookup: Lookup) -> Result<CurrentUser, ApiError> {
        if let Some(user) = req.extensions().get::<CurrentUser>()
            && (lookup == Lookup::Cached || user.unconfirmed.is_none())
        {
            return Ok(user.clone());
        }
        let state = req
            .app_data::<web::Data<AppState>>()
            .cloned()
            .ok_or_else(|| ApiError::internal("application state missing"))?;
        let token = session_token(req).ok_or(AuthError::Missing)?;
        let verified = state.auth.verify(&token).await?;
        let token_email = state.auth.email(&verified);
        let cached = match lookup {
            Lookup::Cached => state.auth.users.get(&verified.subject),
            Lookup::Stored => None,
        };
        let stored = match &cached {
            Some(user) => user.clone(),
            None => {
                let user = state
                    .store
                    .user_for_subject(&verified.subject, token_email)
                    .await?;
                state.auth.users.insert(&verified.subject, user.clone());
                user
            }
        };
        crate::ratelimit::check(
            &state,
            crate::ratelimit::Caller::User,
            &stored.id.to_string(),
        )?;
        let email = token_email.map(str::to_owned).or(stored.email);
        // Sentry events and error rows of this request carry the user's id
        // (never the e-mail).
        crate::observability::identify_user(req, stored.id);
        let user = CurrentUser {
            user_id: stored.id,
            is_admin: state.auth.is_admin(&verified, email.as_deref()),
            external_id: verified.subject.clone(),
            email,
            timezone: stored.timezone,
            unconfirmed: cached,
        };
        req.extensions_mut().insert(user.clone());
        Ok(user)
    }

    /// Whether `stored`, the caller's row as a statement of this request
    /// read it, is the row this identity was built from. Always true for an
    /// identity read from the database in this request.
    pub fn confirmed_by(&self, stored: Option<&StoredUser>) -> bool {
        let Some(cached) = &self.unconfirmed else {
            return true;
        };
        stored.is_some_and(|s| {
            s.external_id.as_deref() == Some(self.external_id.as_str())
                && s.email == cached.email
                && s.timezone == cached.timezone
        })
    }

    /// The identity of `req` read again from the database, after a statement
    /// found the cached one outdated: the cache entry is dropped first.
    pub async fn reload(req: &HttpRequest, stale: &CurrentUser) -> Result<CurrentUser, ApiError> {
        if let Some(state) = req.app_data::<web::Data<AppState>>() {
            state.auth.users.forget(&stale.external_id);
        }
        req.extensions_mut().remove::<CurrentUser>();
        CurrentUser::authenticate(req, Lookup::Stored).await
    }
}

/// A signed-in user for a read that confirms the user's row in its own
/// statement (my-stats): the user may come from the user cache, so that a
/// dashboard's calls cost no user query. The handler must check
/// [`CurrentUser::confirmed_by`] and [`CurrentUser::reload`] when it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardUser(pub CurrentUser);

impl FromRequest for DashboardUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            CurrentUser::authenticate(&req, Lookup::Cached)
                .await
                .map(DashboardUser)
        })
    }
}

/// An admin for a read that confirms the admin's row in its own statement
/// (the overview). A cached identity that is not an admin is read again
/// before answering 403: the cache never refuses an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardAdmin(pub CurrentUser);

impl FromRequest for DashboardAdmin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let mut user = CurrentUser::authenticate(&req, Lookup::Cached).await?;
            if !user.is_admin && user.unconfirmed.is_some() {
                user = CurrentUser::reload(&req, &user).await?;
            }
            admin_only(user).map(|u| DashboardAdmin(u.0))
        })
    }
}

fn admin_only(user: CurrentUser) -> Result<AdminUser, ApiError> {
    if user.is_admin {
        Ok(AdminUser(user))
    } else {
        Err(ApiError::Forbidden(
            "this endpoint is for admins only".into(),
        ))
    }
}

impl FromRequest for CurrentUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { CurrentUser::authenticate(&req, Lookup::Stored).await })
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
        Box::pin(async move { admin_only(CurrentUser::authenticate(&req, Lookup::Stored).await?) })
    }
}

impl std::ops::Deref for AdminUser {
    type Target = CurrentUser;
    fn deref(&self) -> &CurrentUser {
        &self.0
    }
}
