// The official openai SDK's Responses, legacy completions and embeddings
// calls against a running moongate whose routes lead to the mock upstream:
// "gpt-resp" (a Responses upstream), "gpt-test" (chat completions),
// "claude-test" (Anthropic), "local-test" (a server with its own
// /v1/completions and /v1/embeddings). Prints one JSON object of what the
// SDK saw and what the upstream was sent.
// Usage: node responses.mjs http://127.0.0.1:GATEWAY http://127.0.0.1:MOCK
import OpenAI from "openai";

const [gateway, mock] = process.argv.slice(2);
const queue = (list) => fetch(`${mock}/_mock/queue`, { method: "POST", body: JSON.stringify(list) });
const reset = () => fetch(`${mock}/_mock/reset`, { method: "POST", body: "{}" });
const sent = async () => (await (await fetch(`${mock}/_mock/requests`)).json())
  .filter((r) => !r.path.startsWith("/_mock")).map((r) => ({ path: r.path, body: JSON.parse(r.body || "null"), rejected: r.rejected }));

const client = new OpenAI({ baseURL: `${gateway}/v1`, apiKey: "sk-client", maxRetries: 0 });
const out = {};
async function attempt(name, fn) {
  try { out[name] = await fn(); }
  catch (e) { out[name] = { thrown: e.constructor.name, status: e.status ?? null, message: e.message, code: e.code ?? null }; }
}

const tools = [{ type: "function", name: "get_weather", description: "weather in a city", strict: false,
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } }];

for (const model of ["gpt-resp", "gpt-test", "claude-test"]) {
  await attempt(`create_${model}`, async () => {
    await reset();
    const r = await client.responses.create({ model, input: "hello responses", max_output_tokens: 64 });
    return { id: r.id, object: r.object, status: r.status, text: r.output_text, usage: r.usage,
      types: r.output.map((o) => o.type), upstream: await sent() };
  });

  await attempt(`stream_${model}`, async () => {
    await reset();
    const stream = client.responses.stream({ model, input: "streamed words here", instructions: "be brief" });
    const types = [], seqs = [];
    let deltas = "";
    stream.on("event", (e) => { types.push(e.type); seqs.push(e.sequence_number); });
    stream.on("response.output_text.delta", (e) => { deltas += e.delta; });
    const final = await stream.finalResponse();
    // (the SDK's finalResponse() computes output_text only for parsed requests)
    const text = final.output.filter((o) => o.type === "message")
      .flatMap((o) => o.content).filter((c) => c.type === "output_text").map((c) => c.text).join("");
    return { text, deltas, status: final.status, types, seqs, upstream: await sent() };
  });

  // a tool loop with reasoning, the client keeping the state (store: false)
  await attempt(`tools_${model}`, async () => {
    await reset();
    await queue([{ reply: { thinking: "thinking it over", signature: "opaque-sig-1",
      tool_calls: [{ id: "call_1", name: "get_weather", input: { city: "Oslo" } }] } },
      { reply: { text: "It is sunny in Oslo." } }]);
    const input = [{ role: "user", content: "weather in Oslo?" }];
    const first = await client.responses.create({ model, input, tools, store: false,
      reasoning: { effort: "medium", summary: "auto" }, include: ["reasoning.encrypted_content"] });
    const call = first.output.find((o) => o.type === "function_call");
    const reasoning = first.output.find((o) => o.type === "reasoning");
    const second = await client.responses.create({ model, tools, store: false,
      include: ["reasoning.encrypted_content"],
      input: [...input, ...first.output, { type: "function_call_output", call_id: call.call_id, output: "sunny, 21 C" }] });
    return { first_types: first.output.map((o) => o.type), call: { name: call.name, arguments: call.arguments, call_id: call.call_id },
      reasoning: reasoning ? { id: reasoning.id, summary: reasoning.summary, encrypted_content: reasoning.encrypted_content } : null,
      status: first.status, text: second.output_text, upstream: await sent() };
  });

  // the gateway keeps the conversation: previous_response_id, retrieve, delete
  await attempt(`stored_${model}`, async () => {
    await reset();
    const first = await client.responses.create({ model, input: "my name is Ada", store: true });
    const second = await client.responses.create({ model, input: "what is my name?", previous_response_id: first.id });
    const got = await client.responses.retrieve(first.id);
    const del = await client.responses.delete(first.id);
    let after = null;
    try { await client.responses.retrieve(first.id); } catch (e) { after = { thrown: e.constructor.name, status: e.status }; }
    let missing = null;
    try { await client.responses.create({ model, input: "x", previous_response_id: "resp_nope" }); }
    catch (e) { missing = { thrown: e.constructor.name, status: e.status, message: e.message }; }
    return { first_id: first.id, second_text: second.output_text, second_previous: second.previous_response_id,
      retrieved: { id: got.id, text: got.output_text }, deleted: del ?? null, after, missing, upstream: await sent() };
  });

  await attempt(`completion_${model}`, async () => {
    await reset();
    const r = await client.completions.create({ model, prompt: "say this", max_tokens: 20 });
    return { object: r.object, text: r.choices[0].text, finish_reason: r.choices[0].finish_reason, usage: r.usage, upstream: await sent() };
  });

  await attempt(`completion_stream_${model}`, async () => {
    await reset();
    const s = await client.completions.create({ model, prompt: "streamed words here", max_tokens: 20, stream: true,
      stream_options: { include_usage: true } });
    let text = "", finish = null, usage = null, chunks = 0;
    for await (const c of s) {
      chunks++;
      if (c.usage) usage = c.usage;
      for (const ch of c.choices) { text += ch.text; if (ch.finish_reason) finish = ch.finish_reason; }
    }
    return { text, finish_reason: finish, usage, chunks };
  });
}

await attempt("completion_forwarded", async () => {
  await reset();
  const r = await client.completions.create({ model: "local-test", prompt: "say this", max_tokens: 7, echo: true });
  return { object: r.object, text: r.choices[0].text, upstream: await sent() };
});

await attempt("embeddings", async () => {
  await reset();
  const r = await client.embeddings.create({ model: "local-test", input: ["one", "two"] });
  return { object: r.object, n: r.data.length, dims: r.data[0].embedding.length, model: r.model, upstream: await sent() };
});

await attempt("embeddings_base64", async () => {
  const r = await client.embeddings.create({ model: "local-test", input: "one", encoding_format: "base64" });
  return { n: r.data.length, first: typeof r.data[0].embedding };
});

await attempt("embeddings_unsupported", async () =>
  client.embeddings.create({ model: "gpt-test", input: "one" }));

console.log(JSON.stringify(out));
