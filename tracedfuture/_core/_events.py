"""The event vocabulary: what a traced future or task says about its life.

Two shapes live here:

* the *raw record*, a small tuple the hot path appends (``_future.py``). Its first
  item is one of the ``OP_*`` integers below; it holds only ints, strings, types and
  code objects, never a user object, so recording never extends an object's life.
* the :class:`Event`, what exporters and users see, built from raw records off the
  hot path (``_pipeline``). It and :class:`Site` are declared in ``_event.py`` and
  made when first asked for here: a trace file's lines are written from the raw
  records, and a traced start that needs neither skips making them (a
  NamedTuple's constructor is compiled when it is made).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _seam

if TYPE_CHECKING:
    from ._event import Event, Site

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
    "EVENT_FIELDS",
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

#: The fields of an :class:`Event`, in order: what the pipeline indexes records by,
#: without making the class (``_event.py`` holds the class to them).
EVENT_FIELDS = (
    "kind",
    "future_id",
    "ts_ns",
    "task_id",
    "is_task",
    "name",
    "site",
    "thread_id",
    "coro",
    "parent_id",
    "callback",
    "awaiter_id",
    "result_type",
    "value",
    "exc_type",
    "exc_msg",
    "msg",
    "canceller_id",
    "canceller",
    "age_ns",
    "chain",
    "detail",
    "context",
    "program_site",
    "raise_site",
    "raise_program_site",
    "waiting_site",
)


def __getattr__(name: str) -> Any:
    # Event and Site, made when first asked for (PEP 562; see the module's docs).
    if name in ("Event", "Site"):
        from . import _event

        globals().update(Event=_event.Event, Site=_event.Site)
        return globals()[name]
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
