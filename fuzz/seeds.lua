-- Builds the fuzz targets' seed corpora from the spec fixtures:
--   luajit fuzz/seeds.lua OUTDIR
-- OUTDIR/jscan and OUTDIR/doors: every JSON fixture as it is; OUTDIR/sse: each scripted
-- upstream stream ({"frames": [...]}) as SSE bytes and as NDJSON lines;
-- OUTDIR/tmpl: each of those frames' data alone.
package.path = "lua/?.lua;" .. package.path
local cjson = require("cjson").new()
local out = assert(arg[1], "usage: luajit fuzz/seeds.lua OUTDIR")

local function write(dir, name, bytes)
  os.execute("mkdir -p " .. out .. "/" .. dir)
  local f = assert(io.open(out .. "/" .. dir .. "/" .. name, "wb"))
  f:write(bytes)
  f:close()
end

local n = 0
local p = io.popen("find spec/fixtures -type f -name '*.json' | sort")
for path in p:lines() do
  n = n + 1
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  write("jscan", "fixture" .. n, text)
  write("doors", "fixture" .. n, text)
  local ok, v = pcall(cjson.decode, text)
  local frames = ok and type(v) == "table" and (v.frames or (v[1] and v)) or nil
  if type(frames) == "table" and type(frames[1]) == "table" then
    local sse, nd = {}, {}
    for i, fr in ipairs(frames) do
      if type(fr) == "table" then
        local data = fr.json ~= nil and cjson.encode(fr.json) or fr.data ~= nil and
          (type(fr.data) == "string" and fr.data or cjson.encode(fr.data)) or nil
        if data then
          sse[#sse + 1] = (fr.event and ("event: " .. fr.event .. "\n") or "") .. "data: " .. data .. "\n\n"
          nd[#nd + 1] = data .. "\n"
          write("tmpl", "frame" .. n .. "_" .. i, data)
        end
      end
    end
    write("sse", "stream" .. n, table.concat(sse))
    write("sse", "lines" .. n, table.concat(nd))
  end
end
p:close()
print(string.format("seeds from %d fixtures in %s", n, out))
