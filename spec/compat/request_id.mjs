// The request ids a running moongate gives back, as the official SDKs
// expose them: openai's r._request_id (x-request-id), withResponse()'s
// request_id and an APIError's requestID; Anthropic's msg._request_id and
// requestID (its request-id header). Prints one JSON object;
// spec/e2e/logs_spec.lua asserts on it.
// Usage: node request_id.mjs http://127.0.0.1:PORT
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";

const base = process.argv[2];
const openai = new OpenAI({ baseURL: base + "/v1", apiKey: "sk-test-not-a-real-key", maxRetries: 0 });
const anthropic = new Anthropic({ baseURL: base, apiKey: "sk-ant-test-not-a-real-key", maxRetries: 0 });
const messages = [{ role: "user", content: "hello from the request id script" }];
const out = {};

async function attempt(name, fn) {
  try {
    out[name] = await fn();
  } catch (e) {
    out[name] = { thrown: e.constructor.name, status: e.status ?? null, request_id: e.requestID ?? null,
      message: e.message };
  }
}

await attempt("openai", async () => {
  const r = await openai.chat.completions.create({ model: "echo", messages });
  return { request_id: r._request_id, content: r.choices[0].message.content };
});

await attempt("openai_own", async () => {
  const r = await openai.chat.completions.create({ model: "echo", messages },
    { headers: { "x-request-id": "sdk-own-id-42" } });
  return { request_id: r._request_id };
});

await attempt("openai_with_response", async () => {
  const { data, request_id } = await openai.chat.completions.create({ model: "echo", messages }).withResponse();
  return { request_id, content: data.choices[0].message.content };
});

await attempt("openai_stream", async () => {
  const { data: stream, request_id } = await openai.chat.completions
    .create({ model: "echo", messages, stream: true }).withResponse();
  let content = "";
  for await (const chunk of stream) content += chunk.choices[0]?.delta?.content ?? "";
  return { request_id, content };
});

// an error answer (no such model): APIError.requestID
await attempt("openai_error", async () => {
  await openai.chat.completions.create({ model: "no-such-model-anywhere", messages });
  return { thrown: null };
});

await attempt("anthropic", async () => {
  const m = await anthropic.messages.create({ model: "echo", max_tokens: 32, messages });
  return { request_id: m._request_id, content: m.content[0]?.text ?? null };
});

await attempt("anthropic_error", async () => {
  await anthropic.messages.create({ model: "no-such-model-anywhere", max_tokens: 32, messages });
  return { thrown: null };
});

console.log(JSON.stringify(out));
