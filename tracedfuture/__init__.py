"""tracedfuture: asyncio futures and tasks that record their own life.

>>> import asyncio, tracedfuture
>>> from tracedfuture.exporters import MemoryExporter
>>> memory = MemoryExporter()
>>> async def main():
...     fut = asyncio.get_running_loop().create_future()
...     asyncio.get_running_loop().call_soon(fut.set_result, "the result")
...     return await fut
>>> tracedfuture.run(main(), exporters=[memory])
'the result'
>>> memory.kinds(memory.futures()[0])
['created', 'awaited', 'resolved', 'callback_scheduled']
"""

from __future__ import annotations

from ._core import IMPLEMENTATION, TracedFuture, TracedTask, future_id
from ._core._events import KINDS, Event, Site
from ._install import Installation, Options, install, loop_factory, run
from .flight import dump
from .graph import format_snapshot, snapshot
from .options import OptionError

__version__ = "0.1.0"

__all__ = [
    "IMPLEMENTATION",
    "KINDS",
    "Event",
    "Installation",
    "OptionError",
    "Options",
    "Site",
    "TracedFuture",
    "TracedTask",
    "__version__",
    "dump",
    "format_snapshot",
    "future_id",
    "install",
    "loop_factory",
    "run",
    "snapshot",
]
