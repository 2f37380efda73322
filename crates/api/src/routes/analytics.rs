//! Charlie Stats for the signed-in user: `GET /api/v1/analytics/my-stats`.
//! `user_stats` builds the same response for the admin view of any user.

use crate::{
    ApiError, AppState, ErrorBody,
    auth::CurrentUser,
    routes::{money::UsdNumber, params},
};
use actix_web::{HttpResponse, get, web};
use charlie_store::calendar::Zone;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(my_stats);
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
    // The week figures need at least seven days of buckets.
    let fetched = days.max(7);
    let local_days = zone.days_ending(now, fetched).ok_or_else(|| {
        ApiError::bad_request("invalid_parameter", "the period is outside the calendar")
    })?;
    let usage = state.store.user_usage(user_id, &local_days).await?;
    let (total_messages, total_conversations) = state.store.user_lifetime_totals(user_id).await?;
    let week = usage.total_last(7);
    let n = usize::from(days);
    let period = usage.total_last(n);
    let best = state
        .store
        .user_messages_by_workflow(user_id, &local_days[local_days.len().saturating_sub(n)..])
        .await?
        .into_iter()
        .filter_map(|(w, m)| w.map(|w| (w, m)))
        .filter(|(_, m)| *m > 0)
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
    let most_active_workflow = match best {
        Some((id, message_count)) => {
            let names = state.store.workflow_names(&[id]).await?;
            Some(MostActiveWorkflow {
                id: id.to_string(),
                name: names.get(&id).cloned().unwrap_or_default(),
                message_count,
            })
        }
        None => None,
    };
    let avg = if total_conversations > 0 {
        (total_messages as f64 / total_conversations as f64 * 10.0).round() / 10.0
    } else {
        0.0
    };
    Ok(UserStatsResponse {
        total_messages,
        total_conversations,
        messages_this_week: week.message_count,
        conversations_this_week: week.conversations_started,
        daily_breakdown: usage
            .last(n)
            .iter()
            .map(|d| DailyBreakdown {
                date: d.date.to_string(),
                messages: d.counters.message_count,
                conversations: d.counters.conversations_started,
                total_tokens: d.counters.input_tokens + d.counters.output_tokens,
                estimated_cost_usd: UsdNumber::from_nanos(d.counters.cost_nano_usd),
            })
            .collect(),
        most_active_workflow,
        avg_messages_per_conversation: avg,
        period_days: days,
        timezone: zone.name().to_owned(),
        period_messages: period.message_count,
        period_conversations: period.conversations_started,
        period_input_tokens: period.input_tokens,
        period_output_tokens: period.output_tokens,
        period_total_tokens: period.input_tokens + period.output_tokens,
        period_estimated_cost_usd: UsdNumber::from_nanos(period.cost_nano_usd),
        period_unpriced_messages: period.unpriced_message_count,
        period_unpriced_tokens: period.unpriced_tokens,
    })
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
    user: CurrentUser,
    state: web::Data<AppState>,
    query: web::Query<StatsQuery>,
) -> Result<HttpResponse, ApiError> {
    let days = params::days(query.days)?;
    let zone = params::zone(query.tz.as_deref(), user.timezone.as_deref())?;
    let stats = user_stats(&state, user.user_id, days, &zone, OffsetDateTime::now_utc()).await?;
    Ok(HttpResponse::Ok().json(stats))
}
