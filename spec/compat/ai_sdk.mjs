// The Vercel AI SDK (ai, @ai-sdk/openai, @ai-sdk/anthropic) against a running
// moongate whose routes lead to the mock upstream: "gpt-*" to an
// OpenAI-compatible upstream, "claude-*" to an Anthropic one. Each provider
// on a passthrough route and a translated one: generateText with a PDF file
// part, and generateObject with a zod schema. Prints one JSON object: per
// case what the SDK returned (or threw) and the bodies the mock received.
// Usage: node ai_sdk.mjs http://127.0.0.1:GATEWAY http://127.0.0.1:MOCK
import { generateText, generateObject } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { createAnthropic } from "@ai-sdk/anthropic";
import { z } from "zod";

globalThis.AI_SDK_LOG_WARNINGS = false; // its warnings would go to stdout
const [gateway, mock] = process.argv.slice(2);
const queue = (list) => fetch(`${mock}/_mock/queue`, { method: "POST", body: JSON.stringify(list) });
const reset = () => fetch(`${mock}/_mock/reset`, { method: "POST", body: "{}" });
const received = async () => (await (await fetch(`${mock}/_mock/requests`)).json())
  .map((r) => ({ path: r.path, rejected: r.rejected, proxy: r.proxy ?? false,
    headers: { "anthropic-beta": r.headers["anthropic-beta"] }, body: JSON.parse(r.body || "null") }));

const openai = createOpenAI({ baseURL: `${gateway}/v1`, apiKey: "sk-client" });
const anthropic = createAnthropic({ baseURL: `${gateway}/v1`, apiKey: "sk-ant-client" });

// a one-page PDF (the same bytes every run)
const pdf = Buffer.from([
  "%PDF-1.4", "1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj",
  "2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj",
  "3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >> endobj",
  "trailer << /Root 1 0 R >>", "%%EOF", ""].join("\n"));

const weather = z.object({ city: z.string(), temperature: z.number(), tags: z.array(z.string()) });
const object = { city: "Oslo", temperature: 21.5, tags: [] };

const out = { pdf_base64: pdf.toString("base64") };
async function attempt(name, fn) {
  await reset();
  try { out[name] = { result: await fn() }; }
  catch (e) { out[name] = { thrown: e.constructor.name, status: e.statusCode ?? e.status ?? null, message: e.message }; }
  out[name].received = await received();
}

const routes = [
  // [case name, provider model, the upstream's format]
  ["openai_passthrough", () => openai.chat("gpt-test"), "openai"],
  ["openai_translated", () => openai.chat("claude-test"), "anthropic"],
  // a model name the SDK knows supports structured output, so generateObject
  // sends output_config.format (on an unknown name it sends a "json" tool)
  ["anthropic_passthrough", () => anthropic("claude-sonnet-4-5-test"), "anthropic"],
  ["anthropic_translated", () => anthropic("gpt-test"), "openai"],
];

for (const [name, model, upstream] of routes) {
  await attempt(`${name}_pdf`, async () => {
    await queue([{ reply: { text: "The PDF is a single empty page." } }]);
    const r = await generateText({ model: model(), maxRetries: 0, messages: [{ role: "user", content: [
      { type: "text", text: "What is in this PDF?" },
      { type: "file", data: pdf, mediaType: "application/pdf", filename: "doc.pdf" },
    ] }] });
    return { text: r.text, finishReason: r.finishReason, usage: r.usage };
  });
  await attempt(`${name}_object`, async () => {
    // the anthropic provider on a model it does not know asks for the object
    // through a forced tool named "json"; elsewhere a JSON text answers
    const viaTool = name === "anthropic_translated";
    await queue([viaTool ? { reply: { tool_calls: [{ name: "json", input: object }] } }
      : { reply: { text: JSON.stringify(object) } }]);
    const r = await generateObject({ model: model(), maxRetries: 0, schema: weather,
      prompt: "The weather in Oslo, as JSON." });
    return { object: r.object, finishReason: r.finishReason };
  });
  out[`${name}_upstream`] = upstream;
}

console.log(JSON.stringify(out));
