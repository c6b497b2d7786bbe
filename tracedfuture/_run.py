"""``tracedfuture run``: run a script or module with tracing installed process-wide.

The program must not be able to tell it is traced: it sees the ``sys.argv``,
``sys.path[0]``, ``__main__`` module and ``__file__`` that ``python script.py`` or
``python -m module`` would give it, and the process ends with the same exit
status, output and traceback (tracedfuture's own frames are left out of it).

The trace is finished by an :mod:`atexit` handler registered before the program
starts, so it runs after the program's own handlers and after Python has joined
the program's non-daemon threads: nothing they do afterwards is lost.
"""

from __future__ import annotations

import argparse
import atexit
import builtins
import importlib
import io
import os
import runpy
import signal
import sys
import types
import zipfile
from importlib.machinery import SourceFileLoader
from typing import Any

from ._install import Installation, install

__all__ = ["add_run_arguments", "run_command"]

_EXPORTERS = {
    # --exporter NAME: (module under tracedfuture.exporters, class, pip extra, package people know)
    "structlog": ("structlog", "StructlogExporter", "structlog", "structlog"),
    "otel": ("otel", "OTelExporter", "otel", "opentelemetry-sdk"),
}
_VALUE_FLAGS: set[str] = set()  # run's own options that take a value: where the program's argv starts


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        msg = f"expected a fraction between 0 and 1, such as 0.1 for one future in ten, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < float("inf"):
        msg = f"expected a number of seconds >= 0, such as 0.5, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _bytes(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = -1
    if value < 1 << 20:
        msg = f"expected a number of bytes of at least 1 MiB, such as 268435456 for 256 MiB, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``run``'s options on ``parser`` (and remember which take a value)."""

    def add(*flags: str, **kwargs: Any) -> None:
        parser.add_argument(*flags, **kwargs)
        if kwargs.get("action") not in ("store_true", "help"):
            _VALUE_FLAGS.update(flags)

    add("-o", "--output", metavar="TRACE", help="write a trace file (JSON lines) for tree, stats, html, perfetto")
    add(
        "--exporter",
        action="append",
        default=[],
        choices=("jsonl", "structlog", "otel"),
        help="also export to structlog or OpenTelemetry (repeatable); jsonl needs -o",
    )
    add("--sample-rate", type=_fraction, metavar="FRACTION", help="trace only this fraction of futures (head sampling)")
    add("--tail", action="store_true", default=None, help="keep only failed, cancelled, abandoned or slow futures")
    add("--slow", type=_seconds, metavar="SECONDS", help="with --tail: the lifetime above which a future is kept")
    add("--include-module", action="append", dest="include_modules", metavar="PREFIX", help="only trace these modules")
    add("--exclude-module", action="append", dest="exclude_modules", metavar="PREFIX", help="never trace these modules")
    add("--include-name", action="append", dest="include_names", metavar="PATTERN", help="only these task names")
    add("--exclude-name", action="append", dest="exclude_names", metavar="PATTERN", help="never these task names")
    add("--capture-values", action="store_true", default=None, help="record results' repr and exception messages")
    add(
        "--max-memory",
        type=_bytes,
        metavar="BYTES",
        help="what buffers and queues may hold before dropping, counted (default 64 MiB)",
    )
    add(
        "--export-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="how long exit waits for the exporters, in all (default 10)",
    )


def _split(args: list[str]) -> tuple[list[str], str | None, str | None, list[str]]:
    """``(run's own options, module or None, script or None, the program's args)``.

    Everything from the script name (or ``-m module``) on belongs to the program,
    even what looks like one of our options, as with ``python``.
    """
    own: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            index += 1
            break
        if arg == "-m":
            if index + 1 == len(args):
                own.append(arg)  # let argparse report it
                return own, None, None, []
            return own, args[index + 1], None, args[index + 2 :]
        if arg.startswith("-m") and not arg.startswith("--"):
            return own, arg[2:], None, args[index + 1 :]
        if not arg.startswith("-") or arg == "-":
            break
        own.append(arg)
        takes_value = arg in _VALUE_FLAGS or (arg[:2] in _VALUE_FLAGS and len(arg) == 2)
        if takes_value and index + 1 < len(args):
            own.append(args[index + 1])
            index += 1
        index += 1
    if index == len(args):
        return own, None, None, []
    return own, None, args[index], args[index + 1 :]


def _exporters(
    parser: argparse.ArgumentParser, options: argparse.Namespace, argv: list[str], finisher: _Finisher
) -> list[Any]:
    """The exporters the options ask for; ``argv`` (the program's) goes in the trace's
    header; what must be shut down at exit beyond them goes to ``finisher``."""
    exporters: list[Any] = []
    if options.output:
        from .exporters import JsonLinesExporter

        try:
            exporters.append(JsonLinesExporter(options.output, argv=argv))
        except OSError as exc:
            parser.error(f"cannot write the trace to {options.output}: {exc.strerror or exc}")
    elif "jsonl" in options.exporter:
        parser.error("--exporter jsonl writes a trace file: say where with -o trace.jsonl")
    for name in dict.fromkeys(options.exporter):
        if name == "jsonl":
            continue
        module_name, class_name, extra, package = _EXPORTERS[name]
        qualified = f"tracedfuture.exporters.{module_name}"
        try:
            module = importlib.import_module(qualified)
        except ImportError as exc:
            if exc.name == qualified:
                parser.error(f"this tracedfuture has no {name} exporter ({qualified} is missing)")
            print(
                f"tracedfuture run: error: the {name} exporter needs {package}, which cannot be imported here "
                f"(missing: {exc.name or package}); install it with: pip install 'tracedfuture[{extra}]'",
                file=sys.stderr,
            )
            raise SystemExit(2) from None
        if name == "otel":
            # An unmodified program has no TracerProvider: build one from the
            # standard OTEL_* variables, or spans would go to the no-op default.
            try:
                provider = module.provider_from_environment()
            except (ImportError, ValueError) as exc:
                print(f"tracedfuture run: error: {exc}", file=sys.stderr)
                raise SystemExit(2) from None
            if provider is not None:
                finisher.providers.append(provider)
            exporters.append(module.OTelExporter(tracer_provider=provider))
            continue
        exporters.append(getattr(module, class_name)())
    if not exporters:
        parser.error("nothing to export to: give -o trace.jsonl (a trace file) and/or --exporter structlog|otel")
    return exporters


def _options(options: argparse.Namespace) -> dict[str, Any]:
    """The Options the user gave; the others keep the library's defaults."""
    given: dict[str, Any] = {}
    for key in ("sample_rate", "tail", "slow", "capture_values", "max_memory", "export_timeout"):
        if getattr(options, key) is not None:
            given[key] = getattr(options, key)
    for key in ("include_modules", "exclude_modules", "include_names", "exclude_names"):
        if getattr(options, key):
            given[key] = tuple(getattr(options, key))
    return given


class _Finisher:
    """The atexit handler: deliver every event and close the exporters, then, if the
    program died of Ctrl-C, die of SIGINT as Python itself does (status 130)."""

    def __init__(self) -> None:
        self.installation: Installation | None = None
        self.providers: list[Any] = []  # TracerProviders built for --exporter otel
        self.interrupted = False

    def __call__(self) -> None:
        if self.installation is not None:
            try:
                self.installation.uninstall()
            except Exception as exc:  # never turn the program's exit into ours
                print(f"tracedfuture: could not finish the trace: {exc!r}", file=sys.stderr)
        for provider in self.providers:
            try:
                provider.shutdown()  # exports what its batch processor still holds
            except Exception as exc:
                print(f"tracedfuture: could not finish exporting spans: {exc!r}", file=sys.stderr)
        if self.interrupted and os.name == "posix":
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)


def _fresh_main() -> types.ModuleType:
    """A new ``__main__`` module, as Python's own starts, installed in sys.modules."""
    main = types.ModuleType("__main__")
    main.__dict__.update(__builtins__=builtins, __annotations__={})
    sys.modules["__main__"] = main
    return main


def _run_as_main(module: str, alter_argv: bool) -> None:
    # runpy._run_module_as_main (private, unchanged from 3.4 to 3.13) is what
    # ``python -m`` and ``python directory`` call: using it gives the same
    # sys.argv[0], the same "No module named" message and the same two
    # "<frozen runpy>" frames in tracebacks. run_module is the public fallback.
    run_as_main = getattr(runpy, "_run_module_as_main", None)
    if run_as_main is not None:
        run_as_main(module, alter_argv)
    else:  # pragma: no cover - no CPython lacks it today
        runpy.run_module(module, run_name="__main__", alter_sys=True)


def _run_path(path: str, args: list[str]) -> None:
    """Run a script (or a directory or zip with ``__main__.py``) as ``python path args`` would."""
    sys.argv = [path, *args]
    absolute = os.path.abspath(path)
    if os.path.isdir(path) or zipfile.is_zipfile(path):
        if not sys.flags.safe_path:
            sys.path[0] = absolute
        _fresh_main()
        _run_as_main("__main__", False)
        return
    try:
        with io.open_code(absolute) as handle:
            source = handle.read()
    except OSError as exc:
        # Python's own wording, so that the output matches an untraced run.
        print(f"{sys.executable}: can't open file {absolute!r}: [Errno {exc.errno}] {exc.strerror}", file=sys.stderr)
        raise SystemExit(2) from None
    if not sys.flags.safe_path:
        sys.path[0] = os.path.dirname(os.path.realpath(absolute))
    # runpy.run_path would set __file__ (and the paths in tracebacks) to the path
    # as typed and sys.argv[0] to the same; Python 3.9+ gives __file__ as an
    # absolute path and leaves argv[0] as typed. Build the module as Python does.
    main = _fresh_main()
    main.__dict__.update(__file__=absolute, __cached__=None, __loader__=SourceFileLoader("__main__", absolute))
    code = compile(source, absolute, "exec", dont_inherit=True)
    exec(code, main.__dict__)


def _run_module(name: str, args: list[str]) -> None:
    """Run a module as ``python -m name args`` would."""
    sys.argv = ["-m", *args]
    if not sys.flags.safe_path:
        sys.path[0] = os.getcwd()
    _fresh_main()
    _run_as_main(name, True)


def _print_exception(exc: BaseException) -> None:
    """Print an uncaught exception as Python would, without this module's frames."""
    traceback = exc.__traceback__
    while traceback is not None and traceback.tb_frame.f_code.co_filename == __file__:
        traceback = traceback.tb_next
    sys.excepthook(type(exc), exc.with_traceback(traceback), traceback)


def run_command(run_parser: argparse.ArgumentParser, args: list[str]) -> int:
    """``tracedfuture run``: parse ``args`` with ``run_parser``, install tracing, run the program."""
    own, module, script, program_args = _split(args)
    options = run_parser.parse_args(own)
    if module is None and script is None:
        run_parser.error("say what to run: a script (run app.py) or a module (run -m package.module)")
    if module == "":
        run_parser.error("-m needs a module name, such as -m http.server")
    finisher = _Finisher()
    atexit.register(finisher)  # first registered, so it runs after the program's handlers
    argv = [script, *program_args] if script is not None else ["-m", str(module), *program_args]
    exporters = _exporters(run_parser, options, argv, finisher)
    try:
        finisher.installation = install(exporters=exporters, **_options(options))
    except (TypeError, ValueError) as exc:
        for exporter in exporters:
            shutdown = getattr(exporter, "shutdown", None)
            if shutdown is not None:
                shutdown()
        run_parser.error(str(exc))
    try:
        if module is not None:
            _run_module(module, program_args)
        else:
            assert script is not None
            _run_path(script, program_args)
    except SystemExit:
        raise  # Python prints its message (if any) and exits with its code
    except BaseException as exc:
        _print_exception(exc)
        if isinstance(exc, KeyboardInterrupt):
            finisher.interrupted = True
        return 1
    return 0
