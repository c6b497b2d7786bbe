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

import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from ._events import KINDS, Event, Site

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
    "open_private",
    "read",
]

FORMAT = "tracedfuture-trace"
VERSION = 1

_INT_FIELDS = ("future_id", "ts_ns", "task_id", "thread_id", "parent_id", "awaiter_id", "canceller_id", "age_ns")
_STR_FIELDS = (
    "name",
    "coro",
    "callback",
    "result_type",
    "value",
    "exc_type",
    "exc_msg",
    "msg",
    "canceller",
    "detail",
)


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


def header(wall_anchor_ns: int, monotonic_anchor_ns: int, **extra: Any) -> dict[str, Any]:
    """The first line of a trace file."""
    from . import __version__

    return {
        "format": FORMAT,
        "version": VERSION,
        "pid": os.getpid(),
        "argv": list(sys.argv),
        "wall_anchor_ns": wall_anchor_ns,
        "monotonic_anchor_ns": monotonic_anchor_ns,
        "tracedfuture": __version__,
        "python": sys.version.split()[0],
        "implementation": sys.implementation.name,
        **extra,
    }


def event_to_json(event: Event) -> dict[str, Any]:
    """An event as a JSON-ready dict: ``None`` fields left out, ``site`` an object."""
    out: dict[str, Any] = {}
    for key, value in zip(Event._fields, event, strict=True):
        if value is None or key == "context":
            continue
        if isinstance(value, Site):
            out[key] = {"file": value.filename, "line": value.lineno, "function": value.function}
        else:
            out[key] = value
    return out


def encode_line(obj: Any) -> bytes:
    r"""One line of a trace file, as bytes: compact JSON, UTF-8, ``\n``-terminated.

    A string that is not valid Unicode text (a lone surrogate, such as Python's
    ``surrogateescape`` makes of a file name that is not UTF-8) is written as the
    JSON escape of that code point, ``\udcXX``: the file stays valid UTF-8 and
    JSON, and reading it gives back the very same Python string.

    >>> encode_line({"name": "caf\xe9 \udce9"})
    b'{"name":"caf\xc3\xa9 \\udce9"}\n'
    """
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"
    # Only surrogates cannot be encoded, and json.dumps puts them only inside
    # strings, where backslashreplace's "\\udcXX" is exactly their JSON escape.
    return text.encode("utf-8", "backslashreplace")


def open_private(path: str) -> int:
    """Create (or truncate) a trace file readable and writable by its owner only
    (``0600``) and return its descriptor, opened for writing."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_TRUNC
    except OSError:
        pass  # not ours to change (a file someone else owns, a FIFO): keep going
    return fd


_INDEX = {name: index for index, name in enumerate(Event._fields)}
_TYPES: dict[str, type] = {
    **dict.fromkeys(_INT_FIELDS, int),
    **dict.fromkeys(_STR_FIELDS, str),
    "kind": str,
    "is_task": bool,
    "site": dict,
    "chain": list,
}
_BLANK: list[Any] = [None] * len(Event._fields)
_BLANK[_INDEX["is_task"]] = False
_SITE, _CHAIN = _INDEX["site"], _INDEX["chain"]


def event_from_json(obj: Any) -> Event:
    """The inverse of :func:`event_to_json`; raises ``ValueError`` (or
    ``TypeError``) naming the problem on a bad object. One pass over the keys:
    the viewers read hundreds of thousands of these."""
    if type(obj) is not dict:
        msg = f"expected an event object, got {type(obj).__name__}"
        raise TypeError(msg)
    values = _BLANK[:]
    for key, value in obj.items():
        expected = _TYPES.get(key)
        if expected is None:
            msg = f"unknown event field {key!r}"
            raise ValueError(msg)
        if type(value) is not expected and value is not None:
            article = "an integer" if expected is int else f"a {expected.__name__}"
            msg = f"field {key!r} must be {article}, not {value!r}"
            raise ValueError(msg)
        values[_INDEX[key]] = value
    if values[0] not in KINDS:
        msg = f"unknown event kind {values[0]!r}; known kinds: {', '.join(sorted(KINDS))}"
        raise ValueError(msg)
    if values[1] is None or values[2] is None:
        missing = "future_id" if values[1] is None else "ts_ns"
        msg = f"event without {missing!r}"
        raise ValueError(msg)
    site = values[_SITE]
    if site is not None:
        try:
            values[_SITE] = Site(str(site["file"]), int(site["line"]), str(site["function"]))
        except (KeyError, TypeError, ValueError):
            msg = f"field 'site' must be an object with file, line and function, not {site!r}"
            raise ValueError(msg) from None
    chain = values[_CHAIN]
    if chain is not None:
        if not all(type(i) is int for i in chain):
            msg = f"field 'chain' must be a list of future ids, not {chain!r}"
            raise ValueError(msg)
        values[_CHAIN] = tuple(chain)
    return tuple.__new__(Event, values)


def _check_header(path: str, obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise TraceFormatError(
            path, 1, f"not a tracedfuture trace: the first line must be a header with format {FORMAT!r}"
        )
    version = obj.get("version")
    if version != VERSION:
        raise TraceFormatError(
            path, 1, f"trace format version {version!r} is not supported by this tracedfuture (reads version {VERSION})"
        )
    for key in ("wall_anchor_ns", "monotonic_anchor_ns"):
        if type(obj.get(key)) is not int:
            raise TraceFormatError(path, 1, f"header field {key!r} must be an integer")
    return obj


def iter_events(
    path: str | os.PathLike[str], *, progress: Callable[[int, int], None] | None = None
) -> Iterator[tuple[dict[str, Any], Event | dict[str, Any]]]:
    """Yield ``(header, item)`` for each line after the header, lazily.

    ``item`` is an :class:`Event`, or the stats dict of a ``"stats"`` line.
    ``progress(bytes_read, total_bytes)`` is called every few thousand lines.
    """
    name = os.fspath(path)
    try:
        total = os.path.getsize(name)
        handle: IO[bytes] = open(name, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        msg = f"no such trace file: {name}"
        raise FileNotFoundError(msg) from None
    with handle:
        head: dict[str, Any] | None = None
        done = 0
        pending_error: TraceFormatError | None = None
        for number, raw in enumerate(handle, start=1):
            done += len(raw)
            if pending_error is not None:
                raise pending_error  # a bad line that was not the last one
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError as exc:
                error = TraceFormatError(name, number, f"not valid JSON ({exc})")
                if not raw.endswith(b"\n"):
                    # Only the very last line may be cut short: a crashed writer.
                    pending_error = error
                    continue
                raise error from None
            if head is None:
                head = _check_header(name, obj)
                continue
            if isinstance(obj, dict) and "stats" in obj and "kind" not in obj:
                yield head, obj["stats"]
                continue
            try:
                event = event_from_json(obj)
            except (ValueError, TypeError) as exc:
                raise TraceFormatError(name, number, str(exc)) from None
            if progress is not None and number % 5000 == 0:
                progress(done, total)
            yield head, event
        if head is None:
            raise pending_error or TraceFormatError(name, 1, "empty file: a trace starts with a header line")
        if pending_error is not None:
            yield head, {"__truncated__": pending_error.line}
        if progress is not None:
            progress(total, total)


def read(path: str | os.PathLike[str], *, progress: Callable[[int, int], None] | None = None) -> Trace:
    """Read and validate a whole trace file."""
    name = os.fspath(path)
    head: dict[str, Any] = {}
    events: list[Event] = []
    stats: dict[str, Any] = {}
    warnings: list[str] = []
    for head, item in iter_events(name, progress=progress):  # noqa: B007 - the last header is kept
        if isinstance(item, Event):
            events.append(item)
        elif "__truncated__" in item:
            warnings.append(
                f"{name}:{item['__truncated__']}: last line is truncated (the process stopped mid-write); ignored"
            )
        else:
            stats.update(item)
    if not head:
        head = _check_header(name, None)
    return Trace(name, head, events, stats, warnings)
