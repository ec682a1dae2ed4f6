-- moongate.metrics: the usage read from a whole answer passed through, the
-- exposition of the gate, rate-limit and WS pool snapshots, and the
-- C primitives behind it (core.so): label values cleaned and escaped, and a
-- metric's series bounded however many names come.
local metrics = require "moongate.metrics"
local core = require "moongate.core"

describe("metrics.body_usage", function()
  it("reads OpenAI's prompt and completion tokens, past the detail objects", function()
    local body = '{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}],'
      .. '"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,'
      .. '"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}}'
    assert.same({ 12, 5 }, { metrics.body_usage(body) })
  end)

  it("reads Anthropic's input and output tokens, with the cached input added", function()
    local body = '{"type":"message","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":10,'
      .. '"cache_creation_input_tokens":3,"cache_read_input_tokens":2,"output_tokens":7}}'
    assert.same({ 15, 7 }, { metrics.body_usage(body) })
  end)

  it("reads the Responses API's usage, and an embeddings answer's (input only)", function()
    local body = '{"object":"response","usage":{"input_tokens":9,"input_tokens_details":{"cached_tokens":0},'
      .. '"output_tokens":4,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":13}}'
    assert.same({ 9, 4 }, { metrics.body_usage(body) })
    assert.same({ 6, 0 }, { metrics.body_usage('{"data":[{"embedding":[0.1,0.2]}],"usage":{"prompt_tokens":6,"total_tokens":6}}') })
  end)

  it("is not fooled by the word usage inside the answer's text", function()
    local body = '{"choices":[{"message":{"content":"see \\"usage\\": {\\"prompt_tokens\\": 99}"}}],'
      .. '"usage":{"prompt_tokens":3,"completion_tokens":4}}'
    assert.same({ 3, 4 }, { metrics.body_usage(body) })
    assert.is_nil(metrics.body_usage('{"choices":[{"message":{"content":"\\"usage\\": {\\"prompt_tokens\\": 1}"}}]}'))
  end)

  it("answers nil without a usage, or with one that counts nothing", function()
    assert.is_nil(metrics.body_usage('{"choices":[]}'))
    assert.is_nil(metrics.body_usage('{"usage":null}'))
    assert.is_nil(metrics.body_usage('{"usage":{}}'))
    assert.is_nil(metrics.body_usage('{"usage":{"prompt_tokens":'))
    assert.is_nil(metrics.body_usage(nil))
  end)
end)

describe("metrics.render", function()
  local snap = {
    version = "9.9.9",
    stats = { workers = 3 },
    gate = {
      ["provider:b"] = { limit = 2, in_use = 1, queued = 4, granted = 10, waited = 3, rejected = 1, timed_out = 2,
        wait_ms = 1500, cooling_ms = 0 },
      ['model:a"q'] = { limit = 1, in_use = 0, queued = 0, granted = 1, waited = 0, rejected = 0, timed_out = 0,
        wait_ms = 0, cooling_ms = 250 },
    },
    rate = { ["team-a"] = { admitted = 5, refused = 1 } },
    pool = { workers = { { status = "idle", in_flight = 0 }, { status = "busy", in_flight = 2 },
      { status = "busy", in_flight = 1 }, { status = "connecting", in_flight = 0 } }, queued = 7, pending = 3 },
  }

  it("writes each gate's numbers under its name, sorted, in seconds where C counts milliseconds", function()
    local text = metrics.render(snap)
    assert.truthy(text:find('moongate_gate_queued{gate="provider:b"} 4\n', 1, true))
    assert.truthy(text:find('moongate_gate_wait_seconds_total{gate="provider:b"} 1.5\n', 1, true))
    assert.truthy(text:find('moongate_gate_cooldown_seconds{gate="model:a\\"q"} 0.25\n', 1, true))
    assert.truthy(text:find('moongate_gate_timed_out_total{gate="provider:b"} 2\n', 1, true))
    -- sorted: the model gate before the provider one
    assert.is_true(text:find('gate_limit{gate="model', 1, true) < text:find('gate_limit{gate="provider', 1, true))
    assert.truthy(text:find("# TYPE moongate_gate_rejected_total counter\n", 1, true))
    assert.truthy(text:find("# TYPE moongate_gate_queued gauge\n", 1, true))
  end)

  it("writes the rate limits by key name, the pool's workers by state, and the build", function()
    local text = metrics.render(snap)
    assert.truthy(text:find('moongate_rate_refused_total{key="team-a"} 1\n', 1, true))
    assert.truthy(text:find('moongate_ws_pool_workers{state="busy"} 2\n', 1, true))
    assert.truthy(text:find('moongate_ws_pool_workers{state="connecting"} 1\n', 1, true))
    assert.truthy(text:find('moongate_ws_pool_workers{state="idle"} 1\n', 1, true))
    assert.truthy(text:find("moongate_ws_pool_in_flight 3\n", 1, true))
    assert.truthy(text:find("moongate_ws_pool_queued 7\n", 1, true))
    assert.truthy(text:find("moongate_ws_pool_pending 3\n", 1, true))
    assert.truthy(text:find('moongate_build_info{version="9.9.9"} 1\n', 1, true))
    assert.truthy(text:find("moongate_workers 3\n", 1, true))
  end)

  it("writes every metric's HELP and TYPE even with no snapshot, and every line ends", function()
    local text = metrics.render({})
    assert.truthy(text:find("# TYPE moongate_gate_limit gauge\n", 1, true))
    assert.is_nil(text:find("moongate_gate_limit{", 1, true))
    assert.truthy(text:find('moongate_ws_pool_workers{state="idle"} 0\n', 1, true))
    assert.equal("\n", text:sub(-1))
  end)
end)

describe("the metrics primitives (core.so)", function()
  it("count an exchange's tokens by key name and model, never the key", function()
    metrics.tokens({ client = { req = { inbound = { name = "unit-key", key = "sk-unit-secret" } } },
      creq = { model = "unit-model" } }, 11, 4)
    metrics.tokens({ client = {}, creq = { model = "unit-model" } }, 2, nil)
    local text = core._metrics_text()
    assert.truthy(text:find('moongate_tokens_total{key="unit-key",model="unit-model",direction="in"} 11\n', 1, true))
    assert.truthy(text:find('moongate_tokens_total{key="unit-key",model="unit-model",direction="out"} 4\n', 1, true))
    assert.truthy(text:find('moongate_tokens_total{key="none",model="unit-model",direction="in"} 2\n', 1, true))
    assert.is_nil(text:find('key="none",model="unit-model",direction="out"', 1, true)) -- nothing counted: no series
    assert.is_nil(text:find("sk-unit-secret", 1, true))
  end)

  it("clean a label value: control characters and bytes that are not UTF-8 become ?, quotes are escaped", function()
    core._metrics_retry('odd\n"name\\' .. "\255x")
    core._metrics_retry("caf\195\169") -- UTF-8 stays
    local text = core._metrics_text()
    assert.truthy(text:find('moongate_retries_total{provider="odd?\\"name\\\\?x"} 1\n', 1, true))
    assert.truthy(text:find('moongate_retries_total{provider="caf\195\169"} 1\n', 1, true))
  end)

  it("cut a long label value at 96 bytes without splitting a character", function()
    core._metrics_fallback(string.rep("a", 95) .. "\195\169tail")
    local text = core._metrics_text()
    assert.truthy(text:find('moongate_fallbacks_total{provider="' .. string.rep("a", 95) .. '"} 1\n', 1, true))
  end)

  it("keep a metric's series bounded: past 200 label sets, new names count as other", function()
    local function series(text, name)
      local n = 0
      for _ in text:gmatch("\n" .. name .. "{") do n = n + 1 end
      return n
    end
    for i = 1, 2000 do core._metrics_tokens("flood-key", string.format("flood-%d", i), 1, 1) end
    local text = core._metrics_text()
    local n = series(text, "moongate_tokens_total")
    assert.is_true(n <= 257, n .. " series")
    assert.is_true(n >= 200, n .. " series")
    -- only the model collapses: the key name is the config's, so it stays
    assert.truthy(text:find('moongate_tokens_total{key="flood-key",model="other",direction="in"}', 1, true))
    assert.falsy(text:find('key="other"', 1, true))
    local overflow = tonumber(text:match("\nmoongate_metrics_label_overflow_total (%d+)"))
    assert.is_true(overflow > 3000, tostring(overflow))
    -- every token is still counted, under some series
    local total = 0
    for v in text:gmatch('\nmoongate_tokens_total{key="[^"]*",model="flood%-[^"]*",direction="in"} (%d+)') do
      total = total + tonumber(v)
    end
    for v in text:gmatch('\nmoongate_tokens_total{key="flood%-key",model="other",direction="in"} (%d+)') do
      total = total + tonumber(v)
    end
    assert.equal(2000, total)
  end)

  it("count reloads by outcome, and write the process's numbers", function()
    local text = core._metrics_text()
    assert.truthy(text:find('\nmoongate_reloads_total{outcome="failed"} %d+\n'))
    assert.truthy(text:find("\nmoongate_process_open_fds %d+\n"))
    assert.truthy(text:find("\nmoongate_process_resident_memory_bytes %d+\n"))
    assert.truthy(text:find("# TYPE moongate_request_duration_seconds histogram\n", 1, true))
  end)
end)
