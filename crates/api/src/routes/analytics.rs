//! Charlie Stats for the signed-in user: `GET /api/v1/analytics/my-stats`
//! and its per-component breakdown `GET /api/v1/analytics/my-stats/components`.
//! `user_stats` and `user_components` build the same responses for the admin
//! view of any user.

use crate::service::stats::{self, UserStats};
use crate::{
    ApiError, AppState, ErrorBody,
    auth::{CurrentUser, DashboardUser},
    routes::{money::UsdNumber, params},
};
use actix_web::{HttpRequest, HttpResponse, get, web};
use charlie_store::{calendar::Zone, rollup::Counters};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(my_stats).service(my_components);
}

/// One day of `daily_breakdown`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DailyBreakdown {
    /// The local calendar day (`YYYY-MM-DD`) in the response's `timezone`.
    pub date: String,
    /// Messages (any role) in the user's conversations that day.
    pub messages: i64,
    /// Conversations the user started that day.
    pub conversations: i64,
    /// Input + output tokens that day.
    pub total_tokens: i64,
    /// Estimated cost of that day's priced messages, in USD (exact decimal).
    #[schema(value_type = f64)]
    pub estimated_cost_usd: UsdNumber,
}

/// The workflow with the most messages in the period.
#[derive(Debug, Serialize, ToSchema)]
pub struct MostActiveWorkflow {
    pub id: String,
    pub name: String,
    /// Its messages in the period.
    pub message_count: i64,
}

/// Charlie Stats of one user.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserStatsResponse {
    /// All messages (any role) in the user's conversations, all time.
    pub total_messages: i64,
    /// All conversations the user started, all time.
    pub total_conversations: i64,
    /// Messages in the last 7 local days: from local midnight six days ago until now.
    pub messages_this_week: i64,
    /// Conversations started in the same 7 days.
    pub conversations_this_week: i64,
    /// Exactly `period_days` entries, oldest first, ending today (local), zero-filled.
    /// They add up to the `period_*` totals.
    pub daily_breakdown: Vec<DailyBreakdown>,
    /// The workflow with the most messages in the period (ties: the smaller
    /// id); null when no message of the period belongs to a workflow.
    #[schema(required = true)]
    pub most_active_workflow: Option<MostActiveWorkflow>,
    /// `total_messages ÷ total_conversations`, rounded to one decimal; 0 without conversations.
    pub avg_messages_per_conversation: f64,
    /// The number of days of the period (the `days` parameter).
    pub period_days: u16,
    /// The IANA time zone of every day boundary in this response.
    pub timezone: String,
    /// Messages in the period (the sum of `daily_breakdown[].messages`).
    pub period_messages: i64,
    /// Conversations started in the period.
    pub period_conversations: i64,
    /// Prompt tokens in the period, cache reads and writes included.
    pub period_input_tokens: i64,
    /// Generated tokens in the period, reasoning included.
    pub period_output_tokens: i64,
    /// `period_input_tokens + period_output_tokens`.
    pub period_total_tokens: i64,
    /// Estimated cost of the period's priced messages in USD (exact decimal).
    /// Messages whose model has no price are not in it: see `period_unpriced_messages`.
    #[schema(value_type = f64)]
    pub period_estimated_cost_usd: UsdNumber,
    /// Messages of the period whose model has no known price.
    pub period_unpriced_messages: i64,
    /// Tokens (input + output) of those messages.
    pub period_unpriced_tokens: i64,
}

/// Query of `my-stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Length of the period in days, 1–365 (default 30).
    #[param(minimum = 1, maximum = 365)]
    pub days: Option<i64>,
    /// IANA time zone of day boundaries (default: the user's stored zone, else UTC).
    pub tz: Option<String>,
}

/// Builds Charlie Stats for `user_id` over `days` local days in `zone`.
pub async fn user_stats(
    state: &AppState,
    user_id: Uuid,
    days: u16,
    zone: &Zone,
    now: OffsetDateTime,
) -> Result<UserStatsResponse, ApiError> {
    let stats = stats::user_stats(&state.store, user_id, days, zone, now).await?;
    Ok(UserStatsResponse::from(stats))
}

impl From<UserStats> for UserStatsResponse {
    fn from(s: UserStats) -> Self {
        let daily_breakdown = s
            .period_days()
            .iter()
            .map(|d| DailyBreakdown {
                date: d.date.to_string(),
                messages: d.counters.message_count,
                conversations: d.counters.conversations_started,
                total_tokens: d.counters.input_tokens + d.counters.output_tokens,
                estimated_cost_usd: UsdNumber::from_nanos(d.counters.cost_nano_usd),
            })
            .collect();
        let (period, dash) = (s.period, s.dashboard);
        UserStatsResponse {
            total_messages: dash.total_messages,
            total_conversations: dash.total_conversations,
            messages_this_week: s.week.message_count,
            conversations_this_week: s.week.conversations_started,
            daily_breakdown,
            most_active_workflow: dash.top_workflow.map(|w| MostActiveWorkflow {
                id: w.id.to_string(),
                name: w.name,
                message_count: w.message_count,
            }),
            avg_messages_per_conversation: s.avg_messages_per_conversation,
            period_days: s.days,
            timezone: s.timezone,
            period_messages: period.message_count,
            period_conversations: period.conversations_started,
            period_input_tokens: period.input_tokens,
            period_output_tokens: period.output_tokens,
            period_total_tokens: period.input_tokens + period.output_tokens,
            period_estimated_cost_usd: UsdNumber::from_nanos(period.cost_nano_usd),
            period_unpriced_messages: period.unpriced_message_count,
            period_unpriced_tokens: period.unpriced_tokens,
        }
    }
}

/// Charlie Stats: the signed-in user's activity.
///
/// Every figure is read from exact rollups; day boundaries are local
/// midnights in `timezone` (DST days have 23 or 25 hours). Definitions are on
/// each field of the response.
#[utoipa::path(
    tag = "Analytics",
    summary = "My stats",
    params(StatsQuery),
    security(("user_jwt" = [])),
    responses(
        (status = 200, description = "The user's stats", body = UserStatsResponse),
        (status = 400, description = "`days` outside 1–365 or unknown `tz`", body = ErrorBody),
        (status = 401, description = "Missing or invalid session token", body = ErrorBody),
    )
)]
#[get("/api/v1/analytics/my-stats")]
pub async fn my_stats(
    req: HttpRequest,
    DashboardUser(user): DashboardUser,
    state: web::Data<AppState>,
    query: web::Query<StatsQuery>,
) -> Result<HttpResponse, ApiError> {
    let days = params::days(query.days)?;
    let now = OffsetDateTime::now_utc();
    let zone = params::zone(query.tz.as_deref(), user.timezone.as_deref())?;
    let stats = stats::user_stats(&state.store, user.user_id, days, &zone, now).await?;
    if user.confirmed_by(stats.dashboard.user.as_ref()) {
        return Ok(HttpResponse::Ok().json(UserStatsResponse::from(stats)));
    }
    // The cached identity is outdated (time zone, e-mail, or the subject is
    // now another user's): read it again and answer from the fresh one.
    let user = CurrentUser::reload(&req, &user).await?;
    let zone = params::zone(query.tz.as_deref(), user.timezone.as_deref())?;
    let stats = user_stats(&state, user.user_id, days, &zone, now).await?;
    Ok(HttpResponse::Ok().json(stats))
}

/// Messages, tokens and exact cost of a set of messages (a component's, a
/// cost group's).
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageFigures {
    /// Messages counted.
    pub messages: i64,
    /// Prompt tokens, cache reads and writes included.
    pub input_tokens: i64,
    /// Generated tokens, reasoning included.
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    /// `input_tokens + output_tokens`.
    pub total_tokens: i64,
    /// Estimated cost of the priced messages in USD (exact decimal).
    #[schema(value_type = f64)]
    pub estimated_cost_usd: UsdNumber,
    /// Messages whose model has no price: never counted as $0, reported here.
    pub unpriced_messages: i64,
    /// Input + output tokens of those messages.
    pub unpriced_tokens: i64,
}

impl UsageFigures {
    /// The CSV columns of the figures, in [`UsageFigures::csv_row`] order.
    pub(crate) const CSV_COLUMNS: &'static str = "messages,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,reasoning_tokens,total_tokens,estimated_cost_usd,unpriced_messages,unpriced_tokens";

    /// The figures as CSV fields (numbers only: nothing to quote).
    pub(crate) fn csv_row(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{}",
            self.messages,
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
            self.total_tokens,
            self.estimated_cost_usd.0,
            self.unpriced_messages,
            self.unpriced_tokens
        )
    }

    pub(crate) fn of(c: &Counters) -> Self {
        UsageFigures {
            messages: c.message_count,
            input_tokens: c.input_tokens,
            output_tokens: c.output_tokens,
            cache_read_tokens: c.cache_read_tokens,
            cache_write_tokens: c.cache_write_tokens,
            reasoning_tokens: c.reasoning_tokens,
            total_tokens: c.input_tokens + c.output_tokens,
            estimated_cost_usd: UsdNumber::from_nanos(c.cost_nano_usd),
            unpriced_messages: c.unpriced_message_count,
            unpriced_tokens: c.unpriced_tokens,
        }
    }
}

/// One component of a workflow in the breakdown.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentBreakdown {
    pub component_id: String,
    /// The component's name; empty while only its id is known (its
    /// `component.upsert` has not arrived yet).
    pub name: String,
    pub usage: UsageFigures,
}

/// One workflow of the breakdown and its components.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowBreakdown {
    /// Null for conversations without a workflow.
    #[schema(required = true)]
    pub workflow_id: Option<String>,
    /// Null without a workflow; empty while only its id is known.
    #[schema(required = true)]
    pub workflow_name: Option<String>,
    /// The sum of its components.
    pub usage: UsageFigures,
    /// Largest cost first, then most messages.
    pub components: Vec<ComponentBreakdown>,
}

/// Cost and tokens per Langflow component, per workflow.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserComponentsResponse {
    /// The number of days of the period (the `days` parameter).
    pub period_days: u16,
    /// The IANA time zone of the period's day boundaries.
    pub timezone: String,
    /// First local day (inclusive).
    pub from: String,
    /// Last local day (inclusive, today).
    pub to: String,
    /// Workflows with at least one message that named a component, largest
    /// cost first; messages without a component are not in this breakdown.
    pub workflows: Vec<WorkflowBreakdown>,
    /// The sum of every workflow.
    pub totals: UsageFigures,
}

/// Builds the per-component breakdown of `user_id` over `days` local days
/// in `zone`, from `component_buckets` (exact in any zone).
pub async fn user_components(
    state: &AppState,
    user_id: Uuid,
    days: u16,
    zone: &Zone,
    now: OffsetDateTime,
) -> Result<UserComponentsResponse, ApiError> {
    let b = stats::component_breakdown(&state.store, user_id, days, zone, now).await?;
    let named = |id: &Uuid, names: &std::collections::HashMap<Uuid, String>| {
        names.get(id).cloned().unwrap_or_default()
    };
    Ok(UserComponentsResponse {
        period_days: b.days,
        timezone: b.timezone,
        from: b.from.to_string(),
        to: b.to.to_string(),
        workflows: b
            .workflows
            .iter()
            .map(|w| WorkflowBreakdown {
                workflow_id: w.workflow_id.map(|id| id.to_string()),
                workflow_name: w.workflow_id.map(|id| named(&id, &b.workflow_names)),
                usage: UsageFigures::of(&w.total),
                components: w
                    .components
                    .iter()
                    .map(|(id, c)| ComponentBreakdown {
                        component_id: id.to_string(),
                        name: named(id, &b.component_names),
                        usage: UsageFigures::of(c),
                    })
                    .collect(),
            })
            .collect(),
        totals: UsageFigures::of(&b.totals),
    })
}

/// My cost per component.
///
/// For each workflow, the Langflow components that made LLM calls in the
/// last `days` local days (from local midnight `days - 1` days ago until
/// now), with their messages, tokens and exact cost. Only messages that
/// named a component (`message.create` `body.component_id`) are counted.
#[utoipa::path(
    tag = "Analytics",
    summary = "My stats per component",
    params(StatsQuery),
    security(("user_jwt" = [])),
    responses(
        (status = 200, description = "The user's usage per workflow and component", body = UserComponentsResponse),
        (status = 400, description = "`days` outside 1–365 or unknown `tz`", body = ErrorBody),
        (status = 401, description = "Missing or invalid session token", body = ErrorBody),
    )
)]
#[get("/api/v1/analytics/my-stats/components")]
pub async fn my_components(
    user: CurrentUser,
    state: web::Data<AppState>,
    query: web::Query<StatsQuery>,
) -> Result<HttpResponse, ApiError> {
    let days = params::days(query.days)?;
    let zone = params::zone(query.tz.as_deref(), user.timezone.as_deref())?;
    let breakdown =
        user_components(&state, user.user_id, days, &zone, OffsetDateTime::now_utc()).await?;
    Ok(HttpResponse::Ok().json(breakdown))
}
