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

# The layers, lowest first: each imports only from those below it, or from its
# own folder (tests/test_layers.py holds them to it; docs/architecture.md is the
# map). This module re-exports the public names and nothing else.
#
#   cli, __main__, pytest_plugin        the commands, and pytest's plugin
#   _run, _startup                      tracedfuture run: the start-up hook and what it installs
#   _control/                           the control socket: server, client, live console (ps, pstree, top)
#   testing, instrumentation            test helpers; opentelemetry-instrument's entry point
#   exporters/ (tracedfuture.exporters) the exporter protocol; trace files, structlog, OpenTelemetry
#   lints, flight                       findings recorded as events; the flight recorder
#   _install, graph, _views/            install()/run()/loop_factory(); the live await graph; tree/stats/html/perfetto
#   _pipeline/                          drain -> tail -> convert -> filter -> sinks; threads and fork()
#   _fold, trace                        the one fold of events into futures; the trace file format
#   options, _text                      the one options table; text for people
#   _core/, _version                    the hot path (the seam, both implementations, rings, loops, events)

from __future__ import annotations

from ._core import IMPLEMENTATION, TracedFuture, TracedTask, future_id
from ._core._events import KINDS, Event, Site
from ._install import Installation, Options, install, loop_factory, run
from ._version import __version__
from .flight import dump
from .graph import format_snapshot, snapshot
from .options import OptionError

# Names defined in private modules say where they are imported from (reprs,
# docs, pickles), as httpx's do.
for _value in (Event, Installation, Options, Site, install, loop_factory, run):
    _value.__module__ = __name__
del _value

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
