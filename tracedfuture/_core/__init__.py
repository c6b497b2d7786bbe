"""The implementation of the hot path in use: the compiled one, or the reference.

Like ``asyncio.futures`` picking ``_asyncio.Future`` over ``_PyFuture``: the C
extension ``_cfuture`` when it was built and imports, else the pure-Python
``_future``, silently. ``TRACEDFUTURE_PURE_PYTHON=1`` forces the reference. The
rest of the package uses only the names listed in ``_seam``, through this module.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "IMPLEMENTATION",
    "LoopHooks",
    "Ring",
    "TracedFuture",
    "TracedTask",
    "assign_id",
    "flush_pending_completions",
    "future_id",
    "impl",
    "info",
    "live",
    "set_text",
]

impl: Any
if os.environ.get("TRACEDFUTURE_PURE_PYTHON", "") not in ("", "0"):
    from . import _future as impl
else:
    try:
        from . import _cfuture as impl  # type: ignore[attr-defined,no-redef]
    except ImportError:
        from . import _future as impl

IMPLEMENTATION: str = impl.IMPLEMENTATION
TracedFuture: Any = impl.TracedFuture
TracedTask: Any = impl.TracedTask
LoopHooks: Any = impl.LoopHooks
Ring: Any = impl.Ring
flush_pending_completions = impl.flush_pending_completions
future_id = impl.future_id
assign_id = impl.assign_id
live = impl.live
info = impl.info
set_text = impl.set_text
