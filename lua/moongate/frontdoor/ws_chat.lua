-- Front door: chat sockets (/ws/{client_id}), the AI WebSocket service
-- protocol (docs/WEBSOCKETS.md). Pure: a decoded chat_message in, a canonical
-- request out; canonical events in, socket messages (JSON text) out.
--
-- In:  {"type":"chat_message","message":{"role","content"},"history":[...],
--       "model"?, "system"?, "max_tokens"?, "temperature"?, "id"?}
-- Out: response_start, response_chunk {content}, response_complete {content =
--      the whole text}, error {message}. Every answer's messages carry "id"
--      (the client's id, or one made here), so a client with several
--      answers streaming at once can tell them apart; clients that ignore
--      it see the seed protocol unchanged.
local json = require "moongate.json"
local errors = require "moongate.errors"
local canonical = require "moongate.canonical"

local M = { client = "ws" }

local roles = { user = true, assistant = true, system = true }

local function bad(msg)
  return nil, errors.new(400, msg, { code = "invalid_message" })
end

local function text_of(content, where)
  if type(content) == "string" then return content end
  if type(content) == "table" then -- [{type = "text", text = ...}]
    local out = {}
    for i, part in ipairs(content) do
      if type(part) ~= "table" or type(part.text) ~= "string" then
        return nil, string.format("%s[%d] must be {\"type\":\"text\",\"text\":...}", where, i)
      end
      out[#out + 1] = part.text
    end
    return table.concat(out)
  end
  return nil, where .. " must be a string"
end

--- decode(msg, defaults) -> creq | nil, err
-- msg: the decoded chat_message; defaults: {model}
function M.decode(msg, defaults)
  local m = msg.message
  if type(m) == "string" then m = { role = "user", content = m } end
  if type(m) ~= "table" then return bad("chat_message needs a message {role, content}") end
  local history = msg.history
  if history ~= nil and (type(history) ~= "table" or not json.is_array(history)) then
    return bad("history must be a list of {role, content}")
  end
  if msg.model ~= nil and (type(msg.model) ~= "string" or msg.model == "") then
    return bad("model must be a non-empty string")
  end
  if msg.id ~= nil and type(msg.id) ~= "string" and type(msg.id) ~= "number" then
    return bad("id must be a string or a number")
  end
  local mt = msg.max_tokens
  if mt ~= nil and (type(mt) ~= "number" or mt < 1 or mt % 1 ~= 0) then
    return bad("max_tokens must be a positive integer")
  end
  if msg.temperature ~= nil and type(msg.temperature) ~= "number" then
    return bad("temperature must be a number")
  end
  local creq = {
    model = msg.model or defaults.model, messages = {}, stream = true, client = "ws",
    max_tokens = mt, temperature = msg.temperature,
    system = type(msg.system) == "string" and msg.system or nil,
  }
  local all = {}
  for i, h in ipairs(history or {}) do all[i] = { h, "history[" .. i .. "]" } end
  all[#all + 1] = { m, "message" }
  for _, item in ipairs(all) do
    local h, where = item[1], item[2]
    if type(h) ~= "table" then return bad(where .. " must be {role, content}") end
    local role = h.role or "user"
    if not roles[role] then return bad(where .. ".role must be user, assistant or system") end
    local text, err = text_of(h.content, where .. ".content")
    if not text then return bad(err) end
    if role == "system" then
      creq.system = (creq.system and creq.system .. "\n\n" or "") .. text
    else
      creq.messages[#creq.messages + 1] = { role = role, content = { { type = "text", text = text } } }
    end
  end
  creq.answer_id = msg.id ~= nil and tostring(msg.id) or canonical.random_id("ans_", 16)
  return creq
end

--- message(type, id, fields) -> JSON text of one socket message
function M.message(t, id, fields)
  local m = fields or {}
  m.type, m.id = t, id
  return json.encode(m)
end

local Encoder = {}
Encoder.__index = Encoder

function M.stream_encoder(creq)
  return setmetatable({ creq = creq, id = creq.answer_id, parts = {}, started = false }, Encoder)
end

function Encoder:ensure_started(out)
  if not self.started then
    self.started = true
    out[#out + 1] = M.message("response_start", self.id, { model = self.creq.model })
  end
end

--- event(ev) -> list of socket messages
function Encoder:event(ev)
  local out, t = {}, ev.type
  if t == "start" then
    self:ensure_started(out)
  elseif t == "text_delta" then
    self:ensure_started(out)
    if ev.text ~= "" then
      self.parts[#self.parts + 1] = ev.text
      out[#out + 1] = M.message("response_chunk", self.id, { content = ev.text })
    end
  elseif t == "thinking_delta" then
    self:ensure_started(out)
    out[#out + 1] = M.message("reasoning_chunk", self.id, { content = ev.text })
  elseif t == "usage" then
    self.usage = { input_tokens = ev.input_tokens or 0, output_tokens = ev.output_tokens or 0 }
  elseif t == "done" then
    self:ensure_started(out)
    out[#out + 1] = M.message("response_complete", self.id, { content = table.concat(self.parts),
      finish_reason = ev.reason or "stop", usage = self.usage })
  end
  return out
end

--- error(err) -> list of socket messages
function Encoder:error(err)
  return { M.message("error", self.id, { message = err.message, status = err.status }) }
end

return M
