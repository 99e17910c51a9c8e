"""deepshiva-lsp: a language server that serves DeepShiva completions to editors."""

__version__ = "0.1.0"
