// The frontend's view of the API, checked against the TypeScript generated
// from openapi/openapi.json the way the frontend uses it: each type is taken
// from `paths[path][method].responses[status].content["application/json"]`,
// so an endpoint whose JSON response leaves the generated `paths` (or changes
// shape) fails to compile. `covered` must list every JSON endpoint of the
// spec (checked here at compile time and by coverage.mjs against the JSON
// file itself).
import type { paths } from "./generated/api";

// ---------------------------------------------------------------------------
// The reporting plan's interfaces, verbatim (src/frontend/src/lib/api.ts,
// AdminDashboardPage.tsx, FunnelChart.tsx, ErrorList.tsx). The service
// answers more fields than the plan reads, so these are checked one way:
// the response must be usable where the plan expects its interface.
// ---------------------------------------------------------------------------

export interface DailyBreakdown {
  date: string;
  messages: number;
}

export interface MostActiveWorkflow {
  id: string;
  name: string;
  message_count: number;
}

export interface UserStats {
  total_messages: number;
  total_conversations: number;
  messages_this_week: number;
  conversations_this_week: number;
  daily_breakdown: DailyBreakdown[];
  most_active_workflow: MostActiveWorkflow | null;
  avg_messages_per_conversation: number;
  period_days: number;
}

interface FunnelData {
  signed_up: number;
  created_component: number;
  created_workflow: number;
  sent_message: number;
}

interface AdminOverview {
  total_users: number;
  active_users_today: number;
  active_users_week: number;
  total_workflows: number;
  total_messages_today: number;
  total_messages_week: number;
  error_count_today: number;
  error_rate: number;
  estimated_cost_today_usd: number;
  funnel: {
    signed_up: number;
    created_component: number;
    created_workflow: number;
    sent_message: number;
  };
}

interface ErrorItem {
  id: string;
  service: string;
  error_type: string;
  error_message: string;
  error_code: string | null;
  endpoint: string | null;
  created_at: string;
  sentry_url: string | null;
}

// ---------------------------------------------------------------------------
// The full responses, as the README and the OpenAPI descriptions document
// them (the plan does not spell these out). Checked both ways: each is an
// exact record of its response, so adding, removing, renaming or retyping a
// field fails here until this file (and so the frontend) is updated.
// ---------------------------------------------------------------------------

interface ApiErrorBody {
  code: string;
  message: string;
}

interface Health {
  status: string;
}

interface Me {
  user_id: string;
  email: string | null;
  is_admin: boolean;
}

interface DailyBreakdownFull extends DailyBreakdown {
  conversations: number;
  total_tokens: number;
  estimated_cost_usd: number;
}

interface UserStatsFull extends UserStats {
  daily_breakdown: DailyBreakdownFull[];
  timezone: string;
  period_messages: number;
  period_conversations: number;
  period_input_tokens: number;
  period_output_tokens: number;
  period_total_tokens: number;
  period_estimated_cost_usd: number;
  period_unpriced_messages: number;
  period_unpriced_tokens: number;
}

interface AdminOverviewFull extends AdminOverview {
  funnel: FunnelData;
  period_days: number;
  timezone: string;
  estimated_cost_week_usd: number;
  unpriced_messages_today: number;
}

interface ErrorItemFull extends ErrorItem {
  request_id: string | null;
  user_id: string | null;
  workflow_id: string | null;
}

interface RecentErrors {
  errors: ErrorItemFull[];
  total: number;
  total_matching: number;
}

interface CostGroup {
  key: string;
  // With group_by=component only: the component's name and its workflow.
  label?: string | null;
  workflow_id?: string | null;
  workflow_name?: string | null;
  messages: number;
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
  reasoning_tokens: number;
  total_tokens: number;
  estimated_cost_usd: number;
  unpriced_messages: number;
  unpriced_tokens: number;
}

// Cost and tokens per Langflow component (my-stats/components and the
// admin's users/{id}/components).
interface UsageFigures {
  messages: number;
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
  reasoning_tokens: number;
  total_tokens: number;
  estimated_cost_usd: number;
  unpriced_messages: number;
  unpriced_tokens: number;
}

interface UserComponents {
  period_days: number;
  timezone: string;
  from: string;
  to: string;
  workflows: {
    workflow_id: string | null;
    workflow_name: string | null;
    usage: UsageFigures;
    components: { component_id: string; name: string; usage: UsageFigures }[];
  }[];
  totals: UsageFigures;
}

interface Costs {
  from: string;
  to: string;
  timezone: string;
  group_by: string;
  groups: CostGroup[];
  totals: CostGroup;
}

interface FunnelStep {
  step: string;
  users: number;
  conversion_from_previous: number | null;
  conversion_from_signup: number | null;
}

interface Funnel {
  period_days: number;
  timezone: string;
  counts: FunnelData;
  steps: FunnelStep[];
}

interface AdminUserStats {
  user: {
    id: string;
    external_id: string | null;
    email: string | null;
    timezone: string | null;
    created_at: string;
  };
  stats: UserStatsFull;
  recent_conversations: {
    id: string;
    workflow_id: string | null;
    langflow_session_id: string | null;
    langsmith_url: string | null;
    created_at: string;
  }[];
}

interface Alert {
  id: string;
  user_id: string;
  month: string;
  threshold_percent: number;
  level: string;
  cost_usd: number;
  budget_usd: number;
  created_at: string;
  webhook_status: string | null;
  webhook_attempts: number;
}

interface Alerts {
  alerts: Alert[];
}

interface MyUsage {
  month: string;
  month_start: string;
  month_end: string;
  timezone: string;
  message_count: number;
  input_tokens: number;
  output_tokens: number;
  total_tokens: number;
  cost_usd: number;
  budget_usd: number | null;
  budget_source: string | null;
  percent_used: number | null;
  projected_month_end_cost_usd: number;
  alerts: Alert[];
  hard_limit_usd: number | null;
  reserved_usd: number;
  open_reservations: Reservation[];
}

interface Reservation {
  reservation_id: string;
  user_id: string;
  workflow_id: string | null;
  idempotency_key: string;
  state: string;
  held_usd: number;
  estimated_usd: number;
  actual_usd: number | null;
  message_id: string | null;
  model: string | null;
  month: string;
  created_at: string;
  expires_at: string;
}

interface LimitStanding {
  budget: string;
  limit_usd: number;
  spent_usd: number;
  reserved_usd: number;
  remaining_usd: number;
}

interface ReserveAnswer {
  decision: string;
  reservation_id: string | null;
  replayed: boolean;
  amount_usd: number;
  expires_at: string | null;
  remaining_usd: number | null;
  reason: string | null;
  budget: string | null;
  limit_usd: number | null;
  spent_usd: number | null;
  reserved_usd: number | null;
  limits: LimitStanding[];
  soft_limit_reached: string[];
}

interface ReserveRequest {
  user_id: string;
  workflow_id?: string | null;
  estimated_cost_usd?: string | null;
  model?: string | null;
  input_tokens?: number;
  output_tokens?: number;
  idempotency_key: string;
  ttl_seconds?: number | null;
}

interface WorkflowBudget {
  workflow_id: string;
  monthly_budget_usd: number | null;
  monthly_hard_limit_usd: number | null;
}

interface RepriceRun {
  id: string;
  actor: string;
  created_at: string;
  from_date: string;
  to_date: string;
  model: string | null;
  dry_run: boolean;
  messages_scanned: number;
  messages_changed: number;
  old_total_usd: number;
  new_total_usd: number;
  difference_usd: number;
}

interface Preferences {
  weekly_report_opt_out: boolean;
}

interface BudgetRequest {
  monthly_budget_usd?: string | null;
  monthly_hard_limit_usd?: string | null;
}

interface Budget {
  user_id: string;
  monthly_budget_usd: number | null;
  effective_budget_usd: number | null;
  monthly_hard_limit_usd: number | null;
  effective_hard_limit_usd: number | null;
}

interface IngestItem {
  id: string;
  type: string;
  timestamp: string;
  body: Record<string, unknown>;
}

interface IngestResult {
  id: string | null;
  status: number;
  outcome: string;
  error: ApiErrorBody | null;
  warnings: string[];
}

// OTLP/JSON's ExportTraceServiceResponse, as OpenTelemetry's exporters read it.
interface OtlpExportResponse {
  partialSuccess?: { rejectedSpans: number; errorMessage: string };
}

// What Langfuse's Python SDK (3.x, as Langflow pins it) reads from
// `GET /api/public/projects` before it sends traces.
interface LangfuseProjects {
  data: {
    id: string;
    name: string;
    organization: { id: string; name: string };
    metadata: { [key: string]: unknown };
  }[];
}

interface IngestResponse {
  results: IngestResult[];
  created: number;
  updated: number;
  duplicates: number;
  errors: number;
}

// ---------------------------------------------------------------------------
// The generated types, from `paths`, as the frontend's client reads them.
// ---------------------------------------------------------------------------

type P = paths;
type HealthJson = P["/health"]["get"]["responses"][200]["content"]["application/json"];
type ReadyJson = P["/ready"]["get"]["responses"][200]["content"]["application/json"];
type IngestJson = P["/api/v1/ingest"]["post"]["responses"][207]["content"]["application/json"];
type IngestBody = P["/api/v1/ingest"]["post"]["requestBody"]["content"]["application/json"];
type MeJson = P["/api/v1/analytics/me"]["get"]["responses"][200]["content"]["application/json"];
type PreferencesJson =
  P["/api/v1/analytics/me/preferences"]["put"]["responses"][200]["content"]["application/json"];
type PreferencesBody =
  P["/api/v1/analytics/me/preferences"]["put"]["requestBody"]["content"]["application/json"];
type MyStatsJson =
  P["/api/v1/analytics/my-stats"]["get"]["responses"][200]["content"]["application/json"];
type MyComponentsJson =
  P["/api/v1/analytics/my-stats/components"]["get"]["responses"][200]["content"]["application/json"];
type UserComponentsJson =
  P["/api/v1/analytics/admin/users/{id}/components"]["get"]["responses"][200]["content"]["application/json"];
type MyUsageJson =
  P["/api/v1/analytics/my-usage"]["get"]["responses"][200]["content"]["application/json"];
type OverviewJson =
  P["/api/v1/analytics/admin/overview"]["get"]["responses"][200]["content"]["application/json"];
type ErrorsJson =
  P["/api/v1/analytics/admin/errors"]["get"]["responses"][200]["content"]["application/json"];
type CostsJson =
  P["/api/v1/analytics/admin/costs"]["get"]["responses"][200]["content"]["application/json"];
type FunnelJson =
  P["/api/v1/analytics/admin/funnel"]["get"]["responses"][200]["content"]["application/json"];
type UserStatsJson =
  P["/api/v1/analytics/admin/users/{id}/stats"]["get"]["responses"][200]["content"]["application/json"];
type BudgetJson =
  P["/api/v1/analytics/admin/users/{id}/budget"]["put"]["responses"][200]["content"]["application/json"];
type BudgetBody =
  P["/api/v1/analytics/admin/users/{id}/budget"]["put"]["requestBody"]["content"]["application/json"];
type ReserveJson =
  P["/api/v1/budget/reserve"]["post"]["responses"][200]["content"]["application/json"];
type ReserveBody =
  P["/api/v1/budget/reserve"]["post"]["requestBody"]["content"]["application/json"];
type CommitJson =
  P["/api/v1/budget/commit"]["post"]["responses"][200]["content"]["application/json"];
type ReleaseJson =
  P["/api/v1/budget/release"]["post"]["responses"][200]["content"]["application/json"];
type WorkflowBudgetJson =
  P["/api/v1/analytics/admin/workflows/{id}/budget"]["put"]["responses"][200]["content"]["application/json"];
type RepriceRunsJson =
  P["/api/v1/analytics/admin/reprice-runs"]["get"]["responses"][200]["content"]["application/json"];
type AlertsJson =
  P["/api/v1/analytics/admin/alerts"]["get"]["responses"][200]["content"]["application/json"];
type OtlpTracesJson = P["/v1/traces"]["post"]["responses"][200]["content"]["application/json"];
type OtlpMetricsJson = P["/v1/metrics"]["post"]["responses"][200]["content"]["application/json"];
type LangfuseTracesJson =
  P["/api/public/otel/v1/traces"]["post"]["responses"][200]["content"]["application/json"];
type LangfuseProjectsJson =
  P["/api/public/projects"]["get"]["responses"][200]["content"]["application/json"];

// ---------------------------------------------------------------------------
// The checks. Each is a compile-time assertion (and `true` at run time).
// ---------------------------------------------------------------------------

/** `Spec` is assignable to `Frontend`: the response can be used as the interface. */
const fits =
  <Spec, Frontend>() =>
  (_: (s: Spec) => Frontend): true =>
    true;
/** Assignable both ways: `Frontend` is an exact record of `Spec`. */
const same =
  <Spec, Frontend>() =>
  (_to: (s: Spec) => Frontend, _from: (f: Frontend) => Spec): true =>
    true;
const id = <T>(x: T): T => x;

type Method = "get" | "put" | "post" | "delete" | "patch";
type Statuses<Op> = Op extends { responses: infer R } ? keyof R & number : never;
/** The 2xx statuses of an operation that have an `application/json` body. */
type JsonSuccess<Op> = Op extends { responses: infer R }
  ? {
      [S in Statuses<Op>]: `${S}` extends `2${string}`
        ? S extends keyof R
          ? R[S] extends { content: { "application/json": unknown } }
            ? S
            : never
          : never
        : never;
    }[Statuses<Op>]
  : never;
/** Every JSON success response of the spec, as `"METHOD path status"`. */
type JsonEndpoint = {
  [Path in keyof P]: {
    [M in Method]: `${Uppercase<M>} ${Path & string} ${JsonSuccess<P[Path][M]>}`;
  }[Method];
}[keyof P];

/** Every JSON body of a non-2xx answer in the spec (they must all be the error body). */
type JsonFailure = {
  [Path in keyof P]: {
    [M in Method]: P[Path][M] extends { responses: infer R }
      ? {
          [S in keyof R & number]: `${S}` extends `2${string}`
            ? never
            : R[S] extends { content: { "application/json": infer T } }
              ? T
              : never;
        }[keyof R & number]
      : never;
  }[Method];
}[keyof P];

// One entry per JSON endpoint: a missing or extra entry is a compile error.
export const covered: { [K in JsonEndpoint]: true } = {
  "GET /health 200": same<HealthJson, Health>()(id, id),
  "GET /ready 200": same<ReadyJson, Health>()(id, id),
  "POST /api/v1/ingest 207": same<IngestJson, IngestResponse>()(id, id),
  "GET /api/v1/analytics/me 200": same<MeJson, Me>()(id, id),
  "PUT /api/v1/analytics/me/preferences 200": same<PreferencesJson, Preferences>()(id, id),
  "GET /api/v1/analytics/my-stats 200":
    fits<MyStatsJson, UserStats>()(id) && same<MyStatsJson, UserStatsFull>()(id, id),
  "GET /api/v1/analytics/my-stats/components 200": same<MyComponentsJson, UserComponents>()(id, id),
  "GET /api/v1/analytics/my-usage 200": same<MyUsageJson, MyUsage>()(id, id),
  "GET /api/v1/analytics/admin/overview 200":
    fits<OverviewJson, AdminOverview>()(id) && same<OverviewJson, AdminOverviewFull>()(id, id),
  "GET /api/v1/analytics/admin/errors 200":
    fits<ErrorsJson, { errors: ErrorItem[] }>()(id) && same<ErrorsJson, RecentErrors>()(id, id),
  "GET /api/v1/analytics/admin/costs 200": same<CostsJson, Costs>()(id, id),
  "GET /api/v1/analytics/admin/funnel 200":
    fits<FunnelJson["counts"], FunnelData>()(id) && same<FunnelJson, Funnel>()(id, id),
  "GET /api/v1/analytics/admin/users/{id}/stats 200":
    fits<UserStatsJson["stats"], UserStats>()(id) && same<UserStatsJson, AdminUserStats>()(id, id),
  "GET /api/v1/analytics/admin/users/{id}/components 200":
    same<UserComponentsJson, UserComponents>()(id, id),
  "PUT /api/v1/analytics/admin/users/{id}/budget 200": same<BudgetJson, Budget>()(id, id),
  "GET /api/v1/analytics/admin/alerts 200": same<AlertsJson, Alerts>()(id, id),
  "POST /api/v1/budget/reserve 200": same<ReserveJson, ReserveAnswer>()(id, id),
  "POST /api/v1/budget/commit 200": same<CommitJson, Reservation>()(id, id),
  "POST /api/v1/budget/release 200": same<ReleaseJson, Reservation>()(id, id),
  "PUT /api/v1/analytics/admin/workflows/{id}/budget 200": same<WorkflowBudgetJson, WorkflowBudget>()(id, id),
  "GET /api/v1/analytics/admin/reprice-runs 200": same<RepriceRunsJson, { runs: RepriceRun[] }>()(id, id),
  "GET /api/public/projects 200": fits<LangfuseProjectsJson, LangfuseProjects>()(id),
  "POST /v1/traces 200": same<OtlpTracesJson, OtlpExportResponse>()(id, id),
  "POST /v1/metrics 200": same<OtlpMetricsJson, OtlpExportResponse>()(id, id),
  "POST /api/public/otel/v1/traces 200": same<LangfuseTracesJson, OtlpExportResponse>()(id, id),
};

// What the frontend (or the platform) sends must be accepted as the request body.
export const requestBodies = {
  ingest: fits<{ batch: IngestItem[] }, IngestBody>()(id),
  preferences: fits<Preferences, PreferencesBody>()(id),
  budget: fits<BudgetRequest, BudgetBody>()(id),
  reserve: fits<ReserveRequest, ReserveBody>()(id),
};

// Every JSON error answer is `{"code", "message"}`.
export const errorBody = same<JsonFailure, ApiErrorBody>()(id, id);
