-- One HTTP/1.1 request off the front of what a mock server has read so
-- far (the mocks' own plumbing: spec/support/mock_upstream.lua,
-- spec/support/mock_accounts.lua). Content-Length bodies only.
--   parse(buf) -> {method, target, headers (lower-case names), body}, rest
--              | nil (not all there yet)
return function(buf)
  local he = buf:find("\r\n\r\n", 1, true)
  if not he then return nil end
  local head = buf:sub(1, he - 1)
  local method, target = head:match("^(%u+) (%S+)")
  local headers = {}
  for line in head:gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then headers[k:lower()] = v end
  end
  local len = tonumber(headers["content-length"] or 0)
  if #buf < he + 3 + len then return nil end
  return { method = method, target = target, headers = headers, body = buf:sub(he + 4, he + 3 + len) },
    buf:sub(he + 4 + len)
end
