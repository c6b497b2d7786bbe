"""Who holds which ``asyncio.Lock``, who waits for it, and the cycles: deadlocks.

Best effort, read from the tasks' suspended coroutines on the loop's own thread,
with nothing patched in asyncio's classes:

* a task *waits* for a lock when ``Lock.acquire`` is in its coroutine chain; the
  lock is that frame's ``self``, the line is the program's frame that awaited it;
* a task *holds* a lock when one of its coroutines is inside ``async with lock:``
  (the lock's bound ``__aexit__`` is on that coroutine's stack, and the lock is
  locked). The line is that ``async with``'s.

A lock taken with ``await lock.acquire()`` and released later by hand leaves no
trace in the frames: it is locked, with its holder unknown. Semaphores, events,
conditions and queues have waiters but no holder, so they make no cycle here.

>>> import asyncio
>>> async def main():
...     lock = asyncio.Lock()
...     async with lock:
...         return [str(d) for d in deadlocks(holdings(asyncio.all_tasks()))]
>>> asyncio.run(main())
[]
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterable
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any

from ._core import future_id
from ._core._events import Site
from ._core._frames import PROGRAM, _async_with_at, is_asyncio, kind, primitive_number
from ._text import short_path

__all__ = ["Deadlock", "Holding", "deadlocks", "holdings", "lock_label"]

_ACQUIRE = asyncio.Lock.acquire.__code__
_MAX_DEPTH = 256


@dataclass(frozen=True, slots=True)
class Holding:
    """One task's relation to one lock: it holds it (``held``), or waits for it."""

    lock: str  # "Lock#1"
    task_id: int  # the task's future id (0: a task tracing does not know)
    task: str  # the task's name
    held: bool
    site: Site | None  # the async with that acquired it, or the line waiting for it


@dataclass(frozen=True, slots=True)
class Deadlock:
    """Tasks that each wait for a lock the next one holds, the last for the
    first's: ``str()`` says it in one paragraph."""

    task_ids: tuple[int, ...]
    text: str

    def __str__(self) -> str:
        return self.text


def lock_label(lock: object) -> str:
    """``Lock#1``: a lock by its class and its number (the one its waiters' futures show)."""
    number = primitive_number(lock)
    name = type(lock).__name__
    return name if number is None else f"{name}#{number}"


def holdings(tasks: Iterable[asyncio.Task[Any]]) -> tuple[Holding, ...]:
    """What each task holds and waits for; only on the thread running their loop."""
    found: list[Holding] = []
    for task in tasks:
        try:
            found.extend(_of_task(task))
        except Exception:  # a coroutine that changed under us: left out, never fatal
            continue
    return tuple(found)


def _chain(coro: Any) -> list[tuple[Any, FrameType]]:
    chain: list[tuple[Any, FrameType]] = []
    while coro is not None and len(chain) < _MAX_DEPTH:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            break
        chain.append((coro, frame))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
    return chain


def _of_task(task: asyncio.Task[Any]) -> list[Holding]:
    chain = _chain(task.get_coro())
    tid = future_id(task) or 0
    name = task.get_name()
    out: list[Holding] = []
    waiting_for = None
    for index, (_, frame) in enumerate(chain):
        if frame.f_code is _ACQUIRE:
            waiting_for = frame.f_locals.get("self")
            if isinstance(waiting_for, asyncio.Lock):
                out.append(Holding(lock_label(waiting_for), tid, name, False, _program_line(chain[:index])))
            break
    for index, (coro, _frame) in enumerate(chain):
        exits = [
            ref
            for ref in gc.get_referents(coro)
            if getattr(ref, "__name__", None) == "__aexit__" and hasattr(ref, "__self__")
        ]
        for nth, ref in enumerate(exits):
            lock = ref.__self__
            if not isinstance(lock, asyncio.Lock) or lock is waiting_for or not lock.locked():
                continue
            if index + 1 < len(chain) and chain[index + 1][1].f_locals.get("self") is lock:
                continue  # still entering it (__aenter__), or leaving it
            out.append(Holding(lock_label(lock), tid, name, True, _held_at(chain[: index + 1], nth)))
    return out


def _site(code: CodeType, line: int | None) -> Site:
    return Site(code.co_filename, line or code.co_firstlineno, code.co_qualname)


def _program_line(outer: list[tuple[Any, FrameType]]) -> Site | None:
    """The innermost of the program's frames among ``outer`` (else the innermost
    frame outside asyncio): the line that awaited into asyncio."""
    fallback = None
    for _, frame in reversed(outer):
        if kind(frame.f_code) == PROGRAM:
            return _site(frame.f_code, frame.f_lineno)
        if fallback is None and not is_asyncio(frame.f_code.co_filename):
            fallback = _site(frame.f_code, frame.f_lineno)
    return fallback


def _held_at(chain: list[tuple[Any, FrameType]], nth: int) -> Site | None:
    """The line of the ``async with`` (the ``nth`` enclosing one) of the last
    frame of ``chain``; if that frame is not the program's, the program's line
    that called into it."""
    frame = chain[-1][1]
    code = frame.f_code
    if kind(code) != PROGRAM:
        return _program_line(chain) or _site(code, frame.f_lineno)
    offset = _async_with_at(code, frame.f_lasti, nth)
    line = None
    for start, end, number in code.co_lines():
        if start <= offset < end:
            line = number
            break
    return _site(code, line if line is not None else frame.f_lineno)


def deadlocks(found: Iterable[Holding]) -> tuple[Deadlock, ...]:
    """The cycles among ``found``: each task waiting for a lock held by a task
    that waits, in the end, for one it holds.

    >>> a = Holding("Lock#1", 2, "worker-a", True, Site("app.py", 20, "work"))
    >>> b = Holding("Lock#2", 2, "worker-a", False, Site("app.py", 21, "work"))
    >>> c = Holding("Lock#2", 3, "worker-b", True, Site("app.py", 30, "work"))
    >>> d = Holding("Lock#1", 3, "worker-b", False, Site("app.py", 31, "work"))
    >>> print(deadlocks([a, b, c, d])[0])  # doctest: +NORMALIZE_WHITESPACE
    deadlock: worker-a holds Lock#1 (acquired at app.py:20) and waits for Lock#2 (app.py:21),
    held by worker-b (acquired at app.py:30), which waits for Lock#1 (app.py:31)
    """
    found = tuple(found)
    holder = {h.lock: h for h in found if h.held}
    waits = {h.task_id: h for h in found if not h.held}
    names = {h.task_id: h.task for h in found}
    cycles: list[Deadlock] = []
    seen: set[int] = set()
    for start in waits:
        path: list[int] = []
        current: int | None = start
        while current is not None and current in waits and current not in path and current not in seen:
            path.append(current)
            held = holder.get(waits[current].lock)
            current = held.task_id if held is not None else None
        seen.update(path)
        if current is None or current not in path:
            continue
        cycle = path[path.index(current) :]
        first = cycle.index(min(cycle))  # said from the oldest task: the same text every time
        cycle = cycle[first:] + cycle[:first]
        cycles.append(Deadlock(tuple(cycle), _paragraph(cycle, waits, holder, names)))
    return tuple(cycles)


def _at(site: Site | None) -> str:
    return f"{short_path(site.filename)}:{site.lineno}" if site is not None else "?"


def _paragraph(cycle: list[int], waits: dict[int, Holding], holder: dict[str, Holding], names: dict[int, str]) -> str:
    first = cycle[0]
    held_first = waits[cycle[-1]].lock  # what the last one waits for: the first holds it
    wait = waits[first]
    text = (
        f"deadlock: {names[first]} holds {held_first} (acquired at {_at(holder[held_first].site)})"
        f" and waits for {wait.lock} ({_at(wait.site)})"
    )
    for tid in cycle[1:]:
        held = holder[wait.lock]
        wait = waits[tid]
        text += f", held by {names[tid]} (acquired at {_at(held.site)}), which waits for {wait.lock} ({_at(wait.site)})"
    return text
