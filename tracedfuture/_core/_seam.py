"""The seam: what an implementation of the hot path provides, and the records it makes.

tracedfuture has two implementations of its hot path, chosen at import like
``asyncio.futures`` picks ``_asyncio.Future`` over ``_PyFuture``:

* ``tracedfuture._core._future``, pure Python: the reference, and the fallback;
* ``tracedfuture._core._cfuture``, a C extension built by the package's own build.

``tracedfuture._core`` imports one of them (``TRACEDFUTURE_PURE_PYTHON=1`` forces
the reference) and the rest of the package only ever talks to it through the names
listed on this page. A new implementation is a matter of implementing this page;
the same tests run against both (``tests/conftest.py``'s ``impl`` parameter).

What an implementation module provides
======================================

``IMPLEMENTATION``
    ``"python"`` or ``"c"``.
``STEP_REASON``
    ``""`` when a ``TracedTask`` steps itself (its own step and wakeup, which
    record its end where it happens: the compiled core, on a Python whose
    ``_asyncio`` Task layout it verified at import), else why asyncio's step runs
    it, in one line. Under asyncio's step the end of a task is seen through a
    hidden first done callback, which the loop's ``call_soon`` (below) catches.
``CLOCK``
    What the hot path reads for a record's timestamp: ``"monotonic"``
    (``time.monotonic_ns()``), or ``"tsc"`` (the compiled core where the TSC is
    invariant and the kernel's clock source: raw ticks, converted to monotonic
    nanoseconds as records leave the ring, so that every reader sees the same
    unit either way; ``TRACEDFUTURE_CLOCK=monotonic`` opts out).
``TracedFuture``, ``TracedTask``
    Subclasses of ``asyncio.Future`` / ``asyncio.Task`` whose behaviour, reprs and
    errors are asyncio's (``__name__`` and ``__qualname__`` read ``Future`` /
    ``Task``). Built directly, they record on a traced loop and not elsewhere.
``LoopHooks(loop, carried_by=None)``
    The per-loop ``create_future()``, ``create_task(coro, **kwargs)`` and
    ``call_soon()`` of a traced loop, configured only through :meth:`bind` (never by reading module globals):
    ``hooks.bind(ring, route, sample_rate, capture, capture_values)``. ``ring`` is a
    :class:`Ring` of the same implementation, or ``None`` to record nothing;
    ``capture`` is ``None`` or a callable whose result goes into ``created``;
    ``capture_values`` decides whether results and exception messages of *this
    loop's* futures are turned into text. A future remembers its loop's ring and
    capture setting at creation: rebinding affects only futures made afterwards.
    ``hooks.call_soon(*args, **kwargs)`` stands in for the loop's ``call_soon``
    (``hooks.base_call_soon``, an attribute the program had set on the loop, or
    else ``type(loop).call_soon(loop, ...)``, looked up at each call; called as it
    is, with no frame of its own in a traceback or a debug-mode source
    traceback), except for the
    completion callback of a ``TracedTask`` stepped by asyncio (``STEP_REASON``),
    which asyncio schedules as the task ends: that end is recorded there and then,
    and nothing is queued. A Handle
    in the ready queue would keep the finished task alive one loop iteration
    longer than the program does, and move asyncio's "Task exception was never
    retrieved" after the program's next lines.
    ``_loops`` does not set this ``call_soon`` on the loop itself: it gives it to
    the hooks as ``hooks.call_soon_on_first_task``, and the hooks set it as the
    loop's ``call_soon`` (once, then the attribute reads ``None``) when they record
    the loop's first ``TracedTask`` stepped by asyncio. A loop whose tasks step
    themselves, or are all sampled out, keeps its own ``call_soon``, untouched.
    The hooks also carry ``installations`` and ``saved``, plain attributes for
    ``_install``'s and ``_loops``'s bookkeeping that the hot path never reads.
    A loop's hooks are carried in one of two ways (``_loops`` chooses):

    * by the loop (``carried_by=None``): they are the ``__self__`` of its
      ``create_future``, ``create_task`` or ``close`` (the first of them the
      program did not replace) while it is traced, the hooks' own methods or
      ``_loops``'s wrappers set on the loop; the hooks hold the loop, and
      stand in for ``loop.create_future`` and ``loop.create_task`` as they
      were when made (bound to the loop). No attribute of our own goes on the
      loop (3.13 keeps a loop's attributes in a dict past its class's shared
      keys, which slows all of asyncio's code on it);
    * by the loop's class (``carried_by=(cls, create_future, create_task)``, for
      a loop that is not asyncio's own): ``cls``'s Carriers (below) dispatch
      to them, and ``create_future`` and ``create_task`` are the class's own,
      which they call with the loop first. They hold the loop weakly, and are
      its hooks (``carried_hooks(loop)``, ``hooks.carrier_class``) until
      ``hooks.detach()`` or until the loop is collected (``hooks.loop`` is then
      ``None``, and their methods raise ``RuntimeError``). A loop can have only
      one: new ones replace the old.

    Either way, that is how futures and tasks built directly find them.
``Carrier(cls, name, own, traced)``
    A method of the loop class ``cls``, which ``_loops`` sets on it as ``name``
    while loops of it are traced. ``loop.name(*args, **kwargs)`` is, for a
    ``loop`` whose hooks ``cls`` carries, ``traced(own, loop, *args,
    **kwargs)``, or with ``traced`` None (``create_future``, ``create_task``)
    what the hooks' own method does: a future or task head sampling leaves out
    (or the ring refuses) is made by the class's own method, called with the
    program's arguments as they came, as are arguments the hooks do not take
    (its own error). For any other loop (untraced, or carried by a subclass
    that called up through ``super()``) it is ``own(loop, *args, **kwargs)``.
    What the program reads of it (repr, ``__name__``, ``__qualname__``,
    ``__module__``, ``__doc__``, ``__wrapped__``) is ``own``'s, bound or not;
    the compiled one is a method descriptor with no frame of its own, which
    the program's ``loop.create_future()`` calls as specialized as it calls
    ``own``.
``carried_hooks(loop)``
    The hooks the class of ``loop`` carries for it, else ``None``.
``RecordBatch``
    What :meth:`Ring.take_batch` returns: the records taken, oldest first, a
    sequence whose items are the tuples of :data:`LAYOUTS` (made on access by the
    compiled one, which holds C structs). ``RecordBatch(records)`` makes one of
    tuples; ``RecordBatch.join(*parts)`` one of several batches or lists;
    ``batch.shed(untold, holed, room, reserve, unit, max_screened)`` is what an
    exporter's full queue keeps, a whole future at a time (``_ring.RecordBatch.shed``
    says how; the compiled one decides alike, in C).
``Ring(max_bytes, *, streaming, on_full=None, history=True)``
    The raw record store of one route, bounded in bytes (see below).
    ``Ring.record_size`` is a class attribute: the bytes the largest record takes
    (the C struct's size, a CREATED's; for tuples, an honest estimate).
``flush_pending_completions(loop)``
    Record the end of tasks whose completion callback is still in the loop's ready
    queue (queued while the loop was not traced), before ``close()`` drops it.
``future_id(obj)``
    The id events give a future or task, or ``None`` when it is not traced. The only
    way to read an id.
``assign_id(obj)``
    The id of a future or task, given on first sight to one tracedfuture did not
    make (a loop subclass's own ``create_task``, a user's task factory), so that
    events can name it as an awaiter or canceller.
``live()``
    A list of the traced futures and tasks that exist and are not done, oldest
    first (strong references, taken atomically under the GIL): what
    ``snapshot()``, the lints and the control socket read, with no conversion.
``info(obj)``
    ``(future_id, created_ns, code, lasti, creator_task_id, label, program_code,
    program_lasti)`` of a traced future or task, else ``None``; ``label`` is a
    future's label or ``None``.
``LineWriter``
    ``None`` (the pure-Python implementation), or a compiled trace-line writer:
    ``LineWriter(helper, *, redacts=False)`` with ``lines(records) -> (bytes,
    count)``, ``write(records, fd) -> (count, written, error, data)`` (the same
    lines appended to a file descriptor in the same call) and ``clear()``, the
    twin of ``_pipeline._lines.Lines``, which it is
    given as ``helper`` (it writes the common records itself and hands a future
    to the helper, ``helper.adopt(...)``, when its history needs anything else).
    It reads a :class:`RecordBatch`'s structs in place and formats (and writes)
    with the GIL released (taking it back for a first-seen site or type, and to
    call the helper, once per batch).
    ``_pipeline._lines.make_lines`` picks it.
``EventFold``
    ``None`` (the pure-Python implementation), or a compiled fold of records into
    events: ``EventFold(helper, site_of, type_name, event, *, redacts=False)``
    with ``events(records)`` (a sequence of ``event`` whose items are made when
    read), ``clear()`` and ``held()``; the twin of ``_pipeline._convert.Converter``,
    which it is given as ``helper`` (futures whose history needs more than the
    common records are handed over, ``helper.adopt(...)``, and converted there).
``TailPolicy``
    ``None`` (the pure-Python implementation), or compiled tail sampling:
    ``TailPolicy(slow_ns, *, linger=10000, max_held=500000)`` with
    ``feed(records, now_ns)`` and ``flush(now_ns)`` (each a :class:`RecordBatch`
    of the records to convert), ``forgotten``, ``slow_ns`` and ``len()``; the twin
    of ``_pipeline._tail.TailPolicy``, the reference, deciding alike on the
    records' structs with no Python object per record or per held future.
    ``_pipeline._tail.make_tail`` picks it.
``EventReader``
    ``None`` (the pure-Python implementation), or a compiled trace reader:
    ``EventReader(event, site, fields, kinds, loop_kinds)`` with ``event(obj)``,
    the :class:`Event` that ``trace._checked_event``, the reference, makes of
    the object a trace line parsed to, when it is an event as the writer writes
    one, else ``None`` (the reference then reads it, and names what is wrong).
    ``fields`` maps each field a line may have to ``(index in event, JSON
    type)``, the reference's own table. ``trace.py`` picks it.
``Waker``, ``write(fd, data)``
    What tracing's own threads wait on (the drain: ``set``, ``clear``,
    ``is_set`` and ``wait(timeout)`` of ``threading.Event``) and how a trace
    file is written (``os.write``'s return and errors). The reference's are
    ``threading.Event`` and ``os.write``. The compiled core's take the GIL back
    by asking for it: the program's thread hands it over when it has just made
    a future or task on a traced loop (``_core/_gil.h``), instead of a switch interval
    (5 ms) later. Everything the drain does with the GIL released (take_batch's
    copy, the line writer, the event fold, tail sampling) takes it back alike.
``caught(task, exc)``
    Record that a framework caught ``exc``, an exception raised in the traced
    ``task``, which goes on (a server turning a request's exception into a 500):
    a ``CAUGHT`` record on the task's ring, with ``FAILED``'s fields (the message
    only with the task's ``capture_values``; where it was raised, from
    ``_frames.raised_at``). Returns whether it recorded (``False`` for an untraced
    task). Called off the hot path (``tracedfuture.asgi``), never raises.
``set_text(value_repr, exc_message)``
    Sets the two functions that turn a result and an exception into text when a
    future's ``capture_values`` is on (they must not raise; both implementations
    default to a ``repr()`` / ``str()`` truncated to 200 characters).

Records
=======

A record is written by the hot path and read by ``_pipeline`` / ``_fold``. In a
:class:`Ring` it is a C struct packed into the words it uses (``_cfuture``) or a tuple (``_future``);
:meth:`Ring.take` and :meth:`Ring.window` always return tuples laid out as below.
Items are only ints, strings, types, code objects, ``None`` and what ``capture``
returned, never a user's future, result or exception: recording never extends the
life of a user object.

Every record starts ``(op, future_id, ts_ns, ...)``; ``ts_ns`` is
``time.monotonic_ns()``. :data:`LAYOUTS` names the fields after those three, op by
op: the one place the layout is written (``_events`` re-exports the ``OP_*``
numbers, ``_cfuture.c`` fills its struct in the same order, and
``tests/test_seam.py`` checks that both implementations produce these shapes).

``task_id`` is the id of the task running when the record was made, or ``None``
outside any task and in the record of a task's own end (which always happens
in its own step). ``CREATED.name`` is a task's name or a future's label; ``coro`` a task's coroutine
qualname, or, for a future that asyncio's own code made on the program's behalf
(``asyncio.sleep``, ``SubprocessStreamProtocol``), the qualname of that asyncio
function (``None`` when the program made it); ``route`` the ring's route (which installations receive the events).
``CREATED.code``/``lasti`` is the first frame outside asyncio and tracedfuture (a
library's, maybe), ``program_code``/``program_lasti`` the first frame up the stack
of the program's own code (``_frames.classify``), the same frame when the program
made the future itself, ``None`` when no program frame was on the stack.
``COLLECTED.incomplete`` is true when the ring had to drop one of the future's
records (see below): its history has a hole, and viewers say so.

Rings
=====

A ring holds at most ``max_bytes // record_size`` records (``Ring.capacity``).

* ``take()`` returns the records written since the last ``take()``, oldest first;
  ``take_batch()`` the same records as one ``RecordBatch`` (the drain's way: the
  compiled ring makes no tuple for them).
* ``window(limit=None)`` returns every record still held, taken or not, oldest
  first (only the newest ``limit``, if given): the flight recorder's view.
  Records older than the window were overwritten. With ``history=False`` (no
  flight recorder reads the route), taken records are let go at ``take()``: the
  window holds only unread ones, and the compiled ring's memory stays as small
  as its reader's backlog (its slots are allocated as records need them, up to
  the capacity; past 4,096 unread records it hurries its reader, ``on_full``,
  before it grows further).
* ``append(record)`` writes a record made off the hot path (a lint), from any
  thread.
* ``streaming=True``: someone takes records and needs complete histories. A new
  future is traced only while fewer than 7/8 of the capacity is unread; otherwise
  it is handed out untraced (``untraced`` counts them) and ``on_full()`` is
  called so that the reader hurries (once until the next ``take()``: a refusal
  costs no call, so a reader that cannot keep up makes new futures cheap). A record of an already traced future that
  finds the ring full of unread records is dropped (``dropped``), and the future
  is marked: its ``COLLECTED`` record says ``incomplete``.
  ``hold(True)`` (the reader will take nothing now: every exporter's queue is
  full) refuses every new future at once, as if the ring were full, until
  ``hold(False)``: a stuck exporter costs the program no recording. A ring
  with ``history`` (a flight recorder reads it) is never held.
* ``streaming=False`` (a flight recorder alone): the oldest records are
  overwritten (``overwritten`` counts those overwritten before anyone took
  them; taken records leaving the window are not counted); nothing is ever
  refused.
* ``append()`` follows the same rules, but marks no future incomplete.
* ``stats()`` returns ``{"capacity", "record_size", "written", "taken",
  "overwritten", "dropped", "untraced"}``.
* ``clear()`` forgets everything held (after ``fork()``, in the child).

A ring is written under the GIL by whichever thread runs the loop; ``take()``,
``window()``, ``append()`` and ``stats()`` may be called from any thread.
(Free-threaded builds are not supported by either implementation.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any, Protocol

__all__ = ["LAYOUTS", "OPS", "Implementation", "LoopHooksLike", "RecordBatchLike", "RingLike"]

# op -> (name, the fields after (op, future_id, ts_ns))
LAYOUTS: dict[int, tuple[str, tuple[str, ...]]] = {
    0: (
        "CREATED",
        (
            *("task_id", "is_task", "code", "lasti", "thread_id", "name", "coro", "route", "context"),
            *("program_code", "program_lasti"),  # the first frame of the program's own code, or None
        ),
    ),
    1: ("CB_ADDED", ("task_id", "callback_name", "awaiter_id")),  # awaiter_id: a task's wakeup, else None
    2: ("CB_REMOVED", ("task_id", "callback_name", "removed_indices")),  # tuple of positions, before removal
    3: ("RESOLVED", ("task_id", "result_type", "value_repr")),  # value_repr None unless capture_values
    4: (
        "FAILED",
        (
            *("task_id", "exc_type", "exc_msg"),  # exc_msg None unless capture_values
            # where it was raised: the traceback's innermost entry, and its innermost
            # entry in the program's own code (codes None when unknown)
            *("raise_code", "raise_lasti", "raise_program_code", "raise_program_lasti"),
        ),
    ),
    # who: (code, lasti, user_code, user_lasti, waiting_code, waiting_lasti) or None:
    # who called cancel(), and (a task's request) the program's line it waited at
    5: ("CANCELLED", ("task_id", "msg", "who")),
    6: ("CANCEL_REQ", ("task_id", "msg", "who")),
    7: ("RENAMED", ("task_id", "name")),
    8: ("COLLECTED", ("state", "incomplete")),  # "PENDING" / "UNRETRIEVED" / "FINISHED"; incomplete: bool
    9: ("LINT", ("kind", "task_id", "chain", "detail", "age_ns")),  # future_id 0: loop-wide
    # An exception a framework caught in a task that goes on (caught()): FAILED's fields
    10: (
        "CAUGHT",
        (
            *("task_id", "exc_type", "exc_msg"),
            *("raise_code", "raise_lasti", "raise_program_code", "raise_program_lasti"),
        ),
    ),
}
OPS = {name: op for op, (name, _) in LAYOUTS.items()}


class RecordBatchLike(Protocol):
    """A :class:`RecordBatch` of either implementation."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int, /) -> tuple[Any, ...]: ...
    def __iter__(self) -> Iterator[tuple[Any, ...]]: ...
    def shed(
        self, untold: dict[int, None], holed: dict[int, None], room: int, reserve: int, unit: int, max_screened: int, /
    ) -> tuple[RecordBatchLike, int, int, int, list[tuple[int, int]]]: ...


class RingLike(Protocol):
    """A :class:`Ring` of either implementation, as the pipeline uses it."""

    capacity: int
    record_size: int

    def take(self) -> list[tuple[Any, ...]]: ...
    def take_batch(self) -> RecordBatchLike: ...
    def append(self, record: tuple[Any, ...]) -> None: ...
    def window(self, limit: int | None = None) -> list[tuple[Any, ...]]: ...
    def stats(self) -> dict[str, int]: ...
    def hold(self, held: bool) -> None: ...
    def clear(self) -> None: ...


class LoopHooksLike(Protocol):
    """A :class:`LoopHooks` of either implementation, as ``_install`` and ``_loops`` use it."""

    # Plain attributes: _install's bookkeeping (the hot path never reads it), and
    # the call_soon the program had set on the loop itself (set by _loops).
    installations: tuple[Any, ...]
    saved: Any
    base_call_soon: Any
    call_soon_on_first_task: Any

    @property
    def carrier_class(self) -> type | None: ...
    def bind(self, ring: Any, route: int, sample_rate: float, capture: Any, capture_values: bool) -> None: ...
    def create_future(self) -> asyncio.Future[Any]: ...
    def create_task(self, coro: Any, **kwargs: Any) -> asyncio.Task[Any]: ...
    def call_soon(self, *args: Any, **kwargs: Any) -> Any: ...
    def detach(self) -> None: ...


class Implementation(Protocol):
    """The module an implementation provides (``_future`` or ``_cfuture``): mypy
    checks both against it (``_core/__init__.py``), the compiled one through its
    stub, ``_cfuture.pyi``."""

    IMPLEMENTATION: str
    STEP_REASON: str
    CLOCK: str

    @property
    def TracedFuture(self) -> type[asyncio.Future[Any]]: ...
    @property
    def TracedTask(self) -> type[asyncio.Task[Any]]: ...
    @property
    def LoopHooks(self) -> Callable[..., LoopHooksLike]: ...
    @property
    def Carrier(self) -> Callable[[type, str, Any, Any], Any]: ...
    def carried_hooks(self, loop: object) -> LoopHooksLike | None: ...
    @property
    def Ring(self) -> Callable[..., RingLike]: ...
    @property
    def RecordBatch(self) -> Any: ...

    def flush_pending_completions(self, loop: asyncio.AbstractEventLoop) -> None: ...
    def future_id(self, obj: object) -> int | None: ...
    def assign_id(self, obj: object) -> int | None: ...
    def live(self) -> list[Any]: ...
    def info(self, obj: object) -> tuple[int, int, Any, int, int | None, str | None, Any, int] | None: ...
    def set_text(self, value_repr: Any, exc_message: Any) -> None: ...
    def caught(self, task: object, exc: BaseException) -> bool: ...
    @property
    def LineWriter(self) -> Callable[..., Any] | None: ...
    @property
    def EventFold(self) -> Callable[..., Any] | None: ...
    @property
    def TailPolicy(self) -> Callable[..., Any] | None: ...
    @property
    def EventReader(self) -> Callable[..., Any] | None: ...
    @property
    def Waker(self) -> Callable[[], Any]: ...
    def write(self, fd: int, data: bytes | memoryview, /) -> int: ...
    def stop_prefaulting(self) -> None: ...
