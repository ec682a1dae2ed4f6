-- GET /metrics in the Prometheus text format (version 0.0.4): what C holds
-- (src/metrics.c: requests, durations, tokens, retries, fallbacks, reloads,
-- the process; bounded label sets, shared by every worker thread) followed
-- by what other C tables say about the whole process (the gate, the
-- per-key rate limits, the WS worker pool), rendered here from their
-- snapshots. docs/METRICS.md lists every metric.
--
--   M.text() -> the exposition
--   M.render(s) -> the text of the snapshots s = {gate, rate, pool, stats}
--   M.tokens(x, input, output): tokens an upstream reported for exchange x
--   M.body_usage(text) -> input, output: the usage in a whole answer passed
--     through untouched (OpenAI's, Anthropic's, Responses'), or nil
local core = require "moongate.core"

local M = {}

M.content_type = "text/plain; version=0.0.4; charset=utf-8"

local escapes = { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }
local function esc(v) return (tostring(v):gsub('[\\"\n]', escapes)) end
local function num(v)
  v = tonumber(v) or 0
  if v ~= v then return "NaN" end
  return string.format("%.17g", v)
end

-- the names of a table's keys, sorted (the exposition keeps one order)
local function sorted_keys(t)
  local out = {}
  for k in pairs(t or {}) do if type(k) == "string" then out[#out + 1] = k end end
  table.sort(out)
  return out
end

-- one metric: HELP, TYPE, then a sample per row {labels, value}; label is
-- the name of the rows' one label (nil: a single unlabelled sample)
local function family(out, name, kind, help, label, rows)
  out[#out + 1] = string.format("# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
  if not label then
    out[#out + 1] = string.format("%s %s\n", name, num(rows))
    return
  end
  for _, r in ipairs(rows) do
    out[#out + 1] = string.format('%s{%s="%s"} %s\n', name, label, esc(r[1]), num(r[2]))
  end
end

-- rows {name, field of t[name] (scaled)} for each name of t, sorted
local function rows_of(t, names, field, scale)
  local rows = {}
  for i, n in ipairs(names) do rows[i] = { n, (tonumber(t[n][field]) or 0) * (scale or 1) } end
  return rows
end

local gate_metrics = {
  { "moongate_gate_limit", "gauge", "Permits a gate gives at once (0: no limit, only a cooldown).", "limit" },
  { "moongate_gate_in_use", "gauge", "Permits of a gate in use.", "in_use" },
  { "moongate_gate_queued", "gauge", "Requests waiting at a gate.", "queued" },
  { "moongate_gate_granted_total", "counter", "Permits a gate gave.", "granted" },
  { "moongate_gate_waited_total", "counter", "Requests that waited at a gate before it let them in.", "waited" },
  { "moongate_gate_rejected_total", "counter", "Requests a gate turned away at once (its queue full, "
    .. "or a cooldown longer than the wait).", "rejected" },
  { "moongate_gate_timed_out_total", "counter", "Requests that waited at a gate past queue_timeout_ms (429).",
    "timed_out" },
  { "moongate_gate_wait_seconds_total", "counter", "Seconds requests waited at a gate, summed over the waits "
    .. "that ended in a permit.", "wait_ms", 0.001 },
  { "moongate_gate_cooldown_seconds", "gauge", "Seconds left of a gate's cooldown after an upstream's 429.",
    "cooling_ms", 0.001 },
}

local rate_metrics = {
  { "moongate_rate_admitted_total", "counter", "Requests an inbound key's rate limits let through.", "admitted" },
  { "moongate_rate_refused_total", "counter", "Requests refused (429) by an inbound key's rate limits or budgets.",
    "refused" },
}

--- render(s) -> text: s.gate = core._gate_state(), s.rate =
-- core._rate_state(), s.pool = core._pool_state(), s.stats = core._stats()
-- (each may be nil); s.version
function M.render(s)
  local out = {}
  family(out, "moongate_build_info", "gauge", "The daemon's version (always 1).", "version",
    { { s.version or core.version or "?", 1 } })
  family(out, "moongate_workers", "gauge", "Worker threads serving.", nil, s.stats and s.stats.workers or 0)
  local g = type(s.gate) == "table" and s.gate or {}
  local names = sorted_keys(g)
  for _, m in ipairs(gate_metrics) do family(out, m[1], m[2], m[3], "gate", rows_of(g, names, m[4], m[5])) end
  local r = type(s.rate) == "table" and s.rate or {}
  local keys = sorted_keys(r)
  for _, m in ipairs(rate_metrics) do family(out, m[1], m[2], m[3], "key", rows_of(r, keys, m[4])) end
  local p = type(s.pool) == "table" and s.pool or {}
  local by = { connecting = 0, idle = 0, busy = 0 }
  local inflight = 0
  for _, w in ipairs(type(p.workers) == "table" and p.workers or {}) do
    if by[w.status] then by[w.status] = by[w.status] + 1 end
    inflight = inflight + (tonumber(w.in_flight) or 0)
  end
  family(out, "moongate_ws_pool_workers", "gauge", "WS pool workers connected, by state.", "state",
    { { "busy", by.busy }, { "connecting", by.connecting }, { "idle", by.idle } })
  family(out, "moongate_ws_pool_in_flight", "gauge", "Requests the WS pool workers are answering.", nil, inflight)
  family(out, "moongate_ws_pool_queued", "gauge", "Requests waiting for a free WS pool worker.", nil, p.queued or 0)
  family(out, "moongate_ws_pool_pending", "gauge", "Requests handed to a WS pool worker, not yet answered.",
    nil, p.pending or 0)
  return table.concat(out)
end

--- text() -> the whole exposition, C's families first
function M.text()
  local function snap(fn) if fn then return fn() end end
  return core._metrics_text() .. M.render({ gate = snap(core._gate_state), rate = snap(core._rate_state),
    pool = snap(core._pool_state), stats = snap(core._stats), version = core.version })
end

--- tokens(x, input, output): exchange x's upstream reported these; counted
-- by the inbound key's name (never the key) and the model its route matched
function M.tokens(x, input, output)
  if not (input or output) or not core._metrics_tokens then return end
  local req = x.client and x.client.req
  local key = req and req.inbound and req.inbound.name
  core._metrics_tokens(key, x.creq and x.creq.model, tonumber(input) or 0, tonumber(output) or 0)
end

--- body_usage(text) -> input, output: the "usage" object of a whole JSON
-- answer (prompt_tokens/completion_tokens, or input_tokens/output_tokens
-- with Anthropic's cache counts added to the input), read without decoding
-- the rest (an embeddings answer can be large); nil when there is none.
-- "usage" as a key can only be the real one: inside a JSON string its
-- quotes would be escaped.
function M.body_usage(text)
  if type(text) ~= "string" then return nil end
  -- (a plain search for the key, then the pattern there: a pattern tried
  -- at every byte of a long answer costs more than the rest)
  local s, e = text:find('"usage"', 1, true)
  while s do
    local _, pe = text:find('^%s*:%s*{', e + 1)
    if pe then e = pe break end
    s, e = text:find('"usage"', e + 1, true)
  end
  if not s then return nil end
  -- the object's end: braces nest (token details), strings hold none here
  local depth, i = 1, e + 1
  while depth > 0 do
    local j = text:find("[{}]", i)
    if not j then return nil end
    depth = depth + (text:sub(j, j) == "{" and 1 or -1)
    i = j + 1
  end
  local u = text:sub(e, i - 1)
  -- a key at the usage object's top level or in a detail object: the
  -- counts asked for are only at the top level in every format
  local function n(key) return tonumber(u:match('"' .. key .. '"%s*:%s*(%d+)')) end
  local input = n("prompt_tokens") or n("input_tokens")
  local output = n("completion_tokens") or n("output_tokens")
  if input then input = input + (n("cache_creation_input_tokens") or 0) + (n("cache_read_input_tokens") or 0) end
  if not (input or output) then return nil end
  return input or 0, output or 0
end

return M
