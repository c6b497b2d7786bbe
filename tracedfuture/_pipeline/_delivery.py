"""What an exporter is given: each :class:`~tracedfuture._pipeline._sink.Sink`
queues raw records, and turns what its queue kept into events (:class:`Events`:
a converter and a :class:`Filter` of its own) or trace-file lines (``_lines``).

The drain thread (``_pipeline``) hands each installation its batch. The
installation samples it (``_tail``), then puts the raw records on each
:class:`Sink` (a thread and a queue bounded in bytes per exporter, its faults
isolated from the program). A queue that is full sheds raw records, whole
futures at a time: what an exporter that is slow or stuck cannot take is never
converted at all.
"""

from __future__ import annotations

import fnmatch
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .. import _core
from .._core import _events as ev
from .._core._events import Event
from ._convert import Converter, site_of, type_name
from ._process import at_fork
from ._sink import Sink, safe_repr, unicode_safe

__all__ = ["Events", "Filter", "Sink", "safe_repr", "unicode_safe"]

logger = logging.getLogger("tracedfuture")


class Filter:
    """Keeps the futures created by some modules, or named some way.

    The decision is taken at a future's first event other than ``created`` and
    ``renamed``: asyncio 3.11 names tasks right after creating them.
    """

    def __init__(
        self,
        include_modules: Sequence[str],
        exclude_modules: Sequence[str],
        include_names: Sequence[str],
        exclude_names: Sequence[str],
    ) -> None:
        self.include_modules = tuple(include_modules)
        self.exclude_modules = tuple(exclude_modules)
        self.include_names = tuple(include_names)
        self.exclude_names = tuple(exclude_names)
        self._decided: dict[int, bool] = {}
        self._waiting: dict[int, list[Event]] = {}
        self._module_of_file: dict[str, str | None] = {}
        at_fork("delivery", after_in_child=self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        self._waiting.clear()  # the parent's futures: not the child's to export

    def __bool__(self) -> bool:
        return bool(self.include_modules or self.exclude_modules or self.include_names or self.exclude_names)

    def apply(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        decisions = self._decided
        for event in events:
            fid = event.future_id
            if not fid:
                out.append(event)  # a loop-wide lint
                continue
            decided = decisions.get(fid)
            if decided is None:
                waiting = self._waiting.setdefault(fid, [])
                waiting.append(event)
                if event.kind in (ev.CREATED, ev.RENAMED):
                    continue
                created = waiting[0] if waiting[0].kind == ev.CREATED else None
                decided = decisions[fid] = self._accepts(created, event.name)
                del self._waiting[fid]
                if decided:
                    out.extend(waiting)
            elif decided:
                out.append(event)
        while len(decisions) > 1_000_000:
            del decisions[next(iter(decisions))]  # the oldest futures are long gone
        return out

    def flush(self) -> list[Event]:
        """Decide for futures that had only ``created``/``renamed`` so far."""
        out: list[Event] = []
        for fid, waiting in self._waiting.items():
            created = waiting[0] if waiting[0].kind == ev.CREATED else None
            if self._accepts(created, waiting[-1].name):
                out.extend(waiting)
                self._decided[fid] = True
            else:
                self._decided[fid] = False
        self._waiting.clear()
        return out

    def _accepts(self, created: Event | None, name: str | None) -> bool:
        if self.include_modules or self.exclude_modules:
            module = self._module(created.site.filename) if created is not None and created.site else None
            if self.include_modules and not (module and _prefixed(module, self.include_modules)):
                return False
            if self.exclude_modules and module and _prefixed(module, self.exclude_modules):
                return False
        if self.include_names and not (name and any(fnmatch.fnmatchcase(name, p) for p in self.include_names)):
            return False
        return not (self.exclude_names and name and any(fnmatch.fnmatchcase(name, p) for p in self.exclude_names))

    def _module(self, filename: str) -> str | None:
        if filename not in self._module_of_file:
            for name, module in list(sys.modules.items()):
                path = getattr(module, "__file__", None)
                if path and path not in self._module_of_file:
                    self._module_of_file[path] = name
            self._module_of_file.setdefault(filename, None)
        return self._module_of_file[filename]


class Events:
    """One exporter's events, made from the raw records its queue kept: its own
    converter (its state is that exporter's, as the records it was given are)
    and its own filter. Runs where the sink delivers: its thread, or, for an
    inline exporter, whoever drains."""

    def __init__(
        self,
        *,
        capture_values: bool,
        redact: Callable[[str], str] | None,
        include_modules: Sequence[str] = (),
        exclude_modules: Sequence[str] = (),
        include_names: Sequence[str] = (),
        exclude_names: Sequence[str] = (),
    ) -> None:
        self.converter = Converter(capture_values=capture_values, redact=redact)
        self.filter = Filter(include_modules, exclude_modules, include_names, exclude_names)
        # The compiled fold (_core/_eventfold.c): events made when an exporter
        # reads them. A filter reads every event, so it takes the reference's.
        fold = _core.impl.EventFold
        self.fold = (
            None
            if fold is None or self.filter
            else fold(self.converter, site_of, type_name, Event, redacts=redact is not None)
        )

    def convert(self, records: Sequence[tuple[Any, ...]]) -> Sequence[Event]:
        """The events of ``records``: a sequence whose items may be made only
        when they are read (the compiled implementation's)."""
        if self.fold is not None:
            return self.fold.events(records)  # type: ignore[no-any-return]
        events = self.converter.convert(records)
        return self.filter.apply(events) if self.filter else events

    def finish(self) -> list[Event]:
        """At close: the events a filter still held, undecided."""
        return self.filter.flush() if self.filter else []

    def clear(self) -> None:
        self.converter.clear()
        if self.fold is not None:
            self.fold.clear()


def _prefixed(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)
