-- moongate.openapi (the document GET /openapi.json serves) and
-- moongate.docs_page (GET /docs), without the daemon: the document is made
-- from an app built in this process (moongate.core stubbed: App.new needs
-- none of the host's calls with an empty config), and checked against the
-- route tables, the front doors' decoders and the error shapes.
package.path = "spec/?.lua;lua/?.lua;lua/?/init.lua;" .. package.path
local json = require "moongate.json"
local errors = require "moongate.errors"

-- the document's schemas, checked on values (the keywords it uses)
local function resolver(doc)
  return function(s)
    while type(s) == "table" and s["$ref"] do
      local name = s["$ref"]:match("^#/components/schemas/(.+)$")
      s = assert(doc.components.schemas[name], "no schema " .. tostring(s["$ref"]))
    end
    return s
  end
end

local function is_type(v, t)
  if t == "null" then return v == json.null end
  if t == "string" or t == "boolean" then return type(v) == t end
  if t == "number" then return type(v) == "number" end
  if t == "integer" then return type(v) == "number" and v % 1 == 0 end
  if t == "object" then return type(v) == "table" and (next(v) == nil or not json.is_array(v)) end
  if t == "array" then return type(v) == "table" and json.is_array(v) end
  error("type " .. tostring(t))
end

-- check(v, s, resolve, at) -> nil | what does not match
local function check(v, s, resolve, at)
  s = resolve(s)
  at = at or "$"
  if s.anyOf then
    for _, alt in ipairs(s.anyOf) do
      if not check(v, alt, resolve, at) then return nil end
    end
    return at .. ": matches none of anyOf"
  end
  if s.const ~= nil and v ~= s.const then return at .. ": not " .. tostring(s.const) end
  if s.enum then
    local found = false
    for _, e in ipairs(s.enum) do found = found or e == v end
    if not found then return at .. ": " .. tostring(v) .. " not in enum" end
  end
  if s.type then
    local ok = false
    for _, t in ipairs(type(s.type) == "table" and s.type or { s.type }) do ok = ok or is_type(v, t) end
    if not ok then return at .. ": not of type " .. json.encode(s.type) end
  end
  if type(v) == "table" and v ~= json.null then
    for _, r in ipairs(s.required or {}) do
      if v[r] == nil then return at .. ": lacks required " .. r end
    end
    for k, x in pairs(v) do
      local sub = s.properties and s.properties[k]
      if sub then
        local e = check(x, sub, resolve, at .. "." .. tostring(k))
        if e then return e end
      elseif s.additionalProperties == false and type(k) == "string" then
        return at .. ": unknown field " .. k
      end
    end
    if s.items and json.is_array(v) then
      for i, x in ipairs(v) do
        local e = check(x, s.items, resolve, at .. "[" .. i .. "]")
        if e then return e end
      end
    end
  end
end

describe("moongate.openapi", function()
  local saved_core = package.loaded["moongate.core"]
  local app_mod, openapi, app, doc, resolve
  setup(function()
    package.loaded["moongate.core"] = { version = "9.9.9-spec" }
    app_mod = require "moongate.app"
    openapi = require "moongate.openapi"
    app = app_mod.new({}, { worker = 1 })
    doc = openapi.document(app, { frontdoors = app_mod.frontdoors, version = "9.9.9-spec" })
    resolve = resolver(doc)
  end)
  teardown(function() package.loaded["moongate.core"] = saved_core end)

  it("is pure: loads with neither luv nor moongate.core", function()
    local cmd = [[luajit -e 'package.path="lua/?.lua;lua/?/init.lua;"..package.path
      package.preload["moongate.core"] = function() error("moongate.core required") end
      package.preload["luv"] = function() error("luv required") end
      local o = require "moongate.openapi"
      local d = o.document({ ["GET /x"] = true }, {})
      io.write(d.openapi, " ", tostring(d.paths["/x"] ~= nil), " ", tostring(require("moongate.docs_page").html ~= nil))' 2>&1]]
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    p:close()
    assert.equal("3.1.0 true true", out)
  end)

  it("is an OpenAPI 3.1 document with the version it was given", function()
    assert.equal("3.1.0", doc.openapi)
    assert.equal("moongate", doc.info.title)
    assert.equal("9.9.9-spec", doc.info.version)
    assert.equal("unknown", openapi.document({ ["GET /x"] = true }).info.version)
  end)

  it("lists every route of the app's tables, with its method, and what App:handle serves in code", function()
    local n = 0
    for key in pairs(app.routes) do
      local m, p = key:match("^(%S+) (.*)$")
      assert.is_table(doc.paths[p], key)
      assert.is_table(doc.paths[p][m:lower()], key)
      n = n + 1
    end
    assert.is_true(n >= 16) -- the app's own and the six front doors'
    assert.is_true(#app.wild >= 2)
    for _, w in ipairs(app.wild) do
      local p = openapi.path_of(w.prefix .. "*")
      assert.is_truthy(p:find("^" .. w.prefix:gsub("%p", "%%%0") .. "{[%w_]+}$"), p)
      assert.is_table(doc.paths[p][w.method:lower()], w.method .. " " .. p)
    end
    -- every front door's routes (its descriptor), by the same keys
    for _, fd in ipairs(app_mod.frontdoors) do
      for key in pairs(fd.routes) do
        local m, p = key:match("^(%S+) (.*)$")
        assert.is_table(doc.paths[openapi.path_of(p)][m:lower()], key)
      end
    end
    assert.is_table(doc.paths["/v1/models/{model_id}"].get)
    assert.is_table(doc.paths["/openapi.json"].get)
    assert.is_table(doc.paths["/docs"].get)
    assert.equal("text/html", next(doc.paths["/docs"].get.responses["200"].content))
    -- the WebSocket endpoints: an upgrade answers 101, a plain GET 426
    for _, p in ipairs { "/ws", "/ws/{client_id}" } do
      assert.is_table(doc.paths[p].get.responses["101"], p)
      assert.is_table(doc.paths[p].get.responses["426"], p)
    end
    assert.equal("client_id", doc.paths["/ws/{client_id}"].parameters[1].name)
  end)

  it("lists a route it has no words for, and no more than the table has", function()
    local d = openapi.document({ ["GET /metrics"] = true, ["POST /v1/thing"] = true, ["GET /v1/things/*"] = true })
    assert.is_table(d.paths["/metrics"].get)
    assert.is_table(d.paths["/metrics"].head)
    assert.is_table(d.paths["/v1/thing"].post)
    assert.is_nil(d.paths["/v1/thing"].head)
    assert.is_table(d.paths["/v1/things/{id}"].get)
    assert.is_nil(d.paths["/v1/models/{model_id}"]) -- no GET /v1/models: no model by id either
    -- and an app route added to the table shows up
    local routes = {}
    for k, v in pairs(app.routes) do routes[k] = v end
    routes["GET /metrics"] = function() end
    local d2 = openapi.document({ routes = routes, wild = app.wild }, { frontdoors = app_mod.frontdoors })
    assert.is_table(d2.paths["/metrics"].get)
    assert.is_table(d2.paths["/v1/responses/{response_id}"].delete)
  end)

  it("answers HEAD on every GET path and OPTIONS on every path, as App:handle does", function()
    for path, item in pairs(doc.paths) do
      assert.is_table(item.options, path)
      assert.is_table(item.options.responses["204"], path)
      if item.get then assert.is_table(item.head, path) else assert.is_nil(item.head, path) end
    end
  end)

  it("lists the paths reached without /v1 as normalize() does, and no others", function()
    local aliases = {}
    for path, item in pairs(doc.paths) do
      if item["x-moongate-alias-of"] then aliases[path] = item["x-moongate-alias-of"] end
    end
    for alias, of in pairs(aliases) do
      assert.equal("/v1" .. alias, of)
      assert.is_table(doc.paths[of])
      for method in pairs(doc.paths[of]) do assert.is_not_nil(doc.paths[alias][method], alias .. " " .. method) end
    end
    for _, p in ipairs { "/chat/completions", "/messages", "/messages/count_tokens", "/responses",
      "/responses/{response_id}", "/completions", "/embeddings", "/models", "/models/{model_id}" } do
      assert.is_string(aliases[p], p)
    end
    assert.is_nil(aliases["/health"])
    assert.is_nil(doc.paths["/v1/health"])
    assert.is_nil(doc.paths["/v1/api/chat"])
  end)

  it("has unique operationIds", function()
    local seen = {}
    for path, item in pairs(doc.paths) do
      for method, op in pairs(item) do
        if type(op) == "table" and op.operationId then
          assert.is_nil(seen[op.operationId], op.operationId .. " twice")
          seen[op.operationId] = path .. " " .. method
        end
      end
    end
  end)

  describe("request bodies", function()
    -- the exchange routes: decoded by their front door (Ollama's by endpoint)
    local function decoder(fd, key)
      local endpoint = key:match("^POST /api/(%w+)$")
      if key == "POST /v1/messages/count_tokens" then
        return function(body) return fd.decode(body, {}, { count_only = true }) end
      end
      return function(body) return fd.decode(body, {}, endpoint) end
    end

    it("name every field the front door maps, typed, with its fate", function()
      local n = 0
      for _, fd in ipairs(app_mod.frontdoors) do
        for key in pairs(fd.routes) do
          local m, p = key:match("^(%S+) (.*)$")
          local op = doc.paths[openapi.path_of(p)][m:lower()]
          if m == "POST" and op.requestBody and key ~= "POST /api/show" then
            n = n + 1
            local s = op.requestBody.content["application/json"].schema
            local fields = fd.fields or {}
            local endpoint = p:match("/api/(%w+)$")
            if endpoint then fields = fd[endpoint .. "_fields"] end
            local want, got = {}, {}
            for k in pairs(fields) do want[k] = true end
            for _, k in ipairs(s.required or {}) do want[k] = true end
            for k in pairs(s.properties) do got[k] = true end
            assert.same(want, got, key)
            for name, fate in pairs(fields) do
              local d = s.properties[name].description
              if fate == "mapped" then assert.matches("any format", d)
              elseif fate == "drop" then assert.matches("dropped when", d)
              else assert.is_truthy(d:find(fate, 1, true), key .. " " .. name) end
            end
          end
        end
      end
      assert.equal(8, n) -- chat, messages, count_tokens, responses, completions, embeddings, ollama chat, generate
      local chat = doc.paths["/v1/chat/completions"].post.requestBody.content["application/json"].schema
      assert.equal("string", chat.properties.model.type)
      assert.equal("array", chat.properties.messages.type)
      assert.equal("boolean", chat.properties.stream.type)
      assert.same({ "model", "messages" }, chat.required)
      local gen = doc.paths["/api/generate"].post.requestBody.content["application/json"].schema
      assert.is_table(gen.properties.prompt)
      assert.is_nil(gen.properties.messages)
      assert.is_false(gen.additionalProperties) -- Ollama refuses an unknown field
    end)

    it("give an example each decoder takes, and say which fields it cannot do without", function()
      local n = 0
      for _, fd in ipairs(app_mod.frontdoors) do
        for key in pairs(fd.routes) do
          local m, p = key:match("^(%S+) (.*)$")
          local op = doc.paths[openapi.path_of(p)][m:lower()]
          local media = op.requestBody and op.requestBody.content["application/json"]
          if media and key ~= "POST /api/show" then
            n = n + 1
            local example = assert(media.example, key)
            assert.equal("echo", example.model) -- the app's first model
            assert.is_nil(check(example, media.schema, resolve), key)
            local decode = decoder(fd, key)
            local creq, err = decode(json.encode(example))
            assert.is_table(creq, key .. ": " .. tostring(err and err.message))
            for _, field in ipairs(media.schema.required or {}) do
              local without = {}
              for k, v in pairs(example) do if k ~= field then without[k] = v end end
              local bad = decode(json.encode(without))
              assert.is_nil(bad, key .. " decodes without " .. field)
            end
          end
        end
      end
      assert.equal(8, n)
    end)
  end)

  describe("answers", function()
    it("stream in the front door's kind, each event described", function()
      local want = {
        ["/v1/chat/completions"] = "text/event-stream", ["/v1/messages"] = "text/event-stream",
        ["/v1/responses"] = "text/event-stream", ["/v1/completions"] = "text/event-stream",
        ["/api/chat"] = "application/x-ndjson", ["/api/generate"] = "application/x-ndjson",
      }
      for path, kind in pairs(want) do
        local content = doc.paths[path].post.responses["200"].content
        assert.is_table(content["application/json"], path)
        assert.is_table(content[kind], path)
        assert.is_table(resolve(content[kind]["x-moongate-event"]), path)
      end
      local emb = doc.paths["/v1/embeddings"].post.responses["200"].content
      assert.is_nil(emb["text/event-stream"])
      assert.is_table(emb["application/json"])
    end)

    it("describe what the collectors make", function()
      local canonical_events = {
        { type = "text_delta", text = "hi there" },
        { type = "usage", input_tokens = 3, output_tokens = 2 },
        { type = "done", reason = "stop" },
      }
      for _, c in ipairs {
        { "/v1/chat/completions", require "moongate.frontdoor.openai_chat", { model = "m", messages = {} } },
        { "/v1/messages", require "moongate.frontdoor.anthropic_messages", { model = "m", messages = {} } },
        { "/v1/completions", require "moongate.frontdoor.openai_completions", { model = "m" } },
      } do
        local col = c[2].collector(c[3], {})
        for _, ev in ipairs(canonical_events) do col:event(ev) end
        local body = json.decode(json.encode_raw(col:result()))
        local s = doc.paths[c[1]].post.responses["200"].content["application/json"].schema
        assert.is_nil(check(body, s, resolve), c[1])
      end
    end)

    it("give each path's errors in its client's shape (errors.lua's)", function()
      local cases = {
        { "/v1/chat/completions", "post", "openai" }, { "/v1/messages", "post", "anthropic" },
        { "/v1/messages/count_tokens", "post", "anthropic" }, { "/api/chat", "post", "ollama" },
        { "/api/tags", "get", "ollama" }, { "/health", "get", "openai" }, { "/v1/responses", "post", "responses" },
      }
      for _, c in ipairs(cases) do
        local r = doc.paths[c[1]][c[2]].responses
        for _, status in ipairs { "403", "default" } do
          local media = r[status].content["application/json"]
          for _, st in ipairs { 400, 404, 429, 500 } do
            local body = json.decode(errors.body(c[3], errors.new(st, "no", { code = "x", param = "p" })))
            assert.is_nil(check(body, media.schema, resolve), c[1] .. " " .. st)
          end
        end
      end
      -- the shapes differ where the clients' do
      local function errschema(p, m) return doc.paths[p][m].responses.default.content["application/json"].schema["$ref"] end
      assert.not_equal(errschema("/v1/messages", "post"), errschema("/v1/chat/completions", "post"))
      assert.not_equal(errschema("/api/chat", "post"), errschema("/v1/chat/completions", "post"))
      assert.equal(errschema("/v1/responses", "post"), errschema("/v1/chat/completions", "post"))
    end)
  end)

  describe("security", function()
    it("without inbound keys: a key is optional everywhere", function()
      local last = doc.security[#doc.security]
      assert.is_nil(next(last))
      assert.is_table(doc.components.securitySchemes.bearer)
      assert.equal("x-api-key", doc.components.securitySchemes.x_api_key.name)
    end)

    it("with inbound keys: every endpoint but / and /health wants one", function()
      local keyed = openapi.document({ routes = app.routes, wild = app.wild, keys = { {} } },
        { frontdoors = app_mod.frontdoors })
      for _, s in ipairs(keyed.security) do assert.is_not_nil(next(s)) end
      assert.is_nil(next(keyed.paths["/health"].get.security[1]))
      assert.is_nil(next(keyed.paths["/"].get.security[1]))
      assert.is_nil(keyed.paths["/v1/models"].get.security)
      assert.is_table(keyed.paths["/v1/models"].get.responses["401"])
      assert.is_nil(keyed.paths["/health"].get.responses["401"])
    end)

    it("encodes its scope lists as JSON arrays", function()
      local text = openapi.encode(doc)
      assert.is_truthy(text:find('"bearer":[]', 1, true))
      assert.is_truthy(text:find('"security":[{}]', 1, true)) -- /health
      assert.is_falsy(text:find("\1", 1, true))
      local back = json.decode(text)
      assert.equal("3.1.0", back.openapi)
    end)
  end)

  it("lists its operations", function()
    local ops = openapi.operations(doc)
    local seen = {}
    for _, o in ipairs(ops) do seen[o.method .. " " .. o.path] = true end
    assert.is_true(seen["POST /v1/chat/completions"])
    assert.is_true(seen["HEAD /health"])
    assert.is_true(seen["OPTIONS /api/chat"])
    assert.is_true(seen["DELETE /responses/{response_id}"])
    assert.is_nil(seen["PARAMETERS /ws/{client_id}"])
  end)
end)

describe("moongate.docs_page", function()
  local page = require "moongate.docs_page"

  it("is one page that reaches nothing but its own origin", function()
    local html = page.html
    assert.matches("^<!DOCTYPE html>", html)
    assert.is_truthy(html:find('fetch("openapi.json"', 1, true))
    for _, bad in ipairs { "https://", "http://", "//cdn", "<link", " src=", "@import", "url(" } do
      assert.is_falsy(html:find(bad, 1, true), bad)
    end
    assert.matches("connect%-src 'self'", page.csp)
    assert.matches("default%-src 'none'", page.csp)
    assert.is_falsy(page.csp:find("http", 1, true))
  end)

  it("puts the document's strings in as text, never as markup", function()
    assert.is_falsy(page.html:find("innerHTML", 1, true))
    assert.is_falsy(page.html:find("insertAdjacentHTML", 1, true))
    assert.is_falsy(page.html:find("document.write", 1, true))
  end)
end)
