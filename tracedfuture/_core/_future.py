"""TracedFuture and TracedTask in pure Python: the reference implementation of the seam.

This module implements the page written in ``_seam.py``; ``_cfuture.c`` implements
the same page in C, and ``_core`` picks one. Each lifecycle point appends one raw
record (a tuple of ints, strings, types and code objects, laid out as in
``_seam.LAYOUTS``) to the :class:`Ring` its future was bound to at creation, and
does nothing else: no formatting, no I/O, no lock. ``_pipeline`` turns records into
events later. Configuration arrives only through :meth:`LoopHooks.bind`.

Costs that shaped this file (CPython 3.11): a Python ``__init__`` on a C Future
subclass costs more than asyncio's whole ``create_future``, so the loop's
``create_future`` calls C's ``__new__`` and ``__init__`` directly, bypassing
TracedFuture's own (which serves direct construction), and records from the
factory; records hold only atoms, so the garbage collector untracks them at its
first pass; the C finalizer is only called when it has something to log.

Why the completion of a task is seen through a done callback: the C Task sets its
own result and exception from C, bypassing any Python override, and a Python
subclass cannot take over its step (see ``STEP_REASON``; the compiled core does).
The callback is added first, at creation, and hidden from ``_callbacks`` (and
therefore from the task's repr). asyncio schedules it through ``loop.call_soon``
when the task ends, and a traced loop's ``call_soon`` (``LoopHooks.call_soon``)
runs it right there instead of queueing it: a Handle in the ready queue would
keep the finished task alive one iteration longer than the program does, and
move asyncio's "Task exception was never retrieved" after the program's next
lines. On a loop that is no longer traced the callback is queued and runs like
any other, before the task's own done callbacks.

Exactly asyncio (issue "Exactly asyncio", items 2 and 4): on asyncio's own loops,
``create_task`` runs ``BaseEventLoop.create_task``'s own code (a function made from
its code object, whose globals name the traced classes), so its checks, errors and
frames are asyncio's; in debug mode ``create_future`` does the same, so that the
frame asyncio records as "created at" is asyncio's own file and line.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import sys
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from types import CodeType, FrameType, MethodType
from typing import Any, TypeVar

from . import _events as ev
from ._frames import (
    PROGRAM,
    canceller,
    creation,
    hide_own_frames,
    raised_at,
    strip_source_traceback,
)
from ._frames import code_kinds as _code_kind
from ._ring import RecordBatch, Ring
from ._shared import (
    EAGER_FACTORY,
    asyncio_factories,
    callback_name,
    exc_message_default,
    text,
    value_repr_default,
)

__all__ = [
    "CLOCK",
    "IMPLEMENTATION",
    "STEP_REASON",
    "Carrier",
    "EventFold",
    "EventReader",
    "LineWriter",
    "LoopHooks",
    "RecordBatch",
    "Ring",
    "TailPolicy",
    "TracedFuture",
    "TracedTask",
    "Waker",
    "assign_id",
    "carried_hooks",
    "caught",
    "flush_pending_completions",
    "future_id",
    "info",
    "live",
    "set_text",
    "stop_prefaulting",
    "write",
]

IMPLEMENTATION = "python"
# A Python subclass of the C Task cannot keep its state (_must_cancel, _fut_waiter,
# _coro and _loop are read-only, _cancelled_exc has no accessor; 3.11-3.13), and one
# of asyncio's pure-Python Task would not be an asyncio.Task: asyncio steps it.
CLOCK = "monotonic"  # time.monotonic_ns(): what the compiled core's records read too, once converted
STEP_REASON = "the pure-Python reference cannot write the C Task's fields: asyncio's step runs its tasks"
# No compiled trace-line writer: the pipeline's own _lines.Lines is the reference.
LineWriter = None
# No compiled event fold: the pipeline's own _convert.Converter is the reference.
EventFold = None
# No compiled tail sampling: the pipeline's own _tail.TailPolicy is the reference.
TailPolicy = None
# No compiled trace reader: trace.py's own _checked_event is the reference.
EventReader = None
# What the drain waits on, and how a trace file is written: Python's own (the
# compiled core's take the GIL back at the program's next traced future).
Waker: Callable[[], threading.Event] = threading.Event
write: Callable[[int, bytes | memoryview], int] = os.write

_T = TypeVar("_T")

_Future: Any = asyncio.Future
_Handle: Any = asyncio.Handle
_extract_stack = asyncio.format_helpers.extract_stack  # type: ignore[attr-defined]
_Task: Any = asyncio.Task
_future_new = _Future.__new__
_future_init = _Future.__init__
_future_add_done_callback = _Future.add_done_callback
_future_remove_done_callback = _Future.remove_done_callback
_future_set_result = _Future.set_result
_future_set_exception = _Future.set_exception
_future_cancel = _Future.cancel
_future_del = _Future.__del__
_future_callbacks = _Future._callbacks
_task_cancel = _Task.cancel
_task_set_name = _Task.set_name
_task_del = _Task.__del__

_next_id = itertools.count(1).__next__
_now = time.monotonic_ns
_thread_id = threading.get_ident
_random = random.random
_getframe = sys._getframe

# The task running on a loop. 3.12 moved current_task() into C; before that the C
# module keeps the mapping in a dict that asyncio.tasks shares.
_current_task: Callable[[Any], asyncio.Task[Any] | None]
if sys.version_info >= (3, 12):
    from _asyncio import current_task as _current_task
else:
    import _asyncio

    _current_task = _asyncio._current_tasks.get  # type: ignore[attr-defined]

_FINISHED = "FINISHED"
_CANCELLED = "CANCELLED"
_PENDING = "PENDING"
_WAKEUP_NAMES = frozenset({"task_wakeup", "__wakeup", "_Task__wakeup"})
_wakeup_names: dict[type, str] = {}  # a task type -> its wakeup's qualname, built once


_value_repr: Callable[[object], str | None] = value_repr_default
_exc_message: Callable[[BaseException], str | None] = exc_message_default


def set_text(value_repr: Callable[[object], str | None], exc_message: Callable[[BaseException], str | None]) -> None:
    """Set the functions that turn a result and an exception into text, for
    futures whose ``capture_values`` is on. They must never raise."""
    global _value_repr, _exc_message
    _value_repr, _exc_message = value_repr, exc_message


# --- ids and the live registry ------------------------------------------------------------

# Tasks that tracedfuture did not create (a user's task factory, asyncio.Task()):
# they still get an id, so that they can be named as awaiters and cancellers.
_foreign_ids: weakref.WeakKeyDictionary[asyncio.Task[Any], int] = weakref.WeakKeyDictionary()
# Traced futures and tasks not yet done, oldest first: what snapshot() reads.
_live: dict[int, weakref.ref[Any]] = {}
_weakref = weakref.ref


def _task_id(task: object) -> int | None:
    """The id of a task: ours carry it, others get one on first sight."""
    if task is None:
        return None
    tid: int | None = getattr(task, "_tf_id", None)
    if tid is None:
        try:
            tid = _foreign_ids.get(task)  # type: ignore[call-overload]
            if tid is None:
                tid = _foreign_ids[task] = _next_id()  # type: ignore[index]
        except TypeError:
            return None
    return tid or None


def _running_task_id(loop: object) -> int | None:
    """The id of the task running on ``loop``, or ``None``: the one way the
    records name "the running task" (LoopHooks.create_future inlines it)."""
    task = _current_task(loop)
    if task is None:
        return None
    return getattr(task, "_tf_id", None) or _task_id(task)


def assign_id(obj: object) -> int | None:
    """The id of a future or task, given on first sight to one that tracedfuture
    did not make (a loop subclass's own ``create_task``), so that events can name
    it as an awaiter or a canceller."""
    return _task_id(obj)


def future_id(obj: object) -> int | None:
    """The ``future_id`` that events give ``obj``, a future or task, or ``None``
    when it is not traced: to find a future's events, or to log its id.

    >>> import asyncio, tracedfuture
    >>> async def main():
    ...     return tracedfuture.future_id(asyncio.get_running_loop().create_future())
    >>> tracedfuture.run(main()) > 0
    True
    >>> tracedfuture.future_id(object()) is None
    True
    """
    fid = getattr(obj, "_tf_id", None)
    if fid:
        return int(fid)
    return _foreign_ids.get(obj) if isinstance(obj, _Task) else None


def live() -> list[Any]:
    """The traced futures and tasks that exist and are not done, oldest first."""
    out = []
    for ref in list(_live.values()):
        obj = ref()
        if obj is not None and not obj.done():
            out.append(obj)
    return out


def stop_prefaulting() -> None:
    """The compiled core's flight rings have their pages backed ahead of their
    records by a thread, stopped here before a fork() (and started again by the
    ring's next records); the reference's rings are Python objects, with no such
    thread."""


def info(obj: object) -> tuple[int, int, Any, int, int | None, str | None, Any, int] | None:
    """``(future_id, created_ns, code, lasti, creator_task_id, label, program_code,
    program_lasti)`` of a traced future or task, else ``None``."""
    if not isinstance(obj, (TracedFuture, TracedTask)):
        return None
    rec = getattr(obj, "_tf_rec", None)
    if rec is None:
        return None
    return (rec[1], rec[2], rec[5], rec[6], rec[3], None if rec[4] else rec[8], rec[12], rec[13])


def caught(task: object, exc: BaseException) -> bool:
    """Record that a framework caught ``exc``, raised in the traced ``task``,
    which goes on (see ``_seam``); whether it recorded. Never raises."""
    try:
        fid = getattr(task, "_tf_id", 0) if isinstance(task, TracedTask) else 0
        if not fid:
            return False
        message = _exc_message(exc) if task._tf_values else None  # type: ignore[attr-defined]
        tid = _running_task_id(task.get_loop())  # type: ignore[attr-defined]
        record = (ev.OP_CAUGHT, fid, _now(), tid, type(exc), message, *raised_at(exc))
        task._tf_ring.put(record)  # type: ignore[attr-defined]
    except Exception:  # an observer never breaks the observed
        return False
    return True


# --- the methods shared by futures and tasks -----------------------------------------


# The overrides take *args and **kwargs and hand them to asyncio's own method
# first: a wrong call fails with asyncio's own message, and nothing is recorded.


def _add_done_callback(self: Any, *args: Any, **kwargs: Any) -> None:
    try:
        _future_add_done_callback(self, *args, **kwargs)
    except BaseException as exc:
        hide_own_frames(exc)
        raise
    fid = self._tf_id
    if fid:
        fn = args[0] if args else kwargs["fn"]
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, _Task) and fn.__name__ in _WAKEUP_NAMES:
            # A task started waiting on this future: its wakeup is the callback.
            aid = getattr(owner, "_tf_id", None) or _task_id(owner)
            name = _wakeup_names.get(type(owner))
            if name is None:
                name = _wakeup_names[type(owner)] = fn.__qualname__
            self._tf_ring.put((ev.OP_CB_ADDED, fid, _now(), aid, name, aid))
        else:
            tid = _running_task_id(self._loop)
            self._tf_ring.put((ev.OP_CB_ADDED, fid, _now(), tid, callback_name(fn), None))


def _remove_done_callback(self: Any, *args: Any, **kwargs: Any) -> int:
    fid = self._tf_id
    try:
        if not fid:
            return _future_remove_done_callback(self, *args, **kwargs)  # type: ignore[no-any-return]
        # A copy: asyncio's _callbacks is its own list once its first slot is
        # empty, and remove_done_callback changes that list in place.
        before = list(self._callbacks or ())
        removed = _future_remove_done_callback(self, *args, **kwargs)
    except BaseException as exc:
        hide_own_frames(exc)
        raise
    if removed:
        fn = args[0] if args else kwargs["fn"]
        # Which positions went, compared by identity: no user __eq__ runs twice.
        after = self._callbacks or ()
        gone = []
        j = 0
        for i, (cb, ctx) in enumerate(before):
            if j < len(after) and after[j][0] is cb and after[j][1] is ctx:
                j += 1
            else:
                gone.append(i)
        tid = _running_task_id(self._loop)
        self._tf_ring.put((ev.OP_CB_REMOVED, fid, _now(), tid, callback_name(fn), tuple(gone)))
    return removed  # type: ignore[no-any-return]


def _outcome(self: Any) -> tuple[Any, ...]:
    """The record of how a finished future or task ended, read without side
    effects (``exception()`` would mark the exception as retrieved)."""
    fid = self._tf_id
    tid = _running_task_id(self._loop)
    if tid == fid:
        tid = None  # a task ends in its own step: "by itself" says nothing
    if self._state == _CANCELLED:
        return (ev.OP_CANCELLED, fid, _now(), tid, None, None)
    exc = self._exception
    if exc is not None:
        text = _exc_message(exc) if self._tf_values else None
        return (ev.OP_FAILED, fid, _now(), tid, type(exc), text, *raised_at(exc))
    result = self._result
    return (ev.OP_RESOLVED, fid, _now(), tid, type(result), _value_repr(result) if self._tf_values else None)


def _collected(self: Any, fid: int, state: str) -> None:
    ring = self._tf_ring
    _live.pop(fid, None)
    ring.put((ev.OP_COLLECTED, fid, _now(), state, ring.was_incomplete(fid)))


def _bind(obj: Any, hooks: LoopHooks, rec: tuple[Any, ...]) -> None:
    """Give a new future or task its binding: ring, capture setting, record."""
    fid = rec[1]
    obj._tf_id = fid
    obj._tf_ring = ring = hooks.ring
    if ring is None:  # unbound meanwhile, by another thread
        _unbound(obj)
        return
    obj._tf_values = hooks.capture_values
    obj._tf_rec = rec
    _live[fid] = _weakref(obj)
    ring.put(rec)


def _unbound(obj: Any) -> None:
    obj._tf_id = 0
    obj._tf_ring = obj._tf_rec = None
    obj._tf_values = False


def _register(fut: Any, loop: Any, hooks: LoopHooks, label: str | None, frame: FrameType | None) -> None:
    """Give a new future its id and record ``created``."""
    if hooks.ring is None or not hooks.ring.admit():
        _unbound(fut)
        return
    code, lasti, maker, pcode, plasti, primitive = creation(frame)
    if label is None:
        label = primitive  # Lock#1: a primitive's waiter
    tid = _running_task_id(loop)
    rec = (
        ev.OP_CREATED,
        _next_id(),
        _now(),
        tid,
        False,
        code,
        lasti,
        _thread_id(),
        label,
        maker,
        hooks.route,
        hooks.captured(),
        pcode,
        plasti,
    )
    _bind(fut, hooks, rec)
    tb = fut._source_traceback
    if tb:
        strip_source_traceback(tb)


def _register_task(
    task: Any, loop: Any, hooks: LoopHooks, coro: object, name: str | None, frame: FrameType | None
) -> int:
    if hooks.ring is None or not hooks.ring.admit():
        _unbound(task)
        return 0
    code, lasti, _, pcode, plasti, _ = creation(frame)
    qualname = getattr(coro, "__qualname__", None)
    if not isinstance(qualname, str):
        qualname = type(coro).__qualname__
    pid = _running_task_id(loop)
    fid = _next_id()
    rec = (
        ev.OP_CREATED,
        fid,
        _now(),
        pid,
        True,
        code,
        lasti,
        _thread_id(),
        name,
        qualname,
        hooks.route,
        hooks.captured(),
        pcode,
        plasti,
    )
    _bind(task, hooks, rec)
    _arm_call_soon(hooks, loop)
    return fid


def _arm_call_soon(hooks: LoopHooks, loop: Any) -> None:
    """Shadow the loop's ``call_soon`` once it has a traced task, whose completion
    callback it must catch (see :meth:`LoopHooks.call_soon`): until then, and so
    on a loop whose tasks are all sampled out, the loop's own runs untouched."""
    shadow = hooks.call_soon_on_first_task
    if shadow is not None:
        hooks.call_soon_on_first_task = None
        try:
            loop.call_soon = shadow
        except Exception:  # a loop that takes no attributes is never hooked
            pass


def _hooks(loop: object) -> LoopHooks | None:
    """The hooks of a traced loop that records new futures, else None: those its
    class carries for it, else the ``__self__`` of the loop's ``create_future``,
    ``create_task`` or ``close`` (see ``_seam``)."""
    carried = carried_hooks(loop)
    if carried is not None:
        return carried if carried.ring is not None else None
    for name in ("create_future", "create_task", "close"):
        hooks = getattr(getattr(loop, name, None), "__self__", None)
        if isinstance(hooks, LoopHooks):
            return hooks if hooks.ring is not None else None
    return None


class TracedFuture(_Future):  # type: ignore[misc]
    """An :class:`asyncio.Future` that records its life.

    ``loop.create_future()`` returns one on a traced loop; construct one directly
    (``TracedFuture(label="db reply")``) where code would call ``asyncio.Future()``.
    On a loop that is not traced it records nothing. Behaviour, repr and errors
    are asyncio's.
    """

    __slots__ = ("_tf_id", "_tf_rec", "_tf_ring", "_tf_values")

    def __init__(self, *, loop: asyncio.AbstractEventLoop | None = None, label: str | None = None) -> None:
        if label is not None and not isinstance(label, str):  # a caller mypy did not check
            msg = f"TracedFuture(label=...): label must be a str or None, not {type(label).__name__}"  # type: ignore[unreachable]
            raise TypeError(msg)
        _future_init(self, loop=loop)
        hooks = _hooks(self._loop)
        if hooks is not None:
            _register(self, self._loop, hooks, label, _getframe(1))
        else:
            _unbound(self)

    add_done_callback = _add_done_callback
    remove_done_callback = _remove_done_callback

    def set_result(self, *args: Any, **kwargs: Any) -> None:
        try:
            _future_set_result(self, *args, **kwargs)
        except BaseException as exc:
            hide_own_frames(exc)
            raise
        fid = self._tf_id
        if fid:
            result = args[0] if args else kwargs["result"]
            tid = _running_task_id(self._loop)
            value = _value_repr(result) if self._tf_values else None
            self._tf_ring.put((ev.OP_RESOLVED, fid, _now(), tid, type(result), value))
            _live.pop(fid, None)

    def set_exception(self, *args: Any, **kwargs: Any) -> None:
        try:
            _future_set_exception(self, *args, **kwargs)
        except BaseException as exc:
            hide_own_frames(exc)
            raise
        fid = self._tf_id
        if fid:
            self._tf_ring.put(_outcome(self))
            _live.pop(fid, None)

    def cancel(self, *args: Any, **kwargs: Any) -> bool:
        try:
            if not _future_cancel(self, *args, **kwargs):
                return False
        except BaseException as exc:
            hide_own_frames(exc)
            raise
        fid = self._tf_id
        if fid:
            msg = args[0] if args else kwargs.get("msg")
            tid = _running_task_id(self._loop)
            self._tf_ring.put((ev.OP_CANCELLED, fid, _now(), tid, text(msg), canceller(_getframe(1))))
            _live.pop(fid, None)
        return True

    def __del__(self) -> None:
        fid = getattr(self, "_tf_id", 0)  # unset if __init__ failed
        if not fid:
            _future_del(self)
            return
        state = self._state
        log_tb = state == _FINISHED and self._log_traceback
        _collected(self, fid, "UNRETRIEVED" if log_tb else state)
        if log_tb:
            _future_del(self)  # asyncio's "exception was never retrieved"


# asyncio's reprs use the class name (f"<{type(fut).__name__} ...>") and a bound
# method's qualname ("cb=[Task.task_wakeup()]"): both must read as asyncio's.
TracedFuture.__name__ = TracedFuture.__qualname__ = "Future"


def _task_done(task: TracedTask) -> None:
    """The hidden first done callback of every TracedTask: records how it ended."""
    fid = task._tf_id
    if fid and not task._tf_ended:
        task._tf_ended = True
        task._tf_ring.put(_outcome(task))
        _live.pop(fid, None)


def _observe_completion(task: TracedTask) -> None:
    if task.done():
        _task_done(task)  # an eager task that finished in its first step
    else:
        _future_add_done_callback(task, _task_done)
    tb = task._source_traceback
    if tb:
        strip_source_traceback(tb)


class TracedTask(_Task):  # type: ignore[misc]
    """An :class:`asyncio.Task` that records its life (and the futures it awaits).

    ``loop.create_task()`` and ``asyncio.create_task()`` return one on a traced
    loop. Behaviour, repr, name numbering and errors are asyncio's.
    """

    __slots__ = ("_tf_ended", "_tf_id", "_tf_rec", "_tf_ring", "_tf_values")

    def __init__(
        self,
        coro: Any,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._tf_ended = False
        _unbound(self)
        if not kwargs.get("eager_start"):
            _Task.__init__(self, coro, loop=loop, name=name, **kwargs)
            hooks = _hooks(self._loop)
            if hooks is not None and _register_task(self, self._loop, hooks, coro, self.get_name(), _getframe(1)):
                _observe_completion(self)
            return
        # 3.12+ eager start: the first step runs inside __init__, and what it awaits
        # names this task, so the id and "created" must exist before it.
        running = loop or asyncio._get_running_loop()
        hooks = _hooks(running)
        fid = _register_task(self, running, hooks, coro, name, _getframe(1)) if hooks is not None else 0
        _Task.__init__(self, coro, loop=loop, name=name, **kwargs)
        if fid:
            if name is None:
                self._tf_ring.put((ev.OP_RENAMED, fid, _now(), None, self.get_name()))
            _observe_completion(self)

    add_done_callback = _add_done_callback
    remove_done_callback = _remove_done_callback

    @property
    def _callbacks(self) -> list[tuple[Callable[[Any], object], Any]] | None:
        # asyncio's repr reads _callbacks: hide the completion observer.
        callbacks = _future_callbacks.__get__(self)
        if not callbacks or callbacks[0][0] is not _task_done:
            return callbacks  # type: ignore[no-any-return]
        return callbacks[1:] or None

    def cancel(self, *args: Any, **kwargs: Any) -> bool:
        try:
            if not _task_cancel(self, *args, **kwargs):
                return False
        except BaseException as exc:
            hide_own_frames(exc)
            raise
        fid = self._tf_id
        if fid:
            msg = args[0] if args else kwargs.get("msg")
            tid = _running_task_id(self._loop)
            self._tf_ring.put((ev.OP_CANCEL_REQ, fid, _now(), tid, text(msg), canceller(_getframe(1), self)))
        return True

    def set_name(self, *args: Any, **kwargs: Any) -> None:
        try:
            _task_set_name(self, *args, **kwargs)
        except BaseException as exc:
            hide_own_frames(exc)
            raise
        fid = self._tf_id
        if fid:
            tid = _running_task_id(self._loop)
            self._tf_ring.put((ev.OP_RENAMED, fid, _now(), tid, self.get_name()))

    def __del__(self) -> None:
        fid = getattr(self, "_tf_id", 0)
        if fid:
            try:
                state = self._state
            except RuntimeError:  # an eager task whose __init__ failed
                state = None
            if state is not None:
                if not self._tf_ended and state != _PENDING:
                    _task_done(self)  # finished, but its loop closed before the callback ran
                log_tb = state == _FINISHED and self._log_traceback
                _collected(self, fid, "UNRETRIEVED" if log_tb else state)
        _task_del(self)  # asyncio's "Task was destroyed but it is pending!"


TracedTask.__name__ = TracedTask.__qualname__ = "Task"


def flush_pending_completions(loop: asyncio.AbstractEventLoop) -> None:
    """Record the end of tasks whose hidden done callback is still queued.

    Called when a loop closes: ``close()`` drops the ready queue, and with it the
    callbacks of tasks that finished in the loop's last iteration. Reads the
    ``_ready`` deque of asyncio's BaseEventLoop (3.11-3.14); other loops skip this.
    """
    ready = getattr(loop, "_ready", None)
    if ready is None:
        return
    for handle in list(ready):
        if getattr(handle, "_callback", None) is _task_done:
            args = getattr(handle, "_args", ())
            if args:
                _task_done(args[0])


_create_future, _create_task, _eager_create_task = asyncio_factories(TracedFuture, TracedTask)


# Hooks carried by their loop's class, by id(loop): what a Carrier and _hooks
# look up (see _seam, "carried by the loop's class"). The hooks hold their loop
# weakly, and leave when it is collected, or at detach().
_carried: dict[int, LoopHooks] = {}


def carried_hooks(loop: object) -> LoopHooks | None:
    """The hooks the class of ``loop`` carries for it, else None."""
    hooks = _carried.get(id(loop))
    return hooks if hooks is not None and hooks.loop is loop else None


class LoopHooks:
    """The per-loop ``create_future`` and ``create_task`` of a traced loop,
    configured only through :meth:`bind`; carried by the loop, or by its class
    (``carried_by=(cls, create_future, create_task)``)."""

    __slots__ = (
        "__weakref__",
        "_asyncio_loop",
        "_carrier_class",
        "_key",
        "_loop",
        "_loop_ref",
        "base_call_soon",
        "base_create_future",
        "base_create_task",
        "call_soon_on_first_task",
        "capture",
        "capture_values",
        "installations",
        "ring",
        "route",
        "sample_rate",
        "saved",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, carried_by: tuple[type, Any, Any] | None = None) -> None:
        if getattr(self, "_key", None) is not None:
            self.detach()  # initialised again
        self._key: int | None = None
        self._loop: Any = None
        self._loop_ref: weakref.ref[Any] | None = None
        self._carrier_class: type | None = None
        self.ring: Ring | None = None
        self.route = 0
        self.sample_rate = 1.0
        self.capture: Callable[[], object] | None = None
        self.capture_values = False
        self.installations: tuple[Any, ...] = ()  # kept for _install's bookkeeping
        self.saved: Any = None  # what _loops restores when the loop is no longer traced
        # The call_soon the program set on the loop itself (set by _loops), else
        # None: the class's, looked up at each call.
        self.base_call_soon: Callable[..., Any] | None = None
        # What to set as the loop's call_soon when its first traced task is made
        # (set by _loops), else None: see _arm_call_soon.
        self.call_soon_on_first_task: Callable[..., Any] | None = None
        if carried_by is not None:
            self._carry(loop, carried_by)
            return
        self._loop = loop
        self.base_create_future = loop.create_future
        self.base_create_task = loop.create_task
        # asyncio's own create_task code applies to loops that inherit it.
        self._asyncio_loop = isinstance(loop, asyncio.BaseEventLoop)

    def _carry(self, loop: Any, carried_by: Any) -> None:
        if not isinstance(carried_by, tuple) or len(carried_by) != 3 or not isinstance(carried_by[0], type):
            msg = f"carried_by must be (cls, create_future, create_task), not {carried_by!r}"
            raise TypeError(msg)
        cls, create_future, create_task = carried_by
        if not isinstance(loop, cls) or isinstance(loop, asyncio.BaseEventLoop):
            why = "it is not an instance"
            if isinstance(loop, cls):
                why = "asyncio's own loops carry their hooks themselves"
            msg = f"{loop!r} cannot be carried by {cls!r}: {why}"
            raise TypeError(msg)
        self._loop_ref = weakref.ref(loop, self._loop_gone)
        self._asyncio_loop = False
        self.base_create_future = create_future
        self.base_create_task = create_task
        previous = carried_hooks(loop)
        if previous is not None:
            previous.detach()  # the loop's earlier hooks are its hooks no more
        self._key = id(loop)
        self._carrier_class = cls
        _carried[self._key] = self

    def _loop_gone(self, ref: object) -> None:
        self.detach()

    @property
    def loop(self) -> Any:
        """The loop (None once a loop carried by its class is collected)."""
        ref = self._loop_ref
        return self._loop if ref is None else ref()

    @property
    def carrier_class(self) -> type | None:
        """The class whose Carriers dispatch to these hooks, else None (carried by
        the loop, or detached)."""
        key = self._key
        return self._carrier_class if key is not None and _carried.get(key) is self else None

    def detach(self) -> None:
        """Hooks carried by the loop's class: no longer the loop's."""
        key = self._key
        if key is not None and _carried.get(key) is self:
            del _carried[key]

    def _own(self, own: Callable[..., Any], loop: Any, *args: Any, **kwargs: Any) -> Any:
        """The loop's own method the hooks stand in for: bound to the loop, or
        (carried by the class) the class's, called with the loop first."""
        if self._loop_ref is None:
            return own(*args, **kwargs)
        return own(loop, *args, **kwargs)

    def _the_loop(self) -> Any:
        loop = self.loop
        if loop is None:
            msg = "these LoopHooks have no loop: it was collected"
            raise RuntimeError(msg)
        return loop

    def bind(
        self,
        ring: Any,
        route: int,
        sample_rate: float,
        capture: Callable[[], object] | None,
        capture_values: bool,
    ) -> None:
        """Point the loop at a ring (``None``: record nothing) and its settings;
        futures made before keep theirs."""
        if ring is not None and not isinstance(ring, Ring):
            msg = f"ring must be a tracedfuture._core._future.Ring or None, not {ring!r}"
            raise TypeError(msg)
        if not 0.0 <= sample_rate <= 1.0:
            msg = f"sample_rate must be between 0.0 and 1.0, not {sample_rate!r}"
            raise ValueError(msg)
        self.ring = ring
        self.route = route
        self.sample_rate = float(sample_rate)
        self.capture = capture
        self.capture_values = bool(capture_values)

    def captured(self) -> object:
        capture = self.capture
        if capture is None:
            return None
        try:
            return capture()
        except BaseException:  # an exporter's hook must not break future creation
            return None

    def create_future(self) -> asyncio.Future[Any]:
        try:
            return self._create_future(self._the_loop(), 2)
        except BaseException as exc:
            hide_own_frames(exc)
            raise

    def _create_future(self, loop: Any, depth: int) -> asyncio.Future[Any]:
        # _register, inlined: this is the hottest function of the package.
        ring = self.ring
        # Sampled out, or refused by its ring (full, or held while every
        # exporter's queue is full): exactly the loop's own future, as if untraced.
        if ring is None or (self.sample_rate < 1.0 and _random() >= self.sample_rate) or not ring.admit():
            return self._own(self.base_create_future, loop)  # type: ignore[no-any-return]
        if loop.get_debug() and self._asyncio_loop:
            # asyncio's own create_future, so that "created at" is its frame.
            return _create_future(loop)  # type: ignore[no-any-return]
        # C's __new__ and __init__, not TracedFuture's Python __init__ (see above).
        fut: Any = _future_new(TracedFuture)
        _future_init(fut, loop=loop)
        frame = _getframe(depth)  # the caller of create_future
        code: CodeType | None = frame.f_code
        entry = _code_kind.get(id(code))
        maker = label = None
        if entry is not None and entry[0] is code and entry[1] == PROGRAM:
            lasti = plasti = frame.f_lasti  # the common case, creation() inlined
            pcode: CodeType | None = code
        else:
            code, lasti, maker, pcode, plasti, label = creation(frame)
        task = _current_task(loop)  # _running_task_id, inlined
        tid = getattr(task, "_tf_id", None)
        if not tid and task is not None:
            tid = _task_id(task)
        context = None if self.capture is None else self.captured()
        fid = _next_id()
        rec = (
            ev.OP_CREATED,
            fid,
            _now(),
            tid,
            False,
            code,
            lasti,
            _thread_id(),
            label,
            maker,
            self.route,
            context,
            pcode,
            plasti,
        )
        fut._tf_id = fid
        fut._tf_ring = ring
        fut._tf_values = self.capture_values
        fut._tf_rec = rec
        _live[fid] = _weakref(fut)
        ring.put(rec)
        return fut  # type: ignore[no-any-return]

    def call_soon(self, *args: Any, **kwargs: Any) -> Any:
        """The loop's own ``call_soon``, called as it is, except for the completion
        callback of a TracedTask (see the top of this module), which records the
        end now and queues nothing."""
        if len(args) == 2 and args[0] is _task_done:
            try:
                _task_done(args[1])
            except Exception:  # recording must not break the task's own completion
                pass
            return None
        own = self.base_call_soon
        handle: Any
        try:
            if own is None:
                loop = self._the_loop()
                handle = type(loop).call_soon(loop, *args, **kwargs)
            else:
                handle = own(*args, **kwargs)
        except BaseException as exc:
            hide_own_frames(exc)
            raise
        if handle.__class__ is _Handle and handle._source_traceback:
            # Debug mode: asyncio took the stack from this frame. The caller's,
            # as long, is the one it takes without tracing.
            handle._source_traceback = _extract_stack(_getframe(1), len(handle._source_traceback))
        return handle

    def create_task(self, coro: Coroutine[Any, Any, _T], **kwargs: Any) -> asyncio.Task[_T]:
        """asyncio's own ``create_task`` building a TracedTask, or, when the user
        has set a task factory, that factory, untouched (3.12's eager factory is
        matched, and made to build a TracedTask)."""
        try:
            return self._create_task(self._the_loop(), coro, **kwargs)
        except BaseException as exc:
            hide_own_frames(exc)
            raise

    def _create_task(self, loop: Any, coro: Coroutine[Any, Any, _T], **kwargs: Any) -> asyncio.Task[_T]:
        try:
            ring = self.ring
            if ring is None or (self.sample_rate < 1.0 and _random() >= self.sample_rate) or not ring.admit():
                task = self._own(self.base_create_task, loop, coro, **kwargs)  # as create_future's
                tb = getattr(task, "_source_traceback", None)
                if tb:
                    strip_source_traceback(tb)  # debug mode: this frame is not the program's
                return task  # type: ignore[no-any-return]
            if not self._asyncio_loop:
                return self._foreign_create_task(loop, coro, kwargs)  # type: ignore[no-any-return]
            if EAGER_FACTORY is not None and loop._task_factory is EAGER_FACTORY:
                return _eager_create_task(loop, coro, **kwargs)  # type: ignore[no-any-return]
            return _create_task(loop, coro, **kwargs)  # type: ignore[no-any-return]
        except BaseException as exc:
            hide_own_frames(exc)
            raise

    def _foreign_create_task(self, loop: Any, coro: Any, kwargs: dict[str, Any]) -> Any:
        """A loop that is not asyncio's own (uvloop): its checks, then a TracedTask."""
        if loop.get_task_factory() is not None:
            return self._own(self.base_create_task, loop, coro, **kwargs)
        if loop.is_closed():
            msg = "Event loop is closed"
            raise RuntimeError(msg)
        return TracedTask(coro, loop=loop, **kwargs)


# create_task(coro, *, name=None, context=None): what the hooks take through a
# Carrier; anything else is the class's own method's to take or refuse.
_TASK_KEYWORDS = frozenset({"coro", "name", "context"})


class Carrier:
    """A method of a loop class, set on it by ``_loops``, that dispatches to the
    hooks the class carries for a loop (see ``_seam``); otherwise the class's own
    method, called as it is. What the program reads of it is that method's."""

    # Arguments typed Any: checked here, as the compiled one's are.
    def __init__(self, cls: Any, name: Any, own: Any, traced: Any) -> None:
        if not isinstance(cls, type) or not isinstance(name, str):
            msg = f"Carrier(cls, name, own, traced): a class and a name, not {cls!r}, {name!r}"
            raise TypeError(msg)
        if not callable(own) or (traced is not None and not callable(traced)):
            msg = "Carrier: own must be callable, and traced callable or None"
            raise TypeError(msg)
        if traced is None and name not in ("create_future", "create_task"):
            msg = f"Carrier: the hooks carry create_future and create_task only, not {name!r}"
            raise ValueError(msg)
        self.cls = cls
        self.name = name
        self.own = own
        self.traced = traced
        # a bound one reads "<bound method Loop.create_future of ...>", as untraced
        for attr in ("__name__", "__qualname__", "__module__", "__doc__"):
            value = getattr(own, attr, None)
            if value is not None:
                setattr(self, attr, value)
        self.__wrapped__ = own  # for inspect.signature

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        return self if obj is None else MethodType(self, obj)

    def __repr__(self) -> str:
        return repr(self.own)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        hooks = carried_hooks(args[0]) if args else None
        try:
            if hooks is None or hooks.carrier_class is not self.cls:
                made = self.own(*args, **kwargs)  # untraced, or a super() call from a subclass's own
            elif self.traced is not None:
                made = self.traced(self.own, *args, **kwargs)
            elif self.name == "create_future" and len(args) == 1 and not kwargs:
                made = hooks._create_future(args[0], 2)  # the frame that called this one
            elif (
                self.name == "create_task" and len(args) + ("coro" in kwargs) == 2 and _TASK_KEYWORDS.issuperset(kwargs)
            ):
                made = hooks._create_task(*args, **kwargs)
            else:
                made = self.own(*args, **kwargs)  # its own error
        except BaseException as exc:
            hide_own_frames(exc)
            raise
        if isinstance(made, _Future):
            tb = made._source_traceback
            if tb:
                strip_source_traceback(tb)  # debug mode: this frame is not the program's
        return made
