// Every JSON success response of openapi/openapi.json must be covered by
// consumer.ts (its `covered` keys), and nothing else: read from the JSON file
// itself, independently of how openapi-typescript renders it.
import { readFileSync } from "node:fs";
import { covered } from "./generated/js/consumer.js";

const spec = JSON.parse(readFileSync(new URL("../../openapi/openapi.json", import.meta.url), "utf8"));
const methods = ["get", "put", "post", "delete", "patch"];
const inSpec = new Set();
for (const [path, item] of Object.entries(spec.paths)) {
  for (const method of methods) {
    for (const [status, response] of Object.entries(item[method]?.responses ?? {})) {
      if (status.startsWith("2") && response.content?.["application/json"]) {
        inSpec.add(`${method.toUpperCase()} ${path} ${status}`);
      }
    }
  }
}
const inCheck = new Set(Object.keys(covered));
const uncovered = [...inSpec].filter((e) => !inCheck.has(e));
const gone = [...inCheck].filter((e) => !inSpec.has(e));
for (const e of uncovered) console.error(`not checked by consumer.ts: ${e}`);
for (const e of gone) console.error(`checked by consumer.ts but no longer a JSON response of the spec: ${e}`);
if (uncovered.length || gone.length || inSpec.size === 0) process.exit(1);
console.log(`${inSpec.size} JSON responses of the spec checked against the frontend's interfaces`);
