-- kind = "copilot": a GitHub Copilot subscription. The account's GitHub
-- token is exchanged for a Copilot token (auth/copilot.lua); the API base
-- comes from that token's proxy-ep unless base_url says otherwise. The
-- models come from the Copilot API's /models (cached), and each request
-- goes to the endpoint its model's supported_endpoints name: Anthropic
-- messages (/v1/messages, so Claude's thinking survives), the Responses
-- API (/responses) or chat completions (/chat/completions).
-- Every header Copilot looks at has a config field (docs/ACCOUNTS.md).
local upstream = require "moongate.providers.upstream"
local chat = require "moongate.adapters.openai"
local anthropic = require "moongate.adapters.anthropic"
local responses = require "moongate.adapters.openai_responses"
local accounts = require "moongate.auth.accounts"
local listing = require "moongate.providers.listing"
local util = require "moongate.auth.util"
local copilot = require "moongate.auth.copilot"

local M = {}

M.EDITOR_VERSION = "vscode/1.104.1"
M.PLUGIN_VERSION = "copilot-chat/0.31.3"
M.USER_AGENT = "GitHubCopilotChat/0.31.3"
M.THINKING_BETA = "interleaved-thinking-2025-05-14"

-- endpoint (as /models names it) -> adapter
local by_endpoint = { ["/v1/messages"] = anthropic, ["/responses"] = responses, ["/chat/completions"] = chat }

local uuid = util.uuid


--- initiator(creq) -> "user" when the last message is the user's own
-- text, else "agent" (tool results, assistant turns): Copilot bills a
-- premium request for the user's turns only
function M.initiator(creq)
  local msgs = creq.messages or {}
  -- (a system message after the turn, as Claude Code's newer models send
  -- its environment, is not the turn)
  local n = #msgs
  while n > 0 and msgs[n].role == "system" do n = n - 1 end
  local last = msgs[n]
  if not last or last.role ~= "user" then return "agent" end
  local text = false
  for _, b in ipairs(last.content or {}) do
    if b.type == "tool_result" then return "agent" end
    if b.type == "text" then text = true end
  end
  return text and "user" or "agent"
end

--- vision(creq) -> whether any message carries an image
function M.vision(creq)
  for _, m in ipairs(creq.messages or {}) do
    for _, b in ipairs(m.content or {}) do
      if b.type == "image" then return true end
      if b.type == "tool_result" then
        for _, a in ipairs(b.attachments or {}) do if a.type == "image" then return true end end
      end
    end
  end
  return false
end

-- the editor headers (every value configurable), for the API and for the token exchange
local function editor_headers(conf)
  return {
    ["copilot-integration-id"] = conf.integration_id or "vscode-chat",
    ["editor-version"] = conf.editor_version or M.EDITOR_VERSION,
    ["editor-plugin-version"] = conf.editor_plugin_version or M.PLUGIN_VERSION,
    ["user-agent"] = conf.user_agent or M.USER_AGENT,
  }
end

local kind = {}

function kind.source(p, opts)
  return copilot.source { account = opts.account, github_token = opts.token, headers = editor_headers(p.conf),
    github_api_url = p.conf.github_api_url, copilot_api_url = p.conf.base_url, insecure = p.conf.insecure }
end

function kind.base_url(p, tok)
  return p.base_url ~= "" and p.base_url or (tok.base_url or copilot.DEFAULT_BASE):gsub("/+$", "")
end

function kind.headers(p, tok, creq, adapter)
  local h = adapter.headers(p.conf, nil, creq)
  for k, v in pairs(editor_headers(p.conf)) do h[k] = v end
  h.authorization = "Bearer " .. tok.token
  h["openai-intent"] = p.conf.intent or "conversation-panel"
  h["x-request-id"] = uuid()
  h["x-initiator"] = M.initiator(creq)
  if M.vision(creq) then h["copilot-vision-request"] = "true" end
  if adapter == anthropic then
    local beta = creq and creq.anthropic_beta
    h["anthropic-beta"] = beta and (beta:find(M.THINKING_BETA, 1, true) and beta or beta .. "," .. M.THINKING_BETA)
      or M.THINKING_BETA
  end
  return h
end

--- pick(info, client) -> the adapter for a model's entry: Anthropic's when
-- the model has it, else the client's own format when listed, else
-- Responses, else chat completions; nil when the entry names no endpoint
function M.pick(info, client)
  local eps, any = {}, false
  local list = type(info) == "table" and info.supported_endpoints
  for _, e in ipairs(type(list) == "table" and list or {}) do
    if by_endpoint[e] then eps[e], any = true, true end
  end
  if not any then return nil end
  if eps["/v1/messages"] then return anthropic end
  if client == "responses" and eps["/responses"] then return responses end
  if eps["/chat/completions"] then return chat end
  return responses
end

--- guess(model) -> the adapter for a model no list describes (a client's
-- own token, a model the list lacks): Claude models speak Anthropic
-- messages, gpt-5.x and codex models the Responses API, the rest chat
function M.guess(model)
  model = tostring(model or "")
  if model:find("^claude") then return anthropic end
  if model:find("codex") or model:find("^gpt%-5") then return responses end
  return chat
end

local mod = upstream.kind {
  adapter = chat,
  defaults = {}, -- the base comes from the token (proxy-ep)
  schema = {
    integration_id = "string",           -- Copilot-Integration-Id (vscode-chat)
    editor_version = "string",           -- Editor-Version
    editor_plugin_version = "string",    -- Editor-Plugin-Version
    user_agent = "string",               -- User-Agent
    intent = "string",                   -- Openai-Intent (conversation-panel)
    github_api_url = "string",           -- the token exchange's host (env MOONGATE_GITHUB_API_URL)
  },
  auth = function(p)
    -- base_url beats the token's proxy-ep; so does MOONGATE_COPILOT_API_URL
    if p.base_url == "" then p.base_url = (os.getenv("MOONGATE_COPILOT_API_URL") or ""):gsub("/+$", "") end
    return accounts.new(p, kind)
  end,
  init = function(p)
    p.count_tokens = false -- app.lua estimates (the model decides the endpoint)
    -- the list as the first account (or the configured token) sees it
    p.listing = listing.new(p, listing.from_upstream(p, chat, "/models", function(body)
      return type(body.data) == "table" and body.data or nil
    end))
    -- listed at start and every models_ttl_s, so that /v1/models and routing by name have it
    if not p.conf.forward_client_key then p.listing:watch() end
  end,
  target = function(p, creq, cb)
    local model = creq.upstream_model or creq.model
    if p.conf.forward_client_key then return cb(M.guess(model)) end
    p.listing:get(function(info)
      local entry = info[model]
      cb(M.pick(entry, creq.client) or M.guess(model))
    end)
  end,
}
for k, v in pairs(M) do mod[k] = v end
return mod
