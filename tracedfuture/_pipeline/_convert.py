"""Raw records in, :class:`~tracedfuture.Event` objects out.

A :class:`Converter` turns the records of the hot path (laid out in ``_seam``)
into events, in order, keeping a little state per live future (name, site,
callbacks, awaiter, how it was cancelled) so that derived events, such as
``callback_scheduled`` when a future completes and ``abandoned`` when it is
collected, carry their context. Each installation has its own converter, so
that what one installation asked for (``capture_values``, ``redact``) decides
what its events hold and nobody else's.

Conversion is the expensive step of tracing, so it runs only for what someone
needs: on the drain thread for exporters that take every event, for the futures
tail sampling keeps, and at dump time for a flight recorder's window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import CodeType
from typing import Any

from .._core import _events as ev
from .._core._events import Event, Site
from .._core._frames import short_asyncio

__all__ = ["MARK", "Converter", "caller_text", "redacted", "site_of", "type_name"]

Record = tuple[Any, ...]

# A record that only the pipeline makes: (MARK, future_id, ts_ns, why). A queue
# of raw records (``_sink``) puts one where it dropped a record of a future whose
# history was already delivered: the future's ``incomplete`` event, and the end
# of its history there (``_lines``).
MARK = -1


class _FutureState:
    """What the converter remembers about one live future."""

    __slots__ = (
        "awaiter_id",
        "callbacks",
        "cancel",
        "created_ns",
        "done",
        "exc_type",
        "is_task",
        "name",
        "program_site",
        "scheduled",
        "site",
    )

    def __init__(self, is_task: bool, name: str | None, site: Site | None, ts: int | None) -> None:
        self.is_task = is_task
        self.name = name
        self.site = site
        self.created_ns = ts
        self.callbacks: list[tuple[str, int | None]] = []
        self.scheduled: list[tuple[str, int | None]] = []
        self.awaiter_id: int | None = None
        # (msg, canceller_id, canceller, waiting_site) of its cancellation
        self.cancel: tuple[str | None, int | None, str | None, Site | None] | None = None
        self.done = False
        self.exc_type: str | None = None
        self.program_site: Site | None = None


_new_event = tuple.__new__
# Events are built as lists in Event's field order, then made tuples: NamedTuple's
# keyword constructor costs several times more, and this runs for every event.
_FIELD = {name: index for index, name in enumerate(Event._fields)}
_SITE, _THREAD_ID, _CORO, _PARENT_ID = _FIELD["site"], _FIELD["thread_id"], _FIELD["coro"], _FIELD["parent_id"]
_CALLBACK, _AWAITER_ID = _FIELD["callback"], _FIELD["awaiter_id"]
_RESULT_TYPE, _VALUE, _EXC_TYPE, _EXC_MSG = (
    _FIELD["result_type"],
    _FIELD["value"],
    _FIELD["exc_type"],
    _FIELD["exc_msg"],
)
_MSG, _CANCELLER_ID, _CANCELLER = _FIELD["msg"], _FIELD["canceller_id"], _FIELD["canceller"]
_AGE_NS, _CHAIN, _DETAIL, _CONTEXT = _FIELD["age_ns"], _FIELD["chain"], _FIELD["detail"], _FIELD["context"]
_PROGRAM_SITE, _RAISE_SITE, _RAISE_PROGRAM_SITE, _WAITING_SITE = (
    _FIELD["program_site"],
    _FIELD["raise_site"],
    _FIELD["raise_program_site"],
    _FIELD["waiting_site"],
)
_BLANK: list[Any] = [None] * len(Event._fields)
# The None fields after a position, for events built in one step (convert()).
_BETWEEN_PARENT_AND_CONTEXT = (None,) * (_CONTEXT - _PARENT_ID - 1)
_TAIL_AFTER_AWAITER = (None,) * (len(Event._fields) - _AWAITER_ID - 1)
_TAIL_AFTER_RESULT = (None,) * (len(Event._fields) - _RESULT_TYPE - 1)
if (_PARENT_ID + 1, _PARENT_ID + 2, _PARENT_ID + 3, _CONTEXT + 1, len(_BLANK) - 4) != (
    _CALLBACK,
    _AWAITER_ID,
    _RESULT_TYPE,
    _PROGRAM_SITE,
    _PROGRAM_SITE,
):
    raise ImportError("Event's fields moved: update the one-step events of _convert.Converter.convert")  # noqa: EM101
_CREATED, _CB_ADDED, _RESOLVED, _COLLECTED = ev.OP_CREATED, ev.OP_CB_ADDED, ev.OP_RESOLVED, ev.OP_COLLECTED
_K_CREATED, _K_CB_ADDED, _K_AWAITED = ev.CREATED, ev.CALLBACK_ADDED, ev.AWAITED
_K_RESOLVED, _K_SCHEDULED = ev.RESOLVED, ev.CALLBACK_SCHEDULED


def _event(kind: str, fid: int, ts: int, tid: int | None, state: _FutureState | None) -> list[Any]:
    event = _BLANK[:]
    event[0], event[1], event[2], event[3] = kind, fid, ts, tid
    if state is not None:
        event[4], event[5] = state.is_task, state.name
    else:
        event[4] = False
    return event


class Converter:
    """The records of one installation, turned into its events.

    ``capture_values`` and ``redact`` are the installation's: values recorded for
    another installation on the same loop are dropped unless this one asked for
    them, and every free-text field that leaves (task names, future labels,
    values, exception messages, cancel messages) goes through ``redact``. ``partial`` is for a window of
    records whose beginning was overwritten (a flight recorder's ring): a future
    met without its ``created`` gets an ``incomplete`` event first, instead of
    being ignored.
    """

    def __init__(
        self, *, capture_values: bool = False, redact: Callable[[str], str] | None = None, partial: bool = False
    ) -> None:
        self.capture_values = capture_values
        self.redact = redact
        self.partial = partial
        self.states: dict[int, _FutureState] = {}

    def __len__(self) -> int:
        return len(self.states)

    def convert(self, records: Sequence[Record]) -> list[Event]:
        """The events of ``records``, in order.

        The four records that make up most of every trace (a future created,
        awaited, resolved, collected) are converted here, each event built as one
        tuple in a single step; the others go through :meth:`_convert`.
        """
        out: list[Event] = []
        emit = out.append
        states = self.states
        new, event_type = _new_event, Event
        slow = self._convert
        n = None
        for record in records:
            op = record[0]
            if op == _COLLECTED:
                state = states.get(record[1])
                if state is not None and record[3] == "FINISHED" and not (len(record) > 4 and record[4]):
                    del states[record[1]]
                    continue
            elif op == _CREATED:
                _, fid, ts, tid, is_task, code, lasti, thread_id, name, coro, _route, context, pcode, plasti = record
                name = self._name(name)
                state = self._born(fid, is_task, name, code, lasti, ts, pcode, plasti)
                site, program_site = state.site, state.program_site
                emit(
                    new(
                        event_type,
                        (
                            _K_CREATED,
                            fid,
                            ts,
                            tid,
                            is_task,
                            name,
                            site,
                            thread_id,
                            coro,
                            tid if is_task else n,
                            *_BETWEEN_PARENT_AND_CONTEXT,
                            context,
                            program_site,
                            n,
                            n,
                            n,
                        ),
                    )
                )
                continue
            elif op == _CB_ADDED:
                fid = record[1]
                state = states.get(fid)
                if state is not None and not state.done:
                    callback, awaiter = record[4], record[5]
                    if awaiter is not None:
                        state.awaiter_id = awaiter
                    state.callbacks.append((callback, awaiter))
                    emit(
                        new(
                            event_type,
                            (
                                _K_AWAITED if awaiter is not None else _K_CB_ADDED,
                                fid,
                                record[2],
                                record[3],
                                state.is_task,
                                state.name,
                                n,
                                n,
                                n,
                                n,
                                callback,
                                awaiter,
                                *_TAIL_AFTER_AWAITER,
                            ),
                        )
                    )
                    continue
            elif op == _RESOLVED:
                fid = record[1]
                state = states.get(fid)
                if state is not None and record[5] is None:
                    ts, tid = record[2], record[3]
                    emit(
                        new(
                            event_type,
                            (
                                _K_RESOLVED,
                                fid,
                                ts,
                                tid,
                                state.is_task,
                                state.name,
                                n,
                                n,
                                n,
                                n,
                                n,
                                n,
                                type_name(record[4]),
                                *_TAIL_AFTER_RESULT,
                            ),
                        )
                    )
                    self._finish(emit, state, fid, ts, tid)
                    continue
            slow(record, emit)
        return out

    def clear(self) -> None:
        self.states.clear()

    def adopt(
        self,
        fid: int,
        is_task: bool,
        name: str | None,
        code: Any,
        lasti: int,
        created_ns: int,
        callbacks: list[tuple[str, int | None]],
        scheduled: list[tuple[str, int | None]],
        awaiter_id: int | None,
        done: bool,
        program_code: Any = None,
        program_lasti: int | None = None,
        *,
        failed: type | None = None,
        cancel: tuple[str | None, int | None, Any] | None = None,
    ) -> None:
        """Take over a future the compiled writer or fold began (its state, as
        :meth:`convert` would have left it): its history needs more than the
        records the compiled code writes. ``failed``: the type of the failure it
        recorded; ``cancel``: ``(msg, canceller_id, who)`` of the cancel that is
        its cause, as its record had them."""
        state = self._born(fid, is_task, name, code, lasti, created_ns, program_code, program_lasti)
        state.callbacks, state.scheduled = callbacks, scheduled
        state.awaiter_id, state.done = awaiter_id, done
        if failed is not None:
            state.exc_type = type_name(failed)
        if cancel is not None:
            state.cancel = self._cancel(*cancel)

    def cancel_awaiter(self, fid: int, msg: str | None, canceller_id: int | None, who: Any) -> None:
        """A future the compiled writer holds was cancelled while this future (a
        task of the reference's, maybe) waited on it: the cause it gets, as from a
        ``CANCELLED`` record of the waited future (``msg, canceller_id, who`` that
        future's, or those of the cause it had)."""
        waiter = self.states.get(fid)
        if waiter is not None and waiter.cancel is None:
            waiter.cancel = (*self._cancel(msg, canceller_id, who)[:3], None)

    def _born(
        self, fid: int, is_task: bool, name: str | None, code: Any, lasti: int, created_ns: int, pcode: Any, plasti: Any
    ) -> _FutureState:
        """The state a ``created`` record starts: its site, and the program's line
        (the site itself when the program made the future)."""
        site = site_of(code, lasti)
        state = self.states[fid] = _FutureState(is_task, name, site, created_ns)
        state.program_site = site if pcode is code and plasti == lasti else site_of(pcode, plasti)
        return state

    def _name(self, name: str | None) -> str | None:
        """A task's name or a future's label, through ``redact``."""
        return name if name is None or self.redact is None else redacted(self.redact, name)

    def _text(self, value: str | None, captured: bool) -> str | None:
        if value is None or (captured and not self.capture_values):
            return None
        return redacted(self.redact, value)

    def _convert(self, record: Record, emit: Callable[[Event], None]) -> None:
        op, fid, ts = record[0], record[1], record[2]
        if op == MARK:
            # A queue dropped a record of this future: its incomplete event, and
            # the end of its history here.
            marked = self.states.pop(fid, None)
            if marked is not None:
                event = _event(ev.INCOMPLETE, fid, ts, None, marked)
                event[_DETAIL] = f"events of this future were dropped: {record[3]}"
                emit(_new_event(Event, event))
            return
        if op == ev.OP_CREATED:
            _, _, _, tid, is_task, code, lasti, thread_id, name, coro, _route, context, pcode, plasti = record
            born = self._born(fid, is_task, self._name(name), code, lasti, ts, pcode, plasti)
            event = _event(ev.CREATED, fid, ts, tid, born)
            event[_SITE], event[_THREAD_ID], event[_CORO] = born.site, thread_id, coro
            event[_PARENT_ID] = tid if is_task else None
            event[_CONTEXT] = context
            event[_PROGRAM_SITE] = born.program_site
            emit(_new_event(Event, event))
            return
        state = self.states.get(fid)
        if state is None:
            if op == ev.OP_LINT and fid == 0:
                self._lint(record, emit, None)
                return
            if not self.partial:
                return  # created before this installation, untraced, or dropped whole by tail sampling
            state = self.states[fid] = _FutureState(False, None, None, None)
            event = _event(ev.INCOMPLETE, fid, ts, None, state)
            event[_DETAIL] = "history starts before the recorded window"
            emit(_new_event(Event, event))
        if op == ev.OP_COLLECTED:
            # The most common record: a future gone after it ended; state freed.
            del self.states[fid]
            outcome = record[3]
            if len(record) > 4 and record[4]:
                event = _event(ev.INCOMPLETE, fid, ts, None, state)
                event[_DETAIL] = "records dropped: the ring was full"
                emit(_new_event(Event, event))
            if outcome == "PENDING":
                event = _event(ev.ABANDONED, fid, ts, None, state)
                event[_AWAITER_ID] = state.awaiter_id
            elif outcome == "UNRETRIEVED":
                event = _event(ev.UNRETRIEVED, fid, ts, None, state)
                event[_EXC_TYPE], event[_AWAITER_ID] = state.exc_type, state.awaiter_id
            else:
                return
            event[_SITE] = state.site
            event[_PROGRAM_SITE] = state.program_site
            event[_AGE_NS] = ts - state.created_ns if state.created_ns is not None else None
            emit(_new_event(Event, event))
            return
        tid = record[3]
        if op == ev.OP_CB_ADDED:
            callback, awaiter = record[4], record[5]
            kind = ev.CALLBACK_ADDED
            if awaiter is not None:
                state.awaiter_id = awaiter
                kind = ev.AWAITED
            event = _event(kind, fid, ts, tid, state)
            event[_CALLBACK], event[_AWAITER_ID] = callback, awaiter
            emit(_new_event(Event, event))
            if state.done:
                event[0] = ev.CALLBACK_SCHEDULED
                emit(_new_event(Event, event))
            else:
                state.callbacks.append((callback, awaiter))
        elif op == ev.OP_RESOLVED:
            event = _event(ev.RESOLVED, fid, ts, tid, state)
            event[_RESULT_TYPE] = type_name(record[4])
            event[_VALUE] = self._text(record[5], True)
            emit(_new_event(Event, event))
            self._finish(emit, state, fid, ts, tid)
        elif op in (ev.OP_FAILED, ev.OP_CAUGHT):
            # CAUGHT: the same fields, but the task goes on (a server's 500).
            exc_type = type_name(record[4])
            if op == ev.OP_FAILED:
                state.exc_type = exc_type
            event = _event(ev.FAILED if op == ev.OP_FAILED else ev.CAUGHT, fid, ts, tid, state)
            event[_EXC_TYPE], event[_EXC_MSG] = exc_type, self._text(record[5], True)
            event[_RAISE_SITE] = site_of(record[6], record[7])
            event[_RAISE_PROGRAM_SITE] = site_of(record[8], record[9])
            emit(_new_event(Event, event))
            if op == ev.OP_FAILED:
                self._finish(emit, state, fid, ts, tid)
        elif op == ev.OP_CANCELLED:
            # A task's record has no canceller: its last cancel request, or the
            # cancelled future it was waiting on, is the cause.
            msg, who = record[4], record[5]
            if who is not None or state.cancel is None:
                state.cancel = self._cancel(msg, tid, who)
            event = _event(ev.CANCELLED, fid, ts, tid, state)
            event[_MSG], event[_CANCELLER_ID], event[_CANCELLER], event[_WAITING_SITE] = state.cancel
            emit(_new_event(Event, event))
            self._finish(emit, state, fid, ts, tid)
            for _, awaiter in state.scheduled:
                waiter = self.states.get(awaiter) if awaiter is not None else None
                if waiter is not None and waiter.cancel is None:
                    # where this one waited is not where its awaiter did
                    waiter.cancel = (*state.cancel[:3], None)
        elif op == ev.OP_CANCEL_REQ:
            state.cancel = self._cancel(record[4], tid, record[5])
            event = _event(ev.CANCEL_REQUESTED, fid, ts, tid, state)
            event[_MSG], event[_CANCELLER_ID], event[_CANCELLER], event[_WAITING_SITE] = state.cancel
            emit(_new_event(Event, event))
        elif op == ev.OP_RENAMED:
            state.name = self._name(record[4])
            emit(_new_event(Event, _event(ev.RENAMED, fid, ts, tid, state)))
        elif op == ev.OP_CB_REMOVED:
            for index in reversed(record[5]):
                if index < len(state.callbacks):
                    del state.callbacks[index]
            event = _event(ev.CALLBACK_REMOVED, fid, ts, tid, state)
            event[_CALLBACK] = record[4]
            emit(_new_event(Event, event))
        elif op == ev.OP_LINT:
            self._lint(record, emit, state)

    def _cancel(self, msg: str | None, tid: int | None, who: Any) -> tuple[str | None, int | None, str | None, Any]:
        """``(msg, canceller_id, canceller, waiting_site)`` of a cancel record."""
        waiting = site_of(who[4], who[5]) if who is not None and len(who) > 4 else None
        return (self._text(msg, False), tid, caller_text(who), waiting)

    @staticmethod
    def _lint(record: Record, emit: Callable[[Event], None], state: _FutureState | None) -> None:
        _, fid, ts, kind, tid, chain, detail, age = record
        event = _event(kind, fid, ts, tid, state)
        if state is not None:
            event[_SITE] = state.site
            event[_PROGRAM_SITE] = state.program_site
        event[_AGE_NS], event[_CHAIN], event[_DETAIL] = age, chain, detail
        emit(_new_event(Event, event))

    @staticmethod
    def _finish(emit: Callable[[Event], None], state: _FutureState, fid: int, ts: int, tid: int | None) -> None:
        """The future is done: every callback it holds is handed to the loop now."""
        state.done = True
        scheduled = state.scheduled = state.callbacks
        state.callbacks = []
        if scheduled:
            head = (_K_SCHEDULED, fid, ts, tid, state.is_task, state.name, None, None, None, None)
            for callback, awaiter in scheduled:
                emit(_new_event(Event, (*head, callback, awaiter, *_TAIL_AFTER_AWAITER)))


def redacted(redact: Callable[[str], str] | None, value: str) -> str:
    """``value`` through an installation's ``redact``; what it raises is never the
    program's problem, and never lets the secret through."""
    if redact is None:
        return value
    try:
        return str(redact(value))
    except BaseException:
        return "<redaction failed>"


# --- process-wide caches: code objects, types ------------------------------------

_sites: dict[tuple[int, int], tuple[CodeType, Site]] = {}
_types: dict[type, str] = {}


def site_of(code: CodeType | None, lasti: int) -> Site | None:
    """The :class:`Site` of an instruction of a code object."""
    if code is None:
        return None
    # Keyed by id(code), not code: hashing a code object hashes its bytecode.
    key = (id(code), lasti)
    cached = _sites.get(key)
    if cached is not None and cached[0] is code:
        return cached[1]
    line = code.co_firstlineno
    for start, end, lineno in code.co_lines():
        if start <= lasti < end and lineno is not None:
            line = lineno
            break
    site = Site(code.co_filename, line, code.co_qualname)
    if len(_sites) >= 100_000:
        _sites.clear()
    _sites[key] = (code, site)  # keeps code alive: its id is not reused
    return site


def caller_text(who: tuple[Any, ...] | None) -> str | None:
    """``"Timeout._on_timeout (asyncio/timeouts.py:123)"``, and, when that is
    asyncio's code, the user code it was called from: ``"... in main (app.py:9)"``."""
    if who is None:
        return None
    direct = site_of(who[0], who[1])
    if direct is None:
        return None
    text = f"{direct.function} ({short_asyncio(direct.filename)}:{direct.lineno})"
    user = site_of(who[2], who[3])
    if user is not None and user != direct:
        text += f" in {user.function} ({user.filename}:{user.lineno})"
    return text


def type_name(tp: type) -> str:
    """``"ValueError"``, ``"myapp.errors.Retry"``: how events name a type."""
    name = _types.get(tp)
    if name is None:
        module = getattr(tp, "__module__", None)
        qualname = getattr(tp, "__qualname__", repr(tp))
        name = qualname if module in (None, "builtins") else f"{module}.{qualname}"
        if len(_types) < 10_000:
            _types[tp] = name
    return name
