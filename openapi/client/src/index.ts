// The Charlie Stats API client: `openapi-fetch` requests typed by the
// `openapi-typescript` output of openapi/openapi.json (`./schema.ts`, generated
// by `npm run generate`, never edited by hand).
import createClient, { type Client, type ClientOptions } from "openapi-fetch";
import type { paths } from "./schema.js";

export type { components, operations, paths } from "./schema.js";

/** A client whose `data` is each endpoint's JSON body. */
export type CharlieStatsClient = Client<paths, "application/json">;

/**
 * The session token: a string, or a function called before each request
 * (e.g. Clerk's `() => session.getToken()`); `undefined`/`null` sends no
 * `Authorization` header (the browser's `__session` cookie is used instead).
 */
export type TokenSource =
  | string
  | null
  | undefined
  | (() => string | null | undefined | Promise<string | null | undefined>);

/**
 * A client of the Charlie Stats API at `baseUrl` (the service's origin, e.g.
 * `https://stats.example.com`; the paths start with `/api/v1/...`).
 *
 * ```ts
 * const api = createCharlieStatsClient("https://stats.example.com", () => session.getToken());
 * const { data, error } = await api.GET("/api/v1/analytics/my-stats", { params: { query: { days: 30 } } });
 * ```
 *
 * Non-JSON bodies (`format=csv`, the report preview, `/metrics`) are read with
 * `parseAs: "text"`.
 */
export function createCharlieStatsClient(
  baseUrl: string,
  token?: TokenSource,
  options: Omit<ClientOptions, "baseUrl"> = {},
): CharlieStatsClient {
  const client = createClient<paths, "application/json">({ ...options, baseUrl });
  if (token !== undefined && token !== null) {
    client.use({
      async onRequest({ request }) {
        const value = typeof token === "function" ? await token() : token;
        if (value) {
          request.headers.set("Authorization", `Bearer ${value}`);
        }
        return request;
      },
    });
  }
  return client;
}

type JsonOk<Op> = Op extends { responses: infer R }
  ? R extends { 200: { content: { "application/json": infer T } } }
    ? T
    : R extends { 207: { content: { "application/json": infer T } } }
      ? T
      : never
  : never;

/** The JSON body of `GET path`'s success response, e.g. `Get<"/api/v1/analytics/me">`. */
export type Get<P extends keyof paths> = JsonOk<paths[P]["get"]>;
/** The JSON body of `PUT path`'s success response. */
export type Put<P extends keyof paths> = JsonOk<paths[P]["put"]>;
/** The JSON body of `POST path`'s success response (ingestion answers 207). */
export type Post<P extends keyof paths> = JsonOk<paths[P]["post"]>;
