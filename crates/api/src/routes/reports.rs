//! `GET /api/v1/analytics/admin/reports/preview`: the weekly report e-mail
//! of any user and week, as it would be sent.

use crate::error::ErrorCode;
use crate::{
    ApiError, AppState, ErrorBody,
    auth::AdminUser,
    service::reports::{self, email as report_email},
};
use actix_web::{HttpResponse, get, web};
use charlie_store::calendar::Zone;
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

/// The routes of the admin scope (`/api/v1/analytics/admin`).
pub fn admin_routes(cfg: &mut ServiceConfig) {
    cfg.service(preview);
}

/// Query of the report preview.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// The user (`users.id`).
    pub user_id: Uuid,
    /// ISO week `YYYY-Www` in `REPORT_TIMEZONE` (default: the last complete week).
    #[param(pattern = "^([0-9]{4}-W(0[1-9]|[1-4][0-9]|5[0-2]))?$")]
    pub week: Option<String>,
    /// `html` (default) or `text`: which part of the e-mail.
    #[param(pattern = "^(html|text)?$")]
    pub format: Option<String>,
}

/// Preview a weekly report.
///
/// The e-mail a user gets for a week, rendered now from the rollups
/// (whether or not they had activity or opted out). Nothing is sent.
#[utoipa::path(
    tag = "Admin",
    summary = "Weekly report preview",
    params(PreviewQuery),
    security(("user_jwt" = [])),
    responses(
        (status = 200, description = "The report's HTML, or its plain-text part with `format=text`", content(
            (String = "text/html"),
            (String = "text/plain"),
        )),
        (status = 400, description = "Missing `user_id`, bad `week` or `format`", body = ErrorBody),
        (status = 401, description = "Missing or invalid session token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
#[get("/reports/preview")]
pub async fn preview(
    _admin: AdminUser,
    state: web::Data<AppState>,
    query: web::Query<PreviewQuery>,
) -> Result<HttpResponse, ApiError> {
    let text = match query.format.as_deref().map(str::trim) {
        None | Some("") | Some("html") => false,
        Some("text") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidParameter,
                format!("format must be html or text, got `{other}`"),
            ));
        }
    };
    let zone = Zone::get(&state.settings.notify.reports.timezone).map_err(ApiError::internal)?;
    let monday = match query
        .week
        .as_deref()
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        Some(w) => reports::parse_week(w).map_err(|e| {
            ApiError::bad_request(ErrorCode::InvalidParameter, format!("week: {e}"))
        })?,
        None => reports::last_complete_week(&zone, OffsetDateTime::now_utc()),
    };
    state
        .store
        .budget_profile(query.user_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {} not found", query.user_id)))?;
    let data = reports::report_data(&state.store, query.user_id, monday, &zone)
        .await
        .map_err(ApiError::internal)?;
    let rendered = report_email::render(&data);
    Ok(if text {
        HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(rendered.text)
    } else {
        HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(rendered.html)
    })
}
