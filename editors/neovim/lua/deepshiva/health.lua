-- :checkhealth deepshiva
local M = {}

--- The health reporter of this Neovim: vim.health.start/ok/... from 0.10; before, the same
--- functions were named report_start, report_ok, ... (vim.health from 0.8, require('health') in
--- 0.7 and older), so an old Neovim gets the version error instead of a crash.
function M.reporter()
  local h = vim.health
  if h == nil or (h.start == nil and h.report_start == nil) then
    local ok, legacy = pcall(require, 'health')
    h = ok and type(legacy) == 'table' and legacy or {}
  end
  local function pick(name)
    return h[name] or h['report_' .. name] or function(msg)
      vim.api.nvim_echo({ { msg } }, true, {})
    end
  end
  return { start = pick('start'), ok = pick('ok'), info = pick('info'), warn = pick('warn'), error = pick('error') }
end

function M.check()
  local health = M.reporter()
  local ds = require('deepshiva')
  health.start('DeepShiva')

  local v = vim.version()
  local version = ('%d.%d.%d'):format(v.major, v.minor, v.patch)
  local problem = ds.version_problem()
  if problem then
    health.error('Neovim ' .. version .. ' is too old', { problem })
    return -- the checks below use APIs this version does not have
  elseif vim.lsp.inline_completion then
    health.ok('Neovim ' .. version .. ': native inline completion (vim.lsp.inline_completion)')
  else
    health.ok('Neovim ' .. version .. ': ghost text drawn by the plugin (no native inline completion before 0.12)')
  end

  if not ds.did_setup then
    health.warn('require("deepshiva").setup() has not been called', {
      'Add require("deepshiva").setup({}) to your init.lua',
    })
  else
    health.ok(('setup() called; ghost text: %s; suggestions %s'):format(
      ds.native() and 'native' or 'plugin', ds.is_enabled() and 'on' or 'off'))
  end

  local cmd = ds.options.cmd or require('deepshiva.lsp_config').config().cmd
  if type(cmd) == 'string' then
    cmd = { cmd }
  end
  if vim.fn.executable(cmd[1]) == 1 then
    health.ok('language server: ' .. vim.fn.exepath(cmd[1]))
  else
    health.error('language server not found: ' .. cmd[1], {
      'pip install the DeepShiva project (it provides deepshiva-lsp), put it on PATH,',
      'or pass setup({ cmd = "/path/to/deepshiva-lsp" }) or set $DEEPSHIVA_LSP',
    })
  end

  local settings = ds.server_settings()
  health.info('API URL: ' .. (settings.apiUrl or 'http://127.0.0.1:5005 (server default)'))
  health.info('API key: ' .. (settings.apiKey and 'set' or 'not set'))

  local status = require('deepshiva.status')
  local client = status.client()
  if not client then
    health.warn('no DeepShiva language server running', {
      'Open a file: the server starts for file buffers',
      'See :LspLog (or :DeepShiva log) if it failed to start',
    })
    return
  end
  health.ok(('language server running (client id %d)'):format(client.id))
  local s = status.by_client[client.id]
  if not s then
    health.warn('the server has not reported a status yet')
  elseif s.state == 'ready' then
    health.ok('server status: ready' .. (s.message and (' (' .. s.message .. ')') or ''))
  elseif s.state == 'loading' or s.state == 'slow' then
    health.warn('server status: ' .. s.state .. (s.message and (' (' .. s.message .. ')') or ''))
  else
    health.error('server status: ' .. s.state .. (s.message and (' (' .. s.message .. ')') or ''), {
      'unreachable: start the API with `deepshiva-server` (or scripts/serve) and check api_url',
      'unauthorized: set api_key (or $DEEPSHIVA_API_KEY) to a key the API accepts',
      'no_model: load one with :DeepShiva load {model}',
    })
  end
end

return M
