"""StructlogExporter: tracedfuture events as structlog records.

>>> import asyncio, structlog, tracedfuture
>>> from tracedfuture.exporters.structlog import StructlogExporter
>>> with structlog.testing.capture_logs() as logs:
...     tracedfuture.run(asyncio.sleep(0), exporters=[StructlogExporter()])
>>> logs[0]["event"], logs[0]["log_level"], logs[0]["coro"]
('task.created', 'debug', 'sleep')

Records go through the application's own structlog configuration: the logger is
``structlog.get_logger(logger_name)``, asked for at the first batch and bound
again at each batch, so JSON and console renderers, and the stdlib integration
(``structlog.stdlib.BoundLogger`` with ``ProcessorFormatter``, where
``logger_name`` is the stdlib logger's name), all work as configured, and a
configuration made after the exporter was created applies from the next batch.
Levels the configuration filters out (``make_filtering_bound_logger``, a stdlib
logger's level) are skipped before a record is built.

Record names follow structlog's habit of short, lowercase, dotted event names
that say what happened and carry nothing variable (the data is in the keys):
``<subject>.<what>``, where the subject is ``task`` for a task, ``future`` for
any other future and ``loop`` for a finding about the loop itself, and the
level goes by severity. Every name, and its default level:

======================  =============================  ===========  ====================================
event kind              record name                    level        why
======================  =============================  ===========  ====================================
``created``             ``task.created`` ...           debug        lifecycle
``callback_added``      ``future.callback_added``      debug        lifecycle
``callback_removed``    ``future.callback_removed``    debug        lifecycle
``awaited``             ``future.awaited``             debug        lifecycle
``callback_scheduled``  ``future.callback_scheduled``  debug        lifecycle
``renamed``             ``task.renamed``               debug        lifecycle
``resolved``            ``future.resolved``            debug        lifecycle
``cancel_requested``    ``task.cancel_requested``      debug        normal control flow
``cancelled``           ``task.cancelled``             debug        normal control flow
``failed``              ``future.failed``              warning      an exception, often handled
``caught``              ``task.caught``                error        a framework caught it: a 500
``abandoned``           ``future.abandoned``           warning      collected while pending
``unretrieved``         ``future.unretrieved``         error        an exception nobody looked at
``incomplete``          ``future.incomplete``          warning      its history lost records
``stalled``             ``future.stalled``             warning      lint
``orphan``              ``future.orphan``              warning      lint
``blocked_loop``        ``loop.blocked``               warning      lint, about the loop
======================  =============================  ===========  ====================================

(``future.`` or ``task.`` as the record is about a future or a task, except
``loop.blocked``.) ``levels`` overrides any of the levels.

Keys, present when they have a value:

==================  ==============================================================
``future_id``       the id of the future or task the record is about
``task``            a task's name (tasks only)
``label``           a future's label (futures only)
``task_id``         the task that was running when it happened
``site``            where it was created, ``file:line in function``
``event_time``      when it happened, ISO 8601 in UTC (records are written later,
                    off the event loop, so a ``TimeStamper`` shows the export time)
``duration_ms``     on ``resolved``, ``failed``, ``cancelled``: time since ``created``
``age_ms``          on ``abandoned``, ``unretrieved`` and lints: the future's age
``cancel_msg``      the ``cancel(msg)`` message (not ``msg``: the stdlib turns
                    structlog keys into ``LogRecord`` attributes, where ``msg`` is taken)
``canceller``       the function that called ``cancel()``, and where
``canceller_id``    the task that called ``cancel()``
``exc_type``        the exception type of a failure, ``exc_msg`` its message
                    (``capture_values=True`` only); ``raise_site`` where it was
                    raised and ``raise_program_site`` the program's line there
                    (``file:line in function``)
``waiting_site``    on a task's cancel: the program's line where it was waiting
others              ``thread_id``, ``coro``, ``parent_id``, ``callback``,
                    ``awaiter_id``, ``result_type``, ``value``, ``chain``, ``detail``
==================  ==============================================================

With ``summary=True`` each future gives one record when it ends, named after the
outcome (``future.resolved``, ``task.failed``, ``future.cancelled``,
``task.abandoned``) and carrying what was seen since ``created``: ``site``,
``coro``, ``parent_id``, ``awaiter_ids``, ``callbacks`` (how many were added) and
``cancel_requested`` messages; ``unretrieved`` and lint records are still written
as they come. A future still pending at shutdown gives no summary.

"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

try:
    import structlog
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    _msg = "tracedfuture.exporters.structlog needs structlog: pip install 'tracedfuture[structlog]'"
    raise ImportError(_msg, name=exc.name) from exc

from tracedfuture._core._events import KINDS, Event, Site
from tracedfuture._fold import Fold, FutureState
from tracedfuture._pipeline._sink import unicode_safe

__all__ = ["DEFAULT_LEVELS", "LEVELS", "StructlogExporter", "record_name"]

#: Level names accepted in ``levels`` (and the stdlib numbers they stand for).
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}

#: The levels of the kinds that are not debug.
DEFAULT_LEVELS: Mapping[str, str] = {
    "failed": "warning",
    "abandoned": "warning",
    "unretrieved": "error",
    "caught": "error",
    "incomplete": "warning",
    "stalled": "warning",
    "blocked_loop": "warning",
    "orphan": "warning",
}

_ENDINGS = frozenset({"resolved", "failed", "cancelled", "abandoned"})
# In summary mode, folded into the future's summary rather than written.
_ABSORBED = frozenset(
    {"awaited", "callback_added", "callback_removed", "callback_scheduled", "cancel_requested", "renamed"}
)
# Event fields copied under their own name; the others are renamed or derived.
_SKIPPED = frozenset({"kind", "future_id", "ts_ns", "is_task", "name", "site", "msg", "age_ns", "chain"})
_COPIED = tuple((i, f) for i, f in enumerate(Event._fields) if f not in _SKIPPED)
_UTC = datetime.UTC
_ALL_LEVELS = frozenset(LEVELS)


class StructlogExporter:
    """Writes one structlog record per event, or one per finished future.

    >>> StructlogExporter(levels={"resolved": "info", "failed": "error"})
    StructlogExporter('tracedfuture', summary=False)

    logger_name
        Passed to ``structlog.get_logger``; with the stdlib integration, the
        name of the ``logging`` logger the records go to.
    summary
        One record per finished future instead of one per event.
    levels
        Event kind to level name (``"debug"`` ... ``"critical"``) or stdlib level
        number, overriding :data:`DEFAULT_LEVELS`.
    max_tracked
        Futures remembered at once for ``duration_ms`` and summaries; past it the
        oldest is forgotten (its record has no ``duration_ms``), counted in
        ``forgotten``.
    logger
        What records are bound from (anything with ``bind()``) instead of
        ``structlog.get_logger(logger_name)``; ``tracedfuture run`` passes one that
        writes to standard error unless the program configured structlog.
    """

    __slots__ = (
        "_bound",
        "_enabled",
        "_fold",
        "_levels",
        "_lock",
        "_logger",
        "_mono_ns",
        "_tracked",
        "_wall_ns",
        "forgotten",
        "logger_name",
        "max_tracked",
        "records",
        "summary",
    )

    def __init__(
        self,
        logger_name: str = "tracedfuture",
        *,
        summary: bool = False,
        levels: Mapping[str, str | int] | None = None,
        max_tracked: int = 100_000,
        logger: Any = None,
    ) -> None:
        name: object = logger_name  # checked for callers without a type checker
        if not isinstance(name, str):
            msg = f"logger_name must be a str such as 'tracedfuture', not {name!r}"
            raise TypeError(msg)
        if not isinstance(max_tracked, int) or max_tracked < 1:
            msg = f"max_tracked must be a positive int, not {max_tracked!r}"
            raise ValueError(msg)
        self.logger_name = logger_name
        self.summary = bool(summary)
        self.max_tracked = max_tracked
        self._levels = _resolve_levels(levels or {})
        self._logger: Any = logger
        self._bound: Any = None
        self._enabled = _ALL_LEVELS
        self._lock = threading.Lock()
        self._tracked: dict[int, int] = {}
        self._fold = Fold()
        self._wall_ns, self._mono_ns = time.time_ns(), time.monotonic_ns()
        self.records = 0
        self.forgotten = 0

    def __repr__(self) -> str:
        return f"StructlogExporter({self.logger_name!r}, summary={self.summary})"

    def export(self, events: Sequence[Event], /) -> None:
        with self._lock:
            if self._logger is None:
                self._logger = structlog.get_logger(self.logger_name)
            # Resolved once per batch, not per record: a configuration change
            # (structlog.configure, capture_logs) applies from the next batch.
            self._bound = self._logger.bind()
            self._enabled = self._enabled_levels()
            handle = self._summarize if self.summary else self._write
            # A log file or terminal encodes to UTF-8: a lone surrogate would lose the batch.
            for event in unicode_safe(events):
                handle(event)

    # -- one record per event ---------------------------------------------------------

    def _write(self, event: Event) -> None:
        kind = event.kind
        duration_ns = None
        if kind == "created":
            self._track(event.future_id, event.ts_ns)
        elif kind in _ENDINGS:
            tracked = self._tracked.pop(event.future_id, None)
            if tracked is not None and kind != "abandoned":
                duration_ns = event.ts_ns - tracked
        if self._levels.get(kind, "debug") not in self._enabled:
            return  # filtered out by the application's configuration: build nothing
        record = self._fields(event)
        if duration_ns is not None:
            record["duration_ms"] = _ms(duration_ns)
        self._emit(kind, _name(event), record)

    # -- one record per finished future -----------------------------------------------

    def _summarize(self, event: Event) -> None:
        # The one fold of the event stream (tracedfuture._fold) keeps each
        # future's state: the summary says what every viewer would say.
        kind = event.kind
        fid = event.future_id
        states = self._fold.states
        if kind == "created":
            if fid not in states and len(states) >= self.max_tracked:
                del states[next(iter(states))]
                self.forgotten += 1
            self._fold.apply(event)
            return
        if fid not in states:
            # Not seen created (or forgotten): endings and findings still get a record.
            if kind not in _ABSORBED:
                self._emit(kind, _name(event), self._fields(event))
            return
        state = self._fold.apply(event)
        assert state is not None
        if kind in _ENDINGS:
            self._fold.forget(fid)
            summary = self._summary(state)
            ending = self._fields(event)
            ending.pop("task_id", None)  # the summary's task_id is the task that created it
            summary.update(ending)
            if kind != "abandoned":
                summary["duration_ms"] = _ms(event.ts_ns - state.start_ns)
            self._emit(kind, _name(event), summary)
        elif kind not in _ABSORBED:
            self._emit(kind, _name(event), self._fields(event))

    @staticmethod
    def _summary(state: FutureState) -> dict[str, Any]:
        record: dict[str, Any] = {"future_id": state.id}
        if state.name is not None:
            record["task" if state.is_task else "label"] = state.name
        if state.site is not None:
            record["site"] = str(state.site)
        for key, value in (
            ("task_id", state.creator_id),
            ("thread_id", state.thread_id),
            ("coro", state.coro),
            ("parent_id", state.parent_id),
        ):
            if value is not None:
                record[key] = value
        if state.callbacks_added:
            record["callbacks"] = state.callbacks_added
        if state.awaits:
            record["awaiter_ids"] = [task for task, _ in state.awaits]
        if state.cancel_requests:
            record["cancel_requested"] = [msg for _, msg, _, _ in state.cancel_requests]
        return record

    # -- helpers ---------------------------------------------------------------------

    def _track(self, future_id: int, created_ns: int) -> None:
        tracked = self._tracked
        if len(tracked) >= self.max_tracked:
            del tracked[next(iter(tracked))]
            self.forgotten += 1
        tracked[future_id] = created_ns

    def _fields(self, event: Event) -> dict[str, Any]:
        record: dict[str, Any] = {"future_id": event.future_id}
        if event.name is not None:
            record["task" if event.is_task else "label"] = event.name
        if event.site is not None:
            record["site"] = str(event.site)
        for index, key in _COPIED:
            value = event[index]
            if value is not None:
                record[key] = str(value) if type(value) is Site else value
        if event.msg is not None:
            record["cancel_msg"] = event.msg
        if event.age_ns is not None:
            record["age_ms"] = _ms(event.age_ns)
        if event.chain is not None:
            record["chain"] = list(event.chain)
        record["event_time"] = self._time(event.ts_ns)
        return record

    def _time(self, ts_ns: int) -> str:
        wall = ts_ns - self._mono_ns + self._wall_ns
        return datetime.datetime.fromtimestamp(wall / 1e9, _UTC).isoformat()

    def _emit(self, kind: str, name: str, record: dict[str, Any]) -> None:
        level = self._levels.get(kind, "debug")
        if level in self._enabled:
            getattr(self._bound, level)(name, **record)
            self.records += 1

    def _enabled_levels(self) -> frozenset[str]:
        """The levels the configured logger writes, asked once per batch.

        Only wrapper classes that define ``is_enabled_for`` (structlog's filtering
        and stdlib bound loggers) are asked: on the generic ``BoundLogger`` any
        attribute is a log method, and calling it would write a record.
        """
        wrapper = structlog.get_config().get("wrapper_class")
        if not callable(getattr(wrapper, "is_enabled_for", None)):
            return _ALL_LEVELS
        try:
            return frozenset(name for name, number in LEVELS.items() if self._bound.is_enabled_for(number))
        except Exception:
            return _ALL_LEVELS


#: Kinds whose record name is not ``<subject>.<kind>``.
_RENAMED_KINDS: Mapping[str, str] = {"blocked_loop": "loop.blocked"}


def record_name(event: Event) -> str:
    """The structlog event name of a record about ``event`` (see the module docs).

    >>> from tracedfuture import Event
    >>> record_name(Event("cancelled", 7, 0, is_task=True)), record_name(Event("blocked_loop", 0, 0))
    ('task.cancelled', 'loop.blocked')
    """
    kind = event.kind
    renamed = _RENAMED_KINDS.get(kind)
    if renamed is not None:
        return renamed
    if event.is_task:
        return "task." + kind
    return ("future." if event.future_id else "loop.") + kind


_name = record_name


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)


def _resolve_levels(levels: Mapping[str, str | int]) -> dict[str, str]:
    numbers = {number: name for name, number in LEVELS.items()}
    resolved = dict(DEFAULT_LEVELS)
    for kind, level in levels.items():
        if kind not in KINDS:
            msg = f"levels: unknown event kind {kind!r}; use one of {', '.join(sorted(KINDS))}"
            raise ValueError(msg)
        if isinstance(level, str) and level.lower() in LEVELS:
            resolved[kind] = level.lower()
        elif isinstance(level, int) and level in numbers:
            resolved[kind] = numbers[level]
        else:
            msg = f"levels[{kind!r}]: unknown level {level!r}; use one of {', '.join(LEVELS)} or logging.DEBUG..."
            raise ValueError(msg)
    return resolved
