-- DeepShiva language server for `vim.lsp.config` / `vim.lsp.enable` (Neovim 0.11+):
--   vim.lsp.enable('deepshiva')
-- Override fields with vim.lsp.config('deepshiva', { settings = { deepshiva = {...} } }).
-- require('deepshiva').setup() does this for you and adds ghost text, keymaps and status.
return require('deepshiva.lsp_config').config()
