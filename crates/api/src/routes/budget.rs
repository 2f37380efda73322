//! Budgets that hold: `POST /api/v1/budget/reserve`, `/commit` and
//! `/release` (service key), the admin's workflow limits
//! (`PUT /api/v1/analytics/admin/workflows/{id}/budget`) and the repricing
//! audit (`GET /api/v1/analytics/admin/reprice-runs`). The protocol and its
//! guarantees are described in `charlie_store::reservations`.

use crate::error::ErrorCode;
use crate::{
    ApiError, AppState, ErrorBody,
    auth::{AdminUser, ServiceKey},
    config::env::{ConfigError, Env, parse_var},
    routes::{
        money::{self, UsdNumber},
        params,
    },
};
use actix_web::{HttpResponse, get, post, put, web};
use charlie_domain::TokenUsage;
use charlie_pricing::PricingStatus;
use charlie_store::{
    reprice::RepriceRun,
    reservations::{
        CommitRequest, MAX_IDEMPOTENCY_KEY_CHARS, Reservation, ReserveOutcome, ReservePolicy,
        ReserveRequest, Standing,
    },
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(reserve).service(commit).service(release);
}

/// The routes of the admin scope (`/api/v1/analytics/admin`).
pub fn admin_routes(cfg: &mut ServiceConfig) {
    cfg.service(set_workflow_budget).service(reprice_runs);
}

/// Reservation settings.
#[derive(Debug, Clone)]
pub struct BudgetSettings {
    /// `BUDGET_DEFAULT_HARD_LIMIT_USD`: the hard limit of users without their
    /// own (unset = none).
    pub default_hard_limit_nano_usd: Option<i64>,
    /// `BUDGET_RESERVATION_TTL_SECONDS` (default 120): a reservation's life
    /// when the request names none.
    pub default_ttl_seconds: i64,
    /// `BUDGET_RESERVATION_MAX_TTL_SECONDS` (default 3600): the longest TTL accepted.
    pub max_ttl_seconds: i64,
    /// `BUDGET_COMMIT_HOLD_SECONDS` (default 600): how long a committed cost
    /// stays held while its message has not been ingested.
    pub commit_hold_seconds: i64,
}

impl BudgetSettings {
    pub fn from_env(env: &dyn Env) -> Result<BudgetSettings, ConfigError> {
        let var = "BUDGET_DEFAULT_HARD_LIMIT_USD";
        let default_hard_limit_nano_usd = match env.get(var) {
            None => None,
            Some(raw) => Some(
                money::parse_usd(&Value::String(raw), var, false)
                    .map_err(|e| ConfigError::new(var, e.to_string()))?,
            ),
        };
        let default_ttl_seconds: i64 = parse_var(env, "BUDGET_RESERVATION_TTL_SECONDS", 120)?;
        let max_ttl_seconds: i64 = parse_var(env, "BUDGET_RESERVATION_MAX_TTL_SECONDS", 3600)?;
        let commit_hold_seconds: i64 = parse_var(env, "BUDGET_COMMIT_HOLD_SECONDS", 600)?;
        if max_ttl_seconds < 1 || !(1..=max_ttl_seconds).contains(&default_ttl_seconds) {
            return Err(ConfigError::new(
                "BUDGET_RESERVATION_TTL_SECONDS",
                "must be from 1 to BUDGET_RESERVATION_MAX_TTL_SECONDS",
            ));
        }
        if commit_hold_seconds < 0 {
            return Err(ConfigError::new(
                "BUDGET_COMMIT_HOLD_SECONDS",
                "must not be negative",
            ));
        }
        Ok(BudgetSettings {
            default_hard_limit_nano_usd,
            default_ttl_seconds,
            max_ttl_seconds,
            commit_hold_seconds,
        })
    }

    pub fn policy(&self) -> ReservePolicy {
        ReservePolicy {
            default_hard_limit_nano_usd: self.default_hard_limit_nano_usd,
            commit_hold_seconds: self.commit_hold_seconds,
        }
    }
}

fn rfc3339_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .map(charlie_domain::rfc3339)
        .unwrap_or_default()
}

/// Token counts of an estimate or of an actual call.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
pub struct TokenCounts {
    /// Prompt tokens, cache reads and writes included.
    #[serde(default)]
    pub input_tokens: u64,
    /// Generated tokens, reasoning included.
    #[serde(default)]
    pub output_tokens: u64,
    /// Cache-read tokens (a subset of `input_tokens`).
    #[serde(default)]
    pub cache_read_tokens: u64,
    /// Cache-write tokens (a subset of `input_tokens`).
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// Reasoning tokens (a subset of `output_tokens`).
    #[serde(default)]
    pub reasoning_tokens: u64,
}

impl TokenCounts {
    fn usage(&self) -> TokenUsage {
        TokenUsage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cache_read_input_tokens: self.cache_read_tokens,
            cache_creation_input_tokens: self.cache_write_tokens,
            cache_creation_1h_input_tokens: 0,
            reasoning_tokens: self.reasoning_tokens,
        }
    }
}

/// Prices `tokens` of `model` now, or refuses a model without a price.
fn price(state: &AppState, model: &str, tokens: &TokenCounts) -> Result<i64, ApiError> {
    let usage = tokens.usage();
    usage
        .validate()
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidUsage, e.to_string()))?;
    let cost = state
        .catalog
        .price(Some(model), &usage, OffsetDateTime::now_utc());
    match (cost.status, cost.total_usd) {
        (PricingStatus::Priced, Some(usd)) => usd.to_nanos().map_err(|e| {
            ApiError::bad_request(ErrorCode::InvalidUsage, format!("cost out of range: {e}"))
        }),
        _ => Err(ApiError::bad_request(
            ErrorCode::UnpricedModel,
            format!(
                "`{model}` has no complete price ({}); send a cost instead",
                cost.warnings.join("; ")
            ),
        )),
    }
}

/// A reservation request.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({
    "user_id": "0192f0c4-0000-7000-8000-000000000001",
    "workflow_id": null,
    "model": "gpt-4o",
    "input_tokens": 1200,
    "output_tokens": 800,
    "idempotency_key": "run-42/call-1",
    "ttl_seconds": 120
}))]
pub struct ReserveBody {
    /// The user (`users.id`) whose budget pays.
    pub user_id: Uuid,
    /// The workflow, when it has its own limit.
    #[serde(default)]
    pub workflow_id: Option<Uuid>,
    /// The estimated cost in USD (decimal string or number, ≥ 0). Either
    /// this or `model` with token estimates.
    #[serde(default)]
    #[schema(schema_with = crate::routes::money::usd_schema_or_zero, example = "0.05")]
    pub estimated_cost_usd: Option<Value>,
    /// The model to price the token estimate with (the catalog in force now).
    #[serde(default)]
    pub model: Option<String>,
    /// The token estimate (with `model`).
    #[serde(flatten)]
    pub tokens: TokenCounts,
    /// Unique per user and call: a retry with the same key returns the first
    /// reservation and never reserves twice.
    #[schema(min_length = 1, max_length = 255, pattern = "\\S")]
    pub idempotency_key: String,
    /// How long the reservation holds if neither committed nor released
    /// (default `BUDGET_RESERVATION_TTL_SECONDS`, at most
    /// `BUDGET_RESERVATION_MAX_TTL_SECONDS`).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3600)]
    pub ttl_seconds: Option<i64>,
}

/// Where one hard limit stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitStanding {
    /// `user`, `workflow` or `platform_default`.
    pub budget: String,
    #[schema(value_type = f64)]
    pub limit_usd: UsdNumber,
    /// Month-to-date spend (ingested messages, the user's local month).
    #[schema(value_type = f64)]
    pub spent_usd: UsdNumber,
    /// Reservations and committed costs still held (not yet ingested).
    #[schema(value_type = f64)]
    pub reserved_usd: UsdNumber,
    /// `limit − spent − reserved` (negative when actual costs overshot).
    #[schema(value_type = f64)]
    pub remaining_usd: UsdNumber,
}

impl From<Standing> for LimitStanding {
    fn from(s: Standing) -> Self {
        LimitStanding {
            budget: s.scope.as_str().to_owned(),
            limit_usd: UsdNumber::from_nanos(s.limit_nano_usd),
            spent_usd: UsdNumber::from_nanos(s.spent_nano_usd),
            reserved_usd: UsdNumber::from_nanos(s.reserved_nano_usd),
            remaining_usd: UsdNumber::from_nanos(s.remaining_nano_usd()),
        }
    }
}

/// The answer to a reservation: `allowed` (go ahead with the call) or
/// `denied` (a hard limit would be exceeded).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReserveResponse {
    /// `allowed` or `denied`.
    pub decision: String,
    /// The reservation to commit or release; null when denied.
    #[schema(required = true)]
    pub reservation_id: Option<Uuid>,
    /// True when the idempotency key named an earlier reservation (nothing new was reserved).
    pub replayed: bool,
    /// The amount reserved (allowed) or requested (denied), in USD.
    #[schema(value_type = f64)]
    pub amount_usd: UsdNumber,
    /// When the reservation stops counting unless committed (RFC 3339); null when denied.
    #[schema(required = true)]
    pub expires_at: Option<String>,
    /// The least remaining of the hard limits that apply, after this
    /// reservation; null when no hard limit applies.
    #[schema(value_type = Option<f64>, required = true)]
    pub remaining_usd: Option<UsdNumber>,
    /// Why it was denied: `hard_limit_reached`; null when allowed.
    #[schema(required = true)]
    pub reason: Option<String>,
    /// The budget that denied (`user`, `workflow` or `platform_default`), or
    /// when allowed the tightest one; null when no hard limit applies.
    #[schema(required = true)]
    pub budget: Option<String>,
    /// That budget's limit, spend and holds (before the request when denied).
    #[schema(value_type = Option<f64>, required = true)]
    pub limit_usd: Option<UsdNumber>,
    #[schema(value_type = Option<f64>, required = true)]
    pub spent_usd: Option<UsdNumber>,
    #[schema(value_type = Option<f64>, required = true)]
    pub reserved_usd: Option<UsdNumber>,
    /// Every hard limit that applies.
    pub limits: Vec<LimitStanding>,
    /// Soft limits (alert budgets: `user`, `workflow`) that spend and holds
    /// have reached: a warning, never a denial.
    pub soft_limit_reached: Vec<String>,
}

fn check_ttl(settings: &BudgetSettings, ttl: Option<i64>) -> Result<i64, ApiError> {
    let ttl = ttl.unwrap_or(settings.default_ttl_seconds);
    if !(1..=settings.max_ttl_seconds).contains(&ttl) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidValue,
            format!("ttl_seconds must be from 1 to {}", settings.max_ttl_seconds),
        ));
    }
    Ok(ttl)
}

/// Reserve budget before an LLM call.
///
/// Holds the estimated cost (given, or the token estimate priced with the
/// catalog in force now) against the user's hard limit (their own, else
/// `BUDGET_DEFAULT_HARD_LIMIT_USD`) and the workflow's, atomically: month-to-date
/// spend plus held reservations never exceed a hard limit, whatever the
/// concurrency. `denied` comes with HTTP 200 and the budget that refused.
/// Commit the reservation after the call, or release it; otherwise it stops
/// counting after `ttl_seconds`.
#[utoipa::path(
    tag = "Budget",
    summary = "Reserve budget before an LLM call",
    request_body = ReserveBody,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "`allowed` with a reservation, or `denied`", body = ReserveResponse),
        (status = 400, description = "Bad body, or a model without a price", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    )
)]
#[post("/api/v1/budget/reserve")]
pub async fn reserve(
    _key: ServiceKey,
    state: web::Data<AppState>,
    body: web::Json<ReserveBody>,
) -> Result<HttpResponse, ApiError> {
    let key = body.idempotency_key.trim();
    if key.is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidValue,
            format!("idempotency_key must have 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"),
        ));
    }
    let ttl = check_ttl(&state.settings.budget, body.ttl_seconds)?;
    let model = body
        .model
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let amount = match (&body.estimated_cost_usd, model) {
        (Some(v), _) if !v.is_null() => money::parse_usd(v, "estimated_cost_usd", true)?,
        (_, Some(m)) => price(&state, m, &body.tokens)?,
        _ => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidValue,
                "send estimated_cost_usd, or model with input_tokens/output_tokens",
            ));
        }
    };
    let outcome = state
        .store
        .reserve_budget(
            &ReserveRequest {
                user_id: body.user_id,
                workflow_id: body.workflow_id,
                amount_nano_usd: amount,
                model: model.map(str::to_owned),
                idempotency_key: key.to_owned(),
                ttl_seconds: ttl,
            },
            &state.settings.budget.policy(),
            OffsetDateTime::now_utc(),
        )
        .await?;
    let response = match outcome {
        ReserveOutcome::Allowed {
            reservation,
            limits,
            soft_reached,
            replayed,
        } => {
            let tightest = limits
                .iter()
                .min_by_key(|s| s.remaining_nano_usd())
                .copied();
            ReserveResponse {
                decision: "allowed".into(),
                reservation_id: Some(reservation.id),
                replayed,
                amount_usd: UsdNumber::from_nanos(reservation.estimated_nano_usd),
                expires_at: Some(rfc3339_ms(reservation.expires_at_ms)),
                remaining_usd: tightest.map(|s| UsdNumber::from_nanos(s.remaining_nano_usd())),
                reason: None,
                budget: tightest.map(|s| s.scope.as_str().to_owned()),
                limit_usd: tightest.map(|s| UsdNumber::from_nanos(s.limit_nano_usd)),
                spent_usd: tightest.map(|s| UsdNumber::from_nanos(s.spent_nano_usd)),
                reserved_usd: tightest.map(|s| UsdNumber::from_nanos(s.reserved_nano_usd)),
                limits: limits.into_iter().map(LimitStanding::from).collect(),
                soft_limit_reached: soft_reached
                    .into_iter()
                    .map(|s| s.as_str().to_owned())
                    .collect(),
            }
        }
        ReserveOutcome::Denied {
            standing,
            requested_nano_usd,
        } => ReserveResponse {
            decision: "denied".into(),
            reservation_id: None,
            replayed: false,
            amount_usd: UsdNumber::from_nanos(requested_nano_usd),
            expires_at: None,
            remaining_usd: Some(UsdNumber::from_nanos(standing.remaining_nano_usd())),
            reason: Some("hard_limit_reached".into()),
            budget: Some(standing.scope.as_str().to_owned()),
            limit_usd: Some(UsdNumber::from_nanos(standing.limit_nano_usd)),
            spent_usd: Some(UsdNumber::from_nanos(standing.spent_nano_usd)),
            reserved_usd: Some(UsdNumber::from_nanos(standing.reserved_nano_usd)),
            limits: vec![LimitStanding::from(standing)],
            soft_limit_reached: Vec::new(),
        },
    };
    Ok(HttpResponse::Ok().json(response))
}

/// A stored reservation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReservationItem {
    pub reservation_id: Uuid,
    pub user_id: Uuid,
    #[schema(required = true)]
    pub workflow_id: Option<Uuid>,
    pub idempotency_key: String,
    /// `open`, `committed` (actual cost held until its message is ingested
    /// or the hold ends), `settled` (its message is ingested) or `released`.
    pub state: String,
    /// What it holds while it counts, in USD.
    #[schema(value_type = f64)]
    pub held_usd: UsdNumber,
    #[schema(value_type = f64)]
    pub estimated_usd: UsdNumber,
    /// The actual cost reported at commit; null before.
    #[schema(value_type = Option<f64>, required = true)]
    pub actual_usd: Option<UsdNumber>,
    #[schema(required = true)]
    pub message_id: Option<Uuid>,
    #[schema(required = true)]
    pub model: Option<String>,
    /// The user's local month it was made in (`YYYY-MM`).
    pub month: String,
    pub created_at: String,
    /// When it stops counting (RFC 3339).
    pub expires_at: String,
}

impl From<Reservation> for ReservationItem {
    fn from(r: Reservation) -> Self {
        ReservationItem {
            reservation_id: r.id,
            user_id: r.user_id,
            workflow_id: r.workflow_id,
            idempotency_key: r.idempotency_key,
            state: r.state,
            held_usd: UsdNumber::from_nanos(r.amount_nano_usd),
            estimated_usd: UsdNumber::from_nanos(r.estimated_nano_usd),
            actual_usd: r.actual_nano_usd.map(UsdNumber::from_nanos),
            message_id: r.message_id,
            model: r.model,
            month: r.month,
            created_at: rfc3339_ms(r.created_at_ms),
            expires_at: rfc3339_ms(r.expires_at_ms),
        }
    }
}

/// The actual usage of a reserved call.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({
    "reservation_id": "0192f0c4-5a1e-7c3b-9d2e-1f2a3b4c5d6e",
    "message_id": "0192f0c4-5a1e-7c3b-9d2e-000000000042",
    "model": "gpt-4o",
    "input_tokens": 1180,
    "output_tokens": 640
}))]
pub struct CommitBody {
    pub reservation_id: Uuid,
    /// The id of the `message.create` item that records the call (sent
    /// before or after the commit): once it is ingested the reservation
    /// stops counting, since its cost is in the month's spend.
    #[serde(default)]
    pub message_id: Option<Uuid>,
    /// The actual cost in USD (decimal string or number); or `model` and tokens.
    #[serde(default)]
    #[schema(schema_with = crate::routes::money::usd_schema_or_zero)]
    pub actual_cost_usd: Option<Value>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(flatten)]
    pub tokens: TokenCounts,
}

/// Commit a reservation with the call's actual usage.
///
/// Spend is counted once, from ingestion: the commit replaces the held
/// estimate by the actual cost (or, with only `message_id`, keeps the
/// estimate) and keeps it held until the message named by `message_id` is
/// ingested, or at most `BUDGET_COMMIT_HOLD_SECONDS`. Committing again
/// returns the reservation unchanged.
#[utoipa::path(
    tag = "Budget",
    summary = "Commit a reservation",
    request_body = CommitBody,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The reservation after the commit", body = ReservationItem),
        (status = 400, description = "Bad body, or the reservation was released (`conflict`)", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such reservation", body = ErrorBody),
    )
)]
#[post("/api/v1/budget/commit")]
pub async fn commit(
    _key: ServiceKey,
    state: web::Data<AppState>,
    body: web::Json<CommitBody>,
) -> Result<HttpResponse, ApiError> {
    let model = body
        .model
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let actual = match (&body.actual_cost_usd, model) {
        (Some(v), _) if !v.is_null() => Some(money::parse_usd(v, "actual_cost_usd", true)?),
        (_, Some(m)) => Some(price(&state, m, &body.tokens)?),
        _ if body.message_id.is_some() => None,
        _ => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidValue,
                "send message_id, actual_cost_usd, or model with input_tokens/output_tokens",
            ));
        }
    };
    let r = state
        .store
        .commit_reservation(
            &CommitRequest {
                reservation_id: body.reservation_id,
                actual_nano_usd: actual,
                message_id: body.message_id,
            },
            &state.settings.budget.policy(),
            OffsetDateTime::now_utc(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(ReservationItem::from(r)))
}

/// The reservation to release.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReleaseBody {
    pub reservation_id: Uuid,
}

/// Release a reservation (the call did not happen).
///
/// The held amount stops counting at once. Releasing again is a no-op; a
/// committed reservation cannot be released (`conflict`).
#[utoipa::path(
    tag = "Budget",
    summary = "Release a reservation",
    request_body = ReleaseBody,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The released reservation", body = ReservationItem),
        (status = 400, description = "Bad body, or already committed (`conflict`)", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such reservation", body = ErrorBody),
    )
)]
#[post("/api/v1/budget/release")]
pub async fn release(
    _key: ServiceKey,
    state: web::Data<AppState>,
    body: web::Json<ReleaseBody>,
) -> Result<HttpResponse, ApiError> {
    let r = state
        .store
        .release_reservation(body.reservation_id, OffsetDateTime::now_utc())
        .await?;
    Ok(HttpResponse::Ok().json(ReservationItem::from(r)))
}

/// A workflow's monthly limits; an absent key is left as it is, null clears it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct WorkflowBudgetRequest {
    /// Soft limit in USD: reservations report it in `soft_limit_reached`.
    #[schema(schema_with = crate::routes::money::positive_usd_schema, example = "10.00")]
    pub monthly_budget_usd: Option<Value>,
    /// Hard limit in USD: reservations beyond it are denied.
    #[schema(schema_with = crate::routes::money::positive_usd_schema, example = "12.00")]
    pub monthly_hard_limit_usd: Option<Value>,
}

/// A workflow's limits after the change.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowBudgetResponse {
    pub workflow_id: Uuid,
    #[schema(value_type = Option<f64>, required = true)]
    pub monthly_budget_usd: Option<UsdNumber>,
    #[schema(value_type = Option<f64>, required = true)]
    pub monthly_hard_limit_usd: Option<UsdNumber>,
}

/// Reads an optional, nullable limit field of a JSON body: absent → `None`,
/// null → `Some(None)`.
pub fn limit_field(body: &Value, field: &str) -> Result<Option<Option<i64>>, ApiError> {
    match body.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => Ok(Some(Some(money::parse_usd(v, field, false)?))),
    }
}

/// Set a workflow's budget.
///
/// `monthly_hard_limit_usd` denies reservations naming the workflow beyond
/// it (month-to-date in the owner's time zone); `monthly_budget_usd` is soft.
#[utoipa::path(
    tag = "Admin",
    summary = "Set a workflow's budget",
    params(("id" = Uuid, Path, description = "The workflow's id")),
    request_body = WorkflowBudgetRequest,
    security(("user_jwt" = [])),
    responses(
        (status = 200, description = "The limits after the change", body = WorkflowBudgetResponse),
        (status = 400, description = "Bad id or amount", body = ErrorBody),
        (status = 401, description = "Missing or invalid session token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody),
    )
)]
#[put("/workflows/{id}/budget")]
pub async fn set_workflow_budget(
    _admin: AdminUser,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    params::body_keys(&body, &["monthly_budget_usd", "monthly_hard_limit_usd"])?;
    let soft = limit_field(&body, "monthly_budget_usd")?;
    let hard = limit_field(&body, "monthly_hard_limit_usd")?;
    if soft.is_none() && hard.is_none() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidValue,
            "send monthly_budget_usd and/or monthly_hard_limit_usd (null clears one)",
        ));
    }
    let (soft, hard) = state.store.set_workflow_limits(id, soft, hard).await?;
    Ok(HttpResponse::Ok().json(WorkflowBudgetResponse {
        workflow_id: id,
        monthly_budget_usd: soft.map(UsdNumber::from_nanos),
        monthly_hard_limit_usd: hard.map(UsdNumber::from_nanos),
    }))
}

/// One repricing run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RepriceRunItem {
    pub id: Uuid,
    /// Who ran it (`--actor`, else the OS user).
    pub actor: String,
    pub created_at: String,
    /// The UTC days repriced, both included (`YYYY-MM-DD`).
    pub from_date: String,
    pub to_date: String,
    /// The model filter; null for all models.
    #[schema(required = true)]
    pub model: Option<String>,
    pub dry_run: bool,
    pub messages_scanned: i64,
    pub messages_changed: i64,
    /// Cost of the changed messages before and after, in USD.
    #[schema(value_type = f64)]
    pub old_total_usd: UsdNumber,
    #[schema(value_type = f64)]
    pub new_total_usd: UsdNumber,
    #[schema(value_type = f64)]
    pub difference_usd: UsdNumber,
}

impl From<RepriceRun> for RepriceRunItem {
    fn from(r: RepriceRun) -> Self {
        RepriceRunItem {
            id: r.id,
            actor: r.actor,
            created_at: charlie_domain::rfc3339(r.created_at),
            from_date: r.from_date.to_string(),
            to_date: r.to_date.to_string(),
            model: r.model,
            dry_run: r.dry_run,
            messages_scanned: r.messages_scanned,
            messages_changed: r.messages_changed,
            old_total_usd: UsdNumber::from_nanos(r.old_total_nano_usd),
            new_total_usd: UsdNumber::from_nanos(r.new_total_nano_usd),
            difference_usd: UsdNumber::from_nanos(
                r.new_total_nano_usd.saturating_sub(r.old_total_nano_usd),
            ),
        }
    }
}

/// Repricing runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RepriceRunsResponse {
    pub runs: Vec<RepriceRunItem>,
}

/// Query of the repricing runs.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RepriceRunsQuery {
    /// At most this many, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// Repricing runs.
///
/// The audit trail of `charlie-stats reprice`: who ran it, when, over which
/// days and model, and the old and new totals of the messages it changed.
#[utoipa::path(
    tag = "Admin",
    summary = "Repricing runs",
    params(RepriceRunsQuery),
    security(("user_jwt" = [])),
    responses(
        (status = 200, description = "Runs, newest first", body = RepriceRunsResponse),
        (status = 400, description = "Bad `limit`", body = ErrorBody),
        (status = 401, description = "Missing or invalid session token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    )
)]
#[get("/reprice-runs")]
pub async fn reprice_runs(
    _admin: AdminUser,
    state: web::Data<AppState>,
    query: web::Query<RepriceRunsQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = params::limit(query.limit, 50)?;
    let runs = state.store.reprice_runs(limit).await?;
    Ok(HttpResponse::Ok().json(RepriceRunsResponse {
        runs: runs.into_iter().map(RepriceRunItem::from).collect(),
    }))
}
