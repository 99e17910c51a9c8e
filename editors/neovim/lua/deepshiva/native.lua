-- The renderer of Neovim 0.12+: Neovim's own vim.lsp.inline_completion asks the server and draws
-- the ghost text; this module only adapts it to the renderer interface that init.lua uses (the
-- other implementation, for 0.10 and 0.11, is ghost.lua). The interface:
--
--   name                    'native' or 'plugin'
--   capabilities()          client capabilities to add to the LSP config (nil: none)
--   start(on)               at setup: suggestions on or off
--   attach(buf, client)     the deepshiva client attached to buf
--   suggestion(buf)         the text shown in buf, "" when none
--   accept(pick)            insert pick(remaining text) (nil: all); true when something is inserted
--   dismiss(buf)            hide the suggestion
--   trigger(buf)            ask now, without waiting for a pause in typing
--   enable(on)              suggestions on or off, in every buffer
local util = require('deepshiva.util')
local api = vim.api

local M = { name = 'native' }

local function namespace()
  return api.nvim_get_namespaces()['nvim.lsp.inline_completion']
end

--- The text still to insert at the cursor of the item the native completion would accept, or
--- nil. The item is only handed over by get()'s on_accept, so this runs inside an accept.
local function remaining(item)
  local text = util.item_text(item.insert_text)
  local buf = api.nvim_get_current_buf()
  local c = api.nvim_win_get_cursor(0)
  local row, col = c[1] - 1, c[2]
  if item.range then
    local srow, scol = item.range:to_extmark()
    if srow == row and scol <= col then
      local typed = api.nvim_buf_get_text(buf, row, scol, row, col, {})[1] or ''
      if text:sub(1, #typed) == typed then
        return text:sub(#typed + 1)
      end
    end
    return nil
  end
  return text
end

function M.capabilities()
  return nil -- Neovim announces inline completion itself
end

function M.start(on)
  vim.lsp.inline_completion.enable(on)
end

function M.attach(_, _)
  -- vim.lsp.inline_completion.enable() covers every buffer
end

--- The ghost text is read back from the extmarks Neovim draws it with.
function M.suggestion(buf)
  local ns = namespace()
  if not ns then
    return ''
  end
  local parts = {}
  for _, mark in ipairs(api.nvim_buf_get_extmarks(buf, ns, 0, -1, { details = true })) do
    local d = mark[4] or {}
    local line = {}
    for _, chunk in ipairs(d.virt_text or {}) do
      line[#line + 1] = chunk[1]
    end
    parts[#parts + 1] = table.concat(line)
    for _, vl in ipairs(d.virt_lines or {}) do
      local l = {}
      for _, chunk in ipairs(vl) do
        l[#l + 1] = chunk[1]
      end
      parts[#parts + 1] = table.concat(l)
    end
  end
  return table.concat(parts, '\n')
end

function M.accept(pick)
  if M.suggestion(api.nvim_get_current_buf()) == '' then
    return false
  end
  return vim.lsp.inline_completion.get({
    on_accept = function(item)
      if not pick then
        return item
      end
      local rest = remaining(item)
      if not rest or rest == '' then
        return item
      end
      local piece = pick(rest)
      if piece == rest then
        return item
      end
      if piece ~= '' then
        util.insert_at_cursor(piece)
      end
      return nil
    end,
  })
end

function M.dismiss(buf)
  vim.lsp.inline_completion.enable(false, { bufnr = buf })
  vim.lsp.inline_completion.enable(true, { bufnr = buf })
end

function M.trigger(buf)
  -- The native completion asks on InsertEnter/CursorMovedI; nudge it the same way.
  pcall(api.nvim_exec_autocmds, 'CursorMovedI', { buffer = buf, modeline = false })
end

function M.enable(on)
  vim.lsp.inline_completion.enable(on)
end

return M
