"""The implementation of the hot path in use: the compiled one, or the reference.

Like ``asyncio.futures`` picking ``_asyncio.Future`` over ``_PyFuture``: the C
extension ``_cfuture`` when it was built and imports, else the pure-Python
``_future``, silently. ``TRACEDFUTURE_PURE_PYTHON=1`` forces the reference. The
rest of the package uses only the names listed in ``_seam``, through this module.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import TYPE_CHECKING, Any

__all__ = [
    "CLOCK",
    "IMPLEMENTATION",
    "STEP_REASON",
    "Carrier",
    "LoopHooks",
    "RecordBatch",
    "Ring",
    "TracedFuture",
    "TracedTask",
    "Waker",
    "assign_id",
    "carried_hooks",
    "caught",
    "flush_pending_completions",
    "future_id",
    "impl",
    "info",
    "live",
    "set_text",
    "stop_prefaulting",
    "write",
]

from ._seam import Implementation

impl: Implementation
# Why the pure-Python reference runs ("" when the compiled core does).
REASON = ""
if os.environ.get("TRACEDFUTURE_PURE_PYTHON", "") not in ("", "0"):
    from . import _future

    impl = _future
    REASON = "TRACEDFUTURE_PURE_PYTHON is set"
else:
    try:
        from . import _cfuture
    except ImportError as exc:
        from . import _future

        impl = _future
        if isinstance(exc, ModuleNotFoundError) and exc.name == f"{__name__}._cfuture":
            REASON = "no compiled core was built for Python {}.{}".format(*sys.version_info[:2])
        else:
            REASON = f"the compiled core did not import: {exc}"
    else:
        impl = _cfuture

if TYPE_CHECKING:
    # Both implementations, checked against the one page of the seam.
    from . import _cfuture as _c
    from . import _future as _py

    _both: tuple[Implementation, Implementation] = (_py, _c)

IMPLEMENTATION: str = impl.IMPLEMENTATION
# Why a TracedTask is stepped by asyncio ("" when it steps itself, recording its end there).
STEP_REASON: str = impl.STEP_REASON
# What a raw record's timestamp reads: "tsc" (converted to monotonic ns as records
# leave the ring) or "monotonic" (time.monotonic_ns()).
CLOCK: str = impl.CLOCK
TracedFuture: type[asyncio.Future[Any]] = impl.TracedFuture
TracedTask: type[asyncio.Task[Any]] = impl.TracedTask
LoopHooks = impl.LoopHooks
Carrier = impl.Carrier
carried_hooks = impl.carried_hooks
Ring = impl.Ring
RecordBatch = impl.RecordBatch
flush_pending_completions = impl.flush_pending_completions
future_id = impl.future_id
assign_id = impl.assign_id
live = impl.live
info = impl.info
set_text = impl.set_text
caught = impl.caught
Waker = impl.Waker
write = impl.write
stop_prefaulting = impl.stop_prefaulting
