"""The event vocabulary: what a traced future or task says about its life.

Two shapes live here:

* the *raw record*, a small tuple the hot path appends (``_future.py``). Its first
  item is one of the ``OP_*`` integers below; it holds only ints, strings, types and
  code objects, never a user object, so recording never extends an object's life.
* the :class:`Event`, what exporters and users see, built from raw records off the
  hot path (``_pipeline.py``).
"""

# No `from __future__ import annotations` here: NamedTuple compiles each string
# annotation into a ForwardRef, 30 compilations that cost every traced start
# more than the rest of this module (the annotations below are all evaluable).
# Event and Site are made here, at import, never on first use: making a
# NamedTuple evals a string, and one made at exit (a trace's last records
# converted) resets CPython's note of an unhandled KeyboardInterrupt, so that an
# interrupted program would exit 1 instead of dying by SIGINT.
from typing import NamedTuple

from . import _seam

__all__ = [
    "ABANDONED",
    "AWAITED",
    "BLOCKED_LOOP",
    "CALLBACK_ADDED",
    "CALLBACK_REMOVED",
    "CALLBACK_SCHEDULED",
    "CANCELLED",
    "CANCEL_REQUESTED",
    "CAUGHT",
    "CREATED",
    "FAILED",
    "INCOMPLETE",
    "KINDS",
    "LINTS",
    "ORPHAN",
    "RENAMED",
    "RESOLVED",
    "SHUTDOWN_METHODS",
    "STALLED",
    "TEXT_FIELDS",
    "UNRETRIEVED",
    "Event",
    "Outcome",
    "Site",
    "State",
    "is_shutdown_task",
]

# Event kinds: the values of Event.kind.
CREATED = "created"
CALLBACK_ADDED = "callback_added"
CALLBACK_REMOVED = "callback_removed"
AWAITED = "awaited"
CALLBACK_SCHEDULED = "callback_scheduled"
RESOLVED = "resolved"
FAILED = "failed"
CANCEL_REQUESTED = "cancel_requested"
CANCELLED = "cancelled"
RENAMED = "renamed"
ABANDONED = "abandoned"
UNRETRIEVED = "unretrieved"
# An exception raised in a task that a framework caught, the task going on: a
# server's 500 for a request whose handler raised (tracedfuture.asgi).
CAUGHT = "caught"
# The history of a future has a hole: records were dropped (a full ring), or it
# began before a flight recorder's window. Never shown as pending on that account.
INCOMPLETE = "incomplete"
# Lints (tracedfuture.lints): findings about futures, recorded like any event.
STALLED = "stalled"
BLOCKED_LOOP = "blocked_loop"
ORPHAN = "orphan"
LINTS = frozenset({STALLED, BLOCKED_LOOP, ORPHAN})


class Outcome:
    """How a future's life ended, as the one fold of its events says (``_fold``),
    or that it had not ended when the events did: what the viewers, the pytest
    plugin and the structlog summary call it. Lower case, as event kinds are."""

    RESOLVED = "resolved"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"  # garbage-collected while still pending
    PENDING = "pending"
    INCOMPLETE = "incomplete"  # not finished as far as we know, but its history has a hole
    ALL = (RESOLVED, FAILED, CANCELLED, ABANDONED, PENDING, INCOMPLETE)
    FINISHED = frozenset({RESOLVED, FAILED, CANCELLED, ABANDONED})


class State:
    """What a snapshot (``tracedfuture.graph``) says of a future that is not done:
    upper case, as asyncio's own ``Future._state`` is."""

    PENDING = "PENDING"
    CANCELLING = "CANCELLING"  # a task asked to cancel, not done yet
    INCOMPLETE = "INCOMPLETE"  # from events whose history has a hole: maybe no longer pending


#: The methods whose coroutines ``asyncio.run``, ``asyncio.Runner`` and uvloop run
#: as tasks of their own once the program's main task is done.
SHUTDOWN_METHODS = ("shutdown_asyncgens", "shutdown_default_executor")


def is_shutdown_task(is_task: bool, coro: str | None, creator_id: int | None) -> bool:
    """Whether a task is one of the event loop's own shutdown steps, made outside
    any task (``BaseEventLoop.shutdown_asyncgens``, uvloop's
    ``Loop.shutdown_default_executor``...): the one rule the viewers, the pytest
    plugin and the exporters apply to a ``created`` event.

    >>> is_shutdown_task(True, "Loop.shutdown_default_executor", None), is_shutdown_task(True, "main", None)
    (True, False)
    """
    if not is_task or creator_id is not None or not coro:
        return False
    owner, dot, method = coro.rpartition(".")
    return bool(dot and owner) and method in SHUTDOWN_METHODS


KINDS = LINTS | frozenset(
    {
        CREATED,
        CALLBACK_ADDED,
        CALLBACK_REMOVED,
        AWAITED,
        CALLBACK_SCHEDULED,
        RESOLVED,
        FAILED,
        CANCEL_REQUESTED,
        CANCELLED,
        RENAMED,
        ABANDONED,
        UNRETRIEVED,
        INCOMPLETE,
        CAUGHT,
    }
)

# Raw record opcodes (position 0 of a raw record): their layouts are written
# once, in _seam.LAYOUTS.
OP_CREATED = _seam.OPS["CREATED"]
OP_CB_ADDED = _seam.OPS["CB_ADDED"]
OP_CB_REMOVED = _seam.OPS["CB_REMOVED"]
OP_RESOLVED = _seam.OPS["RESOLVED"]
OP_FAILED = _seam.OPS["FAILED"]
OP_CANCELLED = _seam.OPS["CANCELLED"]
OP_CANCEL_REQ = _seam.OPS["CANCEL_REQ"]
OP_RENAMED = _seam.OPS["RENAMED"]
OP_COLLECTED = _seam.OPS["COLLECTED"]
OP_LINT = _seam.OPS["LINT"]
OP_CAUGHT = _seam.OPS["CAUGHT"]


# The free-text fields of an Event: what a trace file escapes, what the reader
# checks as strings.
TEXT_FIELDS = ("name", "coro", "callback", "result_type", "value", "exc_type", "exc_msg", "msg", "canceller", "detail")


class Site(NamedTuple):
    """Where something happened: the first frame outside asyncio and tracedfuture."""

    filename: str
    lineno: int
    function: str

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno} in {self.function}"


class Event(NamedTuple):
    """One thing that happened to one future or task.

    Every event has ``kind``, ``future_id``, ``ts_ns`` and ``task_id``; ``is_task``
    and ``name`` are repeated on every event so that a single event can be shown on
    its own. The other fields are ``None`` unless the kind fills them:

    ========================  ====================================================
    kind                      fields
    ========================  ====================================================
    ``created``               ``site``, ``program_site``, ``thread_id``, ``coro``
                              and ``parent_id`` (tasks), ``name`` (task name or
                              future label);
                              for a future that asyncio's own code made on the
                              program's behalf, ``coro`` names that function
                              (``SubprocessStreamProtocol.__init__``)
    ``callback_added``        ``callback``
    ``callback_removed``      ``callback``
    ``awaited``               ``callback`` (the wakeup), ``awaiter_id``
    ``callback_scheduled``    ``callback``, ``awaiter_id`` (when it is a wakeup)
    ``resolved``              ``result_type``, ``value`` (only with capture_values)
    ``failed``                ``exc_type``, ``exc_msg`` (only with capture_values),
                              ``raise_site``, ``raise_program_site``
    ``cancel_requested``      ``msg``, ``canceller_id``, ``canceller``,
                              ``waiting_site`` (tasks)
    ``cancelled``             ``msg``, ``canceller_id``, ``canceller``,
                              ``waiting_site``
    ``caught``                ``exc_type``, ``exc_msg`` (only with
                              capture_values), ``raise_site``,
                              ``raise_program_site``: an exception raised in
                              the task that a framework caught (a server's
                              500); the task goes on
    ``renamed``               ``name`` (the new name)
    ``abandoned``             ``site``, ``age_ns``, ``awaiter_id`` (last awaiter)
    ``unretrieved``           ``site``, ``age_ns``, ``exc_type``
    ``stalled``               ``chain`` (awaiting task ids down to this future),
                              ``age_ns``, ``detail``
    ``blocked_loop``          ``age_ns`` (how long), ``detail`` (the loop thread's
                              stack), ``task_id`` (the task that was running);
                              ``future_id`` is 0
    ``orphan``                ``site``, ``age_ns``
    ``incomplete``            ``detail`` (why): some of the future's records were
                              lost, or its history began before the recorded
                              window; it is not pending on that account
    ========================  ====================================================

    ``site`` is the first frame outside asyncio and tracedfuture (a library's,
    maybe); ``program_site`` the first frame of the program's own code up the stack
    at creation (``None`` when there was none; what counts as the program:
    ``install(app_modules=...)``). ``raise_site`` is the innermost entry of a
    failure's traceback, ``raise_program_site`` the innermost one in the program.
    ``waiting_site`` is the program's line where a cancelled task was waiting
    when ``cancel()`` was called (the innermost frame of the program's own code
    down its coroutines; ``None`` when it was not waiting there).

    ``context`` (on ``created``) is what the installation's exporters asked to
    capture when the future was made, through an optional ``capture()`` method
    (the OpenTelemetry exporter captures the current span's context). It stays in
    the process: trace files leave it out.

    ``task_id`` is the id of the task that was running when it happened (``None``
    in a plain callback). ``ts_ns`` is :func:`time.monotonic_ns`; the trace's wall
    clock anchor (see :class:`tracedfuture.Installation`) converts it to wall time.
    """

    kind: str
    future_id: int
    ts_ns: int
    task_id: int | None = None
    is_task: bool = False
    name: str | None = None
    site: Site | None = None
    thread_id: int | None = None
    coro: str | None = None
    parent_id: int | None = None
    callback: str | None = None
    awaiter_id: int | None = None
    result_type: str | None = None
    value: str | None = None
    exc_type: str | None = None
    exc_msg: str | None = None
    msg: str | None = None
    canceller_id: int | None = None
    canceller: str | None = None
    age_ns: int | None = None
    chain: tuple[int, ...] | None = None
    detail: str | None = None
    context: object = None
    program_site: Site | None = None
    raise_site: Site | None = None
    raise_program_site: Site | None = None
    waiting_site: Site | None = None

    def fields(self) -> dict[str, object]:
        """The event as a dict without its ``None`` fields (sites as strings)."""
        out: dict[str, object] = {}
        for key, value in zip(self._fields, self, strict=True):
            if value is None:
                continue
            out[key] = str(value) if isinstance(value, Site) else value
        return out


# Public as tracedfuture.Site and tracedfuture.Event: reprs, docs and pickles
# name the package (tracedfuture/__init__.py).
Site.__module__ = Event.__module__ = "tracedfuture"
