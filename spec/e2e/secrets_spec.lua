-- Keys never leak, and no input forges a log line (issue 17): the real
-- daemon in front of the mock upstream. The mock's error answers quote the
-- key the daemon sent, as OpenAI's own 401 does ("Incorrect API key
-- provided: ..."); neither the client's answer nor the daemon's log may hold
-- it. The keys here match none of the log's key patterns (sk-..., Bearer
-- ...), so only redaction by value can hide them.
local helpers = require "helpers"
local json = require "moongate.json"

local CONF_KEY = "mg-operator-secret-123"  -- providers.up.api_key
local ENV_KEY = "mg-env-secret-4567890"    -- read from api_key_env
local CLIENT_KEY = "mg-client-secret-98765" -- a client's own, forwarded
local FORGED = "2026-01-01T00:00:00.000Z ERROR [w1] FORGED"

describe("secrets and log lines", function()
  local mock, server
  setup(function()
    mock = helpers.mock()
    local url = mock.url .. "/v1"
    server = helpers.start { env = { MG_SPEC_UPSTREAM_KEY = ENV_KEY }, config = string.format([[
return {
  providers = {
    up = { kind = "openai", base_url = %q, api_key = %q, retries = 0 },
    fromenv = { kind = "openai", base_url = %q, api_key_env = "MG_SPEC_UPSTREAM_KEY", retries = 0 },
    byok = { kind = "openai", base_url = %q, forward_client_key = true, retries = 0 },
    flaky = { kind = "openai", base_url = %q, retries = 1, retry_base_ms = 10 },
  },
  routes = {
    { match = "conf-model", provider = "up" },
    { match = "env-model", provider = "fromenv" },
    { match = "byok-model", provider = "byok" },
    { match = "*", provider = "flaky" },
  },
}]], url, CONF_KEY, url, url, url) }
  end)
  teardown(function()
    if server then server:stop_clean() end
    if mock then mock:stop() end
  end)
  before_each(function() mock:reset() end)

  local function refused(key)
    return { status = 401, json = { error = { message = "Incorrect API key provided: " .. key .. ".",
      type = "invalid_request_error", param = key, code = "invalid_api_key" } } }
  end

  for _, case in ipairs {
    { "a configured key", "conf-model", CONF_KEY },
    { "a key read from the environment", "env-model", ENV_KEY },
    { "a forwarded client key", "byok-model", CLIENT_KEY, true },
  } do
    local what, model, key, own = case[1], case[2], case[3], case[4]
    it("keeps " .. what .. " out of the client's answer and the log when the upstream quotes it", function()
      mock:queue { refused(key), refused(key) }
      local chat = assert(server:request("POST", "/v1/chat/completions", json.encode {
        model = model, messages = { { role = "user", content = "hi" } } },
        own and { authorization = "Bearer " .. key } or nil, 15000))
      local msgs = assert(server:request("POST", "/v1/messages", json.encode {
        model = model, max_tokens = 16, messages = { { role = "user", content = "hi" } } },
        { ["anthropic-version"] = "2023-06-01", ["x-api-key"] = own and key or nil }, 15000))
      -- the key did go upstream, and the upstream's refusal came back
      local sent = mock:requests()
      assert.equal(2, #sent)
      assert.equal("Bearer " .. key, sent[1].headers.authorization)
      assert.equal("Bearer " .. key, sent[2].headers.authorization)
      assert.equal(401, chat.status)
      assert.equal(401, msgs.status)
      assert.matches("Incorrect API key provided: [redacted].", json.decode(chat.body).error.message, 1, true)
      assert.matches("Incorrect API key provided: [redacted].", json.decode(msgs.body).error.message, 1, true)
      for _, res in ipairs { chat, msgs } do
        assert.is_nil(res.body:find(key, 1, true), res.body)
        for k, v in pairs(res.headers or {}) do
          assert.is_nil(tostring(v):find(key, 1, true), k)
        end
      end
      local log = server.log
      assert.matches("Incorrect API key provided: [redacted].", log, 1, true) -- the access line's reason
      assert.is_nil(log:find(key, 1, true), log)
    end)
  end

  it("escapes a model name that holds a line of its own", function()
    local model = "gpt-x\n" .. FORGED .. "\r\n" .. FORGED .. "\0\27"
    -- as OpenAI does, the upstream names the model in its error; a 500 is
    -- retried, and the retry's WARN line holds the message
    local missing = { status = 500, json = { error = { message = "The model `" .. model .. "` failed" } } }
    mock:queue { missing, missing }
    local res = assert(server:request("POST", "/v1/chat/completions", json.encode {
      model = model, messages = { { role = "user", content = "hi" } } }, nil, 15000))
    assert.equal(2, #mock:requests())
    assert.equal(500, res.status)
    local log = server.log
    assert.truthy(log:find("failed (500 The model `gpt-x\\n" .. FORGED .. "\\r\\n" .. FORGED .. "\\x00\\x1b` failed); retry", 1, true), log)
    assert.truthy(log:find('model="gpt-x\\x0a' .. FORGED, 1, true), log) -- the access line (C)
    for line in log:gmatch("[^\n]+") do
      assert.is_nil(line:find("^" .. FORGED:gsub("[%[%]%-%.]", "%%%0")), line)
      assert.is_nil(line:find("[%z\1-\8\11-\31\127]"), line)
    end
  end)
end)
