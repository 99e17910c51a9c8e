-- Ghost-text colours that also show without 'termguicolors'.
--
-- Neovim's default colour scheme gives Comment, NonText and ComplHint (the native ghost text's
-- group) GUI colours only: in a terminal without 'termguicolors' the suggestion would look
-- exactly like typed text. Each ghost-text group keeps its GUI colours and, when neither it nor
-- what it links to has a terminal colour, gets a grey italic one: colour 244 of the 256-colour
-- palette, or 8 (bright black, a grey) with 16 colours. A colour scheme's own terminal colours
-- always win.
local api = vim.api

local M = {}

-- Ghost-text groups and the group each takes its GUI colours from when it has none itself.
M.groups = {
  DeepShivaSuggestion = 'Comment', -- the plugin's own ghost text (Neovim 0.10, 0.11)
  ComplHint = 'NonText', -- vim.lsp.inline_completion's ghost text (0.12+)
}

--- The terminal's number of colours: what the attached terminal UIs report (the fewest, so the
--- grey shows in each), else &t_Co (the TUI runs in its own process and does not set it).
local function colours()
  local fewest
  for _, ui in ipairs(api.nvim_list_uis()) do
    local n = tonumber(ui.term_colors)
    if n and n > 0 and (fewest == nil or n < fewest) then
      fewest = n
    end
  end
  if fewest then
    return fewest
  end
  local ok, n = pcall(vim.fn.eval, '&t_Co')
  return ok and tonumber(n) or 256
end

--- A grey that the palette of a terminal with `n` colours has.
function M.cterm_grey(n)
  return (n or colours()) >= 256 and 244 or 8
end

--- `name`'s attributes with links followed ({} when it is not defined).
local function attributes(name)
  local ok, hl = pcall(api.nvim_get_hl, 0, { name = name, link = false })
  return ok and hl or {}
end

-- Groups this module set (so that a later pass may redo them, and only them).
local ours = {}

--- Gives `name` a grey italic terminal colour unless it (or what it links to) has one.
--- Returns true when it changed the group.
function M.ensure(name, base)
  local hl = attributes(name)
  if next(hl) == nil then
    hl = attributes(base)
  end
  if hl.ctermfg ~= nil then
    return false
  end
  api.nvim_set_hl(0, name, {
    fg = hl.fg,
    bg = hl.bg,
    italic = hl.italic,
    ctermfg = M.cterm_grey(),
    ctermbg = hl.ctermbg,
    cterm = { italic = true },
  })
  ours[name] = true
  return true
end

function M.apply()
  for name, base in pairs(M.groups) do
    M.ensure(name, base)
  end
end

--- Applies now and again whenever a colour scheme is loaded (it clears highlights) or a UI
--- attaches (the terminal's number of colours is known then).
function M.setup(group)
  M.apply()
  api.nvim_create_autocmd({ 'ColorScheme', 'UIEnter' }, {
    group = group,
    callback = function(args)
      if args.event == 'UIEnter' then
        -- The UI's number of colours decides the grey: redo the groups set before it came.
        for name in pairs(ours) do
          api.nvim_set_hl(0, name, {})
        end
      end
      ours = {}
      M.apply()
    end,
  })
end

return M
