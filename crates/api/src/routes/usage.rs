//! Budgets and usage alerts: `GET /api/v1/analytics/my-usage`,
//! `PUT /api/v1/analytics/me/preferences`,
//! `PUT /api/v1/analytics/admin/users/{id}/budget` and
//! `GET /api/v1/analytics/admin/alerts`.

use crate::error::ErrorCode;
use crate::service::budgets::{Defaults, month_usage};
use crate::{
    ApiError, AppState, ErrorBody,
    auth::{AdminUser, CurrentUser},
    routes::{money::UsdNumber, params},
};
use actix_web::{HttpResponse, get, put, web};
use charlie_domain::rfc3339;
use charlie_store::budgets::{Alert, AlertFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(my_usage).service(my_preferences);
}

/// The routes of the admin scope (`/api/v1/analytics/admin`).
pub fn admin_routes(cfg: &mut ServiceConfig) {
    cfg.service(set_budget).service(list_alerts);
}

/// A usage alert.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertItem {
    /// Stable id of the alert (the webhook's `id`, for deduplication).
    pub id: Uuid,
    pub user_id: Uuid,
    /// The local month (`YYYY-MM`, in the user's time zone).
    pub month: String,
    /// The threshold reached, in percent of the budget.
    pub threshold_percent: u32,
    /// `warning` (below 100 %) or `exceeded` (100 % and more).
    pub level: String,
    /// The month-to-date cost when the alert was raised, in USD: at least
    /// the threshold; more when the write that crossed it carried more than
    /// the crossing message (batches are folded into the totals together).
    #[schema(value_type = f64)]
    pub cost_usd: UsdNumber,
    /// The budget it was compared with, in USD.
    #[schema(value_type = f64)]
    pub budget_usd: UsdNumber,
    /// When it was raised (RFC 3339).
    pub created_at: String,
    /// Webhook delivery: `pending`, `delivered` or `failed`; null when no
    /// webhook was configured when the alert was raised.
    #[schema(required = true)]
    pub webhook_status: Option<String>,
    /// Webhook delivery attempts so far.
    pub webhook_attempts: i32,
}

impl From<Alert> for AlertItem {
    fn from(a: Alert) -> Self {
        AlertItem {
            id: a.id,
            user_id: a.user_id,
            month: a.month,
            threshold_percent: a.threshold_percent,
            level: a.level,
            cost_usd: UsdNumber::from_nanos(a.cost_nano_usd),
            budget_usd: UsdNumber::from_nanos(a.budget_nano_usd),
            created_at: rfc3339(a.created_at),
            webhook_status: a.delivery.as_ref().map(|d| d.status.to_owned()),
            webhook_attempts: a.delivery.map(|d| d.attempts).unwrap_or(0),
        }
    }
}

/// Month-to-date usage against the budget.
#[derive(Debug, Serialize, ToSchema)]
pub struct MyUsageResponse {
    /// The current month (`YYYY-MM`) in `timezone`.
    pub month: String,
    /// The user's stored IANA time zone (UTC when unset): months start at its local midnight.
    pub timezone: String,
    /// When the month started and when it ends (RFC 3339).
    pub month_start: String,
    pub month_end: String,
    /// Messages (any role) this month.
    pub message_count: i64,
    /// Prompt tokens this month, cache reads and writes included.
    pub input_tokens: i64,
    /// Generated tokens this month, reasoning included.
    pub output_tokens: i64,
    /// `input_tokens + output_tokens`.
    pub total_tokens: i64,
    /// Month-to-date estimated cost of priced messages, in USD (exact decimal).
    #[schema(value_type = f64)]
    pub cost_usd: UsdNumber,
    /// The monthly budget in USD: the user's own, else `DEFAULT_MONTHLY_BUDGET_USD`; null when neither is set.
    #[schema(value_type = Option<f64>, required = true)]
    pub budget_usd: Option<UsdNumber>,
    /// `user` (the user's own budget), `default`, or null without a budget.
    #[schema(required = true)]
    pub budget_source: Option<String>,
    /// `cost_usd ÷ budget_usd × 100`, rounded to two decimals; null without a budget.
    #[schema(required = true)]
    pub percent_used: Option<f64>,
    /// Projected month-end cost in USD: `cost_usd × month length ÷ time
    /// elapsed since the month started` (a straight-line extrapolation of the
    /// month so far), truncated to the nano-dollar. Equals `cost_usd` when
    /// nothing has been spent.
    #[schema(value_type = f64)]
    pub projected_month_end_cost_usd: UsdNumber,
    /// Alerts raised this month, highest threshold first.
    pub alerts: Vec<AlertItem>,
    /// The monthly hard limit (reservations beyond it are denied): the
    /// user's own, else `BUDGET_DEFAULT_HARD_LIMIT_USD`; null when neither is set.
    #[schema(value_type = Option<f64>, required = true)]
    pub hard_limit_usd: Option<UsdNumber>,
    /// What open reservations (and committed costs not yet ingested) hold, in USD.
    #[schema(value_type = f64)]
    pub reserved_usd: UsdNumber,
    /// The reservations that count against the hard limit now.
    pub open_reservations: Vec<crate::routes::budget::ReservationItem>,
}

/// My month-to-date usage.
///
/// Cost and tokens of the current calendar month in the user's time zone,
/// the budget and how much of it is used, a projection of the month-end
/// cost, and the alerts raised this month.
#[utoipa::path(
    tag = "Analytics",
    summary = "My usage and budget",
    security(("user_jwt" = [])),
    responses(
        (status = 200, description = "Month-to-date usage", body = MyUsageResponse),
        (status = 401, description = "Missing or invalid session token", body = ErrorBody),
    )
)]
#[get("/api/v1/analytics/my-usage")]
pub async fn my_usage(
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let defaults = Defaults {
        monthly_budget_nano_usd: state.settings.notify.default_monthly_budget_nano_usd,
        hard_limit_nano_usd: state.settings.budget.default_hard_limit_nano_usd,
    };
    let u = month_usage(
        &state.store,
        defaults,
        user.user_id,
        OffsetDateTime::now_utc(),
    )
    .await?;
    let instant = |s: i64| {
        OffsetDateTime::from_unix_timestamp(s)
            .map(rfc3339)
            .map_err(ApiError::internal)
    };
    Ok(HttpResponse::Ok().json(MyUsageResponse {
        timezone: u.timezone,
        month_start: instant(u.month.start)?,
        month_end: instant(u.month.end)?,
        message_count: u.totals.message_count,
        input_tokens: u.totals.input_tokens,
        output_tokens: u.totals.output_tokens,
        total_tokens: u.totals.input_tokens + u.totals.output_tokens,
        cost_usd: UsdNumber::from_nanos(u.totals.cost_nano_usd),
        budget_usd: u.budget.map(|(b, _)| UsdNumber::from_nanos(b)),
        budget_source: u.budget.map(|(_, source)| source.as_str().to_owned()),
        percent_used: u.percent_used,
        projected_month_end_cost_usd: UsdNumber::from_nanos(u.projected_nano_usd),
        alerts: u.alerts.into_iter().map(AlertItem::from).collect(),
        hard_limit_usd: u.hard_limit_nano_usd.map(UsdNumber::from_nanos),
        reserved_usd: UsdNumber::from_nanos(u.reserved_nano_usd),
        open_reservations: u
            .held
            .into_iter()
            .map(crate::routes::budget::ReservationItem::from)
            .collect(),
        month: u.month.month,
    }))
}

/// The user's preferences.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PreferencesBody {
    /// True to stop the weekly report e-mail.
    pub weekly_report_opt_out: bool,
}

/// Set my preferences.
///
/// `weekly_report_opt_out: true` stops the weekly report e-mail (the
/// platform can set it too, through `user.upsert`).
#[utoipa::path(
    tag = "Analytics",
    summary = "Set my preferences",
    request_body = PreferencesBody,
    security(("user_jwt" = [])),
    responses(
        (status = 200, description = "The stored preferences", body = PreferencesBody),
        (status = 400, description = "Bad body", body = ErrorBody),
        (status = 401, description = "Missing or invalid session token", body = ErrorBody),
    )
)]
#[put("/api/v1/analytics/me/preferences")]
pub async fn my_preferences(
    user: CurrentUser,
    state: web::Data<AppState>,
    body: web::Json<PreferencesBody>,
) -> Result<HttpResponse, ApiError> {
    state
        .store
        .set_weekly_report_opt_out(user.user_id, body.weekly_report_opt_out)
        .await?;
    Ok(HttpResponse::Ok().json(PreferencesBody {
        weekly_report_opt_out: body.weekly_report_opt_out,
    }))
}

/// A user's own monthly budget.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct BudgetRequest {
    /// USD as a decimal string (`"25.00"`) or number, more than 0; null
    /// removes the user's own budget (the default applies again).
    #[schema(schema_with = crate::routes::money::positive_usd_schema, example = "25.00")]
    pub monthly_budget_usd: Option<Value>,
    /// The hard limit in USD (reservations beyond it are denied); null
    /// removes it (`BUDGET_DEFAULT_HARD_LIMIT_USD` applies again). At least
    /// one of the two keys must be sent; an absent one is left as it is.
    #[schema(schema_with = crate::routes::money::positive_usd_schema, example = "30.00")]
    pub monthly_hard_limit_usd: Option<Value>,
}

/// The budget after the change.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetResponse {
    pub user_id: Uuid,
    /// The user's own budget in USD; null when none is set.
    #[schema(value_type = Option<f64>, required = true)]
    pub monthly_budget_usd: Option<UsdNumber>,
    /// The budget that applies: the user's own, else `DEFAULT_MONTHLY_BUDGET_USD`; null without either.
    #[schema(value_type = Option<f64>, required = true)]
    pub effective_budget_usd: Option<UsdNumber>,
    /// The user's own hard limit in USD; null when none is set.
    #[schema(value_type = Option<f64>, required = true)]
    pub monthly_hard_limit_usd: Option<UsdNumber>,
    /// The hard limit that applies: the user's own, else `BUDGET_DEFAULT_HARD_LIMIT_USD`; null without either.
    #[schema(value_type = Option<f64>, required = true)]
    pub effective_hard_limit_usd: Option<UsdNumber>,
}

fn parse_budget(v: &Value) -> Result<i64, ApiError> {
    crate::routes::money::parse_usd(v, "monthly_budget_usd", false)
}

/// Set a user's monthly budget.
///
/// The user's own budget overrides `DEFAULT_MONTHLY_BUDGET_USD`. A change
/// applies from the next ingested usage on: thresholds already reached this
/// month raise their alert with the next batch of the user's usage.
#[utoipa::path(
    tag = "Admin",
    summary = "Set a user's budget",
    params(("id" = Uuid, Path, description = "The user's id (`users.id`)")),
    request_body = BudgetRequest,
    security(("user_jwt" = [])),
    responses(
        (status = 200, description = "The budget after the change", body = BudgetResponse),
        (status = 400, description = "Bad id or amount", body = ErrorBody),
        (status = 401, description = "Missing or invalid session token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
#[put("/users/{id}/budget")]
pub async fn set_budget(
    _admin: AdminUser,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    params::body_keys(&body, &["monthly_budget_usd", "monthly_hard_limit_usd"])?;
    let hard = crate::routes::budget::limit_field(&body, "monthly_hard_limit_usd")?;
    let raw = body.get("monthly_budget_usd");
    if raw.is_none() && hard.is_none() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidValue,
            "monthly_budget_usd is required (null removes the budget)",
        ));
    }
    let nanos = match raw {
        Some(Value::Null) => None,
        Some(v) => Some(parse_budget(v)?),
        None => {
            state
                .store
                .budget_profile(id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("user {id} not found")))?
                .monthly_budget_nano_usd
        }
    };
    if raw.is_some() {
        state.store.set_monthly_budget(id, nanos).await?;
    }
    let hard = match hard {
        Some(h) => {
            state.store.set_hard_limit(id, h).await?;
            h
        }
        None => state.store.hard_limit(id).await?,
    };
    Ok(HttpResponse::Ok().json(BudgetResponse {
        monthly_hard_limit_usd: hard.map(UsdNumber::from_nanos),
        effective_hard_limit_usd: hard
            .or(state.settings.budget.default_hard_limit_nano_usd)
            .map(UsdNumber::from_nanos),
        user_id: id,
        monthly_budget_usd: nanos.map(UsdNumber::from_nanos),
        effective_budget_usd: nanos
            .or(state.settings.notify.default_monthly_budget_nano_usd)
            .map(UsdNumber::from_nanos),
    }))
}

/// Query of the alert list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// Only this user's alerts.
    pub user_id: Option<Uuid>,
    /// Only this local month (`YYYY-MM`).
    #[param(pattern = "^([0-9]{4}-(0[1-9]|1[0-2]))?$")]
    pub month: Option<String>,
    /// At most this many, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// Usage alerts, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertsResponse {
    pub alerts: Vec<AlertItem>,
}

/// Usage alerts.
///
/// Every alert raised (one per user × month × threshold), newest first,
/// with its webhook delivery state.
#[utoipa::path(
    tag = "Admin",
    summary = "Usage alerts",
    params(AlertsQuery),
    security(("user_jwt" = [])),
    responses(
        (status = 200, description = "Alerts", body = AlertsResponse),
        (status = 400, description = "Bad `user_id`, `month` or `limit`", body = ErrorBody),
        (status = 401, description = "Missing or invalid session token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    )
)]
#[get("/alerts")]
pub async fn list_alerts(
    _admin: AdminUser,
    state: web::Data<AppState>,
    query: web::Query<AlertsQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = params::limit(query.limit, 50)?;
    let month = query
        .month
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty());
    if let Some(m) = month {
        let ok = m.len() == 7
            && m.as_bytes()[4] == b'-'
            && m[..4].bytes().all(|b| b.is_ascii_digit())
            && m[5..].parse::<u8>().is_ok_and(|n| (1..=12).contains(&n));
        if !ok {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidParameter,
                format!("month must be YYYY-MM, got `{m}`"),
            ));
        }
    }
    let alerts = state
        .store
        .alerts(&AlertFilter {
            user_id: query.user_id,
            month: month.map(str::to_owned),
            limit,
        })
        .await?;
    Ok(HttpResponse::Ok().json(AlertsResponse {
        alerts: alerts.into_iter().map(AlertItem::from).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_positive_decimals() {
        assert_eq!(
            parse_budget(&Value::from("25.00")).ok(),
            Some(25_000_000_000)
        );
        assert_eq!(
            parse_budget(&serde_json::json!(2.5)).ok(),
            Some(2_500_000_000)
        );
        assert!(parse_budget(&Value::from("-1")).is_err());
        assert!(parse_budget(&Value::from("0")).is_err());
        assert!(parse_budget(&Value::from("ten")).is_err());
        assert!(parse_budget(&Value::Bool(true)).is_err());
    }
}
