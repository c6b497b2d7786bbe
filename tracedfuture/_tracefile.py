"""A trace file's lines as they are written: the header, an event, the stats line.

Each line is compact JSON (``json.dumps(obj, separators=(",", ":"),
ensure_ascii=False)``), UTF-8, ``\\n``-terminated (docs/trace-format.md). The
lines a traced program writes itself (its header, its stats line, a creation
site) hold plain values, and :func:`dumps` writes those without the json
package, whose import was a tenth of what tracing adds to a program's start:
the same text, a string that needs escaping escaped by the escaper json itself
uses (its accelerator's ``encode_basestring``). Anything else is json's to write.

Reading a trace, and everything else about the format, is
:mod:`tracedfuture.trace`, which offers these under the same names.

>>> dumps({"a": [1, 2.5, None, True], "b": "caf\\xe9\\n", "c": {}})
'{"a":[1,2.5,null,true],"b":"caf\\xe9\\\\n","c":{}}'
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from typing import Any

from . import _files
from ._core._events import Event, Site

__all__ = ["FORMAT", "VERSION", "dumps", "encode_line", "event_to_json", "header", "json_string", "open_private"]

FORMAT = "tracedfuture-trace"
VERSION = 1

# Deeper than any line of ours: past it, json.dumps decides (and finds cycles).
_DEPTH = 32
_INFINITY = float("inf")


def json_string(text: str) -> str:
    r"""``text`` as a JSON string, not ASCII-escaped: what json writes for it.

    >>> json_string("Task-1"), json_string('say "café"\n')
    ('"Task-1"', '"say \\"café\\"\\n"')
    """
    # json escapes only '"', '\\' and the control characters, which are not
    # printable: such a string is written as it is.
    if text.isprintable() and '"' not in text and "\\" not in text:
        return '"' + text + '"'
    return _escape()(text)


def _escape() -> Callable[[str], str]:
    """json's own escaper, its C accelerator's where there is one (imported when
    a string first needs escaping)."""
    global _escaper
    if _escaper is None:
        try:
            from _json import encode_basestring as escaper
        except ImportError:  # pragma: no cover - an interpreter without json's accelerator
            from json.encoder import encode_basestring as escaper
        _escaper = escaper
    return _escaper


_escaper: Callable[[str], str] | None = None


class _NotPlain(Exception):
    """A value :func:`dumps` leaves to json."""


def dumps(obj: Any) -> str:
    """``json.dumps(obj, separators=(",", ":"), ensure_ascii=False)``, the same text:
    written here when ``obj`` holds only dicts with string keys, lists, tuples,
    strings, ints, floats, booleans and None (exactly those types), else by json."""
    parts: list[str] = []
    try:
        _plain(obj, parts.append, 0)
    except _NotPlain:
        import json

        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return "".join(parts)


def _plain(obj: Any, emit: Callable[[str], object], depth: int) -> None:
    kind = type(obj)
    if kind is str:
        emit(json_string(obj))
    elif obj is None:
        emit("null")
    elif obj is True:
        emit("true")
    elif obj is False:
        emit("false")
    elif kind is int:
        emit(int.__repr__(obj))
    elif kind is float:
        if math.isnan(obj):
            emit("NaN")
        elif obj == _INFINITY:
            emit("Infinity")
        elif obj == -_INFINITY:
            emit("-Infinity")
        else:
            emit(float.__repr__(obj))
    elif depth >= _DEPTH:
        raise _NotPlain
    elif kind is dict:
        opening = "{"
        for key, value in obj.items():
            if type(key) is not str:
                raise _NotPlain
            emit(opening)
            opening = ","
            emit(json_string(key))
            emit(":")
            _plain(value, emit, depth + 1)
        emit("}" if opening == "," else "{}")
    elif kind is list or kind is tuple:
        opening = "["
        for item in obj:
            emit(opening)
            opening = ","
            _plain(item, emit, depth + 1)
        emit("]" if opening == "," else "[]")
    else:
        raise _NotPlain


def header(wall_anchor_ns: int, monotonic_anchor_ns: int, **extra: Any) -> dict[str, Any]:
    """The first line of a trace file."""
    from ._version import __version__

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
    # Only surrogates cannot be encoded, and JSON text holds them only inside
    # strings, where backslashreplace's "\\udcXX" is exactly their JSON escape.
    return (dumps(obj) + "\n").encode("utf-8", "backslashreplace")


def open_private(path: str) -> int:
    """Open a trace file for writing, readable and writable by its owner only
    (``0600``), and return its descriptor.

    A regular file of ours at ``path`` is truncated; a missing one is created
    exclusively. Anything else (a symbolic link, a FIFO, a device, a file someone
    else owns) raises :class:`tracedfuture._files.Refused`, an ``OSError`` whose
    message names the path and the fix; ``/dev/null`` is written as it is.
    """
    return _files.create(path, stream=True).detach()
