-- The response store inside the daemon: four worker threads, one store.
-- A Responses answer stored on one thread is read and deleted on the
-- others (GET/DELETE /v1/responses/{id}). A test provider (written to a temporary lua_path) runs store commands
-- that come as the user message and answers with what it saw and a token
-- naming its Lua state (one per worker thread), so a spec can put on one
-- thread and get on another. Under scripts/test --asan / --tsan /
-- --valgrind this is the daemon's store hammered from every thread at once,
-- and its exit (the entries freed) checked.
local helpers = require "helpers"
local json = require "moongate.json"

local provider = [=[
local canonical = require "moongate.canonical"
local store = require("moongate.store").new()
-- one token per Lua state: math.random is seeded per worker thread
local token = string.format("%08x", math.random(0, 2 ^ 31 - 1))
local M = {}

local function whole(id, text)
  return text == nil or (text:sub(1, #id + 1) == id .. "|" and text:sub(-#id - 1) == "|" .. id)
end

local commands = {}
function commands.put(id, size)
  return tostring(store:put(id, id .. "|" .. string.rep("v", tonumber(size)) .. "|" .. id))
end
function commands.get(id)
  local text = store:get(id)
  return text and tostring(#text) or "nil"
end
function commands.del(id) return tostring(store:delete(id)) end
function commands.stats() return require("moongate.json").encode(store:stats()) end
-- many operations on keys every thread shares; counts broken texts read
function commands.hammer(seed)
  local bad = 0
  for i = 1, 3000 do
    local id = "h" .. ((i * tonumber(seed)) % 97)
    store:put(id, id .. "|" .. string.rep("x", (i * 13) % 700) .. "|" .. id)
    local other = "h" .. (i % 97)
    if not whole(other, store:get(other)) then bad = bad + 1 end
    if i % 7 == 0 then store:delete("h" .. ((i * 3) % 97)) end
  end
  return "bad " .. bad
end

function M.new(name) return setmetatable({}, { __index = M }) end
function M:start(creq, sink)
  local words = {}
  for w in canonical.last_user_text(creq):gmatch("%S+") do words[#words + 1] = w end
  local out = commands[words[1]](words[2], words[3])
  sink.emit { type = "start" }
  sink.emit { type = "text_delta", text = token .. " " .. out }
  sink.emit { type = "done", reason = "stop" }
  return { cancel = function() end }
end
return M
]=]

describe("the response store in the daemon", function()
  local server, dir
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir .. "/moongate/providers") == 0)
    local f = assert(io.open(dir .. "/moongate/providers/storetest.lua", "w"))
    f:write(provider)
    f:close()
    server = helpers.start { workers = 4, config = string.format([[
return {
  lua_path = %q,
  response_store = { max_entries = 60, max_bytes = 100000 },
  providers = { st = { kind = "storetest" } },
  routes = { { match = "store", provider = "st" } },
}]], dir .. "/?.lua") }
  end)
  teardown(function()
    if server then server:stop_clean() end
    os.execute("rm -rf " .. dir)
  end)

  -- one command on a new connection: -> token of the thread, answer
  local function run(cmd)
    local res = assert(server:request("POST", "/v1/chat/completions",
      json.encode { model = "store", messages = { { role = "user", content = cmd } } },
      { connection = "close" }))
    assert.equal(200, res.status, res.body)
    local text = json.decode(res.body).choices[1].message.content
    return text:match("^(%S+) (.*)$")
  end

  it("takes its limits from the config's response_store", function()
    local _, stats = run("stats")
    stats = json.decode(stats)
    assert.equal(60, stats.max_entries)
    assert.equal(100000, stats.max_bytes)
  end)

  it("gives on any thread what one thread stored, and deletes it for all", function()
    local put_on, cross = {}, 0
    for i = 1, 40 do
      local tok, ok = run("put resp_" .. i .. " " .. (i * 10))
      assert.equal("true", ok)
      put_on[i] = tok
    end
    local threads = {}
    for i = 1, 40 do
      local tok, size = run("get resp_" .. i)
      assert.equal(tostring(i * 10 + 2 * #("resp_" .. i) + 2), size)
      threads[tok] = true
      if tok ~= put_on[i] then cross = cross + 1 end
    end
    local n = 0
    for _ in pairs(threads) do n = n + 1 end
    assert.is_true(n >= 2, "every request landed on one thread")
    assert.is_true(cross > 0, "no get ran on another thread than its put")
    for i = 1, 40 do
      local _, ok = run("del resp_" .. i)
      assert.equal("true", ok)
    end
    for i = 1, 40 do
      local _, size = run("get resp_" .. i)
      assert.equal("nil", size)
    end
  end)

  it("serves a stored response's GET and DELETE on every thread", function()
    local res = assert(server:request("POST", "/v1/responses",
      json.encode { model = "echo", input = "kept for later" }))
    assert.equal(200, res.status, res.body)
    local id = json.decode(res.body).id
    -- fresh connections spread over the four threads (SO_REUSEPORT)
    local threads, n = {}, 0
    for _ = 1, 24 do
      local h = assert(server:request("GET", "/health"))
      threads[json.decode(h.body).thread] = true
      local got = assert(server:request("GET", "/v1/responses/" .. id))
      assert.equal(200, got.status, got.body)
      assert.equal(id, json.decode(got.body).id)
    end
    for _ in pairs(threads) do n = n + 1 end
    assert.is_true(n >= 2, "every request landed on one thread")
    local del = assert(server:request("DELETE", "/v1/responses/" .. id))
    assert.equal(200, del.status, del.body)
    for _ = 1, 8 do
      local got = assert(server:request("GET", "/v1/responses/" .. id))
      assert.equal(404, got.status, got.body)
    end
  end)

  it("stays whole and within its limits with every thread at it at once", function()
    -- 32 requests, 8 at a time, each on its own connection (curl
    -- processes), each answer in a file of its own
    local out = os.tmpname()
    local script = helpers.tmpfile(string.format([[
curl -s -m 60 -o %s.$1 -H 'content-type: application/json' --data-binary "{\"model\":\"store\",\"messages\":[{\"role\":\"user\",\"content\":\"hammer $1\"}]}" http://127.0.0.1:%d/v1/chat/completions
]], out, server.port), ".sh")
    helpers.sh("seq 1 32 | xargs -P 8 -n 1 sh " .. script)
    os.remove(script)
    local answers, tokens = 0, {}
    for i = 1, 32 do
      local f = io.open(out .. "." .. i)
      local res = f and json.decode(f:read("*a"))
      if f then f:close() end
      os.remove(out .. "." .. i)
      local text = res and res.choices[1].message.content or "no answer"
      local tok, bad = text:match("^(%S+) bad (%d+)$")
      assert.equal("0", bad, text)
      tokens[tok] = true
      answers = answers + 1
    end
    os.remove(out)
    assert.equal(32, answers)
    local n = 0
    for _ in pairs(tokens) do n = n + 1 end
    assert.is_true(n >= 2, "the hammering ran on one thread only")
    local _, stats = run("stats")
    stats = json.decode(stats)
    assert.is_true(stats.entries <= 60 and stats.bytes <= 100000)
    assert.is_true(stats.evictions > 0)
  end)
end)
