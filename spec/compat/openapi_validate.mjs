// Validates an OpenAPI document (a file, or an http:// URL it fetches) with
// @readme/openapi-parser, against the OpenAPI 3.1 schema and the parser's
// own checks (unique operationIds, path parameters declared, ...).
// Prints "valid OpenAPI <version>: N paths, M operations" and exits 0, or
// prints the errors and exits 1. The document must say openapi: 3.1.x.
//   node spec/compat/openapi_validate.mjs build/openapi.json
//   node spec/compat/openapi_validate.mjs http://127.0.0.1:8080/openapi.json
import { readFile } from "node:fs/promises";
import { validate, compileErrors } from "@readme/openapi-parser";

const where = process.argv[2];
if (!where) {
  console.error("usage: node openapi_validate.mjs FILE|URL");
  process.exit(2);
}

let text;
try {
  if (/^https?:\/\//.test(where)) {
    const res = await fetch(where);
    if (!res.ok) throw new Error(`${where} answered ${res.status}`);
    text = await res.text();
  } else {
    text = await readFile(where, "utf8");
  }
} catch (e) {
  console.error(`cannot read ${where}: ${e.message}`);
  process.exit(1);
}

let api;
try {
  api = JSON.parse(text);
} catch (e) {
  console.error(`not JSON: ${e.message}`);
  process.exit(1);
}
if (typeof api.openapi !== "string" || !/^3\.1\.\d+$/.test(api.openapi)) {
  console.error(`not an OpenAPI 3.1 document: openapi is ${JSON.stringify(api.openapi)}`);
  process.exit(1);
}

const methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
let operations = 0;
for (const item of Object.values(api.paths || {})) {
  for (const m of methods) if (item[m]) operations++;
}
const paths = Object.keys(api.paths || {}).length;

// validate() dereferences the object it is given: hand it a copy
const result = await validate(structuredClone(api));
if (!result.valid) {
  console.error(compileErrors(result));
  process.exit(1);
}
if (result.warnings && result.warnings.length) console.error(compileErrors(result));
console.log(`valid OpenAPI ${api.openapi}: ${paths} paths, ${operations} operations`);
