// Both official SDKs against a running moongate whose routes lead to the mock
// upstream: "gpt-test" (OpenAI-compatible upstream) and "claude-test"
// (Anthropic upstream) and "gpt-resp" (a Responses upstream). Prints one
// JSON object of what the SDKs saw.
// Usage: node pairings.mjs http://127.0.0.1:GATEWAY http://127.0.0.1:MOCK
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { readFileSync } from "node:fs";

const [gateway, mock] = process.argv.slice(2);
const fixture = (n) => JSON.parse(readFileSync(new URL(`../fixtures/upstream/${n}.json`, import.meta.url)));
const toolsStream = { "gpt-test": fixture("openai_tools_stream"), "claude-test": fixture("anthropic_tools_stream"),
  // a Responses upstream: a reasoning item (summary and encrypted_content) and two calls
  "gpt-resp": { reply: { thinking: "thinking it over", signature: "enc-rs-1", tool_calls: [
    { id: "call_a", name: "get_weather", input: { city: "Oslo" } }, { id: "call_b", name: "get_time", input: { tz: "CET" } }] } } };
// what the follow-up sent upstream: the id the last tool result answers, and
// the reasoning it handed back (a Responses upstream's item, an Anthropic thinking block)
const lastResult = (model, sent) => model === "claude-test" ? sent.messages[2].content[0].tool_use_id
  : model === "gpt-resp" ? sent.input.filter((i) => i.type === "function_call_output").at(-1).call_id
  : sent.messages[sent.messages.length - 1].tool_call_id;
const sentReasoning = (model, sent) => model === "gpt-resp"
  ? (sent.input.find((i) => i.type === "reasoning") ?? null)
  : model === "claude-test" ? (sent.messages[1].content.find((b) => b.type === "thinking") ?? null) : null;
const queue = (list) => fetch(`${mock}/_mock/queue`, { method: "POST", body: JSON.stringify(list) });
const reset = () => fetch(`${mock}/_mock/reset`, { method: "POST", body: "{}" });
const lastSent = async () => { const r = await (await fetch(`${mock}/_mock/requests`)).json(); return JSON.parse(r[r.length - 1].body); };

const openai = new OpenAI({ baseURL: `${gateway}/v1`, apiKey: "sk-client", maxRetries: 0 });
const anthropic = new Anthropic({ baseURL: gateway, apiKey: "sk-ant-client", maxRetries: 0 });
const out = {};

async function attempt(name, fn) {
  try { out[name] = await fn(); }
  catch (e) { out[name] = { thrown: e.constructor.name, status: e.status ?? null, message: e.message }; }
}

const weatherOA = [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } } },
  { type: "function", function: { name: "get_time", parameters: { type: "object", properties: { tz: { type: "string" } } } } }];
const weatherAN = [{ name: "get_weather", input_schema: { type: "object", properties: { city: { type: "string" } } } },
  { name: "get_time", input_schema: { type: "object", properties: { tz: { type: "string" } } } }];

for (const model of ["gpt-test", "claude-test", "gpt-resp"]) {
  // ---- Anthropic SDK
  await attempt(`anthropic_create_${model}`, async () => {
    await reset();
    const m = await anthropic.messages.create({ model, max_tokens: 64, messages: [{ role: "user", content: "hello anthropic sdk" }] });
    return { type: m.type, role: m.role, text: m.content[0].text, stop_reason: m.stop_reason, usage: m.usage };
  });
  await attempt(`anthropic_stream_${model}`, async () => {
    await reset();
    const stream = anthropic.messages.stream({ model, max_tokens: 64, messages: [{ role: "user", content: "streamed words here" }] });
    const texts = [];
    stream.on("text", (t) => texts.push(t));
    const m = await stream.finalMessage();
    return { text: m.content[0].text, deltas: texts.length, stop_reason: m.stop_reason, output_tokens: m.usage.output_tokens };
  });
  await attempt(`anthropic_tools_${model}`, async () => {
    await reset();
    await queue([toolsStream[model]]);
    const stream = anthropic.messages.stream({ model, max_tokens: 64, tools: weatherAN,
      messages: [{ role: "user", content: "weather in Oslo?" }] });
    const m = await stream.finalMessage();
    const uses = m.content.filter((b) => b.type === "tool_use");
    const thinking = m.content.filter((b) => b.type === "thinking").map((b) => b.thinking).join("");
    // round trip: answer the calls
    const follow = await anthropic.messages.create({ model, max_tokens: 64, tools: weatherAN, messages: [
      { role: "user", content: "weather in Oslo?" },
      { role: "assistant", content: m.content },
      { role: "user", content: uses.map((u) => ({ type: "tool_result", tool_use_id: u.id, content: "sunny" })) },
    ] });
    const sent = await lastSent();
    return { stop_reason: m.stop_reason, uses: uses.map((u) => ({ id: u.id, name: u.name, input: u.input })),
      thinking, follow_text: follow.content[0].text,
      sent_tool_result_id: lastResult(model, sent), sent_reasoning: sentReasoning(model, sent),
      sent_messages: (sent.messages ?? sent.input).length };
  });

  // ---- OpenAI SDK
  await attempt(`openai_create_${model}`, async () => {
    await reset();
    const r = await openai.chat.completions.create({ model, messages: [{ role: "user", content: "hello openai sdk" }] });
    return { text: r.choices[0].message.content, finish_reason: r.choices[0].finish_reason, usage: r.usage };
  });
  await attempt(`openai_stream_${model}`, async () => {
    await reset();
    const runner = openai.chat.completions.stream({ model, messages: [{ role: "user", content: "streamed words here" }] });
    const c = await runner.finalChatCompletion();
    return { text: c.choices[0].message.content, finish_reason: c.choices[0].finish_reason };
  });
  await attempt(`openai_tools_${model}`, async () => {
    await reset();
    await queue([toolsStream[model]]);
    const stream = await openai.chat.completions.create({ model, stream: true, tools: weatherOA,
      messages: [{ role: "user", content: "weather in Oslo?" }] });
    let reasoning = "";
    const calls = [];
    let finish = null;
    for await (const chunk of stream) {
      const ch = chunk.choices[0];
      if (!ch) continue;
      if (ch.delta.reasoning_content) reasoning += ch.delta.reasoning_content;
      for (const tc of ch.delta.tool_calls ?? []) {
        calls[tc.index] ??= { id: tc.id, name: tc.function?.name, args: "" };
        calls[tc.index].args += tc.function?.arguments ?? "";
      }
      if (ch.finish_reason) finish = ch.finish_reason;
    }
    // the helper too
    await queue([toolsStream[model]]);
    const final = await openai.chat.completions.stream({ model, tools: weatherOA,
      messages: [{ role: "user", content: "weather in Oslo?" }] }).finalChatCompletion();
    const msg = final.choices[0].message;
    const follow = await openai.chat.completions.create({ model, tools: weatherOA, messages: [
      { role: "user", content: "weather in Oslo?" }, msg,
      ...msg.tool_calls.map((t) => ({ role: "tool", tool_call_id: t.id, content: "sunny" })),
    ] });
    const sent = await lastSent();
    return { finish, reasoning, calls, helper_calls: msg.tool_calls.map((t) => ({ id: t.id, name: t.function.name, args: t.function.arguments })),
      helper_finish: final.choices[0].finish_reason, follow_text: follow.choices[0].message.content,
      sent_tool_result_id: lastResult(model, sent), sent_reasoning: sentReasoning(model, sent) };
  });
}

await attempt("anthropic_models", async () => {
  const ids = [];
  for await (const m of anthropic.models.list()) ids.push(m.id);
  return { ids };
});
await attempt("anthropic_bad_request", async () => anthropic.messages.create({ model: "claude-test", messages: [] }));

console.log(JSON.stringify(out));
