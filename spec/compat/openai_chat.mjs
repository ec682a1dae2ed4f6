// Drives a running moongate with the official openai SDK and prints what it
// saw as one JSON object; spec/e2e/compat_openai_spec.lua asserts on it.
// Usage: node openai_chat.mjs http://127.0.0.1:PORT/v1
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.argv[2], apiKey: "sk-test-not-a-real-key", maxRetries: 0 });
const messages = [
  { role: "system", content: "you are an echo" },
  { role: "user", content: "hello from the official sdk" },
];
const out = {};

async function attempt(name, fn) {
  try {
    out[name] = await fn();
  } catch (e) {
    out[name] = { thrown: e.constructor.name, status: e.status ?? null, message: e.message,
      error: e.error ?? null, code: e.code ?? null, param: e.param ?? null, type: e.type ?? null };
  }
}

await attempt("create", async () => {
  const r = await client.chat.completions.create({ model: "echo", messages });
  return { id: r.id, object: r.object, model: r.model, content: r.choices[0].message.content,
    role: r.choices[0].message.role, finish_reason: r.choices[0].finish_reason, usage: r.usage };
});

await attempt("create_stream", async () => {
  const stream = await client.chat.completions.create({
    model: "echo", messages, stream: true, stream_options: { include_usage: true } });
  const parts = [];
  let chunks = 0, finish = null, usage = null, ids = new Set();
  for await (const chunk of stream) {
    chunks++;
    ids.add(chunk.id);
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta?.content) parts.push(c.delta.content);
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { content: parts.join(""), chunks, finish_reason: finish, usage, ids: ids.size };
});

await attempt("stream_helper", async () => {
  const runner = client.chat.completions.stream({ model: "echo", messages });
  const deltas = [];
  runner.on("content", (delta) => deltas.push(delta));
  const final = await runner.finalChatCompletion();
  return { content: final.choices[0].message.content, finish_reason: final.choices[0].finish_reason,
    role: final.choices[0].message.role, deltas: deltas.length };
});

await attempt("bad_request", async () =>
  client.chat.completions.create({ model: "echo", messages: [] }));

await attempt("unknown_model", async () =>
  client.chat.completions.create({ model: "no-such-model", messages }));

await attempt("models", async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  return { ids };
});

console.log(JSON.stringify(out));
