// The `ollama` npm client against a running moongate whose routes lead to
// the mock upstream: "gpt-test" (OpenAI-format upstream) and "claude-test"
// (Anthropic-format upstream). chat streamed and not, a tool round trip,
// an image, think; generate; list; show. Prints one JSON object of what
// the client saw (and what the mock was sent).
// Usage: node ollama.mjs http://127.0.0.1:GATEWAY http://127.0.0.1:MOCK
import { Ollama } from "ollama";

const [gateway, mock] = process.argv.slice(2);
const queue = (list) => fetch(`${mock}/_mock/queue`, { method: "POST", body: JSON.stringify(list) });
const reset = () => fetch(`${mock}/_mock/reset`, { method: "POST", body: "{}" });
const lastSent = async () => { const r = await (await fetch(`${mock}/_mock/requests`)).json(); return JSON.parse(r[r.length - 1].body); };

const ollama = new Ollama({ host: gateway });
const out = {};

async function attempt(name, fn) {
  try { out[name] = await fn(); }
  catch (e) { out[name] = { thrown: e.constructor.name, name: e.name, status: e.status_code ?? null, message: e.message }; }
}

const tools = [{ type: "function", function: { name: "get_weather", description: "The weather in a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } }];
// a 1x1 PNG, as bytes: the client sends it as bare base64
const png = Uint8Array.from(Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==", "base64"));

for (const model of ["gpt-test", "claude-test"]) {
  await attempt(`chat_stream_${model}`, async () => {
    await reset();
    const parts = [];
    let last = null;
    for await (const part of await ollama.chat({ model, stream: true, messages: [{ role: "user", content: "streamed words here" }] })) {
      parts.push(part.message.content);
      last = part;
    }
    return { text: parts.join(""), lines: parts.length, done: last.done, done_reason: last.done_reason,
      eval_count: last.eval_count, prompt_eval_count: last.prompt_eval_count, total_duration: last.total_duration,
      created_at: last.created_at };
  });
  await attempt(`chat_${model}`, async () => {
    await reset();
    const r = await ollama.chat({ model, messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "hello ollama client" }] });
    return { role: r.message.role, text: r.message.content, done: r.done, done_reason: r.done_reason, eval_count: r.eval_count };
  });
  await attempt(`tools_${model}`, async () => {
    await reset();
    await queue([{ reply: { tool_calls: [{ id: "call_w1", name: "get_weather", input: { city: "Oslo" } }] } },
      { reply: { text: "Sunny in Oslo." } }]);
    const messages = [{ role: "user", content: "Weather in Oslo?" }];
    const first = await ollama.chat({ model, tools, messages });
    const calls = first.message.tool_calls ?? [];
    messages.push(first.message);
    for (const c of calls) messages.push({ role: "tool", tool_name: c.function.name, content: "sunny" });
    const follow = await ollama.chat({ model, tools, messages });
    const sent = await lastSent();
    // the id of the call upstream and the one its result answers
    let callId, resultId;
    if (model === "gpt-test") {
      callId = sent.messages.find((m) => m.tool_calls)?.tool_calls[0].id;
      resultId = sent.messages.find((m) => m.role === "tool")?.tool_call_id;
    } else {
      callId = sent.messages.flatMap((m) => Array.isArray(m.content) ? m.content : []).find((b) => b.type === "tool_use")?.id;
      resultId = sent.messages.flatMap((m) => Array.isArray(m.content) ? m.content : []).find((b) => b.type === "tool_result")?.tool_use_id;
    }
    return { calls: calls.map((c) => ({ name: c.function.name, arguments: c.function.arguments })),
      follow_text: follow.message.content, sent_call_id: callId ?? null, sent_result_id: resultId ?? null };
  });
  await attempt(`image_${model}`, async () => {
    await reset();
    const r = await ollama.chat({ model, messages: [{ role: "user", content: "What is in the picture?", images: [png] }] });
    const sent = await lastSent();
    const parts = sent.messages[sent.messages.length - 1].content;
    const image = parts.find((p) => p.type === "image_url" || p.type === "image");
    return { text: r.message.content, sent_image: image?.image_url?.url ?? image?.source?.data ?? null };
  });
  await attempt(`think_${model}`, async () => {
    await reset();
    await queue([{ reply: { thinking: "Let me weigh it.", text: "Forty-two." } }, { reply: { thinking: "Deeply now.", text: "Still 42." } }]);
    let thinking = "", text = "";
    for await (const part of await ollama.chat({ model, think: true, stream: true, messages: [{ role: "user", content: "The answer?" }] })) {
      thinking += part.message.thinking ?? "";
      text += part.message.content;
    }
    const first = await lastSent();
    const whole = await ollama.chat({ model, think: "high", messages: [{ role: "user", content: "Again?" }] });
    const second = await lastSent();
    return { thinking, text, whole_thinking: whole.message.thinking ?? null, whole_text: whole.message.content,
      sent_first: first.reasoning_effort ?? first.thinking ?? null, sent_second: second.reasoning_effort ?? second.thinking ?? null };
  });
  await attempt(`generate_${model}`, async () => {
    await reset();
    const r = await ollama.generate({ model, prompt: "generate these words", system: "Repeat." });
    const pieces = [];
    let last = null;
    for await (const part of await ollama.generate({ model, prompt: "and stream these", stream: true })) {
      pieces.push(part.response);
      last = part;
    }
    return { text: r.response, done: r.done, done_reason: r.done_reason, stream_text: pieces.join(""),
      stream_done_reason: last.done_reason, stream_eval_count: last.eval_count };
  });
  await attempt(`show_${model}`, async () => {
    const r = await ollama.show({ model });
    return { capabilities: r.capabilities, family: r.details.family, format: r.details.format, has_modelfile: typeof r.modelfile === "string" };
  });
}

await attempt("list", async () => {
  const r = await ollama.list();
  return { names: r.models.map((m) => m.name), digests: r.models.map((m) => m.digest) };
});
await attempt("version", async () => ({ version: (await ollama.version()).version }));
await attempt("ps", async () => ({ count: (await ollama.ps()).models.length }));
await attempt("unknown_model", async () => ollama.chat({ model: "nonesuch", messages: [{ role: "user", content: "hi" }] }));
await attempt("bad_field", async () => ollama.chat({ model: "gpt-test", think: "max", messages: [{ role: "user", content: "hi" }] }));

console.log(JSON.stringify(out));
