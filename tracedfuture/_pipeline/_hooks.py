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
from typing import Any

__all__ = ["CALLED", "Hooks", "resolve"]

#: The methods an exporter of events may have, ``export`` first (the only one it needs).
CALLED = ("export", "export_lines", "export_records", "flush", "shutdown", "after_fork", "attach", "capture")


class Hooks:
    """What the pipeline will call on one exporter, and how.

    A plain slotted class, not a dataclass: it is made on the start-up hook's
    way, where generating a dataclass's methods cost as much as the rest of this
    module (tests/test_layers.py pins that the hook imports no dataclasses for it).
    """

    __slots__ = (
        "after_fork",
        "attach",
        "bind",
        "capture",
        "export",
        "export_lines",
        "export_records",
        "exporter",
        "flush",
        "inline",
        "max_bytes",
        "raw",
        "shutdown",
        "shutdown_takes_stats",
    )

    def __init__(
        self,
        *,
        exporter: Any,
        export: Callable[..., Any] | None,
        export_lines: Callable[..., Any] | None,
        export_records: Callable[..., Any] | None,
        flush: Callable[..., Any] | None,
        shutdown: Callable[..., Any] | None,
        after_fork: Callable[..., Any] | None,
        attach: Callable[..., Any] | None,
        capture: Callable[..., Any] | None,
        inline: bool,
        raw: bool,
        max_bytes: int | None,
        bind: Callable[..., Any] | None,
        shutdown_takes_stats: bool,
    ) -> None:
        self.exporter = exporter
        self.export = export
        #: A trace file's ``export_lines(data, count)``: raw records, formatted by the pipeline.
        self.export_lines = export_lines
        #: A trace file's ``export_records(records, lines)``: the same, formatted and written in one call.
        self.export_records = export_records
        self.flush = flush
        self.shutdown = shutdown
        self.after_fork = after_fork
        self.attach = attach
        self.capture = capture
        #: Called by whoever drains, without a thread of its own.
        self.inline = inline
        #: Reads the raw ring's window instead of taking events (``RawReader``).
        self.raw = raw
        #: A raw reader's ring size (bytes), or None.
        self.max_bytes = max_bytes
        #: A raw reader's ``bind(installation)``, or None.
        self.bind = bind
        #: ``shutdown(stats)`` rather than ``shutdown()``.
        self.shutdown_takes_stats = shutdown_takes_stats

    def __repr__(self) -> str:
        return f"<Hooks of {self.exporter!r}: {', '.join(self.called())}>"

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
        export_records=_method(exporter, "export_records"),
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
