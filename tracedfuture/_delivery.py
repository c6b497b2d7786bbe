"""What happens to an installation's events after conversion: filters and tail
sampling, before each exporter's :class:`~tracedfuture._sink.Sink`.

The drain thread (``_pipeline``) hands each installation its batch. The
installation passes it through its :class:`Filter` (creation module, name) and
:class:`TailSampler` (keep only what went wrong or was slow, with what is linked
to it), then puts it on each :class:`Sink` (``_sink``: a thread and a queue
bounded in bytes per exporter, its faults isolated from the program).
"""

from __future__ import annotations

import fnmatch
import logging
import sys
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Sequence

from . import _events as ev
from ._events import Event
from ._sink import _SINKS, Sink, delivery_stats, safe_repr, unicode_safe

__all__ = ["Filter", "Sink", "TailSampler", "after_fork_in_child", "delivery_stats", "safe_repr", "unicode_safe"]

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
        _FORGET_AT_FORK.add(self)

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


def _prefixed(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _ts(event: Event) -> int:
    return event.ts_ns


_INTERESTING = frozenset({ev.FAILED, ev.CANCELLED, ev.ABANDONED, ev.UNRETRIEVED, *ev.LINTS})
_ENDS = frozenset({ev.RESOLVED, ev.FAILED, ev.CANCELLED})


class TailSampler:
    """Keeps a future's events only if it went wrong or was slow, with its links.

    A future is *kept* when it fails, is cancelled, abandoned, leaves an exception
    unretrieved, is the subject of a lint, or lives longer than ``slow`` seconds
    (pending or not). Keeping a future keeps what it is linked to: the tasks that
    awaited it, the futures a kept task awaited, and a kept task's parent chain.
    Events of undecided futures are held; those of healthy finished futures are
    held a while longer (``linger`` futures) so that a later keep can still bring
    them in. Kept events can therefore arrive late: order a tail-sampled trace by
    ``ts_ns``.
    """

    def __init__(self, slow_ns: int, *, linger: int = 10_000, max_held: int = 200_000) -> None:
        self.slow_ns = slow_ns
        self.linger = linger
        self.max_held = max_held
        self.kept: set[int] = set()
        self.dropped_futures = 0
        self._held: dict[int, list[Event]] = {}
        self._finished: OrderedDict[int, list[Event]] = OrderedDict()
        self._links: dict[int, set[int]] = {}
        self._parent: dict[int, int] = {}
        self._born: deque[tuple[int, int]] = deque()  # (created ts, id), oldest first
        _FORGET_AT_FORK.add(self)

    def _after_fork_in_child(self) -> None:
        # The parent's held events are the parent's: a child must not export them.
        self._held.clear()
        self._finished.clear()
        self._born.clear()

    def apply(self, events: list[Event], now_ns: int | None = None) -> list[Event]:
        out: list[Event] = []
        for event in events:
            fid = event.future_id
            if fid == 0:
                out.append(event)  # a loop-wide lint
                continue
            self._link(event)
            if fid in self.kept:
                out.append(event)
                continue
            self._held.setdefault(fid, []).append(event)
            if event.kind == ev.CREATED:
                self._born.append((event.ts_ns, fid))
            if event.kind in _INTERESTING:
                self._keep(fid, out)
            elif event.kind in _ENDS:
                held = self._held.pop(fid)
                if held[0].kind == ev.CREATED and event.ts_ns - held[0].ts_ns >= self.slow_ns:
                    self.kept.add(fid)
                    out.extend(held)
                    self._keep_links(fid, out)
                else:
                    self._finished[fid] = held
            elif event.kind in (ev.CALLBACK_SCHEDULED, ev.CALLBACK_ADDED) and fid in self._finished:
                self._finished[fid].append(event)
        self._expire(now_ns if now_ns is not None else time.monotonic_ns(), out)
        # A kept group (a future, its awaiters, its parents) comes out at once,
        # older events included: in time order, parents come before children.
        out.sort(key=_ts)
        return out

    def _link(self, event: Event) -> None:
        if event.kind == ev.CREATED and event.parent_id:
            self._parent[event.future_id] = event.parent_id
        elif event.kind == ev.AWAITED and event.awaiter_id:
            self._links.setdefault(event.future_id, set()).add(event.awaiter_id)
            self._links.setdefault(event.awaiter_id, set()).add(event.future_id)

    def _keep(self, fid: int, out: list[Event]) -> None:
        if fid in self.kept:
            return
        self.kept.add(fid)
        held = self._held.pop(fid, None) or self._finished.pop(fid, None)
        if held:
            out.extend(held)
        self._keep_links(fid, out)

    def _keep_links(self, fid: int, out: list[Event]) -> None:
        for other in self._links.get(fid, ()):
            if other not in self.kept:
                self.kept.add(other)
                held = self._held.pop(other, None) or self._finished.pop(other, None)
                if held:
                    out.extend(held)
        parent = self._parent.get(fid)
        while parent is not None and parent not in self.kept:
            self.kept.add(parent)
            held = self._held.pop(parent, None) or self._finished.pop(parent, None)
            if held:
                out.extend(held)
            parent = self._parent.get(parent)

    def _expire(self, now_ns: int, out: list[Event]) -> None:
        born = self._born
        while born and now_ns - born[0][0] >= self.slow_ns:
            _, fid = born.popleft()
            if fid in self._held:  # still pending after `slow`: keep it
                self._keep(fid, out)
        while len(self._finished) > self.linger:
            fid, _ = self._finished.popitem(last=False)
            self._forget(fid)
            self.dropped_futures += 1
        while len(self._held) > self.max_held:
            fid = next(iter(self._held))
            del self._held[fid]
            self._forget(fid)
            self.dropped_futures += 1
        if len(self.kept) > 1_000_000:
            self.kept.clear()

    def _forget(self, fid: int) -> None:
        for other in self._links.pop(fid, ()):
            links = self._links.get(other)
            if links is not None:
                links.discard(fid)
        self._parent.pop(fid, None)

    def flush(self, now_ns: int | None = None) -> list[Event]:
        """At shutdown: what is still pending after ``slow`` is kept, the rest dropped."""
        out: list[Event] = []
        self._expire(now_ns if now_ns is not None else time.monotonic_ns(), out)
        out.sort(key=_ts)
        return out


_FORGET_AT_FORK: weakref.WeakSet[Filter | TailSampler] = weakref.WeakSet()


def after_fork_in_child() -> None:
    """Called by the recorder's fork handler in a child: sinks, filters and
    samplers start afresh (the recorder's own state is reset first)."""
    for sampler in list(_FORGET_AT_FORK):
        sampler._after_fork_in_child()
    for sink in list(_SINKS):
        try:
            sink._after_fork_in_child()
        except BaseException:  # a fork must never fail because of an observer
            logger.exception("tracedfuture: could not restart exporter %s after fork()", safe_repr(sink.exporter))
