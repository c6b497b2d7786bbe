"""Text for people, written once: paths, sites, counts, durations, seconds.

Every viewer (``tree``, ``stats``, ``html``, ``perfetto``), :func:`tracedfuture.format_snapshot`,
the lints and the pytest plugin's report name a source line the same way.

>>> site_text(Site("/usr/lib/python3.11/asyncio/tasks.py", 12, "sleep"))
'asyncio/tasks.py:12 in sleep'
>>> format_duration(1_500_000_000), plural(2, "task")
('1.50s', '2 tasks')
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

from ._core._events import Site
from ._core._frames import OTHER_STDLIB, PACKAGES, STDLIB_DIR, is_asyncio, is_installed, is_library

__all__ = [
    "format_duration",
    "is_asyncio",
    "is_installed",
    "is_library",
    "parse_request_name",
    "parse_seconds",
    "plural",
    "printable",
    "request_name",
    "short_path",
    "site_text",
    "untraced_children_note",
]


@functools.lru_cache(maxsize=8192)
def short_path(filename: str) -> str:
    """A source path as people read it.

    The standard library as ``asyncio/tasks.py``, an installed package as the part
    after ``site-packages/``, a file under the current directory relative to it,
    anything else unchanged.

    >>> short_path("/venv/lib/python3.12/site-packages/aiohttp/web.py")
    'aiohttp/web.py'
    """
    if filename.startswith(STDLIB_DIR):
        return filename[len(STDLIB_DIR) :]
    found = PACKAGES.search(filename)
    if found is not None:
        return filename[found.end() :]
    found = OTHER_STDLIB.match(filename)
    if found is not None:
        return filename[found.end() :]
    if os.path.isabs(filename):
        cwd = os.getcwd().rstrip(os.sep) + os.sep
        if filename.startswith(cwd):
            return filename[len(cwd) :]
    return filename


def site_text(site: Site | None) -> str:
    """``app.py:12 in main`` (the file through :func:`short_path`), or ``(unknown site)``."""
    if site is None:
        return "(unknown site)"
    return f"{short_path(site.filename)}:{site.lineno} in {site.function}"


def plural(count: int, singular: str, many: str | None = None) -> str:
    """``1 task``, ``2 tasks``; ``many`` when adding an s is not the plural."""
    return f"{count} {singular if count == 1 else many or singular + 's'}"


def printable(text: str) -> str:
    r"""``text`` with control characters escaped (``\x1b``), safe to print on a terminal.

    A trace holds whatever strings the program used; printed raw, an escape
    sequence in a task name could rewrite the user's screen.

    >>> printable("worker\x1b[2J")
    'worker\\x1b[2J'
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _three_digits(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_duration(ns: int | None) -> str:
    """A duration for people: ``812ns``, ``12.3us``, ``4.56ms``, ``1.23s``, ``2m03s``.

    >>> format_duration(812), format_duration(12_300), format_duration(123_000_000_000)
    ('812ns', '12.3us', '2m03s')
    """
    if ns is None:
        return "-"
    if ns < 0:
        return "-" + format_duration(-ns)
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{_three_digits(ns / 1_000)}us"
    if ns < 1_000_000_000:
        return f"{_three_digits(ns / 1_000_000)}ms"
    if ns < 60_000_000_000:
        return f"{_three_digits(ns / 1_000_000_000)}s"
    minutes, seconds = divmod(ns // 1_000_000_000, 60)
    return f"{minutes}m{seconds:02d}s"


def parse_seconds(text: str, *, what: str = "a number of seconds") -> float:
    """``"0.5"`` as 0.5; raises ``ValueError`` naming the value and what is wanted.

    >>> parse_seconds("2")
    2.0
    >>> parse_seconds("soon")
    Traceback (most recent call last):
    ...
    ValueError: expected a number of seconds >= 0, such as 0.5, not 'soon'
    """
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = -1.0
    if not 0 <= value < float("inf"):
        msg = f"expected {what} >= 0, such as 0.5, not {text!r}"
        raise ValueError(msg)
    return value


def untraced_children_note(stats: Mapping[str, object]) -> str | None:
    """The viewers' footer line for a trace whose program started children untraced."""
    count = stats.get("untraced_children")
    if not isinstance(count, int) or count <= 0:
        return None
    children = "1 child process was" if count == 1 else f"{count} child processes were"
    return f"{children} started untraced: trace them too with tracedfuture run --follow-children"


# The request methods a task name may start with (RFC 9110's, PATCH, and the
# websocket of tracedfuture.asgi).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "WEBSOCKET"})


def request_name(method: str, route: str) -> str:
    """The name ``tracedfuture.asgi`` gives a request's task: ``GET /items/{item_id}``."""
    return f"{method} {route}"


def parse_request_name(name: str | None) -> tuple[str, str] | None:
    """``(method, route)`` of a task name made by :func:`request_name`, else ``None``.

    >>> parse_request_name("GET /items/{item_id}"), parse_request_name("worker-3")
    (('GET', '/items/{item_id}'), None)
    """
    if not name:
        return None
    method, space, route = name.partition(" ")
    if not space or method not in _METHODS or not route.startswith("/") or " " in route:
        return None
    return method, route
