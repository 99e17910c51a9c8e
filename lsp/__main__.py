"""``python -m lsp`` runs deepshiva-lsp."""

import sys

from .cli import main

sys.exit(main())
