"""The live await graph: what is pending now, and who awaits it.

>>> import asyncio, tracedfuture
>>> from tracedfuture.graph import format_snapshot, snapshot
>>> async def wait(fut):
...     await fut
>>> async def main():
...     fut = asyncio.get_running_loop().create_future()
...     asyncio.create_task(wait(fut), name="waiter")
...     await asyncio.sleep(0)
...     return snapshot()
>>> snap = tracedfuture.run(main())
>>> waiter = next(f for f in snap if f.name == "waiter")
>>> [(snap.get(i).is_task, snap.chain(i) == (waiter.future_id, i)) for i in waiter.awaiting]
[(False, True)]
>>> print(format_snapshot(snap))  # doctest: +SKIP
3 pending: 2 tasks, 1 future
├── (T) #1 Task-1  main()  pending 0.00s  created at <doctest>:1 in <module>  callbacks: _run_until_complete_cb
│   └── main <doctest>:4
└── (T) #3 waiter  wait()  pending 0.00s  created at <doctest>:3 in main
    └── wait <doctest>:2
        └── (F) #2  pending 0.00s  created at <doctest>:2 in main

A :class:`Snapshot` is built from the core's live registry of traced futures and
tasks (``_core.live()``), read from the objects themselves with nothing
converted, so it sees bare futures as well as tasks, on every traced loop in the
process, and it can be taken from any thread: a signal handler, a debug
endpoint, a watchdog. It reads only their state, callbacks, names and creation
sites, never their results. Taken on the loop's own thread, it also reads each
task's coroutine chain (its call stack, outermost first); from another thread it
never walks a coroutine, which belongs to the loop's thread.

The records copy the shape of CPython 3.14's ``asyncio.graph``
(``FutureCallGraph``, ``FrameCallGraphEntry``: frozen, slotted dataclasses), with
two differences: they hold ids and text, never the future or a frame (a snapshot
kept in a log or a test report keeps nothing alive), and the graph is flat
(``awaited_by`` and ``awaiting`` are ids) because awaits can form cycles.
:func:`from_events` rebuilds the same graph from a list of events, as it stood at
any moment: the graph of a flight recorder dump, or of a test at the moment it
failed.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from . import _core, _locks
from ._core._events import Event, Outcome, Site, State
from ._core._frames import OWN_DIR, is_library
from ._fold import Fold
from ._locks import Deadlock, Holding
from ._pipeline._convert import site_of
from ._text import plural, short_path, site_text

__all__ = [
    "CANCELLING",
    "INCOMPLETE",
    "PENDING",
    "Deadlock",
    "FrameEntry",
    "Holding",
    "PendingFuture",
    "Snapshot",
    "fold_frames",
    "format_snapshot",
    "from_events",
    "live_snapshot",
    "site_text",
    "snapshot",
]

# A snapshot entry's state (the vocabulary: ``_core._events.State``).
PENDING = State.PENDING
CANCELLING = State.CANCELLING
INCOMPLETE = State.INCOMPLETE  # from_events: its history has a hole; maybe no longer pending
_MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class FrameEntry:
    """One frame of a task's coroutine chain (3.14's ``FrameCallGraphEntry``, as text)."""

    filename: str
    lineno: int
    function: str

    def __str__(self) -> str:
        return f"{self.function} {short_path(self.filename)}:{self.lineno}"


@dataclass(frozen=True, slots=True)
class PendingFuture:
    """A future or task that is not done (3.14's ``FutureCallGraph``, flattened).

    ``state`` is ``"PENDING"``, or ``"CANCELLING"`` once a task has been asked to
    cancel (``"INCOMPLETE"`` in :func:`from_events` when its history has a
    hole). ``awaited_by`` are the tasks awaiting it now; ``awaiting`` (tasks) the
    pending futures it awaits; ``callbacks`` its other done callbacks (a
    ``gather`` or ``wait`` watching it, say); ``last_awaiter_id`` the last task
    that ever awaited it. ``call_stack`` (tasks, only in a snapshot taken on the
    loop's thread) runs from the task's coroutine down to the innermost await.
    ``age_ns`` is ``None`` when its creation is not in the events it was built from.
    ``holds`` (tasks, same condition) are the ``asyncio.Lock``s it holds, and
    where it acquired them (best effort: see :attr:`Snapshot.deadlocks`).
    ``waiting_site`` (a ``"CANCELLING"`` task, in :func:`from_events`) is the
    program's line where it was waiting when it was asked to cancel.
    """

    future_id: int
    is_task: bool
    name: str | None
    site: Site | None
    age_ns: int | None
    state: str
    awaited_by: tuple[int, ...] = ()
    awaiting: tuple[int, ...] = ()
    callbacks: tuple[str, ...] = ()
    last_awaiter_id: int | None = None
    coro: str | None = None
    call_stack: tuple[FrameEntry, ...] = ()
    program_site: Site | None = None
    holds: tuple[Holding, ...] = ()
    waiting_site: Site | None = None

    @property
    def label(self) -> str:
        """``(T) #4 worker`` / ``(F) #7``: how the tree names it."""
        kind = "(T)" if self.is_task else "(F)"
        return f"{kind} #{self.future_id} {self.name}" if self.name else f"{kind} #{self.future_id}"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every pending future and task at one moment, in creation order.

    ``taken_ns`` is :func:`time.monotonic_ns` (or the moment asked of
    :func:`from_events`); ``with_stacks`` tells whether tasks carry their call stack.

    Taken on the loop's thread, it also knows who holds each ``asyncio.Lock`` and
    who waits for it (``locks``: :class:`Holding` records), and the cycles among
    them (``deadlocks``: ``str()`` of each says it in one paragraph: "deadlock:
    worker-a holds Lock#1 (acquired at app.py:20) and waits for Lock#2 (app.py:21),
    held by worker-b (acquired at app.py:30), which waits for Lock#1 (app.py:31)").
    Best effort, from the tasks' coroutines, with nothing in asyncio patched: a
    lock is known to be held by the task inside its ``async with lock:``; one
    taken with a bare ``await lock.acquire()`` is locked with its holder unknown.
    """

    taken_ns: int
    futures: tuple[PendingFuture, ...]
    with_stacks: bool = False
    locks: tuple[Holding, ...] = ()
    deadlocks: tuple[Deadlock, ...] = ()

    def __len__(self) -> int:
        return len(self.futures)

    def __iter__(self) -> Iterator[PendingFuture]:
        return iter(self.futures)

    def get(self, future_id: int) -> PendingFuture | None:
        """The pending future or task with this id, or ``None``."""
        for fut in self.futures:
            if fut.future_id == future_id:
                return fut
        return None

    def tasks(self) -> tuple[PendingFuture, ...]:
        return tuple(f for f in self.futures if f.is_task)

    def roots(self) -> tuple[PendingFuture, ...]:
        """What nothing pending awaits: where each tree of :func:`format_snapshot`
        starts. A cycle of tasks awaiting each other (a deadlock) has no such
        future: its first member is a root too."""
        index = {f.future_id: f for f in self.futures}
        roots = [f for f in self.futures if not any(a in index for a in f.awaited_by)]
        seen: set[int] = set()
        for root in roots:
            seen.update(_reachable(index, root.future_id))
        for fut in self.futures:
            if fut.future_id not in seen:
                roots.append(fut)
                seen.update(_reachable(index, fut.future_id))
        return tuple(roots)

    def leaves(self) -> tuple[PendingFuture, ...]:
        """What is awaited but awaits nothing pending: where each chain ends."""
        index = {f.future_id: f for f in self.futures}
        return tuple(f for f in self.futures if f.awaited_by and not any(a in index for a in f.awaiting))

    def chain(self, future_id: int) -> tuple[int, ...]:
        """The awaiting chain down to ``future_id``: the outermost awaiting task
        first, ``future_id`` last (following each future's first awaiter).

        >>> snap = Snapshot(0, (PendingFuture(1, True, "main", None, 0, "PENDING", awaiting=(2,)),
        ...                     PendingFuture(2, False, None, None, 0, "PENDING", awaited_by=(1,))))
        >>> snap.chain(2)
        (1, 2)
        """
        index = {f.future_id: f for f in self.futures}
        chain = [future_id]
        current = index.get(future_id)
        while current is not None and current.awaited_by:
            awaiter = current.awaited_by[0]
            if awaiter in chain:
                break
            chain.append(awaiter)
            current = index.get(awaiter)
        return tuple(reversed(chain))

    def chains(self) -> tuple[tuple[int, ...], ...]:
        """One awaiting chain per leaf (see :meth:`leaves`)."""
        return tuple(self.chain(f.future_id) for f in self.leaves())


def _reachable(index: dict[int, PendingFuture], start: int) -> set[int]:
    seen = {start}
    todo = [start]
    while todo:
        fut = index.get(todo.pop())
        if fut is None:
            continue
        for child in fut.awaiting:
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


# --- building --------------------------------------------------------------------------


class _Node:
    """What is known of one future while a snapshot is assembled."""

    __slots__ = (
        "awaiter_id",
        "callbacks",
        "cancelling",
        "coro",
        "created_ns",
        "incomplete",
        "is_task",
        "name",
        "program_site",
        "site",
        "waiting_site",
    )

    def __init__(self, is_task: bool, name: str | None, site: Site | None, created_ns: int | None) -> None:
        self.is_task = is_task
        self.name = name
        self.site = site
        self.program_site: Site | None = None
        self.created_ns = created_ns
        self.callbacks: list[tuple[str, int | None]] = []
        self.awaiter_id: int | None = None
        self.cancelling = False
        self.incomplete = False
        self.coro: str | None = None
        self.waiting_site: Site | None = None


def _assemble(
    nodes: dict[int, _Node],
    now_ns: int,
    stacks: dict[int, tuple[FrameEntry, ...]],
    extra_awaiters: dict[int, set[int]],
    locks: tuple[Holding, ...] = (),
) -> Snapshot:
    awaited_by: dict[int, list[int]] = {}
    awaiting: dict[int, list[int]] = {}
    for fid, node in nodes.items():
        waiters = [a for _, a in node.callbacks if a is not None]
        waiters += sorted(extra_awaiters.get(fid, set()) - set(waiters))
        awaited_by[fid] = list(dict.fromkeys(waiters))
        for waiter in awaited_by[fid]:
            awaiting.setdefault(waiter, []).append(fid)
    futures = tuple(
        PendingFuture(
            future_id=fid,
            is_task=node.is_task,
            name=node.name,
            site=node.site,
            age_ns=None if node.created_ns is None else max(0, now_ns - node.created_ns),
            state=INCOMPLETE if node.incomplete else CANCELLING if node.cancelling else PENDING,
            awaited_by=tuple(awaited_by[fid]),
            awaiting=tuple(awaiting.get(fid, ())),
            callbacks=tuple(name for name, awaiter in node.callbacks if awaiter is None),
            last_awaiter_id=node.awaiter_id,
            coro=node.coro,
            call_stack=stacks.get(fid, ()),
            program_site=node.program_site,
            holds=tuple(h for h in locks if h.held and h.task_id == fid),
            waiting_site=node.waiting_site if node.cancelling else None,
        )
        for fid, node in sorted(nodes.items())
    )
    return Snapshot(now_ns, futures, with_stacks=bool(stacks), locks=locks, deadlocks=_locks.deadlocks(locks))


def snapshot(loop: asyncio.AbstractEventLoop | None = None) -> Snapshot:
    """What is pending now, on every traced loop of the process.

    Safe from any thread. ``loop`` (default: the loop running in this thread, if
    any) is the loop whose tasks get their call stacks; that only happens when it
    is running in the calling thread, since a task's coroutine chain may only be
    read by the thread that runs it.

    >>> from tracedfuture.graph import snapshot
    >>> import threading
    >>> threading.Thread(target=lambda: print(len(snapshot()) >= 0)).start()  # doctest: +SKIP
    True
    """
    now = time.monotonic_ns()
    nodes = _nodes(_core.live())
    stacks: dict[int, tuple[FrameEntry, ...]] = {}
    extra: dict[int, set[int]] = {}
    running = asyncio._get_running_loop()
    if loop is None:
        loop = running
    locks: tuple[Holding, ...] = ()
    if loop is not None and loop is running:
        _read_tasks(loop, nodes, stacks, extra)
        locks = _locks.holdings(asyncio.all_tasks(loop))
    return _assemble(nodes, now, stacks, extra, locks)


def live_snapshot() -> Snapshot:
    """The snapshot of what is pending now, with no call stacks: for code on
    another thread that only needs the graph (``tracedfuture.lints``)."""
    return _assemble(_nodes(_core.live()), time.monotonic_ns(), {}, {})


_WAKEUPS = frozenset({"task_wakeup", "__wakeup", "_Task__wakeup"})


def _nodes(live: Iterable[Any]) -> dict[int, _Node]:
    """The pending futures and tasks the core holds, read from the objects
    themselves: their state, callbacks and names, never their results."""
    nodes: dict[int, _Node] = {}
    for obj in live:
        info = _core.info(obj)
        if info is None:
            continue
        fid, created_ns, code, lasti, _creator, label, pcode, plasti = info
        try:
            if obj.done():
                continue
            is_task = isinstance(obj, asyncio.Task)
            name = obj.get_name() if is_task else label
            node = _Node(is_task, name, site_of(code, lasti), created_ns)
            node.program_site = site_of(pcode, plasti)
            for callback, _context in obj._callbacks or ():
                node.callbacks.append(_callback(callback))
            node.awaiter_id = next((a for _, a in node.callbacks if a is not None), None)
            if is_task:
                node.cancelling = obj.cancelling() > 0
                coro = obj.get_coro()
                node.coro = getattr(coro, "__qualname__", None) or type(coro).__qualname__
        except Exception:  # a future that changed under us is left out, never fatal
            continue
        nodes[fid] = node
    return nodes


def _callback(callback: Any) -> tuple[str, int | None]:
    """(name, awaiting task id) of a done callback; the id only for a task's wakeup."""
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task) and getattr(callback, "__name__", None) in _WAKEUPS:
        return getattr(callback, "__qualname__", "Task.task_wakeup"), _core.future_id(owner)
    while isinstance(callback, functools.partial):
        callback = callback.func
    name = getattr(callback, "__qualname__", None)
    return (name if isinstance(name, str) else type(callback).__qualname__), None


def _read_tasks(
    loop: asyncio.AbstractEventLoop,
    nodes: dict[int, _Node],
    stacks: dict[int, tuple[FrameEntry, ...]],
    extra: dict[int, set[int]],
) -> None:
    """On the loop's thread only: each traced task's coroutine chain, and on
    3.14+ the awaits that ``asyncio.capture_call_graph`` knows and the recorder
    does not (``gather`` registers its waiters there)."""
    for task in asyncio.all_tasks(loop):
        fid = _core.future_id(task)
        node = nodes.get(fid) if fid else None
        if fid is None or node is None:
            continue
        coro = task.get_coro()
        node.coro = getattr(coro, "__qualname__", None)
        stacks[fid] = _coroutine_chain(coro)
        if sys.version_info >= (3, 14):  # pragma: no cover - not testable on 3.11
            _awaited_by_314(task, fid, extra)


def _coroutine_chain(coro: Any) -> tuple[FrameEntry, ...]:
    """The frames of a suspended coroutine and of everything it awaits, outermost
    first (``Task.get_stack()`` on 3.11-3.13 gives only the outermost one)."""
    frames: list[FrameEntry] = []
    while coro is not None and len(frames) < _MAX_DEPTH:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            break
        code = frame.f_code
        frames.append(FrameEntry(code.co_filename, frame.f_lineno or code.co_firstlineno, code.co_qualname))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
    return tuple(frames)


def _awaited_by_314(task: asyncio.Task[Any], fid: int, extra: dict[int, set[int]]) -> None:  # pragma: no cover
    try:
        graph = asyncio.capture_call_graph(task, depth=1)  # type: ignore[attr-defined]
    except Exception:
        return
    if graph is None:
        return
    for parent in graph.awaited_by:
        parent_id = _core.future_id(parent.future)
        if parent_id:
            extra.setdefault(fid, set()).add(parent_id)


def from_events(events: Iterable[Event], at_ns: int | None = None) -> Snapshot:
    """The await graph as it stood at ``at_ns`` (default: after the last event),
    rebuilt from events: a trace file's, a flight recorder dump's, a test's.

    >>> import tracedfuture.trace  # doctest: +SKIP
    >>> dump = tracedfuture.trace.read("flight.jsonl")  # doctest: +SKIP
    >>> print(format_snapshot(from_events(dump.events)))  # doctest: +SKIP

    It is the fold every viewer uses (``tracedfuture._fold``): a future is in the
    graph until it finished, whatever happens to it afterwards (a done callback
    added later leaves it finished). Futures created before the first event (a
    flight recorder's ring had already dropped them, or the recorder marked their
    history incomplete) appear as ``"INCOMPLETE"``, with no age: the events
    cannot tell whether they were still pending.
    """
    fold = Fold().feed(events, at_ns)
    nodes: dict[int, _Node] = {}
    for fid, state in fold.states.items():
        if state.outcome not in (Outcome.PENDING, Outcome.INCOMPLETE):
            continue
        known = state.outcome == Outcome.PENDING
        node = nodes[fid] = _Node(state.is_task, state.name, state.site, state.start_ns if known else None)
        node.program_site = state.program_site
        node.callbacks = list(state.callbacks)
        node.awaiter_id = state.awaits[-1][0] if state.awaits else None
        node.cancelling = bool(state.cancel_requests)
        node.waiting_site = state.waiting_site
        node.incomplete = not known
        node.coro = state.coro if state.is_task else None  # a future's coro names the asyncio function that made it
    now = at_ns if at_ns is not None else (fold.last_ns or 0)
    return _assemble(nodes, now, {}, {})


# --- formatting ------------------------------------------------------------------------


def format_snapshot(
    snap: Snapshot | None = None, *, all_frames: bool = False, roots: Sequence[PendingFuture] | None = None
) -> str:
    """The snapshot as a tree, like 3.14's ``python -m asyncio pstree``: each root
    task or future, then what it awaits, down to the leaf futures. Bare futures
    are included; a task's call stack is shown when the snapshot has it, its
    frames of asyncio, tracedfuture and installed packages folded into one line
    (``all_frames=True`` shows each). Deadlocks come first, one paragraph each.
    ``roots`` are the trees to draw, in order (default: :meth:`Snapshot.roots`):
    ``tracedfuture pstree`` puts a server's requests first and leaves its
    background out.

    >>> print(format_snapshot(Snapshot(0, ())))
    nothing pending
    """
    if snap is None:
        snap = snapshot()
    if not snap.futures:
        return "nothing pending"
    index = {f.future_id: f for f in snap.futures}
    tasks = sum(1 for f in snap.futures if f.is_task)
    futures = len(snap.futures) - tasks
    lines = [f"{len(snap.futures)} pending: {plural(tasks, 'task')}, {plural(futures, 'future')}"]
    lines.extend(str(deadlock) for deadlock in snap.deadlocks)
    printed: set[int] = set()
    roots = snap.roots() if roots is None else roots
    for i, root in enumerate(roots):
        _render(root, index, "", i == len(roots) - 1, lines, printed, (), all_frames)
    return "\n".join(lines)


def fold_frames(frames: Iterable[FrameEntry]) -> list[str]:
    """A call stack as lines, each run of frames that are not the program's
    (asyncio's, tracedfuture's, an installed package's) folded into one that
    names its innermost function.

    >>> fold_frames([FrameEntry("app.py", 3, "main"), FrameEntry("/usr/lib/python3.11/asyncio/locks.py", 15, "a"),
    ...              FrameEntry("/usr/lib/python3.11/asyncio/locks.py", 114, "Lock.acquire")])
    ['main app.py:3', '... 2 library frames, down to Lock.acquire asyncio/locks.py:114']
    """
    out: list[str] = []
    run: list[FrameEntry] = []

    def flush() -> None:
        if len(run) == 1:
            out.append(str(run[0]))
        elif run:
            out.append(f"... {len(run)} library frames, down to {run[-1]}")
        run.clear()

    for frame in frames:
        if frame.filename.startswith(OWN_DIR) or is_library(frame.filename):
            run.append(frame)
        else:
            flush()
            out.append(str(frame))
    flush()
    return out


def _render(
    fut: PendingFuture,
    index: dict[int, PendingFuture],
    prefix: str,
    last: bool,
    lines: list[str],
    printed: set[int],
    path: tuple[int, ...],
    all_frames: bool = False,
) -> None:
    branch, extend = ("└── ", "    ") if last else ("├── ", "│   ")
    if fut.future_id in path:
        lines.append(f"{prefix}{branch}{fut.label} (cycle: awaits a task that awaits it)")
        return
    if fut.future_id in printed:
        lines.append(f"{prefix}{branch}{fut.label} (shown above)")
        return
    printed.add(fut.future_id)
    lines.append(f"{prefix}{branch}{_describe(fut)}")
    prefix += extend
    # The coroutine chain reads downwards, one frame per level, as in pstree; what
    # the task awaits hangs under the innermost frame.
    for frame in map(str, fut.call_stack) if all_frames else fold_frames(fut.call_stack):
        lines.append(f"{prefix}└── {frame}")
        prefix += "    "
    children = [index[c] for c in fut.awaiting if c in index]
    for i, child in enumerate(children):
        _render(child, index, prefix, i == len(children) - 1, lines, printed, (*path, fut.future_id), all_frames)


def _describe(fut: PendingFuture) -> str:
    parts = [fut.label]
    if fut.coro:
        parts.append(f"{fut.coro}()")
    state = fut.state.lower()
    parts.append(state if fut.age_ns is None else f"{state} {fut.age_ns / 1e9:.2f}s")
    if fut.program_site is not None and fut.program_site != fut.site:
        via = f" (via {site_text(fut.site)})" if fut.site is not None else ""
        parts.append(f"created at {site_text(fut.program_site)}{via}")
    elif fut.site is not None:
        parts.append(f"created at {site_text(fut.site)}")
    if fut.waiting_site is not None:
        parts.append(f"cancel requested while waiting at {site_text(fut.waiting_site)}")
    for held in fut.holds:
        where = f" (acquired at {short_path(held.site.filename)}:{held.site.lineno})" if held.site else ""
        parts.append(f"holds {held.lock}{where}")
    if fut.callbacks:
        parts.append(f"callbacks: {', '.join(fut.callbacks)}")
    if not fut.is_task and not fut.awaited_by and not fut.callbacks:
        if fut.last_awaiter_id is not None:
            parts.append(f"nobody awaits it now (last awaited by #{fut.last_awaiter_id})")
        else:
            parts.append("nobody awaits it")
    return "  ".join(parts)
