"""``python -m tracedfuture``: the same as the ``tracedfuture`` command."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
