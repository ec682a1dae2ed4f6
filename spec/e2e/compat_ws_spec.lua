-- The npm `ws` package (spec/compat) as a pool worker and a chat client, and
-- the official SDKs streaming from it, over ws:// and wss:// (TLS through
-- libwebsockets), with two worker threads.
local helpers = require "helpers"
local json = require "moongate.json"

local function run(url)
  local p = assert(io.popen(string.format("NODE_TLS_REJECT_UNAUTHORIZED=0 NODE_NO_WARNINGS=1 node spec/compat/ws_pool.mjs %s 2>&1", url)))
  local text = p:read("*a")
  p:close()
  return assert(json.decode(text:match("([^\n]*)\n?$")), "the script printed no JSON:\n" .. text)
end

local function check(r)
  assert.same({ text = "ws worker saw: from openai", finish = "stop" }, r.openai_stream)
  assert.same({ text = "ws worker saw: from anthropic", stop = "end_turn" }, r.anthropic_stream)
  assert.same({ text = "ws worker saw: whole", stop = "end_turn" }, r.anthropic_create)
  assert.same({ "response_start", "response_chunk", "response_chunk", "response_complete" }, r.chat.types)
  assert.equal("ws worker saw: from a chat socket", r.chat.content)
  assert.equal(4, #r.worker.requests)
  assert.is_true(r.worker.requests[1].stream)
  assert.is_false(r.worker.requests[3].stream)
  assert.same({ { name = "npm-ws", status = "idle", models = { "tab-model" }, served = 4 } }, r.pool)
end

describe("npm ws as worker and chat client", function()
  it("over cleartext", function()
    local s = helpers.start { workers = 2 }
    local ok, err = pcall(check, run("http://127.0.0.1:" .. s.port))
    s:stop_clean()
    assert(ok, err)
  end)

  it("over TLS (wss://)", function()
    local dir = helpers.self_signed()
    local s = helpers.start { workers = 2, config = string.format(
      'return { tls = { cert = %q, key = %q } }', dir .. "/cert.pem", dir .. "/key.pem") }
    local ok, err = pcall(check, run("https://127.0.0.1:" .. s.port))
    s:stop_clean()
    os.execute("rm -rf " .. dir)
    assert(ok, err)
  end)
end)
