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

# typing.TYPE_CHECKING without importing typing (nor importlib, until a name is
# asked for): `tracedfuture run` imports this package first. Type checkers read
# any TYPE_CHECKING as true.
TYPE_CHECKING = False

# Where each public name lives. A name is imported the first time it is used
# (PEP 562), so that ``tracedfuture run`` and the start-up hook load only what the
# chosen options need: importing the package itself costs nothing. The defining
# modules set ``__module__ = "tracedfuture"`` on what they export here (reprs,
# docs, pickles), as httpx's do.
_PUBLIC = {
    "IMPLEMENTATION": "._core",
    "KINDS": "._core._events",
    "Event": "._core._events",
    "Installation": "._install",
    "OptionError": ".options",
    "Options": ".options",
    "Site": "._core._events",
    "TracedFuture": "._core",
    "TracedTask": "._core",
    "__version__": "._version",
    "dump": ".flight",
    "format_snapshot": ".graph",
    "future_id": "._core",
    "install": "._install",
    "loop_factory": "._install",
    "run": "._install",
    "snapshot": ".graph",
}

if TYPE_CHECKING:
    from typing import Any

    from ._core import IMPLEMENTATION, TracedFuture, TracedTask, future_id
    from ._core._events import KINDS, Event, Site
    from ._install import Installation, install, loop_factory, run
    from ._version import __version__
    from .flight import dump
    from .graph import format_snapshot, snapshot
    from .options import OptionError, Options
del TYPE_CHECKING  # not a public name


def __getattr__(name: str) -> Any:
    where = _PUBLIC.get(name)
    if where is None:
        message = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(message)
    import importlib

    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


# The same names as _PUBLIC (tests/test_layers.py resolves every one).
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
