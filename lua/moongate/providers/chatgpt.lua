-- kind = "chatgpt": a ChatGPT subscription, through the Codex backend in
-- the Responses format. The account's OAuth tokens (auth/chatgpt.lua) are
-- refreshed before they expire and once after a 401. The backend stores
-- nothing and answers only streams, so every request is translated:
-- store false, stream true (a whole answer is collected from the stream),
-- encrypted reasoning included so that a later turn can send it back,
-- a reasoning summary asked for (clients see it as thinking), and only the
-- fields the backend takes (docs/TRANSLATION.md lists those dropped).
-- Its quota errors become 429 with Retry-After.
local upstream = require "moongate.providers.upstream"
local responses = require "moongate.adapters.openai_responses"
local accounts = require "moongate.auth.accounts"
local listing = require "moongate.providers.listing"
local util = require "moongate.auth.util"
local chatgpt = require "moongate.auth.chatgpt"
local canonical = require "moongate.canonical"

local M = {}

M.CLIENT_VERSION = "0.46.0"

-- the request fields the backend takes; the rest are dropped (and noted)
M.TAKES = { model = true, instructions = true, input = true, tools = true, tool_choice = true,
  parallel_tool_calls = true, reasoning = true, store = true, stream = true, include = true,
  prompt_cache_key = true, text = true }


local kind = {}

function kind.source(p, opts)
  if opts.token then -- an access token given as is (api_key, or the client's own): used as it is
    local auth = (util.jwt_claims(opts.token) or {})["https://api.openai.com/auth"]
    local tok = { token = opts.token, account_id = type(auth) == "table" and auth.chatgpt_account_id or nil }
    return { token = function(_, cb) cb(tok) end }
  end
  return chatgpt.source { account = opts.account, insecure = p.conf.insecure }
end

function kind.headers(p, tok, creq, adapter)
  local h = adapter.headers(p.conf, tok.token, creq)
  h.accept = "text/event-stream"
  h["openai-beta"] = "responses=experimental"
  h.originator = p.conf.originator or "codex_cli_rs"
  h["session_id"] = creq and creq.session_id or util.uuid()
  h["user-agent"] = p.conf.user_agent or ("codex_cli_rs/" .. (p.conf.client_version or M.CLIENT_VERSION))
  if tok.account_id then h["chatgpt-account-id"] = tok.account_id end
  return h
end

local ORDER = { "none", "minimal", "low", "medium", "high", "xhigh" }
local RANK = {}
for i, e in ipairs(ORDER) do RANK[e] = i end

--- effort(p, model, effort) -> the nearest effort the model offers (its
-- supported_reasoning_levels in the backend's list; the one asked when the
-- list says nothing): the backend refuses the others
function M.effort(p, model, effort)
  local entry = effort and p.model_info and p.model_info[model]
  local levels = entry and entry.entry and entry.entry.supported_reasoning_levels
  if type(levels) ~= "table" or #levels == 0 or not RANK[effort] then return effort end
  local best, dist
  for _, l in ipairs(levels) do
    local e = type(l) == "table" and l.effort or l
    local d = RANK[e] and math.abs(RANK[e] - RANK[effort])
    if d and (not dist or d < dist or (d == dist and RANK[e] > RANK[best])) then best, dist = e, d end
  end
  return best or effort
end

--- shape(p, wire, creq): the request as the backend takes it
function M.shape(p, wire, creq)
  for k in pairs(wire) do
    if not M.TAKES[k] then
      canonical.dropped(creq, k .. " (the ChatGPT backend does not take it)")
      wire[k] = nil
    end
  end
  wire.store, wire.stream = false, true
  wire.instructions = wire.instructions or ""
  local include = type(wire.include) == "table" and wire.include or {}
  local has = false
  for _, v in ipairs(include) do if v == "reasoning.encrypted_content" then has = true end end
  if not has then include[#include + 1] = "reasoning.encrypted_content" end
  wire.include = include
  local r = type(wire.reasoning) == "table" and wire.reasoning or {}
  r.effort = M.effort(p, wire.model, r.effort or p.conf.effort or "medium")
  r.summary = r.summary or p.conf.summary or "auto"
  wire.reasoning = r
end

--- classify(p, status, err, retry_after) -> status, retry_after: the
-- backend's quota errors (usage_limit_reached, usage_not_included,
-- rate_limit_exceeded "try again in N s"), as an HTTP answer or as a
-- failed stream (err: the error object), as 429 with the wait
function M.classify(_, status, e, retry_after)
  e = type(e) == "table" and e or {}
  local what = tostring(e.type or "") .. " " .. tostring(e.code or "")
  local msg = tostring(e.message or "")
  if status == 429 or what:find("usage_limit_reached") or what:find("usage_not_included")
      or what:find("rate_limit_exceeded") then
    local wait = tonumber(e.resets_in_seconds)
      or tonumber(msg:match("[Tt]ry again in%s+([%d%.]+)%s*s"))
      or (tonumber(e.resets_at) and math.max(1, tonumber(e.resets_at) - os.time()))
    return 429, retry_after or (wait and math.ceil(wait)) or nil
  end
  return status, retry_after
end

local mod = upstream.kind {
  adapter = responses,
  defaults = { base_url = util.env("MOONGATE_CHATGPT_URL", "https://chatgpt.com/backend-api/codex") },
  stream_always = true,
  schema = {
    effort = { type = "string", enum = { none = true, minimal = true, low = true, medium = true, high = true,
      xhigh = true } },                  -- the reasoning effort when the client asks none
    summary = { type = "string", enum = { auto = true, concise = true, detailed = true, none = true } },
    originator = "string",               -- the originator header (codex_cli_rs)
    user_agent = "string",               -- the User-Agent header (codex_cli_rs/<client_version>)
    client_version = "string",           -- sent when listing the models
  },
  auth = function(p) return accounts.new(p, kind) end,
  shape = M.shape,
  classify = M.classify,
  init = function(p)
    p.listing = listing.new(p, listing.from_upstream(p, responses,
      "/models?client_version=" .. (p.conf.client_version or M.CLIENT_VERSION), function(body)
        if type(body.models) ~= "table" then return nil end
        local out = {}
        for _, m in ipairs(body.models) do
          if type(m) == "table" and type(m.slug or m.id) == "string" then
            out[#out + 1] = { id = m.slug or m.id, entry = m }
          end
        end
        return out
      end))
    p.listing:watch() -- listed at start and every models_ttl_s
  end,
}
for k, v in pairs(M) do mod[k] = v end
return mod
