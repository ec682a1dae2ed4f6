-- GET /openapi.json and GET /docs on the real daemon: the document
-- validates as OpenAPI 3.1 (@readme/openapi-parser, spec/compat/
-- openapi_validate.mjs), lists every route of the running code's tables
-- (the app's own and each front door's), and every operation it lists is
-- answered by the daemon with something other than the router's 404; the
-- page is HTML that reaches no other origin. With inbound keys, both want a
-- key, as /v1/models does.
local helpers = require "helpers"
local client = helpers.client
local json = require "moongate.json"

-- validate(where) -> exit code, what the validator printed
local function validate(where)
  local p = assert(io.popen("NODE_NO_WARNINGS=1 node spec/compat/openapi_validate.mjs "
    .. helpers.shell_quote(where) .. " 2>&1; echo \"exit:$?\""))
  local out = p:read("*a")
  p:close()
  return tonumber(out:match("exit:(%d+)%s*$")), out
end

-- the route keys of the running code: an app built in this process from
-- the same modules (moongate.core stubbed: App.new with an empty config
-- calls none of the host), and each front door's descriptor
local function code_routes()
  local saved = package.loaded["moongate.core"]
  package.loaded["moongate.core"] = saved or { version = "spec" }
  local app_mod = require "moongate.app"
  local app = app_mod.new({}, { worker = 1 })
  package.loaded["moongate.core"] = saved
  local keys = {}
  for key in pairs(app.routes) do keys[key] = "app" end
  for _, w in ipairs(app.wild) do keys[w.method .. " " .. w.prefix .. "*"] = "app" end
  for _, fd in ipairs(app_mod.frontdoors) do
    for key in pairs(fd.routes) do keys[key] = fd.client end
  end
  return keys
end

-- the router's own 404 (App:handle's last answer), in any client's shape
local function router_404(res)
  if res.status ~= 404 then return false end
  local body = json.decode(res.body or "")
  local msg = type(body) == "table" and (type(body.error) == "table" and body.error.message or body.error)
  return type(msg) == "string" and msg:find("^Unknown request URL") ~= nil
end

-- the status of an answer with headers only (HEAD, and OPTIONS' 204), read
-- to the end of the connection, and what came after the headers
local function bare_status(server, method, path)
  local c = server:connect()
  c:send(client.request_bytes(method, path, nil, { Connection = "close" }))
  c:wait(function(conn) return conn.eof end, 5000)
  local buf = c.buf
  c:close()
  local e = buf:find("\r\n\r\n", 1, true)
  return tonumber(buf:match("^HTTP/1%.1 (%d%d%d)")), e and buf:sub(e + 4) or nil
end

-- a path with each {parameter} replaced by its example
local function concrete(path, item)
  return (path:gsub("{([%w_]+)}", function(name)
    for _, p in ipairs(item.parameters or {}) do
      if p.name == name and p.example ~= nil then return tostring(p.example) end
    end
    return "x"
  end))
end

local function resolver(doc)
  return function(s)
    while type(s) == "table" and s["$ref"] do
      s = doc.components.schemas[s["$ref"]:match("^#/components/schemas/(.+)$")]
    end
    return s
  end
end

describe("the API docs", function()
  local server, doc, text
  setup(function()
    server = helpers.start {}
    local res = assert(server:request("GET", "/openapi.json"))
    assert.equal(200, res.status)
    text = res.body
    doc = json.decode(text)
  end)
  teardown(function() server:stop_clean() end)

  it("/openapi.json is JSON, OpenAPI 3.1, of this daemon's version", function()
    local res = assert(server:request("GET", "/openapi.json"))
    assert.equal("application/json", res.headers["content-type"])
    assert.is_table(doc)
    assert.equal("3.1.0", doc.openapi)
    local health = json.decode(assert(server:request("GET", "/health")).body)
    assert.equal(health.version, doc.info.version)
    -- made once per worker: the same text each time
    assert.equal(text, res.body)
  end)

  it("validates as OpenAPI 3.1 (@readme/openapi-parser), fetched from the daemon", function()
    local code, out = validate(string.format("http://127.0.0.1:%d/openapi.json", server.port))
    assert.equal(0, code, out)
    assert.matches("valid OpenAPI 3%.1%.0: %d+ paths, %d+ operations", out)
    -- and the validator refuses what is not (two operations of one id)
    local broken, n = text:gsub('"operationId":"get_stats"', '"operationId":"get_health"')
    assert.equal(1, n)
    local bad = helpers.tmpfile(broken, ".json")
    local bcode, bout = validate(bad)
    os.remove(bad)
    assert.equal(1, bcode, bout)
    assert.matches("get_health", bout)
  end)

  it("lists every route of the running code's tables, with its method", function()
    local openapi = require "moongate.openapi"
    local n = 0
    for key, owner in pairs(code_routes()) do
      local m, p = key:match("^(%S+) (.*)$")
      local path = openapi.path_of(p)
      assert.is_table(doc.paths[path], key .. " (" .. owner .. ")")
      assert.is_table(doc.paths[path][m:lower()], key .. " (" .. owner .. ")")
      n = n + 1
    end
    assert.is_true(n >= 20, "only " .. n .. " routes found")
    for _, p in ipairs { "/openapi.json", "/docs", "/v1/models/{model_id}", "/ws", "/ws/{client_id}",
      "/chat/completions", "/models" } do
      assert.is_table(doc.paths[p], p)
    end
  end)

  it("lists nothing the daemon does not answer: every operation, called, is not the router's 404", function()
    -- the check can fail: a path no table holds gets the router's 404
    assert.is_true(router_404(assert(server:request("GET", "/v1/nope"))))
    assert.is_true(router_404(assert(server:request("POST", "/api/nope", "{}"))))
    local resolve = resolver(doc)
    local count, statuses = 0, {}
    local paths = {}
    for path in pairs(doc.paths) do paths[#paths + 1] = path end
    table.sort(paths)
    for _, path in ipairs(paths) do
      local item = doc.paths[path]
      local url = concrete(path, item)
      local get_status
      for _, method in ipairs { "get", "post", "delete", "head", "options" } do
        local op = item[method]
        if op then
          count = count + 1
          local where = method:upper() .. " " .. url
          if method == "head" or method == "options" then
            local status, rest = bare_status(server, method:upper(), url)
            assert.is_number(status, where)
            assert.equal("", rest, where .. " has a body")
            if method == "head" then
              get_status = get_status or assert(server:request("GET", url)).status
              assert.equal(get_status, status, where)
            else
              assert.equal(204, status, where)
            end
            statuses[where] = status
          else
            local media = op.requestBody and op.requestBody.content["application/json"]
            local body = media and media.example and json.encode(media.example)
            local headers = body and { ["Content-Type"] = "application/json" } or nil
            local res = assert(server:request(method:upper(), url, body, headers), where)
            assert.is_false(router_404(res), where .. " answered the router's 404: " .. tostring(res.body))
            assert.not_equal(405, res.status, where)
            statuses[where] = res.status
            if method == "get" then get_status = res.status end
            -- a documented 200 answer is what came, as far as its schema requires
            local ok = op.responses["200"]
            local schema = res.status == 200 and ok and ok.content and ok.content["application/json"]
              and resolve(ok.content["application/json"].schema)
            if schema and schema.required then
              local got = json.decode(res.body)
              assert.is_table(got, where)
              for _, field in ipairs(schema.required) do
                assert.is_not_nil(got[field], where .. " lacks " .. field)
              end
            end
          end
        end
      end
    end
    assert.is_true(count >= 70, "only " .. count .. " operations")
    -- what the daemon said to some of them, as documented
    assert.equal(200, statuses["POST /v1/chat/completions"])
    assert.equal(200, statuses["POST /chat/completions"])
    assert.equal(200, statuses["POST /v1/messages"])
    assert.equal(200, statuses["POST /v1/messages/count_tokens"])
    assert.equal(200, statuses["POST /v1/responses"])
    assert.equal(200, statuses["POST /v1/completions"])
    assert.equal(200, statuses["POST /api/chat"])
    assert.equal(200, statuses["POST /api/generate"])
    assert.equal(200, statuses["POST /api/show"])
    assert.equal(200, statuses["GET /v1/models/echo"])
    assert.equal(200, statuses["GET /models/echo"])
    assert.equal(200, statuses["HEAD /docs"])
    assert.equal(204, statuses["OPTIONS /v1/chat/completions"])
    assert.equal(426, statuses["GET /ws"])
    assert.equal(426, statuses["GET /ws/my-client"])
    assert.equal(404, statuses["GET /v1/responses/resp_0123456789abcdef"]) -- not stored: the store's 404
  end)

  it("/docs is one HTML page that fetches /openapi.json from its own origin and nothing else", function()
    local res = assert(server:request("GET", "/docs"))
    assert.equal(200, res.status)
    assert.matches("^text/html", res.headers["content-type"])
    local html = res.body
    assert.matches("^<!DOCTYPE html>", html)
    assert.is_truthy(html:find('fetch("openapi.json"', 1, true))
    assert.is_falsy(html:find("https://", 1, true))
    assert.is_falsy(html:find("http://", 1, true))
    assert.is_falsy(html:find("//cdn", 1, true))
    assert.is_falsy(html:find("<script src", 1, true))
    local csp = res.headers["content-security-policy"]
    assert.matches("default%-src 'none'", csp)
    assert.matches("connect%-src 'self'", csp)
  end)
end)

describe("the API docs with inbound keys", function()
  local server
  setup(function() server = helpers.start { env = { MOONGATE_API_KEYS = "sk-docs-spec" } } end)
  teardown(function() server:stop_clean() end)

  it("want a key, as /v1/models does, but for the page itself; the document says /, /health and /docs need none", function()
    assert.equal(401, assert(server:request("GET", "/openapi.json")).status)
    assert.equal(200, assert(server:request("GET", "/docs")).status) -- a browser opens it without a key
    assert.equal(401, assert(server:request("GET", "/v1/models")).status)
    local key = { Authorization = "Bearer sk-docs-spec" }
    assert.equal(200, assert(server:request("GET", "/docs", nil, key)).status)
    local res = assert(server:request("GET", "/openapi.json", nil, { ["x-api-key"] = "sk-docs-spec" }))
    assert.equal(200, res.status)
    local doc = json.decode(res.body)
    for _, s in ipairs(doc.security) do assert.is_not_nil(next(s), "a key is optional") end
    assert.is_nil(next(doc.paths["/health"].get.security[1]))
    assert.is_table(doc.paths["/v1/chat/completions"].post.responses["401"])
    local file = helpers.tmpfile(res.body, ".json")
    local code, out = validate(file)
    os.remove(file)
    assert.equal(0, code, out)
  end)
end)
