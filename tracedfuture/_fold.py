"""The one fold of the event stream: events in, one :class:`FutureState` per future out.

Everything that asks "what state is this future in?" asks it here, so that the
answer is the same everywhere: :func:`tracedfuture.graph.from_events`, the
viewers (``tracedfuture tree/stats/html/perfetto``), the pytest plugin's report
and strict mode, and the structlog exporter's summary mode.

The meanings, once:

* **finished**: the future resolved, failed or was cancelled, or it was
  garbage-collected while pending (``abandoned``). A callback added after it
  finished is run at once (``callback_scheduled``) and does not make it pending
  again.
* **pending**: created in this history and not finished.
* **incomplete**: not finished as far as these events tell, but its history has
  a hole, so nobody can say it is pending: it starts without ``created`` (a
  flight recorder's window, a trace started mid-run), or the recorder marked it
  ``incomplete`` (events dropped under load). Shown as "incomplete", never as
  "pending". A future that did finish keeps its outcome, with ``incomplete`` set.
* **awaited by**: the tasks whose wakeup is among its callbacks now (a pending
  future); :attr:`FutureState.awaits` keeps every await that ever happened.
* **internal**: created by asyncio's own code (its site is in the ``asyncio``
  package), such as ``SubprocessStreamProtocol._stdin_closed``: shown, never
  blamed on a user's line.

>>> from tracedfuture._core._events import Event
>>> fold = Fold()
>>> for e in [Event("created", 1, 10, is_task=True), Event("resolved", 1, 20, is_task=True),
...           Event("callback_added", 1, 30, is_task=True, callback="done"),
...           Event("callback_scheduled", 1, 30, is_task=True, callback="done")]:
...     _ = fold.apply(e)
>>> fold.states[1].outcome, [s.id for s in fold.pending()]
('resolved', [])
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ._core import _events as ev
from ._core._events import Event, Outcome, Site, is_shutdown_task
from ._text import is_asyncio

__all__ = [
    "Fold",
    "FutureState",
]


# The recorder may mark a future whose history lost events: as a kind of its
# own, or as a field of the event that says so (the converter picks one).
_INCOMPLETE_KIND = getattr(ev, "INCOMPLETE", "incomplete")
_INCOMPLETE_FIELD = "incomplete" in Event._fields
# The creating call chain, innermost first, when the core records it (the site
# alone is the first frame outside asyncio, which hides asyncio's own futures).
_FRAMES_FIELD = "frames" in Event._fields
_EMPTY: tuple[()] = ()
# Kinds as module constants: apply() runs once per event and compares a dozen.
_CREATED, _AWAITED, _CALLBACK_ADDED, _CALLBACK_SCHEDULED = (
    ev.CREATED,
    ev.AWAITED,
    ev.CALLBACK_ADDED,
    ev.CALLBACK_SCHEDULED,
)
_RESOLVED, _FAILED, _CANCELLED, _CALLBACK_REMOVED = ev.RESOLVED, ev.FAILED, ev.CANCELLED, ev.CALLBACK_REMOVED
_CANCEL_REQUESTED, _RENAMED, _ABANDONED, _UNRETRIEVED = ev.CANCEL_REQUESTED, ev.RENAMED, ev.ABANDONED, ev.UNRETRIEVED
_LINTS = ev.LINTS
_CAUGHT = ev.CAUGHT
_NEVER = 1 << 64  # no event yet: later than any timestamp


class FutureState:
    """Everything the events say about one future or task.

    ``awaits`` lists ``(task_id, ts_ns)`` for each task that started awaiting it;
    ``wakes`` lists ``(task_id, ts_ns)`` for each task its completion woke up;
    ``callbacks`` the ``(callback, awaiter_id)`` it holds now (empty once finished).
    ``creator_id`` is the task that was running when it was created, ``parent_id``
    (tasks only) the task that created it as the core recorded it. ``start_ns`` is
    its ``created`` (or its first event, when ``created`` is missing), ``end_ns``
    its outcome's, ``last_ns`` its last event's.
    """

    __slots__ = (
        "age_ns",
        "awaits",
        "callbacks",
        "callbacks_added",
        "cancel_requests",
        "canceller",
        "canceller_id",
        "caught",
        "coro",
        "creator_id",
        "end_ns",
        "exc_msg",
        "exc_type",
        "frames",
        "id",
        "incomplete",
        "is_task",
        "last_ns",
        "lints",
        "msg",
        "name",
        "outcome",
        "parent_id",
        "program_site",
        "raise_program_site",
        "raise_site",
        "result_type",
        "site",
        "start_ns",
        "thread_id",
        "unretrieved",
        "value",
        "waiting_site",
        "wakes",
    )

    def __init__(self, future_id: int, is_task: bool, name: str | None, start_ns: int) -> None:
        self.id = future_id
        self.is_task = is_task
        self.name = name
        self.site: Site | None = None
        # the program's own line that made it, and where a failure was raised
        # (the innermost frame, and the innermost one in the program)
        self.program_site: Site | None = None
        self.raise_site: Site | None = None
        self.raise_program_site: Site | None = None
        self.frames: tuple[Site, ...] = ()
        self.coro: str | None = None
        self.parent_id: int | None = None
        self.creator_id: int | None = None
        self.thread_id: int | None = None
        self.start_ns = start_ns
        self.end_ns: int | None = None
        self.last_ns = start_ns
        self.outcome = Outcome.PENDING
        self.incomplete = False
        self.result_type: str | None = None
        self.value: str | None = None
        self.exc_type: str | None = None
        self.exc_msg: str | None = None
        self.msg: str | None = None
        self.canceller_id: int | None = None
        self.canceller: str | None = None
        # the program's line where it was waiting when cancel() was called
        self.waiting_site: Site | None = None
        # an exception a framework caught in it, the task going on (a server's
        # 500): exc_type, exc_msg and the raise sites are that exception's
        self.caught = False
        self.cancel_requests: list[tuple[int, str | None, int | None, str | None]] | tuple[()] = _EMPTY
        self.awaits: list[tuple[int, int]] = []
        self.wakes: list[tuple[int, int]] = []
        self.callbacks: list[tuple[str, int | None]] = []
        self.callbacks_added = 0
        self.unretrieved = False
        self.age_ns: int | None = None
        self.lints: list[Event] | tuple[()] = _EMPTY

    def __repr__(self) -> str:
        return f"<FutureState {self.label()} {self.outcome}>"

    @property
    def pending(self) -> bool:
        """Created in this history and not finished."""
        return self.outcome == Outcome.PENDING

    @property
    def done(self) -> bool:
        """Resolved, failed, cancelled or abandoned."""
        return self.outcome in Outcome.FINISHED

    @property
    def cancelling(self) -> bool:
        """Asked to cancel, and not finished yet."""
        return bool(self.cancel_requests) and not self.done

    @property
    def internal(self) -> bool:
        """Created by asyncio's own code, not by the program's: a future whose
        ``created`` names the asyncio function that made it (its ``coro``), or
        whose site is asyncio's."""
        if not self.is_task and self.coro is not None:
            return True  # the core names the asyncio function that made it
        site = self.frames[0] if self.frames else self.site
        return site is not None and is_asyncio(site.filename)

    @property
    def shutdown_task(self) -> bool:
        """One of ``asyncio.run``'s own shutdown tasks."""
        return is_shutdown_task(self.is_task, self.coro, self.creator_id)

    @property
    def awaited_by(self) -> tuple[int, ...]:
        """The tasks waiting on it now (their wakeup is among its callbacks)."""
        return tuple(dict.fromkeys(a for _, a in self.callbacks if a is not None))

    def label(self) -> str:
        """``task worker-3 #12`` or ``future #40`` (with its label, if it has one)."""
        kind = "task" if self.is_task else "future"
        return f"{kind} {self.name} #{self.id}" if self.name else f"{kind} #{self.id}"

    def lifetime_ns(self) -> int | None:
        """How long it lived; ``None`` while pending or incomplete (it has no end yet)."""
        if self.outcome == Outcome.ABANDONED and self.age_ns is not None:
            return self.age_ns
        if self.end_ns is None:
            return None
        return self.end_ns - self.start_ns

    def first_awaiter(self) -> int | None:
        """The first task that awaited it, if any did."""
        return self.awaits[0][0] if self.awaits else None


class Fold:
    """Folds events, in order, into :attr:`states` (one :class:`FutureState` per
    future id, in order of first appearance) and :attr:`loop_lints` (findings
    about a loop rather than a future, such as ``blocked_loop``).

    Nothing here depends on the viewers: the live pipeline can keep one, calling
    :meth:`forget` when a future is collected.
    """

    __slots__ = ("_first", "_last", "loop_lints", "states")

    def __init__(self) -> None:
        self.states: dict[int, FutureState] = {}
        self.loop_lints: list[Event] = []
        self._first = _NEVER
        self._last = -1

    @property
    def first_ns(self) -> int | None:
        """The earliest event's ``ts_ns`` (None before any event)."""
        return None if self._first == _NEVER else self._first

    @property
    def last_ns(self) -> int | None:
        """The latest event's ``ts_ns`` (None before any event)."""
        return None if self._last < 0 else self._last

    def feed(self, events: Iterable[Event], until_ns: int | None = None) -> Fold:
        """Apply every event (up to ``until_ns``, when given); returns the fold."""
        apply = self.apply
        if until_ns is None:
            for event in events:
                apply(event)
        else:
            for event in events:
                if event.ts_ns > until_ns:
                    break
                apply(event)
        return self

    def forget(self, future_id: int) -> FutureState | None:
        """Drop a future's state (the live pipeline, once the future is collected)."""
        return self.states.pop(future_id, None)

    def pending(self) -> Iterator[FutureState]:
        """The futures that are pending, in order of creation."""
        return (s for s in self.states.values() if s.outcome == Outcome.PENDING)

    def unfinished(self) -> Iterator[FutureState]:
        """Pending and incomplete ones: everything not known to be finished."""
        return (s for s in self.states.values() if s.outcome in (Outcome.PENDING, Outcome.INCOMPLETE))

    def apply(self, event: Event) -> FutureState | None:
        """Fold one event; returns the state it changed (``None`` for a loop's finding)."""
        kind, fid, ts = event.kind, event.future_id, event.ts_ns
        if ts < self._first:  # noqa: PLR1730 - a compare is cheaper than a call, once per event
            self._first = ts
        if ts > self._last:  # noqa: PLR1730
            self._last = ts
        states = self.states
        state = states.get(fid)
        if kind == _CREATED:
            if state is None:
                state = states[fid] = FutureState(fid, event.is_task, event.name, ts)
            else:  # events before its "created": an out-of-order or stitched history
                state.is_task, state.name, state.start_ns = event.is_task, event.name, ts
            state.site = event.site
            state.program_site = event.program_site
            state.coro = event.coro
            state.parent_id = event.parent_id
            state.creator_id = event.task_id
            state.thread_id = event.thread_id
            if _FRAMES_FIELD:  # pragma: no cover - a future Event field
                state.frames = tuple(getattr(event, "frames", None) or ())
            return state
        if fid == 0:
            self.loop_lints.append(event)  # blocked_loop: about the loop, not one future
            return None
        if state is None:
            state = states[fid] = FutureState(fid, event.is_task, event.name, ts)
            state.incomplete = True
            state.outcome = Outcome.INCOMPLETE
        state.last_ns = ts
        if kind in (_AWAITED, _CALLBACK_ADDED):
            state.callbacks_added += 1
            awaiter = event.awaiter_id
            if awaiter is not None:
                state.awaits.append((awaiter, ts))
            if state.outcome not in Outcome.FINISHED:
                state.callbacks.append((event.callback or "?", awaiter))
        elif kind == _CALLBACK_SCHEDULED:
            if event.awaiter_id is not None:
                state.wakes.append((event.awaiter_id, ts))
        elif kind == _RESOLVED:
            self._finish(state, Outcome.RESOLVED, ts)
            state.result_type, state.value = event.result_type, event.value
        elif kind == _FAILED:
            self._finish(state, Outcome.FAILED, ts)
            state.exc_type, state.exc_msg = event.exc_type, event.exc_msg
            state.raise_site, state.raise_program_site = event.raise_site, event.raise_program_site
        elif kind == _CANCELLED:
            self._finish(state, Outcome.CANCELLED, ts)
            state.msg, state.canceller_id, state.canceller = event.msg, event.canceller_id, event.canceller
            state.waiting_site = event.waiting_site
        elif kind == _CALLBACK_REMOVED:
            callbacks = state.callbacks
            for index, (name, _) in enumerate(callbacks):
                if name == event.callback:
                    del callbacks[index]
                    break
        elif kind == _CANCEL_REQUESTED:
            request = (ts, event.msg, event.canceller_id, event.canceller)
            state.waiting_site = event.waiting_site  # the last request's, as the tree shows it
            if state.cancel_requests:
                state.cancel_requests.append(request)
            else:
                state.cancel_requests = [request]
        elif kind == _RENAMED:
            state.name = event.name
        elif kind == _CAUGHT:
            if state.outcome != Outcome.FAILED:
                state.caught = True
                state.exc_type, state.exc_msg = event.exc_type, event.exc_msg
                state.raise_site, state.raise_program_site = event.raise_site, event.raise_program_site
        elif kind == _ABANDONED:
            if state.outcome not in Outcome.FINISHED:
                self._finish(state, Outcome.ABANDONED, ts)
            state.age_ns = event.age_ns
            if state.site is None:
                state.site = event.site
        elif kind == _UNRETRIEVED:
            state.unretrieved = True
            if state.exc_type is None:
                state.exc_type = event.exc_type
            if state.site is None:
                state.site = event.site
        elif kind in _LINTS:
            if state.lints:
                state.lints.append(event)
            else:
                state.lints = [event]
        elif kind == _INCOMPLETE_KIND:
            self._mark_incomplete(state)
        if _INCOMPLETE_FIELD and getattr(event, "incomplete", None):  # pragma: no cover - a future Event field
            self._mark_incomplete(state)
        return state

    @staticmethod
    def _finish(state: FutureState, outcome: str, ts: int) -> None:
        state.outcome = outcome
        state.end_ns = ts
        state.callbacks = []  # all handed to the loop now (callback_scheduled follows)

    @staticmethod
    def _mark_incomplete(state: FutureState) -> None:
        state.incomplete = True
        if state.outcome == Outcome.PENDING:
            state.outcome = Outcome.INCOMPLETE
