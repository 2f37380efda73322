//! The admin dashboard API (overview, errors, costs, funnel, a user's stats),
//! under `routes::ADMIN_SCOPE`. Every route needs
//! an admin session (`AdminUser`: 401 without a valid token, 403 for others).

use crate::error::ErrorCode;
use crate::service::overview::{self as overview_service, Overview, overview as platform_overview};
use crate::{
    ApiError, AppState, ErrorBody,
    auth::{AdminUser, CurrentUser, DashboardAdmin},
    observability::{langsmith_url, sentry_url},
    routes::{
        analytics::{
            UsageFigures, UserComponentsResponse, UserStatsResponse, user_components, user_stats,
        },
        money::UsdNumber,
        params::{self, csv_field},
    },
};
use actix_web::{HttpRequest, HttpResponse, get, web};
use charlie_domain::rfc3339;
use charlie_store::{
    analytics::{CostGrouping, FunnelCounts},
    calendar::Zone,
    rollup::Counters,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

/// The routes of the admin scope (`/api/v1/analytics/admin`).
pub fn admin_routes(cfg: &mut ServiceConfig) {
    cfg.service(overview)
        .service(errors)
        .service(costs)
        .service(funnel)
        .service(user_stats_route)
        .service(user_components_route);
}

/// Users who reached each step, among those who signed up in the period.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunnelData {
    /// Users whose `user_signed_up` milestone falls in the period.
    pub signed_up: i64,
    /// Of those, users who have created at least one component (at any time since).
    pub created_component: i64,
    /// Of those, users who have created at least one workflow.
    pub created_workflow: i64,
    /// Of those, users who have sent at least one message.
    pub sent_message: i64,
}

impl From<FunnelCounts> for FunnelData {
    fn from(f: FunnelCounts) -> Self {
        FunnelData {
            signed_up: f.signed_up,
            created_component: f.created_component,
            created_workflow: f.created_workflow,
            sent_message: f.sent_message,
        }
    }
}

/// Platform-wide figures for the admin dashboard.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminOverviewResponse {
    /// Every user known (including users referenced by the platform whose own record has not arrived yet).
    pub total_users: i64,
    /// Users who sent at least one message (role `user`) since local midnight today.
    pub active_users_today: i64,
    /// Users who sent at least one message in the last 7 local days (since local midnight six days ago).
    pub active_users_week: i64,
    /// Every workflow known.
    pub total_workflows: i64,
    /// Messages (any role) since local midnight today.
    pub total_messages_today: i64,
    /// Messages in the last 7 local days.
    pub total_messages_week: i64,
    /// Error rows (reported by the platform and this service's own 5xx) since local midnight today.
    pub error_count_today: i64,
    /// `error_count_today ÷ total_messages_today`, rounded to 4 decimals; 0 without messages.
    pub error_rate: f64,
    /// Estimated cost of today's priced messages in USD (exact decimal).
    #[schema(value_type = f64)]
    pub estimated_cost_today_usd: UsdNumber,
    /// The cohort funnel over the last `period_days` local days.
    pub funnel: FunnelData,
    /// Estimated cost of the last 7 local days' priced messages in USD.
    #[schema(value_type = f64)]
    pub estimated_cost_week_usd: UsdNumber,
    /// Today's messages whose model has no known price (not in the cost).
    pub unpriced_messages_today: i64,
    /// The funnel's period in days (the `days` parameter).
    pub period_days: u16,
    /// The IANA time zone of "today" and "week".
    pub timezone: String,
}

/// Query of `overview` and `funnel`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PeriodQuery {
    /// Length of the period in days, 1–365 (default 30).
    #[param(minimum = 1, maximum = 365)]
    pub days: Option<i64>,
    /// IANA time zone of day boundaries (default: the admin's stored zone, else UTC).
    pub tz: Option<String>,
}

/// Platform overview.
///
/// "Today" and "week" are local to `timezone`: today starts at local
/// midnight, the week at local midnight six days ago. Message counts and
/// cost come from exact rollups; the funnel is a cohort funnel over `days`.
#[utoipa::path(
    tag = "Admin",
    summary = "Admin overview",
    params(PeriodQuery),
    security(("user_jwt" = [])),
    responses(
        (status = 200, description = "Platform figures", body = AdminOverviewResponse),
        (status = 400, description = "`days` outside 1–365 or unknown `tz`", body = ErrorBody),
        (status = 401, description = "Missing or invalid session token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    )
)]
#[get("/overview")]
pub async fn overview(
    req: HttpRequest,
    DashboardAdmin(admin): DashboardAdmin,
    state: web::Data<AppState>,
    query: web::Query<PeriodQuery>,
) -> Result<HttpResponse, ApiError> {
    let days = params::days(query.days)?;
    let now = OffsetDateTime::now_utc();
    let zone = params::zone(query.tz.as_deref(), admin.timezone.as_deref())?;
    let o = platform_overview(&state.store, admin.user_id, days, &zone, now).await?;
    if admin.confirmed_by(o.figures.user.as_ref()) {
        return Ok(HttpResponse::Ok().json(AdminOverviewResponse::from(o)));
    }
    // The cached identity is outdated: read it again; it may no longer be
    // an admin's, or have another time zone.
    let admin = CurrentUser::reload(&req, &admin).await?;
    if !admin.is_admin {
        return Err(ApiError::Forbidden(
            "this endpoint is for admins only".into(),
        ));
    }
    let zone = params::zone(query.tz.as_deref(), admin.timezone.as_deref())?;
    let o = platform_overview(&state.store, admin.user_id, days, &zone, now).await?;
    Ok(HttpResponse::Ok().json(AdminOverviewResponse::from(o)))
}

impl From<Overview> for AdminOverviewResponse {
    fn from(o: Overview) -> Self {
        let f = o.figures;
        AdminOverviewResponse {
            total_users: f.total_users,
            active_users_today: f.active_users_today,
            active_users_week: f.active_users_week,
            total_workflows: f.total_workflows,
            total_messages_today: f.today.message_count,
            total_messages_week: f.week.message_count,
            error_count_today: f.errors_today,
            error_rate: o.error_rate,
            estimated_cost_today_usd: UsdNumber::from_nanos(f.today.cost_nano_usd),
            funnel: f.funnel.into(),
            estimated_cost_week_usd: UsdNumber::from_nanos(f.week.cost_nano_usd),
            unpriced_messages_today: f.today.unpriced_message_count,
            period_days: o.days,
            timezone: o.timezone,
        }
    }
}

/// One error row.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorLogItem {
    pub id: String,
    /// Where it happened: `langflow`, `openai`, `anthropic`, `backend`, `charlie-stats`…
    pub service: String,
    pub error_type: String,
    /// The message, cut to 200 characters for display.
    pub error_message: String,
    #[schema(required = true)]
    pub error_code: Option<String>,
    #[schema(required = true)]
    pub endpoint: Option<String>,
    /// When it happened (RFC 3339, UTC).
    pub created_at: String,
    /// A link to the Sentry event, when the error was captured there.
    #[schema(required = true)]
    pub sentry_url: Option<String>,
    #[schema(required = true)]
    pub user_id: Option<String>,
    #[schema(required = true)]
    pub workflow_id: Option<String>,
    #[schema(required = true)]
    pub request_id: Option<String>,
}

/// Recent errors.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecentErrorsResponse {
    /// Newest first, at most `limit`.
    pub errors: Vec<ErrorLogItem>,
    /// The number of entries in `errors`.
    pub total: usize,
    /// How many stored errors match the filter in all.
    pub total_matching: i64,
}

/// Query of `errors`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ErrorsQuery {
    /// How many errors, 1–200 (default 20).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// Only this service.
    pub service: Option<String>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)?$")]
    pub format: Option<String>,
}

/// Recent errors, newest first (JSON or CSV).
#[utoipa::path(
    tag = "Admin",
    summary = "Recent errors",
    params(ErrorsQuery),
    security(("user_jwt" = [])),
    responses(
        (status = 200, description = "Errors, newest first: JSON, or the same rows as CSV with `format=csv`", content(
            (RecentErrorsResponse = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "`limit` outside 1–200 or unknown `format`", body = ErrorBody),
        (status = 401, description = "Missing or invalid session token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    )
)]
#[get("/errors")]
pub async fn errors(
    _admin: AdminUser,
    state: web::Data<AppState>,
    query: web::Query<ErrorsQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = params::limit(query.limit, 20)?;
    let csv = params::wants_csv(query.format.as_deref())?;
    let service = query
        .service
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let (rows, total_matching) = state.store.recent_errors(limit, service).await?;
    let items: Vec<ErrorLogItem> = rows
        .into_iter()
        .map(|e| ErrorLogItem {
            id: e.id.to_string(),
            service: e.service,
            error_type: e.error_type,
            error_message: e.error_message.chars().take(200).collect(),
            error_code: e.error_code,
            endpoint: e.endpoint,
            created_at: rfc3339(e.created_at),
            sentry_url: e
                .sentry_event_id
                .as_deref()
                .and_then(|id| sentry_url(&state.settings, id)),
            user_id: e.user_id.map(|u| u.to_string()),
            workflow_id: e.workflow_id.map(|w| w.to_string()),
            request_id: e.request_id,
        })
        .collect();
    if csv {
        let mut out = String::from(
            "id,created_at,service,error_type,error_code,endpoint,user_id,workflow_id,request_id,sentry_url,error_message\n",
        );
        for e in &items {
            let fields = [
                e.id.as_str(),
                &e.created_at,
                &e.service,
                &e.error_type,
                e.error_code.as_deref().unwrap_or(""),
                e.endpoint.as_deref().unwrap_or(""),
                e.user_id.as_deref().unwrap_or(""),
                e.workflow_id.as_deref().unwrap_or(""),
                e.request_id.as_deref().unwrap_or(""),
                e.sentry_url.as_deref().unwrap_or(""),
                &e.error_message,
            ];
            out.push_str(
                &fields
                    .iter()
                    .map(|f| csv_field(f))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push('\n');
        }
        return Ok(csv_response("errors.csv", out));
    }
    Ok(HttpResponse::Ok().json(RecentErrorsResponse {
        total: items.len(),
        errors: items,
        total_matching,
    }))
}

fn csv_response(name: &str, body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{name}\""),
        ))
        .body(body)
}

/// One group of the cost report.
#[derive(Debug, Serialize, ToSchema)]
pub struct CostGroupItem {
    /// The local day, model, user id, workflow id or component id; empty
    /// string for "none" (no model, no workflow).
    pub key: String,
    /// By component: the component's name (empty while only its id is
    /// known). Absent for the other groupings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// By component: the workflow every message of the component in the
    /// period belongs to; absent when they belong to none or to several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    /// By component: that workflow's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_name: Option<String>,
    /// The group's messages, tokens and cost.
    #[serde(flatten)]
    pub usage: UsageFigures,
}

impl CostGroupItem {
    fn new(key: String, c: &Counters) -> Self {
        CostGroupItem {
            key,
            label: None,
            workflow_id: None,
            workflow_name: None,
            usage: UsageFigures::of(c),
        }
    }
}

/// Cost and tokens over a period, grouped.
#[derive(Debug, Serialize, ToSchema)]
pub struct CostsResponse {
    /// First local day (inclusive).
    pub from: String,
    /// Last local day (inclusive).
    pub to: String,
    pub timezone: String,
    /// `day`, `model`, `user`, `workflow` or `component`.
    pub group_by: String,
    /// By day: every day of the range, oldest first. By model: every model,
    /// largest cost first. By user, workflow or component: the `limit`
    /// largest by cost. By component, only messages that named a component
    /// are in a group.
    pub groups: Vec<CostGroupItem>,
    /// The whole period (every message, including groups beyond `limit`).
    pub totals: CostGroupItem,
}

/// Query of `costs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CostsQuery {
    /// First local day, YYYY-MM-DD (default: 29 days before `to`).
    #[param(format = Date)]
    pub from: Option<String>,
    /// Last local day, YYYY-MM-DD (default: today). At most 366 days after `from`.
    #[param(format = Date)]
    pub to: Option<String>,
    /// `day` (default), `model`, `user`, `workflow` or `component`.
    #[param(pattern = "^(day|model|user|workflow|component)?$")]
    pub group_by: Option<String>,
    /// IANA time zone of day boundaries (default: the admin's stored zone, else UTC).
    pub tz: Option<String>,
    /// For `user`, `workflow` and `component`: how many groups, 1–200 (default 100).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)?$")]
    pub format: Option<String>,
}

/// Cost report (JSON or CSV).
///
/// Costs are exact sums of per-message costs (each priced at its own
/// timestamp, rounded to 1e-9 USD). Usage of models without a price is
/// reported in `unpriced_messages`/`unpriced_tokens`, never as $0.
#[utoipa::path(
    tag = "Admin",
    summary = "Costs",
    params(CostsQuery),
    security(("user_jwt" = [])),
    responses(
        (status = 200, description = "The cost report: JSON, or its groups as CSV with `format=csv`", content(
            (CostsResponse = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "Bad dates, `from` after `to`, a range over 366 days, unknown `group_by`, `tz` or `format`", body = ErrorBody),
        (status = 401, description = "Missing or invalid session token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    )
)]
#[get("/costs")]
pub async fn costs(
    admin: AdminUser,
    state: web::Data<AppState>,
    query: web::Query<CostsQuery>,
) -> Result<HttpResponse, ApiError> {
    let zone = params::zone(query.tz.as_deref(), admin.0.timezone.as_deref())?;
    let csv = params::wants_csv(query.format.as_deref())?;
    let limit = params::limit(query.limit, 100)?;
    let grouping = match query.group_by.as_deref().map(str::trim).unwrap_or("day") {
        "day" | "" => CostGrouping::Day,
        "model" => CostGrouping::Model,
        "user" => CostGrouping::User,
        "workflow" => CostGrouping::Workflow,
        "component" => CostGrouping::Component,
        other => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidParameter,
                format!("group_by must be day, model, user, workflow or component, got `{other}`"),
            ));
        }
    };
    let now = OffsetDateTime::now_utc();
    let to = params::date("to", query.to.as_deref())?.unwrap_or_else(|| zone.date_of(now));
    let from = match params::date("from", query.from.as_deref())? {
        Some(f) => f,
        None => to - time::Duration::days(29),
    };
    if from > to {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidParameter,
            format!("from ({from}) is after to ({to})"),
        ));
    }
    let span = (to - from).whole_days() + 1;
    if span > 366 {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidParameter,
            format!("the range has {span} days; at most 366"),
        ));
    }
    let mut days = Vec::new();
    let mut d = from;
    while d <= to {
        days.push(zone.day(d).ok_or_else(|| {
            ApiError::bad_request(ErrorCode::InvalidParameter, "date outside the calendar")
        })?);
        d = match d.next_day() {
            Some(n) => n,
            None => break,
        };
    }
    let groups = state.store.cost_report(&days, grouping, limit).await?;
    let totals_usage = state.store.platform_usage(&days).await?;
    let totals = CostGroupItem::new("total".into(), &totals_usage.total_last(days.len()));
    let mut items: Vec<CostGroupItem> = groups
        .iter()
        .map(|g| CostGroupItem::new(g.key.clone(), &g.counters))
        .collect();
    if grouping == CostGrouping::Component {
        label_components(&state, &groups, &mut items).await?;
    }
    let group_by = match grouping {
        CostGrouping::Day => "day",
        CostGrouping::Model => "model",
        CostGrouping::User => "user",
        CostGrouping::Workflow => "workflow",
        CostGrouping::Component => "component",
    };
    if csv {
        // By component the key is followed by its name and workflow.
        let labels = if grouping == CostGrouping::Component {
            ",component_name,workflow_id,workflow_name"
        } else {
            ""
        };
        let mut out = format!("{group_by}{labels},{}\n", UsageFigures::CSV_COLUMNS);
        for g in &items {
            let mut key = csv_field(&g.key);
            if grouping == CostGrouping::Component {
                for f in [&g.label, &g.workflow_id, &g.workflow_name] {
                    key.push(',');
                    key.push_str(&csv_field(f.as_deref().unwrap_or("")));
                }
            }
            out.push_str(&format!("{key},{}\n", g.usage.csv_row()));
        }
        return Ok(csv_response(&format!("costs-by-{group_by}.csv"), out));
    }
    Ok(HttpResponse::Ok().json(CostsResponse {
        from: from.to_string(),
        to: to.to_string(),
        timezone: zone.name().to_owned(),
        group_by: group_by.to_owned(),
        groups: items,
        totals,
    }))
}

/// Fills the name and workflow of component groups (two lookups by id for
/// the groups shown, at most `limit` of each).
async fn label_components(
    state: &AppState,
    groups: &[charlie_store::analytics::CostGroup],
    items: &mut [CostGroupItem],
) -> Result<(), ApiError> {
    let ids: Vec<Uuid> = groups.iter().filter_map(|g| g.key.parse().ok()).collect();
    let workflow_ids: Vec<Uuid> = groups.iter().filter_map(|g| g.workflow_id).collect();
    let names = state.store.component_names(&ids).await?;
    let workflow_names = state.store.workflow_names(&workflow_ids).await?;
    for (g, item) in groups.iter().zip(items.iter_mut()) {
        let id: Option<Uuid> = g.key.parse().ok();
        item.label = Some(
            id.and_then(|id| names.get(&id).cloned())
                .unwrap_or_default(),
        );
        item.workflow_id = g.workflow_id.map(|w| w.to_string());
        item.workflow_name = g
            .workflow_id
            .map(|w| workflow_names.get(&w).cloned().unwrap_or_default());
    }
    Ok(())
}

/// One step of the funnel.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunnelStep {
    /// `signed_up`, `created_component`, `created_workflow` or `sent_message`.
    pub step: String,
    /// Users of the cohort who reached the step.
    pub users: i64,
    /// `users ÷ users of the previous step`, rounded to 4 decimals; null for
    /// the first step or when the previous step has no users.
    #[schema(required = true)]
    pub conversion_from_previous: Option<f64>,
    /// `users ÷ signed_up`, rounded to 4 decimals; null when nobody signed up.
    #[schema(required = true)]
    pub conversion_from_signup: Option<f64>,
}

/// The cohort funnel.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunnelResponse {
    pub period_days: u16,
    pub timezone: String,
    /// The same counts as the overview's `funnel`.
    pub counts: FunnelData,
    /// The steps in order, with conversion rates.
    pub steps: Vec<FunnelStep>,
}

fn ratio(n: i64, d: i64) -> Option<f64> {
    (d > 0).then(|| (n as f64 / d as f64 * 10_000.0).round() / 10_000.0)
}

/// Onboarding funnel.
///
/// The cohort is every user whose sign-up falls in the last `days` local
/// days; each later step counts the cohort's users who have reached it, at
/// any time since. Steps therefore never exceed the cohort.
#[utoipa::path(
    tag = "Admin",
    summary = "Funnel",
    params(PeriodQuery),
    security(("user_jwt" = [])),
    responses(
        (status = 200, description = "The funnel", body = FunnelResponse),
        (status = 400, description = "`days` outside 1–365 or unknown `tz`", body = ErrorBody),
        (status = 401, description = "Missing or invalid session token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    )
)]
#[get("/funnel")]
pub async fn funnel(
    admin: AdminUser,
    state: web::Data<AppState>,
    query: web::Query<PeriodQuery>,
) -> Result<HttpResponse, ApiError> {
    let days = params::days(query.days)?;
    let zone = params::zone(query.tz.as_deref(), admin.0.timezone.as_deref())?;
    let f = overview_service::funnel(&state.store, &zone, days, OffsetDateTime::now_utc()).await?;
    let order = [
        ("signed_up", f.signed_up),
        ("created_component", f.created_component),
        ("created_workflow", f.created_workflow),
        ("sent_message", f.sent_message),
    ];
    let steps = order
        .iter()
        .enumerate()
        .map(|(i, (step, users))| FunnelStep {
            step: (*step).to_owned(),
            users: *users,
            conversion_from_previous: if i == 0 {
                None
            } else {
                ratio(*users, order[i - 1].1)
            },
            conversion_from_signup: ratio(*users, f.signed_up),
        })
        .collect();
    Ok(HttpResponse::Ok().json(FunnelResponse {
        period_days: days,
        timezone: zone.name().to_owned(),
        counts: f.into(),
        steps,
    }))
}

/// A user as the admin sees them.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminUserInfo {
    pub id: String,
    #[schema(required = true)]
    pub external_id: Option<String>,
    #[schema(required = true)]
    pub email: Option<String>,
    #[schema(required = true)]
    pub timezone: Option<String>,
    /// When the user signed up (RFC 3339).
    pub created_at: String,
}

/// A recent conversation of the user.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminConversation {
    pub id: String,
    #[schema(required = true)]
    pub workflow_id: Option<String>,
    #[schema(required = true)]
    pub langflow_session_id: Option<String>,
    /// When it started (RFC 3339).
    pub created_at: String,
    /// LangSmith traces of the conversation, when `LANGSMITH_PROJECT` is set.
    #[schema(required = true)]
    pub langsmith_url: Option<String>,
}

/// The user an admin route is about, with the period's length and zone
/// (`tz`, else the user's stored zone, else UTC); 404 for an unknown user.
async fn target_user(
    state: &AppState,
    path: web::Path<Uuid>,
    query: &PeriodQuery,
) -> Result<(Uuid, charlie_store::analytics::UserSummary, u16, Zone), ApiError> {
    let id = path.into_inner();
    let user = state
        .store
        .user_summary(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {id} not found")))?;
    let days = params::days(query.days)?;
    let zone = params::zone(query.tz.as_deref(), user.timezone.as_deref())?;
    Ok((id, user, days, zone))
}

/// Charlie Stats of any user, for admins.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminUserStatsResponse {
    pub user: AdminUserInfo,
    /// Exactly what the user sees in `my-stats`.
    pub stats: UserStatsResponse,
    /// The user's 20 most recent conversations, newest first.
    pub recent_conversations: Vec<AdminConversation>,
}

/// Any user's Charlie Stats.
#[utoipa::path(
    tag = "Admin",
    summary = "A user's stats",
    params(("id" = Uuid, Path, description = "The user's id (`users.id`)"), PeriodQuery),
    security(("user_jwt" = [])),
    responses(
        (status = 200, description = "The user's stats", body = AdminUserStatsResponse),
        (status = 400, description = "Bad id, `days` or `tz`", body = ErrorBody),
        (status = 401, description = "Missing or invalid session token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
#[get("/users/{id}/stats")]
pub async fn user_stats_route(
    _admin: AdminUser,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<PeriodQuery>,
) -> Result<HttpResponse, ApiError> {
    let (id, user, days, zone) = target_user(&state, path, &query).await?;
    let stats = user_stats(&state, id, days, &zone, OffsetDateTime::now_utc()).await?;
    let recent_conversations = state
        .store
        .recent_conversations(id, 20)
        .await?
        .into_iter()
        .map(|c| AdminConversation {
            id: c.id.to_string(),
            workflow_id: c.workflow_id.map(|w| w.to_string()),
            langsmith_url: c
                .langflow_session_id
                .as_deref()
                .and_then(|s| langsmith_url(&state.settings, s)),
            langflow_session_id: c.langflow_session_id,
            created_at: rfc3339(c.created_at),
        })
        .collect();
    Ok(HttpResponse::Ok().json(AdminUserStatsResponse {
        user: AdminUserInfo {
            id: user.id.to_string(),
            external_id: user.external_id,
            email: user.email,
            timezone: user.timezone,
            created_at: rfc3339(user.created_at),
        },
        stats,
        recent_conversations,
    }))
}

/// Any user's cost per component.
///
/// Exactly what the user sees in `my-stats/components`, with the period's
/// days in `tz` (default: the user's stored zone, else UTC).
#[utoipa::path(
    tag = "Admin",
    summary = "A user's stats per component",
    params(("id" = Uuid, Path, description = "The user's id (`users.id`)"), PeriodQuery),
    security(("user_jwt" = [])),
    responses(
        (status = 200, description = "The user's usage per workflow and component", body = UserComponentsResponse),
        (status = 400, description = "Bad id, `days` or `tz`", body = ErrorBody),
        (status = 401, description = "Missing or invalid session token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
#[get("/users/{id}/components")]
pub async fn user_components_route(
    _admin: AdminUser,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<PeriodQuery>,
) -> Result<HttpResponse, ApiError> {
    let (id, _, days, zone) = target_user(&state, path, &query).await?;
    let breakdown = user_components(&state, id, days, &zone, OffsetDateTime::now_utc()).await?;
    Ok(HttpResponse::Ok().json(breakdown))
}
