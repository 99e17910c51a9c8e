-- The state the language server reports with its `deepshiva/status` notification
-- ({state = "ready"|"loading"|"unreachable"|"no_model"|"unauthorized"|"slow", message}).
local M = {}

---@type table<integer, {state: string, message?: string}>
M.by_client = {}

local LABELS = {
  ready = 'ready',
  loading = 'loading',
  unreachable = 'unreachable',
  no_model = 'no model',
  unauthorized = 'unauthorized',
  slow = 'slow',
}

--- Handler for the `deepshiva/status` notification.
function M.handler(_, params, ctx)
  if type(params) ~= 'table' or not ctx then
    return
  end
  M.by_client[ctx.client_id] = { state = tostring(params.state), message = params.message }
  vim.schedule(function()
    pcall(vim.api.nvim_exec_autocmds, 'User', {
      pattern = 'DeepShivaStatus',
      modeline = false,
      data = { client_id = ctx.client_id, state = params.state, message = params.message },
    })
    pcall(vim.cmd.redrawstatus)
  end)
end

--- The DeepShiva client attached to `buf` (or any running one when `buf` is nil).
function M.client(buf)
  local get = vim.lsp.get_clients or vim.lsp.get_active_clients
  local clients = get({ name = 'deepshiva', bufnr = buf })
  return clients[1]
end

--- State of the server for `buf`: 'off', 'starting', or one the server reported.
---@return string state, string? message
function M.state(buf)
  if not require('deepshiva').is_enabled() then
    return 'off', 'suggestions are turned off'
  end
  local client = M.client(buf)
  if not client then
    return 'inactive', 'no DeepShiva language server attached to this buffer'
  end
  local s = M.by_client[client.id]
  if not s then
    return 'starting', 'waiting for the language server'
  end
  return s.state, s.message
end

--- A short text for a statusline: "DeepShiva: ready", or "" when no server is attached.
function M.statusline()
  local buf = vim.api.nvim_get_current_buf()
  local state = M.state(buf)
  if state == 'inactive' then
    return ''
  end
  return 'DeepShiva: ' .. (LABELS[state] or state)
end

return M
