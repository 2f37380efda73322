// How a frontend uses the package, type-checked and run in CI against a fake
// `fetch` (no server): typed paths, parameters and response bodies, and the
// session token sent as a bearer token.
import { createCharlieStatsClient, type Get } from "@charlie-stats/client";

function check(ok: boolean, what: string): asserts ok {
  if (!ok) throw new Error(`example failed: ${what}`);
}

type RecentErrors = Get<"/api/v1/analytics/admin/errors">;

const seen: Request[] = [];
async function fakeFetch(request: Request): Promise<Response> {
  seen.push(request);
  const url = new URL(request.url);
  if (url.searchParams.get("format") === "csv") {
    return new Response("id,service\n", { headers: { "content-type": "text/csv; charset=utf-8" } });
  }
  const errors: RecentErrors = {
    errors: [
      {
        id: "0192f0c4-0000-7000-8000-000000000001",
        service: "langflow",
        error_type: "timeout",
        error_message: "upstream timed out",
        error_code: null,
        endpoint: null,
        created_at: "2026-01-09T12:00:00Z",
        sentry_url: null,
        request_id: null,
        user_id: null,
        workflow_id: null,
      },
    ],
    total: 1,
    total_matching: 1,
  };
  return Response.json(errors);
}

const api = createCharlieStatsClient("https://stats.example.com", async () => "session-token", {
  fetch: fakeFetch,
});

const { data, error } = await api.GET("/api/v1/analytics/admin/errors", {
  params: { query: { limit: 10, service: "langflow" } },
});
check(error === undefined, "no error");
// `data` is RecentErrorsResponse (not `string`): the JSON body's fields are typed.
const firstType: string | undefined = data?.errors[0]?.error_type;
const sentry: string | null | undefined = data?.errors[0]?.sentry_url;
check(firstType === "timeout", "typed error_type");
check(sentry === null, "typed sentry_url");
check(data?.total_matching === 1, "typed total_matching");

const csv = await api.GET("/api/v1/analytics/admin/errors", {
  params: { query: { format: "csv" } },
  parseAs: "text",
});
const text: string | undefined = csv.data;
check(text === "id,service\n", "CSV read as text");

const [first] = seen;
check(first !== undefined, "a request was sent");
check(first.headers.get("authorization") === "Bearer session-token", "bearer token sent");
check(
  first.url === "https://stats.example.com/api/v1/analytics/admin/errors?limit=10&service=langflow",
  `request URL ${first.url}`,
);

// Typos in paths and parameters are compile errors.
// @ts-expect-error: no such path
void api.GET("/api/v1/analytics/my-statz");
// @ts-expect-error: `days` is a number
void api.GET("/api/v1/analytics/my-stats", { params: { query: { days: "30" } } });

console.log("@charlie-stats/client example passed");
