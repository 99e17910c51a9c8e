-- The renderer of Neovim 0.10 and 0.11, which have no native inline completion (the interface
-- is described in native.lua, the 0.12+ implementation): asks the server for
-- `textDocument/inlineCompletion` as the user types and shows the first item as extmark virtual
-- text at the cursor.
--
-- No debounce here: the language server waits for a pause in typing itself (its debounceMs,
-- adaptive to how fast the model answers) and keeps only the newest request of a document, and
-- this module cancels the request it replaces. A client-side delay would only add to the
-- server's. Events of one tick (InsertEnter with TextChangedI, a paste) still make one request.
local util = require('deepshiva.util')
local api = vim.api

local M = { name = 'plugin' }

M.ns = api.nvim_create_namespace('deepshiva.ghost')
M.enabled = true

---@class deepshiva.Ghost
---@field row integer 0-based row of the cursor the text belongs to
---@field col integer byte column of that cursor
---@field text string what is still to be inserted at the cursor
---@field replace_end? integer byte column up to which the accept replaces the line
---@field tick integer b:changedtick when shown
---@field item table the LSP item
---@field client_id integer

---@class deepshiva.BufState
---@field client_id integer
---@field scheduled? boolean a request is due at the end of this tick
---@field pending? integer request id
---@field current? deepshiva.Ghost
---@field augroup integer

---@type table<integer, deepshiva.BufState>
local buffers = {}

local function draw(buf, g)
  api.nvim_buf_clear_namespace(buf, M.ns, 0, -1)
  if not g or g.text == '' then
    return
  end
  local lines = vim.split(g.text, '\n', { plain = true })
  local virt_lines = {}
  for i = 2, #lines do
    virt_lines[#virt_lines + 1] = { { lines[i], 'DeepShivaSuggestion' } }
  end
  api.nvim_buf_set_extmark(buf, M.ns, g.row, g.col, {
    virt_text = { { lines[1], 'DeepShivaSuggestion' } },
    virt_text_pos = 'inline',
    virt_lines = #virt_lines > 0 and virt_lines or nil,
    hl_mode = 'combine',
  })
end

local function cancel_pending(st)
  st.scheduled = nil
  if st.pending then
    local client = vim.lsp.get_client_by_id(st.client_id)
    if client then
      pcall(util.cancel, client, st.pending)
    end
    st.pending = nil
  end
end

--- Hides the suggestion of `buf` and cancels its pending request.
function M.clear(buf)
  buf = buf or api.nvim_get_current_buf()
  local st = buffers[buf]
  if not st then
    return
  end
  cancel_pending(st)
  st.current = nil
  if api.nvim_buf_is_valid(buf) then
    api.nvim_buf_clear_namespace(buf, M.ns, 0, -1)
  end
end

local function cursor()
  local c = api.nvim_win_get_cursor(0)
  return c[1] - 1, c[2]
end

--- Turns an LSP item into ghost text at the cursor, or nil when it does not fit there.
local function to_ghost(buf, client, item, row, col)
  local text = util.item_text(item.insertText)
  local line = api.nvim_buf_get_lines(buf, row, row + 1, false)[1] or ''
  local replace_end
  if item.range then
    local s, e = item.range.start, item.range['end']
    if s.line ~= row or e.line ~= row then
      return nil
    end
    local enc = client.offset_encoding or 'utf-16'
    local scol = util.byte_col(line, s.character, enc)
    local ecol = util.byte_col(line, e.character, enc)
    if scol > col then
      return nil
    end
    local typed = line:sub(scol + 1, col)
    if text:sub(1, #typed) ~= typed then
      return nil
    end
    text = text:sub(#typed + 1)
    if ecol > col then
      -- The item also replaces text after the cursor: when the suggestion simply ends with that
      -- text, show and insert only what comes before it.
      local tail = line:sub(col + 1, ecol)
      if not text:find('\n', 1, true) and #text >= #tail and text:sub(-#tail) == tail then
        text = text:sub(1, #text - #tail)
      else
        replace_end = ecol
      end
    end
  end
  if text == '' then
    return nil
  end
  return {
    row = row,
    col = col,
    text = text,
    replace_end = replace_end,
    tick = api.nvim_buf_get_changedtick(buf),
    item = item,
    client_id = client.id,
  }
end

--- Sends the request for the cursor position now.
---@param buf integer
---@param kind integer 1 invoked, 2 automatic
function M.request(buf, kind)
  local st = buffers[buf]
  if not st or not M.enabled or buf ~= api.nvim_get_current_buf() then
    return
  end
  if not api.nvim_get_mode().mode:match('^i') then
    return
  end
  local client = vim.lsp.get_client_by_id(st.client_id)
  if not client then
    return
  end
  cancel_pending(st)
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding or 'utf-16')
  params.context = { triggerKind = kind }
  local row, col = cursor()
  local tick = api.nvim_buf_get_changedtick(buf)
  local ok, id
  ok, id = util.request(client, 'textDocument/inlineCompletion', params, function(err, result)
    if st.pending == id then
      st.pending = nil
    end
    if err or not result or not api.nvim_buf_is_valid(buf) then
      return
    end
    -- Stale answers (the user typed or moved since) are dropped.
    if api.nvim_get_current_buf() ~= buf or api.nvim_buf_get_changedtick(buf) ~= tick then
      return
    end
    local r, c = cursor()
    if r ~= row or c ~= col or not api.nvim_get_mode().mode:match('^i') then
      return
    end
    local items = result.items or result
    local g = items[1] and to_ghost(buf, client, items[1], row, col)
    st.current = g
    draw(buf, g)
  end, buf)
  if ok then
    st.pending = id
  end
end

--- Asks for the cursor's suggestion once this tick's events are handled (no delay).
local function schedule_request(buf)
  local st = buffers[buf]
  if not st or not M.enabled or st.scheduled then
    return
  end
  st.scheduled = true
  vim.schedule(function()
    if st.scheduled then
      st.scheduled = nil
      M.request(buf, 2)
    end
  end)
end

--- Keeps the suggestion while the user types what it suggests; hides it otherwise.
local function reconcile(buf)
  local st = buffers[buf]
  local g = st and st.current
  if not g then
    return
  end
  local row, col = cursor()
  local tick = api.nvim_buf_get_changedtick(buf)
  if row == g.row and col == g.col and tick == g.tick then
    return
  end
  if row == g.row and col > g.col then
    local line = api.nvim_buf_get_lines(buf, row, row + 1, false)[1] or ''
    local typed = line:sub(g.col + 1, col)
    if #typed < #g.text and g.text:sub(1, #typed) == typed and not typed:find('\n', 1, true) then
      g.text = g.text:sub(#typed + 1)
      g.col = col
      g.tick = tick
      if g.replace_end then
        g.replace_end = g.replace_end + #typed
      end
      draw(buf, g)
      return
    end
  end
  st.current = nil
  api.nvim_buf_clear_namespace(buf, M.ns, 0, -1)
end

--- Starts drawing ghost text in `buf` from `client`.
function M.attach(buf, client)
  local client_id = client.id
  if buffers[buf] then
    buffers[buf].client_id = client_id
    return
  end
  local group = api.nvim_create_augroup('deepshiva.ghost.' .. buf, { clear = true })
  buffers[buf] = { client_id = client_id, augroup = group }
  api.nvim_create_autocmd({ 'InsertEnter', 'TextChangedI', 'TextChangedP' }, {
    group = group,
    buffer = buf,
    callback = function()
      reconcile(buf)
      schedule_request(buf)
    end,
  })
  api.nvim_create_autocmd('CursorMovedI', {
    group = group,
    buffer = buf,
    callback = function()
      reconcile(buf)
    end,
  })
  api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = group,
    buffer = buf,
    callback = function()
      M.clear(buf)
    end,
  })
  api.nvim_create_autocmd({ 'BufUnload' }, {
    group = group,
    buffer = buf,
    callback = function()
      M.detach(buf)
    end,
  })
  if api.nvim_get_mode().mode:match('^i') and buf == api.nvim_get_current_buf() then
    schedule_request(buf)
  end
end

function M.detach(buf)
  local st = buffers[buf]
  if not st then
    return
  end
  M.clear(buf)
  pcall(api.nvim_del_augroup_by_id, st.augroup)
  buffers[buf] = nil
end

function M.is_attached(buf)
  return buffers[buf or api.nvim_get_current_buf()] ~= nil
end

--- The suggestion shown in `buf` (nil when none).
---@return deepshiva.Ghost?
function M.current(buf)
  buf = buf or api.nvim_get_current_buf()
  local st = buffers[buf]
  if not st or not st.current then
    return nil
  end
  local g = st.current
  local row, col = cursor()
  if row ~= g.row or col ~= g.col or api.nvim_buf_get_changedtick(buf) ~= g.tick then
    return nil
  end
  return g
end

--- Inserts what `pick` chooses of the suggestion's remaining text, now.
---@param pick fun(text: string): string
---@return boolean accepted
local function insert(pick)
  local buf = api.nvim_get_current_buf()
  local g = M.current(buf)
  if not g then
    return false
  end
  local st = buffers[buf]
  local piece = pick(g.text)
  if piece == '' then
    return false
  end
  local whole = piece == g.text
  cancel_pending(st)
  util.insert_at_cursor(piece, whole and g.replace_end or nil)
  if whole then
    st.current = nil
    api.nvim_buf_clear_namespace(buf, M.ns, 0, -1)
    local client = vim.lsp.get_client_by_id(g.client_id)
    if client and g.item.command then
      util.exec_cmd(client, g.item.command, buf)
    end
  else
    local row, col = cursor()
    g.text = g.text:sub(#piece + 1)
    g.row, g.col = row, col
    if g.replace_end and not piece:find('\n', 1, true) then
      g.replace_end = g.replace_end + #piece
    else
      g.replace_end = nil
    end
    g.tick = api.nvim_buf_get_changedtick(buf)
    draw(buf, g)
  end
  return true
end

-- The renderer interface (see native.lua)

function M.capabilities()
  -- This module asks for inline completions itself: say so, so that the server treats the
  -- client as one with inline completion (and not as one needing the completion fallback).
  return { textDocument = { inlineCompletion = { dynamicRegistration = false } } }
end

function M.start(on)
  M.enabled = on
end

function M.suggestion(buf)
  local g = M.current(buf)
  return g and g.text or ''
end

--- Accepts `pick(remaining)` (nil: all of it). Safe in an <expr> mapping: the buffer changes on
--- the next tick.
function M.accept(pick)
  if not M.current() then
    return false
  end
  vim.schedule(function()
    insert(pick or function(text)
      return text
    end)
  end)
  return true
end

function M.dismiss(buf)
  M.clear(buf)
end

function M.trigger(buf)
  M.request(buf, 1)
end

function M.enable(on)
  M.enabled = on
  if not on then
    for _, buf in ipairs(api.nvim_list_bufs()) do
      M.clear(buf)
    end
  end
end

return M
