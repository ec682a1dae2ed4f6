-- The response store: moongate.store's pure-Lua LRU, the C store behind
-- core._store_* (build/lua/moongate/core.so) with the same behaviour, and
-- the C store used from several threads at once (luv threads, each with
-- its own Lua state, as the daemon's worker threads have), plus the
-- config's response_store.
local core = require "moongate.core"
local store = require "moongate.store"
local config = require "moongate.config"
local uv = require "luv"

-- The C store is one per process: empty it and set its limits.
local function c_store(max_entries, max_bytes)
  core._store_limits(0, 0)
  core._store_limits(max_entries, max_bytes)
  return store.new()
end

-- The behaviour both implementations share.
local function same_behaviour(name, make)
  describe(name, function()
    local s, ev0
    local function fresh(e, b)
      s = make(e, b)
      ev0 = s:stats().evictions
      return s
    end
    local function evicted() return s:stats().evictions - ev0 end

    it("keeps, gives back and deletes a text", function()
      fresh(10, 1000)
      assert.same({ true }, { s:put("resp_1", "hello") })
      assert.equal("hello", s:get("resp_1"))
      assert.is_nil(s:get("resp_2"))
      assert.is_true(s:delete("resp_1"))
      assert.is_false(s:delete("resp_1"))
      assert.is_nil(s:get("resp_1"))
      assert.same({ entries = 0, bytes = 0, max_entries = 10, max_bytes = 1000, evictions = ev0 }, s:stats())
    end)

    it("counts ids' and texts' bytes and replaces a text without an eviction", function()
      fresh(10, 1000)
      s:put("ab", "xyz")
      s:put("c", "")
      local st = s:stats()
      assert.equal(2, st.entries)
      assert.equal(6, st.bytes)
      s:put("ab", "0123456789")
      st = s:stats()
      assert.equal(2, st.entries)
      assert.equal(13, st.bytes)
      assert.equal("0123456789", s:get("ab"))
      assert.equal("", s:get("c"))
      assert.equal(0, evicted())
    end)

    it("evicts the least recently used past max_entries; get makes an entry recent", function()
      fresh(3, 1000)
      s:put("a", "1"); s:put("b", "2"); s:put("c", "3")
      assert.equal("1", s:get("a")) -- a is now the most recent: b goes first
      s:put("d", "4")
      assert.is_nil(s:get("b"))
      assert.equal("1", s:get("a"))
      assert.equal("3", s:get("c"))
      assert.equal("4", s:get("d"))
      assert.equal(1, evicted())
      assert.equal(3, s:stats().entries)
    end)

    it("evicts as many as it takes to fit max_bytes", function()
      fresh(100, 20)
      s:put("a", "123456") -- 7 bytes
      s:put("b", "123456") -- 14
      s:put("c", "12")     -- 17
      s:put("d", "123456789012") -- 13 more: a and b must go (17 - 7 - 7 + 13 = 16)
      assert.is_nil(s:get("a"))
      assert.is_nil(s:get("b"))
      assert.equal("12", s:get("c"))
      assert.equal("123456789012", s:get("d"))
      assert.equal(2, evicted())
      assert.equal(16, s:stats().bytes)
    end)

    it("refuses a text larger than max_bytes, changing nothing", function()
      fresh(10, 10)
      s:put("a", "12345")
      assert.same({ false, "too large" }, { s:put("big", "12345678") }) -- 3 + 8 > 10
      assert.same({ false, "too large" }, { s:put("a", "1234567890") })
      assert.equal("12345", s:get("a"))
      assert.equal(1, s:stats().entries)
      assert.equal(0, evicted())
      assert.is_true(s:put("b", "1234567")) -- exactly 10 with its id: a goes
      assert.is_nil(s:get("a"))
    end)

    it("keeps nothing with max_entries 0", function()
      fresh(0, 1000)
      assert.same({ false, "disabled" }, { s:put("a", "1") })
      assert.is_nil(s:get("a"))
      assert.equal(0, s:stats().entries)
    end)

    it("treats an id that cannot be there as absent", function()
      fresh(10, 100000)
      local long = string.rep("x", 257)
      assert.same({ false, "invalid id" }, { s:put(long, "t") })
      assert.same({ false, "invalid id" }, { s:put("", "t") })
      assert.same({ false, "invalid id" }, { s:put(42, "t") })
      assert.is_nil(s:get(long))
      assert.is_nil(s:get(""))
      assert.is_nil(s:get(nil))
      assert.is_false(s:delete(long))
      assert.is_true(s:put(string.rep("y", 256), "t"))
      assert.equal("t", s:get(string.rep("y", 256)))
    end)

    it("raises on a text that is not a string (a caller's bug)", function()
      fresh(10, 1000)
      assert.has_error(function() s:put("a", nil) end)
      assert.has_error(function() s:put("a", {}) end)
    end)

    it("holds bytes exactly, NULs included", function()
      fresh(10, 2 ^ 30)
      local bin = "a\0b\255\0"
      s:put("k\0x", bin)
      assert.equal(bin, s:get("k\0x"))
      assert.is_nil(s:get("k"))
      local big = string.rep("0123456789abcdef", 65536 * 4) -- 4 MiB
      assert.is_true(s:put("big", big))
      assert.equal(big, s:get("big"))
    end)

    it("stays consistent over many random operations", function()
      fresh(50, 2000)
      math.randomseed(7)
      local model = store.memory(50, 2000) -- the reference
      for i = 1, 5000 do
        local id = "r" .. math.random(1, 120)
        local op = math.random(1, 10)
        if op <= 5 then
          local text = string.rep(string.char(96 + math.random(1, 26)), math.random(0, 150))
          assert.same({ model:put(id, text) }, { s:put(id, text) }, "put #" .. i)
        elseif op <= 9 then
          assert.equal(model:get(id), s:get(id), "get #" .. i)
        else
          assert.equal(model:delete(id), s:delete(id), "delete #" .. i)
        end
      end
      local a, b = model:stats(), s:stats()
      assert.equal(a.entries, b.entries)
      assert.equal(a.bytes, b.bytes)
      assert.equal(a.evictions, b.evictions - ev0)
      assert.is_true(b.entries <= 50 and b.bytes <= 2000)
    end)
  end)
end

same_behaviour("store.memory", function(e, b) return store.memory(e, b) end)
same_behaviour("the C store (core._store_*)", c_store)

describe("store.memory", function()
  it("takes the default limits and refuses bad ones", function()
    local st = store.memory():stats()
    assert.equal(10000, st.max_entries)
    assert.equal(64 * 1024 * 1024, st.max_bytes)
    assert.has_error(function() store.memory(-1, 10) end)
    assert.has_error(function() store.memory(1.5, 10) end)
  end)
end)

describe("the C store's primitives", function()
  after_each(function() core._store_limits(0, 0); core._store_limits(10000, 64 * 1024 * 1024) end)

  it("is what store.new() uses", function()
    local s = c_store(5, 100)
    assert.is_true(s:put("from-lua", "x"))
    assert.equal("x", core._store_get("from-lua"))
    assert.same({ entries = 1, bytes = 9, max_entries = 5, max_bytes = 100 },
      (function(t) t.evictions = nil return t end)(core._store_stats()))
  end)

  it("refuses bad arguments with an error, never a crash", function()
    c_store(5, 100)
    assert.has_error(function() core._store_put(string.rep("k", 257), "v") end)
    assert.has_error(function() core._store_put("", "v") end)
    assert.has_error(function() core._store_put("k") end)
    assert.has_error(function() core._store_get() end)
    assert.has_error(function() core._store_delete({}) end)
    assert.has_error(function() core._store_limits(-1, 10) end)
    assert.has_error(function() core._store_limits(10, 0.5) end)
    assert.has_error(function() core._store_limits(10, 0 / 0) end)
    assert.has_error(function() core._store_limits(2 ^ 60, 10) end)
    assert.equal(0, core._store_stats().entries)
  end)

  it("evicts at once when the limits shrink", function()
    local s = c_store(10, 1000)
    for i = 1, 10 do s:put("k" .. i, "v") end
    s:get("k1")
    local ev = s:stats().evictions
    core._store_limits(3, 1000)
    assert.equal(3, s:stats().entries)
    assert.equal(7 + ev, s:stats().evictions)
    assert.equal("v", s:get("k1")) -- recently read: kept
    assert.equal("v", s:get("k10"))
    assert.is_nil(s:get("k2"))
  end)

  it("grows its table past many entries and still finds each", function()
    local s = c_store(20000, 64 * 1024 * 1024)
    for i = 1, 20000 do s:put("resp_" .. i, tostring(i)) end
    for i = 1, 20000, 37 do assert.equal(tostring(i), s:get("resp_" .. i)) end
    assert.equal(20000, s:stats().entries)
    for i = 1, 20000 do assert.is_true(s:delete("resp_" .. i)) end
    assert.equal(0, s:stats().entries)
    assert.equal(0, s:stats().bytes)
  end)
end)

describe("the C store shared by threads", function()
  after_each(function() core._store_limits(0, 0); core._store_limits(10000, 64 * 1024 * 1024) end)

  -- Runs in a thread of its own with a Lua state of its own, like a worker
  -- thread: puts, gets and deletes keys of its own and keys all threads
  -- share, checking every text it reads is whole; writes how many were
  -- broken to the file `out` (the store could evict a report).
  local function hammer(cpath, path, t, rounds, out)
    package.cpath, package.path = cpath, path
    local core = require "moongate.core"
    local bad = 0
    local function text_for(id, n) return id .. "|" .. string.rep("z", n) .. "|" .. id end
    local function whole(id, text)
      return text == nil or (text:sub(1, #id + 1) == id .. "|" and text:sub(-#id - 1) == "|" .. id)
    end
    for i = 1, rounds do
      local own = "t" .. t .. "-" .. (i % 200)
      local shared = "shared-" .. (i % 50)
      core._store_put(own, text_for(own, i % 300))
      core._store_put(shared, text_for(shared, (i * 7) % 500))
      if not whole(own, core._store_get(own)) then bad = bad + 1 end
      if not whole(shared, core._store_get(shared)) then bad = bad + 1 end
      if i % 5 == 0 then core._store_delete("t" .. t .. "-" .. ((i * 3) % 200)) end
      if i % 97 == 0 then core._store_stats() end
    end
    local f = assert(io.open(out, "w"))
    f:write(tostring(bad))
    f:close()
  end

  it("gives every thread the same entries, whole, within the limits", function()
    -- small limits, so threads evict each other's entries all the time
    c_store(300, 40000)
    local threads, outs = {}, {}
    for t = 1, 4 do
      outs[t] = os.tmpname()
      threads[t] = assert(uv.new_thread(hammer, package.cpath, package.path, t, 20000, outs[t]))
    end
    for t = 1, 4 do threads[t]:join() end
    for t = 1, 4 do
      local f = assert(io.open(outs[t]))
      assert.equal("0", f:read("*a"), "thread " .. t .. " read a broken text")
      f:close()
      os.remove(outs[t])
    end
    local st = core._store_stats()
    assert.is_true(st.entries <= 300 and st.bytes <= 40000)
    assert.is_true(st.evictions > 1000)
  end)

  it("lets a thread read and delete what another stored", function()
    c_store(100, 100000)
    assert.is_true(store.new():put("resp_from_main", "made here"))
    local t = assert(uv.new_thread(function(cpath)
      package.cpath = cpath
      local core = require "moongate.core"
      core._store_put("seen", tostring(core._store_get("resp_from_main")))
      core._store_delete("resp_from_main")
      core._store_put("resp_from_thread", "made elsewhere")
    end, package.cpath))
    t:join()
    assert.equal("made here", core._store_get("seen"))
    assert.is_nil(core._store_get("resp_from_main"))
    assert.equal("made elsewhere", store.new():get("resp_from_thread"))
  end)
end)

describe("config response_store", function()
  local function resolve(text)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
    local cfg, errs = config.resolve({ config = path }, function() return nil end, 1)
    os.remove(path)
    return cfg, errs
  end

  it("defaults to 10000 entries and 64 MiB", function()
    local cfg = assert(resolve("return {}"))
    assert.same({ max_entries = 10000, max_bytes = 64 * 1024 * 1024 }, cfg.response_store)
  end)

  it("keeps the default of a key the file leaves out", function()
    local cfg = assert(resolve("return { response_store = { max_entries = 0 } }"))
    assert.same({ max_entries = 0, max_bytes = 64 * 1024 * 1024 }, cfg.response_store)
  end)

  it("names a bad value or an unknown key", function()
    local _, errs = resolve("return { response_store = { max_entries = -1, max_bytes = 'x', ttl = 3 } }")
    table.sort(errs)
    assert.same({
      "config response_store.max_bytes: expected an integer, got string",
      "config response_store.max_entries: must be at least 0, got -1",
      "config response_store.ttl: unknown key",
    }, errs)
  end)
end)
