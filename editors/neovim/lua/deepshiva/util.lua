-- Small helpers shared by the DeepShiva modules: text splitting for partial accepts, LSP
-- position conversion, and calls whose signature changed between Neovim 0.10 and 0.12.
local M = {}

--- The next word of a suggestion: leading white space (newlines included) and then one run of
--- word characters, or one run of other non-blank characters.
---@param text string
---@return string
function M.next_word(text)
  local ws = text:match('^%s*') or ''
  local rest = text:sub(#ws + 1)
  local word = rest:match('^[%w_]+') or rest:match('^[^%w_%s]+') or ''
  return ws .. word
end

--- The next line of a suggestion: up to (not including) the first newline; when the suggestion
--- starts with a newline, that newline and the line after it.
---@param text string
---@return string
function M.next_line(text)
  if text:sub(1, 1) == '\n' then
    local nxt = text:sub(2):match('^[^\n]*') or ''
    return '\n' .. nxt
  end
  return text:match('^[^\n]*') or ''
end

--- The text a completion item inserts, with snippet placeholders reduced to their default text.
---@param insert_text string|{kind: string, value: string}
---@return string
function M.item_text(insert_text)
  if type(insert_text) == 'string' then
    return insert_text
  end
  local value = insert_text.value or ''
  value = value:gsub('%${%d+:([^}]*)}', '%1'):gsub('%${%d+}', ''):gsub('%$%d+', '')
  return value
end

--- Byte column of an LSP character offset in a line, for the client's position encoding.
---@param line string
---@param character integer
---@param encoding string 'utf-8'|'utf-16'|'utf-32'
---@return integer
function M.byte_col(line, character, encoding)
  if encoding == 'utf-8' then
    return math.min(character, #line)
  end
  local units, i = 0, 1
  while i <= #line and units < character do
    local b = line:byte(i)
    local len = b < 0x80 and 1 or b < 0xE0 and 2 or b < 0xF0 and 3 or 4
    units = units + ((encoding == 'utf-16' and len == 4) and 2 or 1)
    i = i + len
  end
  return i - 1
end

--- client:request() on 0.11+, client.request() on 0.10.
function M.request(client, method, params, handler, bufnr)
  if vim.fn.has('nvim-0.11') == 1 then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

function M.notify(client, method, params)
  if vim.fn.has('nvim-0.11') == 1 then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

function M.cancel(client, id)
  if vim.fn.has('nvim-0.11') == 1 then
    return client:cancel_request(id)
  end
  return client.cancel_request(id)
end

--- Runs a server command (e.g. the `command` of an accepted item).
function M.exec_cmd(client, command, bufnr)
  if not command then
    return
  end
  if vim.fn.has('nvim-0.11') == 1 and client.exec_cmd then
    client:exec_cmd(command, { bufnr = bufnr })
  else
    M.request(client, 'workspace/executeCommand', {
      command = command.command,
      arguments = command.arguments,
    }, function() end, bufnr)
  end
end

--- Inserts `text` at the cursor of the current window (optionally replacing up to byte column
--- `replace_end` on the cursor's line) and moves the cursor to its end.
---@param text string
---@param replace_end? integer
function M.insert_at_cursor(text, replace_end)
  local buf = vim.api.nvim_get_current_buf()
  local cursor = vim.api.nvim_win_get_cursor(0)
  local row, col = cursor[1] - 1, cursor[2]
  local lines = vim.split(text, '\n', { plain = true })
  vim.api.nvim_buf_set_text(buf, row, col, row, math.max(col, replace_end or col), lines)
  local last_row = row + #lines - 1
  local last_col = (#lines == 1 and col or 0) + #lines[#lines]
  vim.api.nvim_win_set_cursor(0, { last_row + 1, last_col })
end

return M
