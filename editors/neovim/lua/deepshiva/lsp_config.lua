-- The language-server configuration shared by `lsp/deepshiva.lua` (vim.lsp.config /
-- vim.lsp.enable on Neovim 0.11+) and by setup() on Neovim 0.10 (vim.lsp.start).
local M = {}

--- deepshiva-lsp: $DEEPSHIVA_LSP, then .venv/bin/deepshiva-lsp above the current directory,
--- then the one on PATH.
---@return string
function M.find_server()
  local env = vim.env.DEEPSHIVA_LSP
  if env and env ~= '' then
    return env
  end
  for _, venv in ipairs({ '.venv', 'venv' }) do
    local found = vim.fs.find(venv .. '/bin/deepshiva-lsp', { upward = true, path = vim.fn.getcwd() })
    if found[1] and vim.fn.executable(found[1]) == 1 then
      return found[1]
    end
  end
  return 'deepshiva-lsp'
end

--- The base config: vim.lsp.config('deepshiva', {...}) settings are merged over it.
---@return vim.lsp.Config
function M.config()
  return {
    cmd = { M.find_server() },
    -- No `filetypes`: suggestions in every buffer; the server filters by enabledLanguages.
    root_markers = { '.git', 'pyproject.toml', 'package.json', 'Cargo.toml', 'go.mod' },
    init_options = {},
    settings = { deepshiva = {} },
    handlers = {
      ['deepshiva/status'] = function(...)
        require('deepshiva.status').handler(...)
      end,
    },
  }
end

return M
