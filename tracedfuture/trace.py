"""Trace files: one JSON object per line (see docs/trace-format.md).

>>> import tracedfuture.trace as trace
>>> t = trace.read("trace.jsonl")  # doctest: +SKIP
>>> t.header["pid"], len(t.events)  # doctest: +SKIP

Line 1 is the header (``"format": "tracedfuture-trace"``), then one event per
line, then optionally a ``"stats"`` line written at shutdown. :func:`read`
validates every line and raises :class:`TraceFormatError` naming the file and line;
a truncated last line (a process that crashed mid-write) is tolerated and
reported in :attr:`Trace.warnings`.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from . import _core
from ._core import _events
from ._core._events import KINDS, Event, Site

# What a trace file's writers need (the program's own), apart: no json, no
# dataclasses, no reader.
from ._tracefile import FORMAT, VERSION, encode_line, event_to_json, header, open_private


@functools.cache
def _fast_loads() -> Callable[[str | bytes], Any]:
    """orjson's ``loads`` with tracedfuture[fast] (the same answers, parsed several
    times faster), else json's: imported when a trace is first read, not by the
    programs that only write one."""
    try:
        from orjson import loads
    except ImportError:  # pragma: no cover - exercised without the extra installed
        return json.loads
    return loads


__all__ = [
    "FORMAT",
    "VERSION",
    "Trace",
    "TraceFormatError",
    "encode_line",
    "event_from_json",
    "event_to_json",
    "header",
    "iter_events",
    "iter_runs",
    "open_private",
    "read",
]


_INT_FIELDS = ("future_id", "ts_ns", "task_id", "thread_id", "parent_id", "awaiter_id", "canceller_id", "age_ns")
_STR_FIELDS = _events.TEXT_FIELDS


class TraceFormatError(ValueError):
    """A trace file that cannot be read; the message names the file and line."""

    def __init__(self, path: str, line: int, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        super().__init__(f"{path}:{line}: {problem}")


@dataclass
class Trace:
    """A trace file, read and validated."""

    path: str
    header: dict[str, Any]
    events: list[Event]
    stats: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def wall_anchor(self) -> tuple[int, int]:
        """``(wall_ns, monotonic_ns)`` taken together when the trace started."""
        return int(self.header["wall_anchor_ns"]), int(self.header["monotonic_anchor_ns"])

    def wall_ns(self, ts_ns: int) -> int:
        """An event's ``ts_ns`` as nanoseconds since the epoch."""
        wall, mono = self.wall_anchor
        return ts_ns - mono + wall


_INDEX = {name: index for index, name in enumerate(Event._fields)}
_TYPES: dict[str, type] = {
    **dict.fromkeys(_INT_FIELDS, int),
    **dict.fromkeys(_STR_FIELDS, str),
    "kind": str,
    "is_task": bool,
    "site": dict,
    "program_site": dict,
    "raise_site": dict,
    "raise_program_site": dict,
    "waiting_site": dict,
    "chain": list,
}
# Each known field: (its index in Event, the JSON type it must have). "context" is
# not one: it never leaves the process.
_FIELDS = {key: (_INDEX[key], expected) for key, expected in _TYPES.items()}
_BLANK: list[Any] = [None] * len(Event._fields)
_BLANK[_INDEX["is_task"]] = False
_SITE_FIELDS = tuple(
    (_INDEX[key], key) for key in ("site", "program_site", "raise_site", "raise_program_site", "waiting_site")
)
_CHAIN = _INDEX["chain"]
# Ids, clocks and ages are unsigned 64-bit numbers where they are made; anything
# outside is corruption, caught here rather than as an overflow in a viewer.
_INT_LIMIT = 1 << 64
# The recorder may mark a future whose history lost events with a kind of its own.
_INCOMPLETE_KIND = getattr(_events, "INCOMPLETE", "incomplete")
_READ_KINDS = KINDS | {_INCOMPLETE_KIND}
_LOOP_KINDS = _events.LINTS


def _bad_int(key: str, value: int) -> ValueError:
    shown = repr(value) if abs(value) < 10**30 else f"a {len(str(abs(value)))}-digit number"
    return ValueError(f"field {key!r} must be an integer from 0 to 2**64-1, not {shown}")


_SITES: dict[tuple[Any, ...], Site] = {}  # one Site per distinct site: traces repeat a few thousand


def event_from_json(obj: Any) -> Event:
    """The inverse of :func:`event_to_json`; raises ``ValueError`` (or
    ``TypeError``) naming the problem on a bad object."""
    return _compiled_event()(obj) or _checked_event(obj)


@functools.cache
def _compiled_event() -> Callable[[Any], Event | None]:
    """The compiled core's reading of an event as the writer writes one
    (``_core/_reader.c``: the viewers read hundreds of thousands), which answers
    ``None`` for anything else; with the pure-Python core, a function that always
    does. Either way :func:`_checked_event` reads what is left, and is the
    reference: it decides every error and its message."""
    compiled = _core.impl.EventReader
    if compiled is None:
        return _none
    reader = compiled(Event, Site, _FIELDS, frozenset(_READ_KINDS), frozenset(_LOOP_KINDS))
    event: Callable[[Any], Event | None] = reader.event
    return event


def _none(obj: Any) -> None:
    return None


def _checked_event(obj: Any) -> Event:
    """The reference reading of one event: every field checked, in one pass over
    the keys."""
    if type(obj) is not dict:
        msg = f"expected an event object, got {type(obj).__name__}"
        raise TypeError(msg)
    values = _BLANK[:]
    for key, value in obj.items():
        known = _FIELDS.get(key)
        if known is None:
            msg = f"unknown event field {key!r}"
            raise ValueError(msg)
        index, expected = known
        if type(value) is not expected:
            if value is None:
                continue
            article = "an integer" if expected is int else f"a {expected.__name__}"
            msg = f"field {key!r} must be {article}, not {_short_repr(value)}"
            raise ValueError(msg)
        if expected is int and not 0 <= value < _INT_LIMIT:  # type: ignore[operator]
            raise _bad_int(key, value)  # type: ignore[arg-type]
        values[index] = value
    if values[0] not in _READ_KINDS:
        msg = f"unknown event kind {_short_repr(values[0])}; known kinds: {', '.join(sorted(KINDS))}"
        raise ValueError(msg)
    if values[1] is None or values[2] is None:
        missing = "future_id" if values[1] is None else "ts_ns"
        msg = f"event without {missing!r}"
        raise ValueError(msg)
    if values[1] == 0 and values[0] not in _LOOP_KINDS:
        msg = f"future_id 0 is the event loop itself: a {values[0]!r} event needs the id of a future"
        raise ValueError(msg)
    for index, name in _SITE_FIELDS:
        site = values[index]
        if site is not None:
            values[index] = _site(name, site)
    chain = values[_CHAIN]
    if chain is not None:
        if not all(type(i) is int and 0 <= i < _INT_LIMIT for i in chain):
            msg = f"field 'chain' must be a list of future ids, not {_short_repr(chain)}"
            raise ValueError(msg)
        values[_CHAIN] = tuple(chain)
    return tuple.__new__(Event, values)


def _site(name: str, site: dict[str, Any]) -> Site:
    file, line, function = site.get("file"), site.get("line"), site.get("function")
    if type(file) is not str or type(line) is not int or type(function) is not str or len(site) != 3:
        msg = f"field {name!r} must be an object with file, line and function, not {_short_repr(site)}"
        raise ValueError(msg)
    if not 0 <= line < _INT_LIMIT:
        raise _bad_int(f"{name}'s line", line)  # noqa: EM102
    key = (file, line, function, 3, int)
    found = _SITES.get(key)
    if found is None:
        found = Site(file, line, function)
        if len(_SITES) < 100_000:
            _SITES[key] = found
    return found


def _short_repr(value: Any) -> str:
    """A value for an error message: at most about 80 characters, never raising."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # deep nesting; ints past the digit limit
        text = f"<a {type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def _check_header(path: str, obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise TraceFormatError(
            path, 1, f"not a tracedfuture trace: the first line must be a header with format {FORMAT!r}"
        )
    version = obj.get("version")
    if version != VERSION or type(version) is not int:
        raise TraceFormatError(
            path,
            1,
            f"trace format version {_short_repr(version)} is not supported by this tracedfuture "
            f"(reads version {VERSION})",
        )
    for key in ("wall_anchor_ns", "monotonic_anchor_ns"):
        value = obj.get(key)
        if type(value) is not int or not 0 <= value < _INT_LIMIT:
            raise TraceFormatError(path, 1, f"header field {key!r} must be an integer from 0 to 2**64-1")
    return obj


def _parse(raw: bytes) -> Any:
    """One line as JSON, or ``ValueError`` saying why not (never another exception)."""
    try:
        return _fast_loads()(raw)
    except Exception:  # the fast parser is stricter: let json decide
        pass
    try:
        return json.loads(raw)
    except RecursionError:
        msg = "not valid JSON (nested too deeply)"
        raise ValueError(msg) from None
    except ValueError as exc:  # UnicodeDecodeError and int digit limits included
        msg = f"not valid JSON ({exc})"
        raise ValueError(msg) from None


def _check_stats(obj: dict[str, Any]) -> dict[str, Any]:
    stats = obj["stats"]
    if type(stats) is not dict or len(obj) != 1:
        msg = f'a stats line must be {{"stats": {{...}}}} with an object of counters, not {_short_repr(obj)}'
        raise ValueError(msg)
    for key, value in stats.items():
        if type(value) is int and not -_INT_LIMIT < value < _INT_LIMIT:
            raise _bad_int(f"stats {key}", value)  # noqa: EM102
    return stats


def iter_events(
    path: str | os.PathLike[str], *, progress: Callable[[int, int], None] | None = None
) -> Iterator[tuple[dict[str, Any], Event | dict[str, Any]]]:
    """Yield ``(header, item)`` for each line after the header, lazily.

    ``item`` is an :class:`Event`, or the stats dict of a ``"stats"`` line.
    ``progress(bytes_read, total_bytes)`` is called every few thousand lines.
    """
    for head, run in iter_runs(path, progress=progress):
        if isinstance(run, list):
            for event in run:
                yield head, event
        else:
            yield head, run


_RUN = 4096  # events handed over at a time


def iter_runs(
    path: str | os.PathLike[str], *, progress: Callable[[int, int], None] | None = None
) -> Iterator[tuple[dict[str, Any], list[Event] | dict[str, Any]]]:
    """:func:`iter_events`' items in runs, for a reader of every event (the
    viewers' model): ``(header, events)``, a list of up to a few thousand
    consecutive events, or ``(header, item)`` for any other item. Before an error
    is raised, the events of the lines before it are handed over."""
    name = os.fspath(path)
    try:
        total = os.path.getsize(name)
        handle: IO[bytes] = open(name, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        msg = f"no such trace file: {name}"
        raise FileNotFoundError(msg) from None
    loads, compiled, make = _fast_loads(), _compiled_event(), _checked_event
    with handle:
        head: dict[str, Any] | None = None
        pending_error: TraceFormatError | None = None  # a bad last line, unless another follows
        error: TraceFormatError | None = None
        yielded = False
        events: list[Event] = []
        for number, raw in enumerate(handle, start=1):
            if pending_error is not None:
                error = pending_error  # a bad line that was not the last one
                break
            try:
                obj = loads(raw)
            except Exception:  # _parse says what is wrong, or accepts it
                if not raw.strip():
                    continue
                try:
                    obj = _parse(raw)
                except ValueError as exc:
                    if raw.endswith(b"\n"):
                        error = TraceFormatError(name, number, str(exc))
                        break
                    # Only the very last line may be cut short: a crashed writer.
                    pending_error = TraceFormatError(name, number, str(exc))
                    continue
            if head is None:
                head = _check_header(name, obj)
                continue
            event = compiled(obj)
            if event is None:  # not as the writer writes an event: the reference decides
                try:
                    if type(obj) is dict and "stats" in obj and "kind" not in obj:
                        stats = _check_stats(obj)
                        if events:
                            yield head, events
                            events = []
                        yielded = True
                        yield head, stats
                        continue
                    event = make(obj)
                except (ValueError, TypeError) as exc:
                    error = TraceFormatError(name, number, str(exc))
                    break
            events.append(event)
            if len(events) == _RUN:
                yielded = True
                yield head, events
                events = []
                if progress is not None:
                    progress(handle.tell(), total)
        if head is not None and events:
            yielded = True
            yield head, events
        if error is not None:
            raise error
        if head is None:
            raise pending_error or TraceFormatError(name, 1, "empty file: a trace starts with a header line")
        if pending_error is not None:
            yield head, {"__truncated__": pending_error.line}
        elif not yielded:
            yield head, {}  # a header and nothing else: still a trace, and its header is wanted
        if progress is not None:
            progress(total, total)


def read(path: str | os.PathLike[str], *, progress: Callable[[int, int], None] | None = None) -> Trace:
    """Read and validate a whole trace file."""
    name = os.fspath(path)
    head: dict[str, Any] = {}
    events: list[Event] = []
    stats: dict[str, Any] = {}
    warnings: list[str] = []
    for head, item in iter_runs(name, progress=progress):  # noqa: B007 - the last header is kept
        if isinstance(item, list):
            events += item
        elif "__truncated__" in item:
            warnings.append(
                f"{name}:{item['__truncated__']}: last line is truncated "
                "(the writer stopped mid-line: killed, crashed or out of disk space); ignored"
            )
        else:
            stats.update(item)
    if not head:
        head = _check_header(name, None)
    return Trace(name, head, events, stats, warnings)
