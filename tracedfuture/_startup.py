"""Tracing from the environment: what the start-up hook and ``tracedfuture run`` install.

The package installs ``tracedfuture.pth`` in site-packages. Python runs its one
line at every start-up, before the program; the line only looks for a variable
whose name starts with ``TRACEDFUTURE_`` and, only if there is one, imports this
module and calls :func:`hook`, which installs tracing as the variables say
(``tracedfuture.options`` is the table of them)::

    TRACEDFUTURE_OUTPUT=trace.jsonl TRACEDFUTURE_LINTS=stall=5 python app.py

``tracedfuture run`` turns its switches into the same variables and replaces
itself with ``python script.py args``, so the program runs exactly as untraced:
same pid, argv, stack, signals, exit status.

A process traced this way removes the variables from its ``os.environ``: the
program sees the environment it would have had, and its children are not traced;
they are counted (``untraced_children`` in the trace's stats line) when they are
Python started through ``subprocess`` / ``os.posix_spawn`` or a ``fork()``. With
``TRACEDFUTURE_FOLLOW_CHILDREN=1`` the variables stay, with ``{pid}`` in the
paths, so that each Python child started with them writes its own trace.
"""

from __future__ import annotations

import atexit
import gc
import os
import re
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any, cast

from ._files import DropBehind, Refused
from ._pipeline._process import at_fork
from .options import (
    DEFAULT_OTEL_TIMEOUT,
    INSTALL_OPTIONS,
    NOT_OPTION_VARIABLES,
    PREFIX,
    OptionError,
    settings_from_environment,
)

__all__ = ["hook", "start"]

_hooked = False


def hook() -> None:
    """Called by ``tracedfuture.pth`` when a ``TRACEDFUTURE_*`` variable is set.

    A bad variable ends the process before the program starts (one line on
    standard error, exit status 2); a failure of tracedfuture itself is one line,
    and the program runs untraced.
    """
    global _hooked
    if _hooked or _is_our_command():
        return  # site can run a .pth line twice (a venv's site-packages is also the prefix's)
    _hooked = True
    if sys.flags.ignore_environment or sys.flags.isolated:
        return  # python -E / -I: the environment is not the program's to read, nor ours
    # Tracing's imports (asyncio's among them) make objects that live as long as
    # the process: the collector is paused meanwhile, rather than walk them, and
    # the whole heap, again and again. It runs as before once the program starts.
    collecting = gc.isenabled()
    gc.disable()
    try:
        settings = settings_from_environment(os.environ)
        if settings:
            start(settings)
    except OptionError as exc:
        _refuse(str(exc))
    except Untraced as exc:
        print(f"tracedfuture: {exc}", file=sys.stderr)
    except Exception as exc:
        print(f"tracedfuture: not tracing this process: {exc!r}", file=sys.stderr)
    finally:
        if collecting:
            gc.enable()


class Untraced(Exception):
    """A destination that cannot be used safely: one line, and the program runs untraced."""


def _is_our_command() -> bool:
    """Whether this process is the ``tracedfuture`` command itself (``run`` reads
    the variables and passes them on; the viewers have nothing to trace)."""
    name = os.path.basename(sys.argv[0]) if sys.argv else ""
    if name.removesuffix(".exe").removesuffix("-script.py") == "tracedfuture":
        return True
    argv = sys.orig_argv
    for index, arg in enumerate(argv[1:-1], 1):
        if arg == "-m":
            return argv[index + 1] in ("tracedfuture", "tracedfuture.__main__", "tracedfuture.cli")
    return False


def _refuse(message: str) -> None:
    print(f"tracedfuture: error: {message}", file=sys.stderr)
    sys.stderr.flush()
    # SystemExit from a .pth line would be a fatal error of the site module.
    os._exit(2)


def program_argv() -> list[str]:
    """The program's argv as the trace header shows it: ``python -m mod a`` has
    ``sys.argv == ['-m', 'a']`` until runpy runs, so the module name comes from
    ``sys.orig_argv``."""
    argv = list(sys.argv)
    if argv[:1] == ["-m"] and len(sys.orig_argv) > len(argv):
        return ["-m", *sys.orig_argv[len(sys.orig_argv) - len(argv) :]]
    return argv


def _pid_path(path: str) -> str:
    """``path`` with ``{pid}`` in it, for a child's own file: ``trace.jsonl`` ->
    ``/abs/trace.{pid}.jsonl`` (absolute, so that a child in another directory
    writes beside its parent's)."""
    path = os.path.abspath(path)
    if "{pid}" in path:
        return path
    stem, suffix = os.path.splitext(path)
    return f"{stem}.{{pid}}{suffix}"


class _ChildCounter:
    """Counts the Python child processes started while children are not followed."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._pythons = {os.path.realpath(sys.executable)} if sys.executable else set()

    def install(self) -> None:
        sys.addaudithook(self._audit)
        at_fork("startup", after_in_parent=self._add)

    def _add(self) -> None:
        with self._lock:
            self.count += 1

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        # Called for every audited operation of the process: leave at once for the rest.
        if event not in ("subprocess.Popen", "os.posix_spawn", "os.spawn"):
            return
        try:
            executable = args[0] if event == "subprocess.Popen" else args[1]
            argv = args[1] if event == "subprocess.Popen" else args[2]
            if executable is None and argv:
                executable = argv if isinstance(argv, str | bytes) else next(iter(argv))
            if executable is not None and os.path.realpath(os.fsdecode(executable)) in self._pythons:
                self._add()
        except Exception:
            pass  # an argument shape we do not know: not counted


class Startup:
    """Tracing as a set of settings asks: the exporters, the installation, the
    flight recorder, the lints, the control socket, and what finishes them at exit."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self.installation: Any = None
        self.providers: list[Any] = []
        self.children = _ChildCounter() if not settings.get("follow_children") else None
        self.flight = False

    def start(self, *, environment: bool = True) -> None:
        settings = self.settings
        if environment:
            self._environment()
        # Registered before anything else, so that it runs after the program's own
        # atexit handlers (last in, first out).
        atexit.register(self.finish)
        exporters = self._exporters()
        recorder = None
        # --console turns the flight recorder on through the control socket, which
        # adopts the one enabled here (tracedfuture.flight.current()) if there is one.
        if "flight" in settings or "dump_signal" in settings:
            from .flight import FlightRecorder

            recorder = FlightRecorder()
            exporters.append(recorder)
        lints = settings.get("lints")
        if lints is not None and lints.get("blocked") is not None:
            exporters.append(_LoopWatchdogs(lints["blocked"]))
        options = {o.name: settings[o.name] for o in INSTALL_OPTIONS if o.name in settings}
        from ._install import install

        try:
            self.installation = install(exporters=exporters, **options)
        except OptionError:
            raise
        except (TypeError, ValueError) as exc:
            raise OptionError(str(exc)) from None
        if recorder is not None:
            from . import flight

            path = settings.get("flight") or f"tracedfuture-flight-{self.pid}.jsonl"
            flight.enable(
                recorder=recorder,
                path=path.replace("{pid}", str(self.pid)),
                signal=settings.get("dump_signal"),
                at_exit=True,
            )
        if lints is not None and (lints.get("stall") is not None or lints.get("orphan") is not None):
            from . import lints as lints_module

            lints_module.enable(stall=lints["stall"], orphan=lints["orphan"], blocked=None)
        if "console" in settings:
            try:
                start_console(allow_cancel=settings["console"] == "allow-cancel")
            except (RuntimeError, OSError) as exc:  # e.g. its private directory cannot be had: the rest goes on
                print(f"tracedfuture: console off: {exc}", file=sys.stderr)
        if self.children is not None:
            self.children.install()
        self.flight = recorder is not None
        if sys.version_info >= (3, 12):
            at_fork("startup", before=_quiet_fork_warning)
        at_fork("startup", after_in_child=self._forked)

    def _environment(self) -> None:
        """Leave the program the environment it would have had, or, following
        children, give them paths of their own."""
        ours = [key for key in os.environ if key.startswith(PREFIX) and key not in NOT_OPTION_VARIABLES]
        if self.children is not None:
            for key in ours:
                del os.environ[key]
            return
        for switch in ("output", "flight"):
            value = self.settings.get(switch)
            if value:
                os.environ[PREFIX + switch.upper()] = _pid_path(value)

    def _exporters(self) -> list[Any]:
        settings = self.settings
        exporters: list[Any] = []
        names = list(dict.fromkeys(settings.get("exporter", ())))
        if "output" in settings:
            path = settings["output"].replace("{pid}", str(self.pid))
            try:
                exporters.append(ProcessTrace(path, self, argv=program_argv()))
            except Refused as exc:
                msg = f"not writing the trace to {exc.path}: {exc.why}"
                raise Untraced(msg) from None
            except OSError as exc:
                msg = f"cannot write the trace to {path}: {exc.strerror or exc}"
                raise OptionError(msg) from None
        elif "jsonl" in names:
            msg = "the jsonl exporter writes a trace file: say where with TRACEDFUTURE_OUTPUT=trace.jsonl (run -o)"
            raise OptionError(msg)
        if "structlog" in names:
            exporters.append(structlog_exporter())
        if "otel" in names:
            exporter, provider = otel_exporter(settings.get("otel_timeout", DEFAULT_OTEL_TIMEOUT))
            exporters.append(exporter)
            if provider is not None:
                self.providers.append(provider)
        return exporters

    def _forked(self) -> None:
        """In a ``fork()``ed child (multiprocessing's fork and forkserver start
        methods, ``os.fork``): the parent's trace, flight recorder and exit
        handlers are the parent's. Following children, the child gets a trace
        file of its own, from the same settings with its pid in the path."""
        global _current
        if os.getpid() == self.pid or _current is not self:
            return
        _current = None
        try:
            _forget_the_parents_exit()
            if self.flight:
                from . import flight

                flight.disable()  # its at-exit dump would overwrite the parent's file
            if self.children is None and "output" in self.settings:
                child = {k: v for k, v in self.settings.items() if k not in _NOT_IN_FORKED_CHILDREN}
                child["output"] = _pid_path(self.settings["output"])
                _current = start(child, environment=False)
                _finish_in_multiprocessing_child(_current)
        except Exception as exc:
            print(f"tracedfuture: not tracing the forked child {os.getpid()}: {exc!r}", file=sys.stderr)

    def untraced_children(self) -> int | None:
        return self.children.count if self.children is not None else None

    def finish(self) -> None:
        """At exit: deliver every event, close the exporters, stop the providers."""
        if os.getpid() != self.pid:
            return  # a fork()ed child: the trace is its parent's to finish
        if self.installation is not None:
            try:
                self.installation.uninstall()
            except Exception as exc:  # never turn the program's exit into ours
                print(f"tracedfuture: could not finish the trace: {exc!r}", file=sys.stderr)
        for provider in self.providers:
            try:
                provider.shutdown()
            except Exception as exc:
                print(f"tracedfuture: could not finish exporting spans: {exc!r}", file=sys.stderr)


def start(settings: dict[str, Any], *, environment: bool = True) -> Startup:
    """Install tracing as ``settings`` (from :func:`settings_from_environment`) ask."""
    global _current
    startup = Startup(settings)
    startup.start(environment=environment)
    _current = startup
    return startup


_current: Startup | None = None  # what the hook started in this process
# What a fork()ed child does not get again: they hold signal handlers, threads and
# sockets that are its parent's.
_NOT_IN_FORKED_CHILDREN = ("flight", "dump_signal", "lints", "console")


# 3.12+ warns when a process with threads forks: tracing's own threads must not
# make it warn where the untraced program would not.
_FORK_WARNING = r"This process \(pid=\d+\) is multi-threaded, use of fork\(\) may lead to deadlocks in the child\."


def _quiet_fork_warning() -> None:
    """Before each fork: ignore the warning if only tracing's threads are there
    besides the forking one. (It is issued after the after-fork handlers, so the
    filter stays until the next fork decides again.)"""
    import warnings

    from . import _core

    _core.stop_prefaulting()  # its thread, joined: not among those counted below
    ignore = ("ignore", re.compile(_FORK_WARNING, re.IGNORECASE), DeprecationWarning, None, 0)
    ours = sum(1 for t in threading.enumerate() if t.name.startswith(("tracedfuture", "Otel")))
    ours += DropBehind.running()  # threads threading does not list
    alone = _os_threads() - ours <= 1
    present = ignore in warnings.filters
    if alone and not present:
        warnings.filterwarnings("ignore", _FORK_WARNING, DeprecationWarning)
    elif present and not alone:
        # An "ignore" is never cached in warning registries: removing it is enough.
        cast("list[Any]", warnings.filters).remove(ignore)


def _os_threads() -> int:
    """The threads of the process, counted as CPython counts them for that warning."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[17])
    except (OSError, ValueError, IndexError):
        return threading.active_count()


def _forget_the_parents_exit() -> None:
    # The recorder's at-exit handler would wait for the parent's exporter threads,
    # which do not exist in a fork()ed child (export_timeout, 10 s, at the child's
    # exit), then write to the parent's files. Private, in every version of the
    # pipeline so far: Recorder._at_exit, registered with atexit on first install.
    from ._pipeline._drain import RECORDER

    at_exit = getattr(RECORDER, "_at_exit", None)
    if at_exit is not None:
        atexit.unregister(at_exit)


def _finish_in_multiprocessing_child(startup: Startup) -> None:
    """multiprocessing's forked children leave through os._exit, past atexit: its
    exit finalizers are where their trace is finished. Its after-fork callbacks
    run once it has cleared the finalizers it inherited, so register from there."""
    util = sys.modules.get("multiprocessing.util")
    if util is None:
        return  # not multiprocessing's fork: the child leaves through atexit

    def finalize(startup: Startup) -> None:
        util.Finalize(None, startup.finish, exitpriority=100)

    util.register_after_fork(startup, finalize)


# --- the parts ---------------------------------------------------------------------------------


def _trace_writer_class() -> type:
    from .exporters import JsonLinesExporter

    class ProcessTrace(JsonLinesExporter):
        """The trace file of one process: never written by a ``fork()``ed child,
        and its stats line says how many children were started untraced."""

        def __init__(self, path: str, startup: Startup, **header_fields: Any) -> None:
            super().__init__(path, **header_fields)
            self._startup = startup

        def export(self, events: Sequence[Any], /) -> None:
            if os.getpid() == self._startup.pid:
                super().export(events)

        def export_lines(self, data: bytes, count: int, /) -> None:
            if os.getpid() == self._startup.pid:
                super().export_lines(data, count)

        def export_records(self, records: Sequence[Any], lines: Any, /) -> int:
            if os.getpid() == self._startup.pid:
                return super().export_records(records, lines)
            return int(lines.lines(records)[1])  # counted as export_lines's were, not written

        def shutdown(self, stats: Mapping[str, Any] | None = None) -> None:
            if os.getpid() != self._startup.pid:
                return
            untraced = self._startup.untraced_children()
            extra = dict(stats or {})
            if untraced is not None:
                extra["untraced_children"] = untraced
            super().shutdown(extra)

    return ProcessTrace


def ProcessTrace(path: str, startup: Startup, **header_fields: Any) -> Any:
    return _trace_writer_class()(path, startup, **header_fields)


class _LoopWatchdogs:
    """Starts the blocked-loop lint on every loop the installation traces
    (``attach`` is called with each one); an exporter only in name."""

    inline = True

    def __init__(self, blocked: float) -> None:
        self.blocked = blocked

    def export(self, events: Sequence[Any], /) -> None:
        pass

    def attach(self, loop: Any) -> None:
        # Called from the loop's __init__, before its subclass made the self-pipe
        # that call_soon_threadsafe needs: start watching once the loop runs.
        loop.call_soon(self._watch, loop)

    def _watch(self, loop: Any) -> None:
        from . import lints

        lints.enable(loop, stall=None, orphan=None, blocked=self.blocked)


def start_console(*, allow_cancel: bool) -> str:
    """Start the control socket (``tracedfuture._control.server``)."""
    import importlib

    try:
        control = importlib.import_module(f"{__package__}._control.server")
    except ImportError as exc:
        if exc.name not in (f"{__package__}._control", f"{__package__}._control.server"):
            raise
        msg = (
            "TRACEDFUTURE_CONSOLE (run --console) needs the control socket, which this tracedfuture "
            f"{_version()} does not have: upgrade with pip install -U tracedfuture"
        )
        raise OptionError(msg) from None
    path: str = control.start(allow_cancel=allow_cancel)
    return path


def console_available() -> bool:
    import importlib.util

    return importlib.util.find_spec(f"{__package__}._control.server") is not None


def _version() -> str:
    from ._version import __version__

    return __version__


def structlog_exporter() -> Any:
    """A StructlogExporter that writes to standard error unless the program
    configured structlog itself (structlog's default logger prints to stdout,
    which belongs to the program)."""
    import structlog

    from .exporters.structlog import StructlogExporter

    class StderrUnlessConfigured:
        """What StructlogExporter binds a logger from, asked once per batch."""

        def __init__(self) -> None:
            self._stderr: Any = None

        def bind(self, **values: Any) -> Any:
            if structlog.is_configured():
                return structlog.get_logger("tracedfuture").bind(**values)
            if self._stderr is None:
                self._stderr = structlog.wrap_logger(structlog.PrintLogger(sys.stderr))
            return self._stderr.bind(**values)

    return StructlogExporter(logger=StderrUnlessConfigured())


def otel_exporter(timeout: float) -> tuple[Any, Any]:
    """The OTel exporter and, for a program without a TracerProvider, the
    provider built for it from the OTEL_* variables (to shut down at exit)."""
    from .exporters import otel

    try:
        provider = otel.provider_from_environment(timeout=timeout)
    except (ImportError, ValueError) as exc:
        raise OptionError(str(exc)) from None
    return otel.OTelExporter(tracer_provider=provider), provider
