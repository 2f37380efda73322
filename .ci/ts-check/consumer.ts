// The frontend's interfaces, exactly as the reporting plan writes them
// (src/frontend/src/lib/api.ts, AdminDashboardPage.tsx, ErrorList.tsx). The
// generated client types must be assignable to them: a renamed or removed
// field, or a changed type, fails this check.
import type { components } from "./generated/api";

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

type Schemas = components["schemas"];

// Each generated response must be usable where the frontend expects its type.
export const userStats = (s: Schemas["UserStatsResponse"]): UserStats => s;
export const adminOverview = (o: Schemas["AdminOverviewResponse"]): AdminOverview => o;
export const recentErrors = (r: Schemas["RecentErrorsResponse"]): { errors: ErrorItem[]; total: number } => r;
export const me = (m: Schemas["MeResponse"]): { user_id: string; email: string | null; is_admin: boolean } => m;
