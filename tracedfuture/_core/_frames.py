"""Frames: whose code is this, and which frame do we name?

The one frame walker of the package (structlog keeps one, ``_frames.py``). Both
implementations of the hot path ask it, and so do the pipeline and the viewers:

* what is asyncio's (:func:`is_asyncio`), what is tracedfuture's own
  (:data:`OWN_DIR`), what is a library's (:func:`is_library`: the standard
  library and installed packages) as opposed to the program's;
* the kind of a code object, cached per code object (:func:`kind`), and the
  walks that use it: the creation site of a future (:func:`site_and_maker`) and
  who cancelled it (:func:`canceller`);
* keeping tracedfuture out of what the program sees: :func:`hide_own_frames` for
  an exception's traceback, :func:`strip_source_traceback` for asyncio's
  debug-mode ``_source_traceback``.

``_cfuture.c`` walks frames in C on its hot path with the same rules, and calls
:func:`classify`, :func:`canceller` and :func:`hide_own_frames` here for the
rest. Nothing here imports either implementation.

>>> is_asyncio("/usr/lib/python3.11/asyncio/subprocess.py"), is_asyncio("/app/asyncio/x.py")
(True, False)
>>> is_library("/venv/lib/python3.12/site-packages/aiohttp/web.py"), is_library("/app/web.py")
(True, False)
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import sysconfig
from types import CodeType, FrameType
from typing import Any

__all__ = [
    "ASYNCIO_DIR",
    "BOUNDARY",
    "CORE_DIR",
    "INTERNAL",
    "OTHER_STDLIB",
    "OWN_DIR",
    "PACKAGES",
    "STDLIB_DIR",
    "USER",
    "canceller",
    "classify",
    "code_kinds",
    "hide_own_frames",
    "is_asyncio",
    "is_installed",
    "is_library",
    "kind",
    "short_asyncio",
    "site",
    "site_and_maker",
    "strip_source_traceback",
]

ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep
# The tracedfuture package: the parent of _core/. (tracedfuture.exporters is
# inside it when installed from a wheel; an editable install maps it to the
# repository's exporters/, which, as before, does not count as tracedfuture's.)
OWN_DIR = os.path.dirname(os.path.dirname(__file__)) + os.sep
CORE_DIR = os.path.dirname(__file__) + os.sep  # the hot path: only ever a wrapper's frames
STDLIB_DIR = sysconfig.get_paths()["stdlib"] + os.sep
# Another machine's standard library (a trace read elsewhere): .../lib/python3.12/...
OTHER_STDLIB = re.compile(r"^(?:.*[/\\])?(?:lib|Lib)[/\\]python3(?:\.\d+)?t?[/\\](?!site-packages|dist-packages)")
PACKAGES = re.compile(r"[/\\](?:site|dist)-packages[/\\]")


# --- files ------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def is_asyncio(filename: str) -> bool:
    """Whether a source file is asyncio's own (the standard library's ``asyncio``
    package, here or in a trace recorded on another machine).

    >>> is_asyncio("/usr/lib/python3.11/asyncio/tasks.py")
    True
    """
    if filename.startswith(ASYNCIO_DIR):
        return True
    if filename.startswith(STDLIB_DIR):
        rest = filename[len(STDLIB_DIR) :]
    else:
        found = OTHER_STDLIB.match(filename)
        if found is None:
            return False
        rest = filename[found.end() :]
    return rest.startswith(("asyncio/", "asyncio\\"))


@functools.lru_cache(maxsize=8192)
def is_installed(filename: str) -> bool:
    """Whether a source file belongs to an installed package (``site-packages``).

    >>> is_installed("/venv/lib/python3.12/site-packages/aiohttp/web.py"), is_installed("/app/web.py")
    (True, False)
    """
    return PACKAGES.search(filename) is not None


@functools.lru_cache(maxsize=8192)
def is_library(filename: str) -> bool:
    """Whether a source file belongs to an installed package or the standard library,
    not to the program itself."""
    return bool(filename.startswith(STDLIB_DIR) or PACKAGES.search(filename) or OTHER_STDLIB.match(filename))


def short_asyncio(filename: str) -> str:
    """asyncio's files by their package path (``asyncio/tasks.py``), others as they are."""
    if filename.startswith(ASYNCIO_DIR):
        return "asyncio/" + filename[len(ASYNCIO_DIR) :]
    return filename


# --- code objects -----------------------------------------------------------------

USER, INTERNAL, BOUNDARY = 0, 1, 2
# Keyed by id(): CPython 3.11-3.13 hash a code object by hashing its bytecode and
# constants, on every lookup (200 ns for a mid-sized function). Each entry keeps
# its code object alive, so its id cannot be reused while it is cached. The hot
# path of ``_future`` reads this dict directly.
code_kinds: dict[int, tuple[CodeType, int]] = {}


def kind(code: CodeType) -> int:
    """:func:`classify`, cached per code object."""
    entry = code_kinds.get(id(code))
    if entry is not None and entry[0] is code:
        return entry[1]
    found = classify(code)
    if len(code_kinds) >= 100_000:
        code_kinds.clear()  # code made at run time (exec): do not grow for ever
    code_kinds[id(code)] = (code, found)
    return found


def classify(code: CodeType) -> int:
    """``USER`` (outside asyncio and tracedfuture), ``INTERNAL``, or ``BOUNDARY``
    (where the loop calls into a callback or a task step)."""
    name = code.co_filename
    if is_asyncio(name):
        # Handle._run is where the loop calls into a callback or a task step:
        # above it is the loop's own machinery, never the code that made a future.
        if code.co_name == "_run" and name.endswith("events.py"):
            return BOUNDARY
        return INTERNAL
    if name.startswith(OWN_DIR):
        return INTERNAL
    return USER


# --- walks ------------------------------------------------------------------------


def site(frame: FrameType | None) -> tuple[CodeType | None, int]:
    """(code, f_lasti) of the first frame outside asyncio and tracedfuture.

    When a task's own coroutine is asyncio's (``create_task(asyncio.sleep(1))``)
    no user frame is below the loop: the innermost asyncio frame is the answer.
    """
    code, lasti, _ = site_and_maker(frame)
    return code, lasti


def site_and_maker(frame: FrameType | None) -> tuple[CodeType | None, int, str | None]:
    """:func:`site`, and the qualname of the asyncio function that made the
    future on the program's behalf when there was one between the program's frame
    and tracedfuture (``SubprocessStreamProtocol.__init__``), else ``None``."""
    first: tuple[CodeType | None, int] = (None, 0)
    while frame is not None:
        code = frame.f_code
        found = kind(code)
        if found == USER:
            return code, frame.f_lasti, first[0].co_qualname if first[0] is not None else None
        if found == BOUNDARY:
            return (*first, None)
        if first[0] is None and not code.co_filename.startswith(OWN_DIR):
            first = (code, frame.f_lasti)
        frame = frame.f_back
    return (*first, None)


def canceller(frame: FrameType | None) -> tuple[CodeType | None, int, CodeType | None, int]:
    """Who called cancel(): the first frame outside tracedfuture (asyncio's own
    ``Timeout._on_timeout`` or ``_cancel_and_wait`` is exactly who cancelled), and
    the first frame outside asyncio too (the user code that asked for it)."""
    direct: tuple[CodeType | None, int] = (None, 0)
    while frame is not None:
        code = frame.f_code
        found = kind(code)
        if direct[0] is None and not code.co_filename.startswith(OWN_DIR):
            direct = (code, frame.f_lasti)
        if found == USER:
            return (*direct, code, frame.f_lasti)
        if found == BOUNDARY:
            break
        frame = frame.f_back
    return (*direct, None, 0)


# --- what the program sees ----------------------------------------------------------


def hide_own_frames(exc: BaseException) -> None:
    """Drop tracedfuture's leading entries from the traceback of an exception about
    to be re-raised with a bare ``raise`` (which adds no entry): the program sees
    asyncio's frames only, as without tracing."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(OWN_DIR):
        tb = tb.tb_next
    exc.__traceback__ = tb


def strip_source_traceback(tb: list[Any]) -> None:
    """Make a debug-mode ``_source_traceback`` what asyncio alone records: without
    the frames tracedfuture put between the innermost user frame and asyncio's
    ``create_future`` / ``create_task``, nor the hot path's own wrappers wherever
    they are (a loop's own ``create_task`` called through them). Other frames of
    tracedfuture below the user's, such as a program run by ``tracedfuture.run``,
    are the program's own and stay."""
    i = len(tb)
    while i and (tb[i - 1].filename.startswith(OWN_DIR) or is_asyncio(tb[i - 1].filename)):
        i -= 1
    tb[:] = [entry for k, entry in enumerate(tb) if not entry.filename.startswith(CORE_DIR if k < i else OWN_DIR)]
