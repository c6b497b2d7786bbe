"""``tracedfuture run``: run a script or module with tracing installed process-wide.

The program must not be able to tell it is traced. ``run`` checks its switches,
turns them into ``TRACEDFUTURE_*`` variables and replaces itself (``execv``) with
``python [flags] script.py args`` or ``python [flags] -m module args``, where the
flags are those typed before ``-m tracedfuture`` and no others: the same pid,
argv, ``sys.orig_argv``, ``sys.path[0]``, ``__main__``, stack frames, signals, exit status and
output as an untraced run, because it *is* an untraced run, plus the start-up hook
(``tracedfuture.pth``, :mod:`tracedfuture._startup`), which installs tracing
before the program starts and finishes the trace at exit, after the program's own
``atexit`` handlers and non-daemon threads.
"""

from __future__ import annotations

import os
import site
import sys
from types import SimpleNamespace

from . import options as _options
from .options import (
    DESTINATIONS,
    NOT_OPTION_VARIABLES,
    OPTIONS,
    PREFIX,
    OptionError,
    read_arguments,
    settings_from_environment,
    takes_value,
    to_environment,
)

# typing.TYPE_CHECKING without importing typing: run becomes the program, and
# what it imports is start-up the program waits for (tests/test_layers.py pins it).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import NoReturn

__all__ = ["add_run_arguments", "hook_installed", "run_command"]

HOOK = "tracedfuture.pth"
_EXPORTERS = {
    # exporter: (module under tracedfuture.exporters, pip extra, package people know)
    "structlog": ("structlog", "structlog", "structlog"),
    "otel": ("otel", "otel", "opentelemetry-sdk"),
}


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``run``'s options (every option of the one table) on ``parser``."""
    _options.add_arguments(parser)


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
        following = args[index + 1] if index + 1 < len(args) else None
        if following is not None and takes_value(arg, following):
            own.append(following)
            index += 1
        index += 1
    if index == len(args):
        return own, None, None, []
    return own, None, args[index], args[index + 1 :]


def hook_installed() -> str | None:
    """Where ``tracedfuture.pth`` is, among the directories whose ``.pth`` files
    this interpreter runs at start-up; ``None`` when it is in none of them."""
    directories = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    if site.ENABLE_USER_SITE:
        directories.append(site.getusersitepackages())
    for directory in directories:
        path = os.path.join(directory, HOOK)
        if os.path.isfile(path):
            return path
    return None


def _check_exporters(fail: Callable[[str], NoReturn], environ: dict[str, str]) -> None:
    """Fail now, before the program starts, when an exporter's package is missing."""
    names = environ.get("TRACEDFUTURE_EXPORTER", "").split(",")
    for name in dict.fromkeys(n for n in names if n in _EXPORTERS):
        import importlib

        module_name, extra, package = _EXPORTERS[name]
        qualified = f"tracedfuture.exporters.{module_name}"
        try:
            importlib.import_module(qualified)
        except ImportError as exc:
            if exc.name == qualified:
                fail(f"this tracedfuture has no {name} exporter ({qualified} is missing)")
            print(
                f"tracedfuture run: error: the {name} exporter needs {package}, which cannot be imported here "
                f"(missing: {exc.name or package}); install it with: pip install 'tracedfuture[{extra}]'",
                file=sys.stderr,
            )
            raise SystemExit(2) from None


# Interpreter options followed by their value as the next argument when not attached.
_FLAGS_WITH_VALUE = ("-X", "-W", "--check-hash-based-pycs")


def _interpreter_flags(orig_argv: list[str] | None = None) -> list[str]:
    """The interpreter options really typed on the command line that started
    tracedfuture (``python -X dev -W error -m tracedfuture run app.py``), so the
    program is started with them and nothing else: its ``sys.orig_argv`` (and
    ``/proc/PID/cmdline``) is what an untraced run shows. Options that came from
    the environment (``PYTHONOPTIMIZE``, ``PYTHONDONTWRITEBYTECODE``...) reach it
    as the environment, never turned into ``-O`` or ``-B``."""
    argv = sys.orig_argv if orig_argv is None else orig_argv
    flags: list[str] = []
    index = 1
    while index < len(argv):
        arg = argv[index]
        if arg in ("-m", "-c", "-", "--") or arg.startswith(("-m", "-c")) or not arg.startswith("-"):
            break  # the script (tracedfuture's console script) or what python runs
        flags.append(arg)
        if arg in _FLAGS_WITH_VALUE and index + 1 < len(argv):
            flags.append(argv[index + 1])
            index += 1
        index += 1
    return flags


def _interpreter_path() -> str:
    """``argv[0]`` for the program: the interpreter as it was typed, when it names
    this very ``sys.executable`` (so an untraced run's ``sys.orig_argv[0]`` is
    kept), else ``sys.executable`` (a console script's shebang, a name that
    ``PATH`` might resolve elsewhere)."""
    typed = sys.orig_argv[0] if sys.orig_argv else ""
    if os.sep in typed:  # a path (a console script's shebang): no PATH to search
        found: str | None = typed
    else:
        import shutil  # its import costs start-up: only for a bare "python"

        found = shutil.which(typed) if typed else None
    if found and os.path.abspath(found) == sys.executable:
        return typed
    return sys.executable


def _default_trace(module: str | None, script: str | None) -> str:
    """``app-1234.jsonl`` for ``app.py`` (or ``-m pkg.app``, or a directory
    ``app/`` with a ``__main__.py``) run as pid 1234."""
    if module is not None:
        stem = module.rsplit(".", 1)[-1]
    else:
        stem = os.path.splitext(os.path.basename(os.path.normpath(str(script))))[0]
    import re  # only when no destination was given

    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip(".") or "trace"
    return f"{stem}-{os.getpid()}.jsonl"


def run_command(args: list[str], make_parser: Callable[[], argparse.ArgumentParser]) -> int:
    """``tracedfuture run``: read ``args``, then become the program.

    ``make_parser()`` is run's argparse parser, made only when it has something to
    say (``-h``, a bad option, an error): the common case reads the flags with
    :func:`tracedfuture.options.read_arguments` and never imports argparse."""

    def fail(message: str) -> NoReturn:
        make_parser().error(message)

    own, module, script, program_args = _split(args)
    values = read_arguments(own)
    options = make_parser().parse_args(own) if values is None else SimpleNamespace(**values)
    if module is None and script is None:
        fail("say what to run: a script (run app.py) or a module (run -m package.module)")
    if module == "":
        fail("-m needs a module name, such as -m http.server")
    # The variables already set apply too; the flags win over them.
    inherited = {k: v for k, v in os.environ.items() if k.startswith(PREFIX)}
    environ = {**inherited, **to_environment(options)}
    try:
        settings = settings_from_environment(environ)
    except OptionError as exc:
        print(f"tracedfuture run: error: {exc}", file=sys.stderr)
        return 2
    if not any(name in settings for name in DESTINATIONS):
        # No destination: a trace file in the current directory, named after the
        # program and its pid (the same pid after execve), and one line saying so.
        path = _default_trace(module, script)
        environ[PREFIX + "OUTPUT"] = settings["output"] = path
        print(f"tracedfuture: writing the trace to {path} (read it with: tracedfuture tree {path})", file=sys.stderr)
    if "jsonl" in settings.get("exporter", ()) and "output" not in settings:
        fail("--exporter jsonl writes a trace file: say where with -o trace.jsonl")
    _check_exporters(fail, environ)
    if "console" in settings:
        from ._startup import console_available

        if not console_available():
            fail("--console needs tracedfuture._control.server (the control socket), which this tracedfuture lacks")
    if sys.flags.no_site:
        fail("tracing starts from the site module, which python -S turns off: run without -S")
    if sys.flags.ignore_environment or sys.flags.isolated:
        fail("tracing is set up through TRACEDFUTURE_* variables, which python -E and -I ignore: run without -E/-I")
    if not sys.executable:
        fail("cannot tell which Python to run the program with (sys.executable is empty)")
    if hook_installed() is None:
        fail(
            f"the start-up hook {HOOK} is not in this Python's site-packages; reinstall tracedfuture "
            "(pip install --force-reinstall tracedfuture) to put it back"
        )
    target = ["-m", str(module)] if module is not None else [str(script)]
    argv = [_interpreter_path(), *_interpreter_flags(), *target, *program_args]
    child_environ = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    child_environ.update({k: v for k, v in environ.items() if k in {o.variable for o in OPTIONS}})
    child_environ.update({k: v for k, v in os.environ.items() if k in NOT_OPTION_VARIABLES})
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    if os.name != "posix":  # pragma: no cover - exec does not keep the process on Windows
        import subprocess

        return subprocess.call(argv, env=child_environ)
    os.execve(sys.executable, argv, child_environ)
