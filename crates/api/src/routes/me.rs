//! `GET /api/v1/analytics/me`: who the session token belongs to, and
//! whether they are an admin (the frontend's AdminGuard asks this instead
//! of hard-coding admin e-mails).

use crate::{ErrorBody, auth::CurrentUser};
use actix_web::{HttpResponse, get};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(me);
}

/// The signed-in user.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "user_id": "0192f0c4-5a1e-7c3b-9d2e-1f2a3b4c5d6e",
    "email": "ada@example.com",
    "is_admin": false
}))]
pub struct MeResponse {
    /// Charlie Stats' id of the user (`users.id`).
    pub user_id: Uuid,
    /// The token's e-mail claim (`AUTH_EMAIL_CLAIM`), else the e-mail the
    /// platform sent for this user; null when neither is known.
    #[schema(required = true)]
    pub email: Option<String>,
    /// True when `email` is in `ADMIN_EMAILS` (case-insensitive) or the
    /// token's role claim (`AUTH_ROLE_CLAIM`) holds `AUTH_ADMIN_ROLE`.
    pub is_admin: bool,
}

/// The signed-in user and whether they are an admin.
///
/// Identifies the caller from their session token (an RS256 JWT, from
/// `Authorization: Bearer` or the `__session` cookie). The token's `sub` is
/// the user's `external_id`; a user seen for the first time is created.
/// `is_admin` tells whether the `/api/v1/analytics/admin/*` endpoints will
/// answer this user (instead of 403).
#[utoipa::path(
    tag = "Analytics",
    summary = "Who am I",
    security(("user_jwt" = [])),
    responses(
        (status = 200, description = "The signed-in user", body = MeResponse),
        (status = 401, description = "Missing, malformed, expired or otherwise invalid session token", body = ErrorBody),
        (status = 503, description = "The signing keys cannot be fetched to check the token", body = ErrorBody),
    )
)]
#[get("/api/v1/analytics/me")]
pub async fn me(user: CurrentUser) -> HttpResponse {
    HttpResponse::Ok().json(MeResponse {
        user_id: user.user_id,
        email: user.email,
        is_admin: user.is_admin,
    })
}
