// The npm `ws` package as a pool worker and as a chat client, and the
// official SDKs as HTTP clients, against a running moongate (ws:// or
// wss://). Prints one JSON object of what each side saw.
// Usage: node ws_pool.mjs http://127.0.0.1:PORT   (or https://...)
import WebSocket from "ws";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";

const base = process.argv[2];
const wsBase = base.replace(/^http/, "ws");
const tls = { rejectUnauthorized: false };
const out = { worker: { requests: [] } };

const open = (path) => new Promise((resolve, reject) => {
  const ws = new WebSocket(wsBase + path, tls);
  ws.once("open", () => resolve(ws));
  ws.once("error", reject);
});

// the worker: streams its answer in two chunks, then the whole text
const worker = await open("/ws");
worker.on("message", (data) => {
  const m = JSON.parse(data.toString());
  if (m.type === "heartbeat") return worker.send(JSON.stringify({ type: "heartbeat_response" }));
  if (m.type !== "completion_request") return;
  out.worker.requests.push({ model: m.model, stream: m.stream, last: m.messages[m.messages.length - 1].content });
  const text = `ws worker saw: ${m.messages[m.messages.length - 1].content}`;
  worker.send(JSON.stringify({ type: "completion_chunk", request_id: m.request_id, content: text.slice(0, 8) }));
  worker.send(JSON.stringify({ type: "completion_chunk", request_id: m.request_id, content: text.slice(8) }));
  worker.send(JSON.stringify({ type: "completion_response", request_id: m.request_id, content: text, finish_reason: "stop" }));
});
worker.send(JSON.stringify({ type: "client_ready", models: ["tab-model"], name: "npm-ws" }));
await new Promise((r) => setTimeout(r, 200));

async function attempt(name, fn) {
  try { out[name] = await fn(); }
  catch (e) { out[name] = { thrown: e.constructor.name, status: e.status ?? null, message: e.message }; }
}

const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: "sk-client", maxRetries: 0 });
const anthropic = new Anthropic({ baseURL: base, apiKey: "sk-ant-client", maxRetries: 0 });

await attempt("openai_stream", async () => {
  const s = openai.chat.completions.stream({ model: "tab-model", messages: [{ role: "user", content: "from openai" }] });
  const c = await s.finalChatCompletion();
  return { text: c.choices[0].message.content, finish: c.choices[0].finish_reason };
});
await attempt("anthropic_stream", async () => {
  const s = anthropic.messages.stream({ model: "tab-model", max_tokens: 50, messages: [{ role: "user", content: "from anthropic" }] });
  const m = await s.finalMessage();
  return { text: m.content[0].text, stop: m.stop_reason };
});
await attempt("anthropic_create", async () => {
  const m = await anthropic.messages.create({ model: "tab-model", max_tokens: 50, messages: [{ role: "user", content: "whole" }] });
  return { text: m.content[0].text, stop: m.stop_reason };
});

// a chat socket, its answer served by the worker
await attempt("chat", async () => {
  const chat = await open("/ws/npm-client");
  const seen = [];
  const done = new Promise((resolve) => chat.on("message", (data) => {
    const m = JSON.parse(data.toString());
    seen.push(m.type);
    if (m.type === "response_complete" || m.type === "error") resolve(m);
  }));
  chat.send(JSON.stringify({ type: "chat_message", model: "tab-model", message: { role: "user", content: "from a chat socket" } }));
  const last = await done;
  chat.close();
  return { types: seen, content: last.content };
});

const health = await (await fetch(`${base}/health`)).json();
out.pool = health.ws_pool.workers.map((w) => ({ name: w.name, status: w.status, models: w.models, served: w.served }));
worker.close();
console.log(JSON.stringify(out));
