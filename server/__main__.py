"""``python -m server`` is ``deepshiva-server``."""

import sys

from .cli import main

sys.exit(main())
