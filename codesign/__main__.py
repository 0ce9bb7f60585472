"""``python -m codesign``: the same command line as ``codesign``."""

import sys

from .cli import main

sys.exit(main())
