-- The account store: one JSON file per logged-in account, shared by the
-- `moongate login|logout|info` commands and the daemon's token sources.
--
--   home([getenv]) -> dir: $MOONGATE_HOME, else $XDG_CONFIG_HOME/moongate,
--                     else $HOME/.config/moongate
--   dir([getenv])  -> <home>/accounts
--   path(name)     -> <home>/accounts/<name>.json | nil, err
--   check_name(name) -> name | nil, err   (letters, digits, '.', '_', '-')
--   list()         -> records sorted by name; a file that cannot be read is
--                     skipped with a warning, never an error
--   load(name)     -> record | nil, err
--   save(record)   -> true | nil, err   (atomic: a temp file in the same
--                     folder, then rename)
--   remove(name)   -> true | nil, err
--
-- A record: {name, kind = "copilot" | "chatgpt", login, created_at,
-- refreshed_at (epoch seconds), and per kind: copilot github_token; chatgpt
-- access_token, refresh_token, id_token, account_id, expires_at}.
-- The files hold tokens: mode 0600 in folders of mode 0700 (an existing
-- accounts folder has its mode fixed too). Synchronous luv calls: luv is
-- there in the daemon's threads and in the command line.
local uv = require "luv"
local json = require "moongate.json"

local M = {}

local FILE_MODE = tonumber("600", 8)
local DIR_MODE = tonumber("700", 8)

local function env(getenv, name)
  local v = getenv(name)
  if v and v ~= "" then return v end
end

function M.home(getenv)
  getenv = getenv or os.getenv
  local home = env(getenv, "MOONGATE_HOME")
  if home then return home end
  local xdg = env(getenv, "XDG_CONFIG_HOME")
  if xdg then return xdg .. "/moongate" end
  return (env(getenv, "HOME") or ".") .. "/.config/moongate"
end

function M.dir(getenv)
  return M.home(getenv) .. "/accounts"
end

function M.check_name(name)
  if type(name) ~= "string" or name == "" or not name:match("^[%w%._%-]+$")
    or name == "." or name == ".." then
    return nil, string.format("invalid account name %q: use letters, digits, '.', '_' and '-' only",
      tostring(name))
  end
  return name
end

function M.path(name)
  local ok, err = M.check_name(name)
  if not ok then return nil, err end
  return M.dir() .. "/" .. name .. ".json"
end

-- mkdir -p; `private` folders are made (and kept) 0700
local function mkdirs(path, private)
  local st = uv.fs_stat(path)
  if st then
    if st.type ~= "directory" then return nil, path .. " is not a folder" end
    if private and st.mode % 512 ~= DIR_MODE then
      local ok, err = uv.fs_chmod(path, DIR_MODE)
      if not ok then return nil, err end
    end
    return true
  end
  local parent = path:match("^(.*)/[^/]+$")
  if parent and parent ~= "" then
    local ok, err = mkdirs(parent, false)
    if not ok then return nil, err end
  end
  local ok, err, code = uv.fs_mkdir(path, private and DIR_MODE or tonumber("755", 8))
  if not ok and code ~= "EEXIST" then return nil, err end
  if private then uv.fs_chmod(path, DIR_MODE) end -- the umask may have taken bits away
  return true
end

--- ensure_dir() -> accounts folder | nil, err: home and accounts made 0700
function M.ensure_dir()
  local home = M.home()
  local ok, err = mkdirs(home, true)
  if not ok then return nil, "cannot make " .. home .. ": " .. tostring(err) end
  local dir = home .. "/accounts"
  ok, err = mkdirs(dir, true)
  if not ok then return nil, "cannot make " .. dir .. ": " .. tostring(err) end
  return dir
end

local function read_file(path)
  local fd, err = uv.fs_open(path, "r", 0)
  if not fd then return nil, err end
  local st = uv.fs_fstat(fd)
  local data, rerr = uv.fs_read(fd, st and st.size or 0, 0)
  uv.fs_close(fd)
  if not data then return nil, rerr end
  return data
end

local function decode_record(name, text)
  local rec, err = json.decode(text)
  if type(rec) ~= "table" then return nil, "not a JSON object" .. (err and (": " .. err) or "") end
  if rec.kind ~= "copilot" and rec.kind ~= "chatgpt" then
    return nil, string.format("unknown kind %q", tostring(rec.kind))
  end
  rec.name = name -- the file's name is the account's
  return rec
end

function M.load(name)
  local path, err = M.path(name)
  if not path then return nil, err end
  local text, rerr, code = read_file(path)
  if not text then
    if code == "ENOENT" or (rerr and rerr:find("ENOENT")) then
      return nil, string.format("no account named %q in %s", name, M.dir())
    end
    return nil, string.format("cannot read %s: %s", path, tostring(rerr))
  end
  local rec, derr = decode_record(name, text)
  if not rec then return nil, string.format("%s: %s", path, derr) end
  return rec
end

function M.save(record)
  local name = record and record.name
  local path, err = M.path(name)
  if not path then return nil, err end
  local dir, derr = M.ensure_dir()
  if not dir then return nil, derr end
  local text = json.encode(record)
  -- a name of its own per writer (threads and processes share the folder);
  -- it does not end in .json, so list() never sees it
  local tmp = string.format("%s/.%s.%d.%s.tmp", dir, name, uv.os_getpid(),
    require("moongate.auth.util").random_id(6))
  local fd, oerr = uv.fs_open(tmp, "wx", FILE_MODE)
  if not fd then return nil, string.format("cannot write %s: %s", tmp, tostring(oerr)) end
  local ok, werr = uv.fs_write(fd, text, 0)
  if ok then ok, werr = uv.fs_fsync(fd) end
  uv.fs_close(fd)
  if ok then ok, werr = uv.fs_chmod(tmp, FILE_MODE) end
  if ok then ok, werr = uv.fs_rename(tmp, path) end
  if not ok then
    uv.fs_unlink(tmp)
    return nil, string.format("cannot write %s: %s", path, tostring(werr))
  end
  return true
end

function M.remove(name)
  local path, err = M.path(name)
  if not path then return nil, err end
  local ok, uerr = uv.fs_unlink(path)
  if not ok then
    if uerr and uerr:find("ENOENT") then
      return nil, string.format("no account named %q in %s", name, M.dir())
    end
    return nil, string.format("cannot remove %s: %s", path, tostring(uerr))
  end
  uv.fs_unlink(M.dir() .. "/" .. name .. ".lock") -- a refresh lock left behind
  return true
end

function M.list()
  local dir = M.dir()
  local out = {}
  local h = uv.fs_scandir(dir)
  while h do
    local fname, kind = uv.fs_scandir_next(h)
    if not fname then break end
    local name = fname:match("^(.+)%.json$")
    if name and fname:sub(1, 1) ~= "." and kind ~= "directory" then
      local rec, err
      if M.check_name(name) then
        rec, err = M.load(name)
      else
        err = "not a valid account name"
      end
      if rec then
        out[#out + 1] = rec
      else
        require("moongate.log").warn("skipping account file %s/%s: %s", dir, fname, tostring(err))
      end
    end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

local LABEL = { copilot = "Copilot", chatgpt = "ChatGPT" }

--- load_for(name, kind, field) -> the record of an account a provider
-- serves | nil, {status = 503, message}: missing, unreadable, of another
-- kind, or without its token field. The details (a path, a parse error)
-- are the operator's: the log has them, the client is told less.
function M.load_for(name, kind, field)
  local label = LABEL[kind] or kind
  local rec, err = M.load(name or "")
  if not rec then
    require("moongate.log").warn("%s account %s: %s", label, tostring(name), tostring(err))
    return nil, { status = 503, message = string.format(
      "%s account %s is not available (the gateway's log says why); run moongate login %s --name %s",
      label, tostring(name), kind, tostring(name)) }
  end
  if rec.kind ~= kind or type(rec[field]) ~= "string" then
    return nil, { status = 503, message = string.format("account %s is not a %s account (kind %s)",
      tostring(name), label, tostring(rec.kind)) }
  end
  return rec
end

--- served(flags) -> the stored accounts a daemon serves by itself: every
-- one when there is no config file, none with one (the file says what is
-- served)
function M.served(flags)
  local path = flags and flags.config or os.getenv("MOONGATE_CONFIG")
  if path and path ~= "" then return nil end
  return M.list()
end

return M
