"""An exporter's hooks, read once when it is installed.

The protocol is written down, whole, in :mod:`tracedfuture.exporters`
(``Exporter`` for exporters of events, ``RawReader`` for readers of raw rings
such as the flight recorder); this is the pipeline's one reading of it. Like
trio's ``Instruments.add_instrument``, the optional hooks an exporter has are
looked up here, once, and nothing else asks the exporter with ``getattr``.

>>> class Counter:
...     def export(self, events): ...
...     def shutdown(self, stats=None): ...
>>> hooks = resolve(Counter())
>>> hooks.shutdown is not None, hooks.shutdown_takes_stats, hooks.flush, hooks.inline
(True, True, None, False)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["CALLED", "Hooks", "resolve"]

#: The methods an exporter of events may have, ``export`` first (the only one it needs).
CALLED = ("export", "export_lines", "flush", "shutdown", "after_fork", "attach", "capture")


@dataclass(frozen=True, slots=True)
class Hooks:
    """What the pipeline will call on one exporter, and how."""

    exporter: Any
    export: Callable[..., Any] | None
    #: A trace file's ``export_lines(data, count)``: raw records, formatted by the pipeline.
    export_lines: Callable[..., Any] | None
    flush: Callable[..., Any] | None
    shutdown: Callable[..., Any] | None
    after_fork: Callable[..., Any] | None
    attach: Callable[..., Any] | None
    capture: Callable[..., Any] | None
    #: Called by whoever drains, without a thread of its own.
    inline: bool
    #: Reads the raw ring's window instead of taking events (``RawReader``).
    raw: bool
    #: A raw reader's ring size (bytes), or None.
    max_bytes: int | None
    #: A raw reader's ``bind(installation)``, or None.
    bind: Callable[..., Any] | None
    #: ``shutdown(stats)`` rather than ``shutdown()``.
    shutdown_takes_stats: bool

    def called(self) -> dict[str, Callable[..., Any]]:
        """The methods of :data:`CALLED` this exporter has, by name."""
        found = {name: getattr(self, name) for name in CALLED}
        return {name: function for name, function in found.items() if function is not None}


def _get(exporter: object, name: str) -> Any:
    try:
        return getattr(exporter, name, None)
    except BaseException:  # a hostile __getattr__: the hook is missing
        return None


def _method(exporter: object, name: str) -> Callable[..., Any] | None:
    function = _get(exporter, name)
    return function if callable(function) else None


def resolve(exporter: object) -> Hooks:
    """Read ``exporter``'s hooks (see :mod:`tracedfuture.exporters`)."""
    shutdown = _method(exporter, "shutdown")
    max_bytes = _get(exporter, "max_bytes")
    return Hooks(
        exporter=exporter,
        export=_method(exporter, "export"),
        export_lines=_method(exporter, "export_lines"),
        flush=_method(exporter, "flush"),
        shutdown=shutdown,
        after_fork=_method(exporter, "after_fork"),
        attach=_method(exporter, "attach"),
        capture=_method(exporter, "capture"),
        inline=_get(exporter, "inline") is True,
        raw=_get(exporter, "raw") is True,
        max_bytes=max_bytes if isinstance(max_bytes, int) and not isinstance(max_bytes, bool) else None,
        bind=_method(exporter, "bind"),
        shutdown_takes_stats=_takes_an_argument(shutdown),
    )


def _takes_an_argument(function: Callable[..., Any] | None) -> bool:
    """Whether ``function`` can be called with one positional argument: an
    exporter's ``shutdown(stats)`` (the protocol's) or an older ``shutdown()``."""
    if function is None:
        return False
    try:
        inspect.signature(function).bind(None)
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): call it as the protocol says
        return True
    return True
