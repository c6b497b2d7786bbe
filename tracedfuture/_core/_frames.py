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
import gc
import inspect
import os
import re
import sys
import sysconfig
import weakref
from collections.abc import Callable, Iterable
from types import CodeType, FrameType
from typing import Any

__all__ = [
    "ASYNCIO_DIR",
    "BOUNDARY",
    "CORE_DIR",
    "INTERNAL",
    "LIBRARY",
    "OTHER_STDLIB",
    "OWN_DIR",
    "PACKAGES",
    "PRIMITIVE",
    "PROGRAM",
    "STDLIB_DIR",
    "cancelled_by",
    "canceller",
    "classify",
    "code_kinds",
    "creation",
    "hide_own_frames",
    "is_asyncio",
    "is_installed",
    "is_library",
    "kind",
    "on_program_change",
    "primitive_label",
    "primitive_number",
    "raised_at",
    "set_app_modules",
    "short_asyncio",
    "strip_source_traceback",
    "waiting_at",
]

ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep
# The tracedfuture package: the parent of _core/. (tracedfuture.exporters is
# inside it when installed from a wheel; an editable install maps it to the
# repository's exporters/, which, as before, does not count as tracedfuture's.)
OWN_DIR = os.path.dirname(os.path.dirname(__file__)) + os.sep
CORE_DIR = os.path.dirname(__file__) + os.sep  # the hot path: only ever a wrapper's frames


def _install_paths(names: tuple[str, ...], base: dict[str, str] | None = None) -> list[str]:
    """``sysconfig.get_path(name, vars=base)`` of each name, in this environment's
    default scheme: the same strings, expanded from the scheme's templates with the
    variables sysconfig takes from ``sys``. Expanding them through sysconfig loads
    the whole build configuration first (``_sysconfigdata``), which cost a traced
    program's start more than any other import of tracing; a template that needs
    anything else is left to sysconfig."""
    templates = sysconfig.get_paths(expand=False)
    known = {
        "base": os.path.normpath(sys.prefix),
        "platbase": os.path.normpath(sys.exec_prefix),
        "installed_base": os.path.normpath(sys.base_prefix),
        "installed_platbase": os.path.normpath(sys.base_exec_prefix),
        "py_version_short": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "py_version_nodot": f"{sys.version_info[0]}{sys.version_info[1]}",
        "platlibdir": sys.platlibdir,
        "abiflags": getattr(sys, "abiflags", ""),
        **(base or {}),
    }
    if os.name == "nt":
        known["platlibdir"] = "lib"  # as sysconfig's own expansion does there
    try:
        return [os.path.normpath(os.path.expanduser(templates[name]).format(**known)) for name in names]
    except (KeyError, IndexError, ValueError):
        return [sysconfig.get_path(name, vars=base) for name in names]


# This environment's (sys.prefix, sys.exec_prefix).
_STDLIB, _SCRIPTS = _install_paths(("stdlib", "scripts"))
STDLIB_DIR = _STDLIB + os.sep


class _Pattern:
    """A regular expression compiled the first time a text might match it: a text
    without its literal part (``needs``) cannot, and that is the usual file name,
    the program's own; compiling one costs a traced program's start."""

    __slots__ = ("_compiled", "needs", "pattern")

    def __init__(self, pattern: str, needs: str) -> None:
        self.pattern = pattern
        self.needs = needs
        self._compiled: re.Pattern[str] | None = None

    def _regex(self) -> re.Pattern[str]:
        if self._compiled is None:
            self._compiled = re.compile(self.pattern)
        return self._compiled

    def match(self, text: str) -> re.Match[str] | None:
        return self._regex().match(text) if self.needs in text else None

    def search(self, text: str) -> re.Match[str] | None:
        return self._regex().search(text) if self.needs in text else None


# Another machine's standard library (a trace read elsewhere): .../lib/python3.12/...
OTHER_STDLIB = _Pattern(
    r"^(?:.*[/\\])?(?:lib|Lib)[/\\]python3(?:\.\d+)?t?[/\\](?!site-packages|dist-packages)", needs="python3"
)
PACKAGES = _Pattern(r"[/\\](?:site|dist)-packages[/\\]", needs="-packages")


def _scripts_dirs() -> tuple[str, ...]:
    """Where installed packages' console scripts live (this environment's and its
    base Python's ``bin/``): a launcher there (``.venv/bin/uvicorn``) runs a
    package's code, it is not the program."""
    found = {_SCRIPTS + os.sep}
    for base in {(sys.base_prefix, sys.base_exec_prefix)} - {(sys.prefix, sys.exec_prefix)}:
        try:
            found.add(_install_paths(("scripts",), {"base": base[0], "platbase": base[1]})[0] + os.sep)
        except (KeyError, ValueError):  # pragma: no cover - an odd install scheme
            continue
    return tuple(sorted(found))


SCRIPTS_DIRS = _scripts_dirs()


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
    """Whether a source file belongs to an installed package (its console script
    too) or the standard library, not to the program itself."""
    return bool(
        filename.startswith((STDLIB_DIR, *SCRIPTS_DIRS)) or PACKAGES.search(filename) or OTHER_STDLIB.match(filename)
    )


def short_asyncio(filename: str) -> str:
    """asyncio's files by their package path (``asyncio/tasks.py``), others as they are."""
    if filename.startswith(ASYNCIO_DIR):
        return "asyncio/" + filename[len(ASYNCIO_DIR) :]
    return filename


# --- code objects -----------------------------------------------------------------

# PROGRAM: the program's own code; LIBRARY: outside asyncio and tracedfuture, but
# the standard library's or an installed package's; INTERNAL: asyncio's or
# tracedfuture's; BOUNDARY: where the loop calls into a callback or a task step.
# A future's *site* is its first PROGRAM or LIBRARY frame, its *program frame* the
# first PROGRAM one (``_cfuture.c`` has the same numbers).
PROGRAM, INTERNAL, BOUNDARY, LIBRARY, PRIMITIVE = 0, 1, 2, 3, 4
# The methods of asyncio's primitives that create a waiter's future, by id (the
# code objects are kept alive here). Subclasses (BoundedSemaphore, PriorityQueue)
# run the same code; the label names the object's own class.
_PRIMITIVE_CODES: dict[int, CodeType] = {
    id(code): code
    for code in (
        asyncio.Lock.acquire.__code__,
        asyncio.Semaphore.acquire.__code__,
        asyncio.Event.wait.__code__,
        asyncio.Condition.wait.__code__,
        asyncio.Queue.get.__code__,
        asyncio.Queue.put.__code__,
    )
}
# Keyed by id(): CPython 3.11-3.13 hash a code object by hashing its bytecode and
# constants, on every lookup (200 ns for a mid-sized function). Each entry keeps
# its code object alive, so its id cannot be reused while it is cached. The hot
# path of ``_future`` reads this dict directly.
code_kinds: dict[int, tuple[CodeType, int]] = {}
# Directories whose files are the program's even where they are installed
# (``install(app_modules=...)``); set by :func:`set_app_modules`.
_app_dirs: tuple[str, ...] = ()
# Called when what counts as the program changes: the compiled core's cache.
_forget: list[Callable[[], object]] = []


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
    """``PROGRAM``, ``LIBRARY``, ``INTERNAL``, ``PRIMITIVE`` (an ``INTERNAL`` kind) or
    ``BOUNDARY`` (see above).

    The program is, by default, every file outside the standard library,
    installed packages (``site-packages``, ``dist-packages``) and tracedfuture;
    :func:`set_app_modules` adds packages that are installed too.
    """
    name = code.co_filename
    if is_asyncio(name):
        # Handle._run is where the loop calls into a callback or a task step:
        # above it is the loop's own machinery, never the code that made a future.
        if code.co_name == "_run" and name.endswith("events.py"):
            return BOUNDARY
        if _PRIMITIVE_CODES.get(id(code)) is code:
            return PRIMITIVE
        return INTERNAL
    if name.startswith(OWN_DIR):
        return INTERNAL
    if _app_dirs and name.startswith(_app_dirs):
        return PROGRAM
    if name.startswith("<frozen ") or is_library(name):
        return LIBRARY
    return PROGRAM


def set_app_modules(names: Iterable[str]) -> None:
    """Count the files of these top-level modules or packages as the program's,
    wherever they are installed (``("myservice",)``); ``()`` goes back to the
    default guess. Found without importing them.

    >>> import json
    >>> set_app_modules(("json",)); classify(json.dumps.__code__) == PROGRAM
    True
    >>> set_app_modules(()); classify(json.dumps.__code__) == LIBRARY
    True
    """
    global _app_dirs
    dirs: list[str] = []
    for name in names:
        if not isinstance(name, str) or not name or "." in name:
            msg = f"app_modules takes top-level module names such as 'myservice', not {name!r}"
            raise ValueError(msg)
        import importlib.util  # only for app_modules

        spec = importlib.util.find_spec(name)
        if spec is None:
            msg = f"app_modules: no module named {name!r} on sys.path"
            raise ValueError(msg)
        if spec.submodule_search_locations:
            dirs.extend(os.path.join(path, "") for path in spec.submodule_search_locations)
        elif spec.origin:
            dirs.append(spec.origin)
    _app_dirs = tuple(dirs)
    code_kinds.clear()
    for forget in _forget:
        forget()


def on_program_change(forget: Callable[[], object]) -> None:
    """Call ``forget()`` whenever :func:`set_app_modules` changes what counts as the
    program (an implementation's own cache of :func:`classify`)."""
    _forget.append(forget)


# --- walks ------------------------------------------------------------------------


def creation(
    frame: FrameType | None,
) -> tuple[CodeType | None, int, str | None, CodeType | None, int, str | None]:
    """Where a future or task was made, from the frame that asked for it:
    ``(code, lasti, maker, program_code, program_lasti, label)``.

    ``code``/``lasti``: the first frame outside asyncio and tracedfuture (a
    library's, maybe). ``maker``: the qualname of the asyncio function that made
    the future on the program's behalf when there was one between that frame and
    tracedfuture (``SubprocessStreamProtocol.__init__``), else ``None``.
    ``program_code``/``program_lasti``: the first frame of the program's own
    code up the stack (see :func:`classify`), or ``None``. When a task's own
    coroutine is asyncio's (``create_task(asyncio.sleep(1))``) no frame outside
    asyncio is below the loop: the innermost asyncio frame is the site.
    ``label``: ``Lock#1`` when the maker is a primitive's (see ``PRIMITIVE``).
    """
    first: tuple[CodeType | None, int] = (None, 0)
    first_frame: FrameType | None = None
    site: tuple[CodeType | None, int] | None = None
    maker = None
    label = None
    while frame is not None:
        code = frame.f_code
        found = kind(code)
        if found == PROGRAM:
            if site is None:
                if first[0] is not None:
                    maker = first[0].co_qualname
                    label = primitive_label(first_frame)
                return code, frame.f_lasti, maker, code, frame.f_lasti, label
            return (*site, maker, code, frame.f_lasti, label)
        if found == LIBRARY:
            if site is None:
                site = (code, frame.f_lasti)
                if first[0] is not None:
                    maker = first[0].co_qualname
                    label = primitive_label(first_frame)
        elif found == BOUNDARY:
            break
        elif site is None and first[0] is None and not code.co_filename.startswith(OWN_DIR):
            first = (code, frame.f_lasti)
            if found == PRIMITIVE:
                first_frame = frame
        frame = frame.f_back
    if site is None:
        return (*first, None, None, 0, primitive_label(first_frame))
    return (*site, maker, None, 0, label)


# Each primitive's number, per class name, in the order they were first seen:
# id(obj) -> (a weak reference, number). Never the object itself, never its
# __hash__ or __eq__ (the program's, in a subclass).
_numbers: dict[int, tuple[weakref.ref[Any], int]] = {}
_counters: dict[str, int] = {}


def primitive_number(obj: object) -> int | None:
    """The number of a lock, semaphore, event, condition or queue (``1`` for the
    first ``Lock`` seen), stable for its life; ``None`` for an object that takes
    no weak reference."""
    key = id(obj)
    entry = _numbers.get(key)
    if entry is not None and entry[0]() is obj:
        return entry[1]

    def gone(ref: weakref.ref[Any], key: int = key) -> None:
        held = _numbers.get(key)
        if held is not None and held[0] is ref:
            del _numbers[key]

    try:
        ref = weakref.ref(obj, gone)
    except TypeError:
        return None
    name = type(obj).__name__
    number = _counters[name] = _counters.get(name, 0) + 1
    _numbers[key] = (ref, number)
    return number


def primitive_label(frame: FrameType | None) -> str | None:
    """``Lock#1``: the primitive whose method (``frame``, of ``PRIMITIVE`` code)
    makes a future, by its class and number; ``None`` when it cannot be told."""
    if frame is None:
        return None
    try:
        obj = frame.f_locals.get("self")
        if obj is None:
            return None
        number = primitive_number(obj)
        name = type(obj).__name__
    except Exception:  # an observer never breaks the observed
        return None
    return name if number is None else f"{name}#{number}"


def canceller(
    frame: FrameType | None, task: object = None
) -> tuple[CodeType | None, int, CodeType | None, int, CodeType | None, int]:
    """Who called cancel() (:func:`cancelled_by`), and, for a task, the
    program's line where it was waiting (:func:`waiting_at`):
    ``(code, lasti, user_code, user_lasti, waiting_code, waiting_lasti)``.
    Both run only when something is cancelled, which is rare."""
    return (*cancelled_by(frame), *waiting_at(task))


def waiting_at(task: object) -> tuple[CodeType | None, int]:
    """The program's line where a task is suspended: the innermost frame of the
    program's own code down its chain of coroutines (``cr_await``), as
    ``(code, lasti)``; ``(None, 0)`` for a future, and for a task that is not
    suspended in an ``await`` (not started yet, running: it cancels itself,
    done), whose line would say nothing true about a wait."""
    get_coro = getattr(task, "get_coro", None)
    if get_coro is None:
        return None, 0
    try:
        coro = get_coro()
        found: tuple[CodeType | None, int] = (None, 0)
        depth = 0
        while coro is not None and depth < 256:
            frame = (
                getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
            )
            suspended = getattr(coro, "cr_suspended", None)
            if suspended is None:
                suspended = getattr(coro, "gi_suspended", None)
            if frame is None or not suspended:
                # Not a Python coroutine (Cython's have no frame), or not waiting.
                return found if depth else (None, 0)
            if kind(frame.f_code) == PROGRAM:
                found = (frame.f_code, frame.f_lasti)
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
            depth += 1
    except Exception:  # an observer never breaks the observed
        return None, 0
    return found


def cancelled_by(frame: FrameType | None) -> tuple[CodeType | None, int, CodeType | None, int]:
    """Who called cancel(): the first frame outside tracedfuture (asyncio's own
    ``Timeout._on_timeout`` or ``_cancel_and_wait`` is exactly who cancelled), and
    the first frame outside asyncio too (the user code that asked for it).

    A timeout or a TaskGroup cancels from a callback of the loop, with no frame
    of the program below it: then the program's frame is the line that set it up
    (``async with asyncio.timeout(0.05):``, ``async with asyncio.TaskGroup()``),
    found in the coroutines of the task it belongs to (:func:`_set_up_at`). The
    frame that runs the loop (``loop.run_until_complete(...)``: uvloop calls
    callbacks from C, with that frame right above them) is never named: it
    did not cancel anything."""
    direct: tuple[CodeType | None, int] = (None, 0)
    direct_frame = None
    running = asyncio._get_running_loop() is not None
    while frame is not None:
        code = frame.f_code
        found = kind(code)
        if running and runs_the_loop(code):
            break
        if direct[0] is None and not code.co_filename.startswith(OWN_DIR):
            direct = (code, frame.f_lasti)
            direct_frame = frame
        if found in (PROGRAM, LIBRARY):
            return (*direct, code, frame.f_lasti)
        if found == BOUNDARY:
            break
        frame = frame.f_back
    if direct_frame is not None and direct[0] is not None and direct[0].co_name in _SET_UP_BY:
        try:
            program = _set_up_at(direct_frame)
        except Exception:  # an observer never breaks the observed
            program = None
        if program is not None:
            return (*direct, *program)
    return (*direct, None, 0)


# asyncio's callbacks that cancel on behalf of a context manager the program
# entered, and where that object keeps the task it belongs to.
_SET_UP_BY = {"_on_timeout": "_task", "_abort": "_parent_task", "_on_task_done": "_parent_task"}


# Keyed by id(), as code_kinds is (each entry keeps its code object alive).
_runners: dict[int, tuple[CodeType, bool]] = {}


def runs_the_loop(code: CodeType) -> bool:
    """Whether this code calls ``run_until_complete`` or ``run_forever`` (and is
    no coroutine): while a loop runs, such a frame above a callback is the one
    running it. Cached per code object."""
    entry = _runners.get(id(code))
    if entry is not None and entry[0] is code:
        return entry[1]
    coroutine = code.co_flags & (inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE | inspect.CO_ASYNC_GENERATOR)
    found = not coroutine and ("run_until_complete" in code.co_names or "run_forever" in code.co_names)
    if len(_runners) >= 100_000:
        _runners.clear()
    _runners[id(code)] = (code, found)
    return found


def _set_up_at(frame: FrameType) -> tuple[CodeType, int] | None:
    """For asyncio's ``Timeout._on_timeout`` or ``TaskGroup._abort`` (``frame``):
    the program's line that entered that context manager, as ``(code, lasti)``.

    The object (``self``) belongs to a task; the coroutine of that task (or of
    one it awaits) that entered it holds its bound ``__aexit__`` on its stack.
    The line is that of its ``async with``, when the coroutine is the
    program's; else (``wait_for`` on 3.12+, a library's timeout) the line of the
    first coroutine of the program further out, where it awaited into them."""
    attribute = _SET_UP_BY[frame.f_code.co_name]
    holder = frame.f_locals.get("self")
    if holder is None or not is_asyncio(frame.f_code.co_filename):
        return None
    task = getattr(holder, attribute, None)
    get_coro = getattr(task, "get_coro", None)
    coro = get_coro() if get_coro is not None else None
    chain: list[tuple[Any, FrameType]] = []
    while coro is not None and len(chain) < 256:
        inner = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if inner is None:
            break
        chain.append((coro, inner))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
    for index, (coro, inner) in enumerate(chain):
        exits = [
            ref
            for ref in gc.get_referents(coro)
            if getattr(ref, "__name__", None) == "__aexit__" and hasattr(ref, "__self__")
        ]
        owned = [k for k, ref in enumerate(exits) if ref.__self__ is holder]
        exiting = False
        if not owned and index + 1 < len(chain):
            # Awaiting the holder's own __aexit__ (a TaskGroup waiting for its
            # tasks): the instruction is the end of that async with, on its line.
            following = chain[index + 1][1]
            exiting = following.f_code.co_name == "__aexit__" and following.f_locals.get("self") is holder
        if not owned and not exiting:
            continue
        if kind(inner.f_code) == PROGRAM:
            if exiting:
                return inner.f_code, inner.f_lasti
            return inner.f_code, _async_with_at(inner.f_code, inner.f_lasti, owned[0])
        for _, outer in reversed(chain[:index]):
            if kind(outer.f_code) == PROGRAM:
                return outer.f_code, outer.f_lasti
        return None
    return None


def _async_with_at(code: CodeType, lasti: int, nth: int) -> int:
    """The offset of the ``async with`` whose ``__aexit__`` is the ``nth`` (from
    the outermost) of those that enclose ``lasti`` in ``code``; ``lasti`` itself
    when the bytecode does not say (another Python's)."""
    blocks = _async_with_blocks(code)
    enclosing = [(depth, start) for depth, start, first, last in blocks if first <= lasti < last]
    if not enclosing:
        return lasti
    enclosing.sort()
    return enclosing[min(nth, len(enclosing) - 1)][1]


@functools.lru_cache(maxsize=1024)
def _async_with_blocks(code: CodeType) -> tuple[tuple[int, int, int, int], ...]:
    """Each ``async with`` of ``code``: ``(stack depth of its __aexit__, offset of
    the statement, first and end offset of the code it protects)``, from the
    exception table (3.11+: a with's handler starts ``PUSH_EXC_INFO,
    WITH_EXCEPT_START``)."""
    import dis

    parse = getattr(dis, "_parse_exception_table", None)
    if parse is None:
        return ()
    instructions = list(dis.get_instructions(code))
    at = {ins.offset: k for k, ins in enumerate(instructions)}
    by_target: dict[int, list[Any]] = {}
    for entry in parse(code):
        by_target.setdefault(entry.target, []).append(entry)
    blocks = []
    for target, entries in by_target.items():
        k = at.get(target)
        if k is None or k + 1 >= len(instructions) or instructions[k + 1].opname != "WITH_EXCEPT_START":
            continue
        first = min(e.start for e in entries)
        last = max(e.end for e in entries)
        before = [
            ins for ins in instructions if ins.offset < first and ins.opname in ("BEFORE_ASYNC_WITH", "BEFORE_WITH")
        ]
        if before and before[-1].opname == "BEFORE_ASYNC_WITH":
            blocks.append((min(e.depth for e in entries), before[-1].offset, first, last))
    return tuple(blocks)


def raised_at(exc: BaseException) -> tuple[CodeType | None, int, CodeType | None, int]:
    """Where an exception was raised: the innermost entry of its traceback, and
    the innermost entry there that is the program's own code (``None`` when
    there is none, or no traceback: ``set_exception(ValueError())``)."""
    tb = exc.__traceback__
    entries = []
    while tb is not None:
        entries.append((tb.tb_frame.f_code, tb.tb_lasti))
        tb = tb.tb_next
    if not entries:
        return None, 0, None, 0
    for code, lasti in reversed(entries):
        if kind(code) == PROGRAM:
            return (*entries[-1], code, lasti)
    return (*entries[-1], None, 0)


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
