-- Installed use: `cmake --install` into a temporary prefix and `luarocks
-- make` into a temporary tree, then the installed binaries run with no
-- environment but PATH, from a folder that holds no lua/. A provider kind
-- that exists only in the installed modules (written there by this spec)
-- proves each binary reads its own prefix's modules, not the source tree
-- it was built from.
local H = require "helpers"
local uv = require "luv"
local json = require "moongate.json"
local client = H.client

local PATH = "PATH=" .. (os.getenv("PATH") or "/usr/bin:/bin")
local q = H.shell_quote
local root = H.sh("pwd"):gsub("%s+$", "")
-- the build of the binary under test (build/, or build-asan/ with --asan)
local build_dir = (H.bin:match("^(.*)/[^/]+$") or ".")
local source_bin = H.bin:sub(1, 1) == "/" and H.bin or root .. "/" .. H.bin

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. q(d)) == 0)
  return d
end

local function exists(path) return uv.fs_stat(path) ~= nil end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- sh(cmd) -> ok, output (stdout and stderr)
local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"exit=$?\""))
  local out = p:read("*a")
  p:close()
  local code = tonumber(out:match("exit=(%d+)%s*$"))
  return code == 0, (out:gsub("exit=%d+%s*$", ""))
end

-- A provider kind only the installed modules have: the echo provider under
-- another name.
local MARK = 'return require "moongate.providers.echo"\n'
local MARK_CONFIG = [[
return {
  providers = { here = { kind = "installmark" } },
  routes = { { match = "mark", provider = "here" } },
}
]]

-- serve(bin, cwd, config) -> daemon {port, log(), stop() -> code, signal}:
-- bin started with PATH as its whole environment
local function serve(bin, cwd, config)
  local d = { log = "", exited = false }
  local stderr = uv.new_pipe(false)
  local args = { "serve", "--listen", "127.0.0.1:0", "--workers", "2" } -- two threads look up the modules
  if config then args[#args + 1] = "--config"; args[#args + 1] = config end
  local handle, pid = H.spawn(bin, { args = args, env = { PATH }, cwd = cwd, stdio = { nil, nil, stderr } },
    function(code, signal) d.exited, d.code, d.signal = true, code, signal end)
  assert(handle, "cannot start " .. bin .. ": " .. tostring(pid))
  stderr:read_start(function(_, data) if data then d.log = d.log .. data end end)
  client.run_until(function() return d.exited or d.log:match("listening on http://[^:]+:%d+") end, 15000)
  d.port = tonumber(d.log:match("listening on http://[^:]+:(%d+)"))
  function d.stop()
    if not d.exited then handle:kill("sigterm") end
    client.run_until(function() return d.exited end, 15000)
    if not d.exited then handle:kill("sigkill"); client.run_until(function() return d.exited end, 5000) end
    client.run_until(function() return false end, 50)
    if not stderr:is_closing() then stderr:close() end
    if not handle:is_closing() then handle:close() end
    uv.run("nowait")
    return d.code, d.signal
  end
  if not d.port then
    d.stop()
    error(bin .. " did not start:\n" .. d.log, 2)
  end
  return d
end

-- the daemon answers /health and a chat request for `model` with the echo of it
local function assert_serves(d, model)
  local res = assert(client.request(d.port, "GET", "/health"))
  assert.equal(200, res.status)
  assert.equal("ok", json.decode(res.body).status)
  res = assert(client.request(d.port, "POST", "/v1/chat/completions", json.encode {
    model = model, messages = { { role = "user", content = "hello from the prefix" } } }))
  assert.equal(200, res.status, res.body)
  assert.equal("hello from the prefix", json.decode(res.body).choices[1].message.content)
end

local function assert_clean_stop(d)
  local code, signal = d.stop()
  assert(code == 0 and signal == 0, string.format("exited with code %s signal %s:\n%s",
    tostring(code), tostring(signal), d.log))
  assert.is_nil(d.log:find("Sanitizer"), d.log)
end

describe("cmake --install into a prefix", function()
  local prefix, cwd, lua_dir
  setup(function()
    prefix, cwd = tmpdir() .. "/pre fix", tmpdir() -- (a space: the unit must quote its paths)
    local ok, out = run("cmake --install " .. q(build_dir) .. " --prefix " .. q(prefix))
    assert(ok, out)
    lua_dir = prefix .. "/share/moongate/lua"
    write(lua_dir .. "/moongate/providers/installmark.lua", MARK)
    write(cwd .. "/mark.lua", MARK_CONFIG)
  end)
  teardown(function()
    if prefix then os.execute("rm -rf " .. q(prefix:gsub("/pre fix$", "")) .. " " .. q(cwd)) end
  end)

  it("puts the binary, the modules, the example config, the unit and its user in place", function()
    assert.is_true(exists(prefix .. "/bin/moongate"))
    for _, m in ipairs { "main", "app", "cli", "config", "router", "providers/init", "providers/echo",
      "frontdoor/openai_chat" } do
      assert.is_true(exists(lua_dir .. "/moongate/" .. m .. ".lua"), m)
      assert.equal(read("lua/moongate/" .. m .. ".lua"), read(lua_dir .. "/moongate/" .. m .. ".lua"))
    end
    assert.is_true(exists(prefix .. "/share/moongate/moongate.conf.lua"))
    assert.is_true(exists(prefix .. "/lib/systemd/system/moongate.service"))
    assert.matches("\nu moongate ", "\n" .. read(prefix .. "/lib/sysusers.d/moongate.conf"))
  end)

  it("the source tree's binary lacks the kind only the prefix has (so the next test means something)", function()
    local ok, out = run("cd " .. q(cwd) .. " && env -i " .. PATH .. " " .. q(source_bin)
      .. " check --config mark.lua")
    assert.is_false(ok)
    assert.matches('unknown kind "installmark"', out)
  end)

  it("runs with PATH as its whole environment, reading its own prefix's modules", function()
    local bin = prefix .. "/bin/moongate"
    local ok, out = run("cd " .. q(cwd) .. " && env -i " .. PATH .. " " .. q(bin) .. " check --config mark.lua")
    assert(ok, out)
    local d = serve(bin, cwd, cwd .. "/mark.lua")
    local ok2, err = pcall(function()
      assert_serves(d, "mark")
      assert_serves(d, "echo")
    end)
    assert_clean_stop(d)
    assert(ok2, err)
  end)

  it("`moongate check` passes the installed example config, and it serves with it", function()
    local bin, conf = prefix .. "/bin/moongate", prefix .. "/share/moongate/moongate.conf.lua"
    local ok, out = run("cd " .. q(cwd) .. " && env -i " .. PATH .. " " .. q(bin) .. " check --config " .. q(conf))
    assert(ok, out)
    assert.matches(": ok", out)
    local d = serve(bin, cwd, conf) -- --listen 127.0.0.1:0 beats the example's 8080
    local ok2, err = pcall(assert_serves, d, "echo")
    assert_clean_stop(d)
    assert(ok2, err)
  end)

  it("installs a hardened unit that reloads with SIGHUP and starts the installed binary", function()
    local unit = read(prefix .. "/lib/systemd/system/moongate.service")
    local lines = {}
    for l in unit:gmatch("[^\n]+") do lines[l] = true end
    for _, want in ipairs {
      "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
      "LimitNOFILE=65536", "User=moongate", "StateDirectory=moongate", "ConfigurationDirectory=moongate",
      "Environment=MOONGATE_HOME=/var/lib/moongate", "ExecReload=/bin/kill -HUP $MAINPID",
      "Restart=on-failure", "WantedBy=multi-user.target",
      'ExecStart="' .. prefix .. '/bin/moongate" serve --config /etc/moongate/config.lua',
    } do
      assert.is_true(lines[want], want .. " is not a line of the unit:\n" .. unit)
    end
    -- LuaJIT's compiler needs writable+executable memory
    assert.is_nil(unit:match("\nMemoryDenyWriteExecute="))
    if H.sh("command -v systemd-analyze") ~= "" then
      local ok, out = run("systemd-analyze verify " .. q(prefix .. "/lib/systemd/system/moongate.service"))
      assert(ok, out)
      assert.equal("", out)
    end
  end)
end)

describe("luarocks make into a tree", function()
  local src, tree, cwd, have
  setup(function()
    have = H.sh("command -v luarocks") ~= ""
    if not have then return end
    src, tree, cwd = tmpdir(), tmpdir(), tmpdir()
    -- a copy of the sources, so luarocks' build.luarocks/ lands outside the repository
    local ok, out = run("tar cf - CMakeLists.txt README.md src lua rockspec packaging | tar xf - -C " .. q(src))
    assert(ok, out)
    ok, out = run("cd " .. q(src) .. " && CMAKE_BUILD_PARALLEL_LEVEL=2 luarocks --lua-version 5.1 make --tree "
      .. q(tree) .. " rockspec/moongate-scm-1.rockspec")
    assert(ok, out)
    write(cwd .. "/mark.lua", MARK_CONFIG)
  end)
  teardown(function()
    if src then os.execute("rm -rf " .. q(src) .. " " .. q(tree) .. " " .. q(cwd)) end
  end)

  it("installs each module the rockspec names, as luarocks lays them out", function()
    if not have then pending("luarocks is missing (scripts/setup --test installs it)") return end
    local n = 0
    for mod, file in read("rockspec/moongate-scm-1.rockspec"):gmatch('%["(moongate[%w%._]*)"%]%s*=%s*"([^"]+)"') do
      local dest = tree .. "/share/lua/5.1/" .. mod:gsub("%.", "/") .. ".lua"
      assert.is_true(exists(dest), dest)
      assert.equal(read(file), read(dest), mod)
      n = n + 1
    end
    assert.is_true(n > 40)
    assert.is_false(exists(tree .. "/lib/lua/5.1/systemd"), "a systemd unit among the C modules")
  end)

  it("builds the host: moongate.core loads in a stock LuaJIT beside the Lua layer", function()
    if not have then pending("luarocks is missing (scripts/setup --test installs it)") return end
    assert.is_true(exists(tree .. "/lib/lua/5.1/moongate/core.so"))
    local ok, out = run("cd " .. q(cwd) .. " && env -i " .. PATH .. " luajit -e " .. q(string.format(
      'package.path = %q .. package.path; package.cpath = %q .. package.cpath; '
      .. 'local core = require "moongate.core"; require "moongate.router"; '
      .. 'print(type(core), package.searchpath("moongate.core", package.cpath), '
      .. 'require("moongate.json").encode({ ok = true }))',
      tree .. "/share/lua/5.1/?.lua;" .. tree .. "/share/lua/5.1/?/init.lua;",
      tree .. "/lib/lua/5.1/?.so;")))
    assert(ok, out)
    assert.equal("table\t" .. tree .. '/lib/lua/5.1/moongate/core.so\t{"ok":true}\n', out)
  end)

  it("builds the daemon, which serves from the tree's modules with PATH as its whole environment", function()
    if not have then pending("luarocks is missing (scripts/setup --test installs it)") return end
    local bin = tree .. "/bin/moongate"
    assert.is_true(exists(bin))
    write(tree .. "/share/lua/5.1/moongate/providers/installmark.lua", MARK)
    local ok, out = run("cd " .. q(cwd) .. " && env -i " .. PATH .. " " .. q(bin) .. " check --config mark.lua")
    assert(ok, out)
    local d = serve(bin, cwd, cwd .. "/mark.lua")
    local ok2, err = pcall(assert_serves, d, "mark")
    assert_clean_stop(d)
    assert(ok2, err)
  end)
end)
