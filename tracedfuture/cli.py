"""The ``tracedfuture`` command: run a program traced, then look at its trace.

.. code-block:: console

    $ tracedfuture run -o trace.jsonl app.py --port 8080
    $ tracedfuture tree trace.jsonl --failed
    $ tracedfuture stats trace.jsonl --sort p99
    $ tracedfuture html trace.jsonl -o report.html
    $ tracedfuture perfetto trace.jsonl -o trace.json
    $ tracedfuture ps 4242          # a process started with 'tracedfuture run --console'
    $ tracedfuture pstree 4242
    $ tracedfuture dump 4242 -o trace.jsonl
    $ tracedfuture top 4242

Exit status: the program's own for ``run``; 0 for the viewers, 2 for bad input
(a missing file, a file that is not a trace, a corrupt line, a bad option; for
``ps``, ``pstree``, ``dump`` and ``top``: no such process, no control socket, a
refusal), with one line on standard error and no traceback.
"""

from __future__ import annotations

import os
import sys
import time

# typing.TYPE_CHECKING without importing typing, and argparse imported where it
# is used: `tracedfuture run` goes through this module to become the program, and
# what it imports is start-up the program waits for. Type checkers read any
# TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterable, Sequence
    from typing import IO, Any

    from ._views._model import Model

__all__ = ["main"]

PROG = "tracedfuture"


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


# --- shared by the viewers -------------------------------------------------------------


class _Progress:
    """``reading trace.jsonl: 42% (12.0 of 28.5 MB)`` on standard error, rewritten in place."""

    def __init__(self, path: str, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled
        self.shown = False
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.1:
            return
        self.last = now
        percent = 100 * done // total if total else 100
        sys.stderr.write(f"\rreading {self.path}: {percent}% ({done / 1e6:.1f} of {total / 1e6:.1f} MB)")
        sys.stderr.flush()
        self.shown = True

    def step(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write(f"\r\x1b[K{text}")
            sys.stderr.flush()
            self.shown = True

    def finish(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.shown = False


def _load(args: argparse.Namespace, progress: _Progress) -> Model:
    import gc

    from ._views._model import load

    try:
        model = load(args.trace, progress=progress)
    finally:
        progress.finish()
    # The model lives as long as this process: the collections that rendering's
    # garbage sets off need not walk its hundreds of thousands of objects again.
    gc.freeze()
    for warning in model.warnings:
        print(f"{PROG} {args.command}: warning: {warning}", file=sys.stderr)
    return model


def _progress(args: argparse.Namespace) -> _Progress:
    return _Progress(args.trace, enabled=args.progress or sys.stderr.isatty())


def _use_color(choice: str, stream: IO[str]) -> bool:
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


def _write_lines(lines: Iterable[str]) -> None:
    out = sys.stdout
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= 4096:
            out.write("\n".join(batch) + "\n")
            batch.clear()
    if batch:
        out.write("\n".join(batch) + "\n")


def _output_path(args: argparse.Namespace, suffix: str) -> str:
    if args.output:
        return str(args.output)
    trace: str = args.trace
    base = trace.removesuffix(".jsonl")
    return base + suffix


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1_000_000 else f"{max(1, round(count / 1e3))} kB"


def _write_output(path: str, text: str) -> None:
    from . import _files  # the viewers' output: not on run's way to exec

    if path == "-":
        sys.stdout.write(text)
        return
    try:
        # As private as the trace it shows (0600), written beside it and renamed
        # (tracedfuture._files). A trace may hold lone surrogates: written as
        # \udXXX, which JSON reads back.
        with _files.create(path) as out:
            out.write(text.encode("utf-8", "backslashreplace"))
    except _files.Refused as exc:
        msg = f"not writing {exc.path}: {exc.why}"
        raise UsageError(msg) from None
    except OSError as exc:
        msg = f"cannot write {path}: {exc.strerror or exc}"
        raise UsageError(msg) from None


# --- the viewers -------------------------------------------------------------------------


def _seconds(text: str) -> float:
    import argparse

    try:
        from ._text import parse_seconds

        return parse_seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    import argparse

    if not text.strip().isdigit():
        msg = f"expected a whole number >= 0, such as 3, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


def _exception_names(text: str) -> tuple[str, ...]:
    import argparse

    names = tuple(name.strip() for name in text.split(",") if name.strip())
    bad = [name for name in names if not all(part.isidentifier() for part in name.split("."))]
    if not names or bad:
        shown = repr(bad[0]) if bad else repr(text)
        msg = f"expected exception type names separated by commas, such as EOFError,ConnectionResetError, not {shown}"
        raise argparse.ArgumentTypeError(msg)
    return names


def _width(asked: int | None, stream: IO[str]) -> int | None:
    """The columns a line may take: ``--width`` (0: no limit), else the terminal's
    (``COLUMNS`` first) when writing to one, else no limit: a pipe or a file gets
    whole lines, for grep and less -S."""
    if asked is not None:
        return asked or None
    if stream.isatty():
        import shutil

        return shutil.get_terminal_size().columns
    return None


def _cmd_tree(args: argparse.Namespace) -> int:
    from ._views.tree import TreeOptions, find_focus, render_tree

    model = _load(args, _progress(args))
    try:
        focus = find_focus(model, args.focus) if args.focus is not None else frozenset()
    except LookupError as exc:
        raise UsageError(str(exc)) from None
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    options = TreeOptions(
        pending=args.pending,
        failed=args.failed,
        cancelled=args.cancelled,
        abandoned=args.abandoned,
        slow_ns=None if args.slow is None else int(args.slow * 1e9),
        focus=focus,
        color=_use_color(args.color, sys.stdout),
        unicode=encoding in ("utf8", "utf8sig"),
        expand=args.expand,
        depth=args.depth,
        all=args.all,
        width=_width(args.width, sys.stdout),
        attribute=not args.library_sites,
    )
    _write_lines(render_tree(model, options))
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    import json

    from ._views.stats import collect, render_json, render_table

    model = _load(args, _progress(args))
    rows = collect(model, args.sort)
    if args.json:
        json.dump(render_json(model, rows), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        _write_lines(render_table(model, rows))
    return 0


def _cmd_html(args: argparse.Namespace) -> int:
    from ._text import plural
    from ._views.html import render_html

    progress = _progress(args)
    model = _load(args, progress)
    path = _output_path(args, ".html")
    progress.step(f"writing {path}")
    text = render_html(model, args.expected_exceptions)
    _write_output(path, text)
    progress.finish()
    if path != "-":
        print(
            f"wrote {path} ({plural(len(model.records), 'future or task', 'futures and tasks')}, "
            f"{_size(len(text.encode('utf-8', 'backslashreplace')))})",
            file=sys.stderr,
        )
    return 0


def _cmd_perfetto(args: argparse.Namespace) -> int:
    import json

    from ._views.perfetto import render_perfetto

    progress = _progress(args)
    model = _load(args, progress)
    path = _output_path(args, ".perfetto.json")
    progress.step(f"writing {path}")
    text = json.dumps(render_perfetto(model), separators=(",", ":"))
    _write_output(path, text)
    progress.finish()
    if path != "-":
        print(f"wrote {path}: open it in ui.perfetto.dev or chrome://tracing", file=sys.stderr)
    return 0


# --- attaching to a running process (the control socket) -----------------------------------


def _attach(args: argparse.Namespace) -> Any:
    from ._control.server import ControlError, connect

    try:
        return connect(args.target, timeout=args.timeout)
    except ControlError as exc:
        raise UsageError(str(exc)) from None


def _ask(client: Any, name: str, **params: Any) -> dict[str, Any]:
    from ._control.server import ControlError

    try:
        result: dict[str, Any] = client.request(name, **params)
    except ControlError as exc:
        raise UsageError(str(exc)) from None
    return result


def _cmd_ps(args: argparse.Namespace) -> int:
    import json

    from ._control.console import format_ps

    with _attach(args) as client:
        snap = _ask(client, "snapshot")
        lints = _ask(client, "lints")
    if args.json:
        # ASCII only: a character a terminal would obey (C1 controls such as \x9b)
        # leaves as a JSON escape, the same string to any JSON reader.
        json.dump({"snapshot": snap, "lints": lints}, sys.stdout, indent=2, ensure_ascii=True)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_ps(snap, lints, all_tasks=args.all) + "\n")
    return 0


def _cmd_pstree(args: argparse.Namespace) -> int:
    from ._control.console import format_pstree

    with _attach(args) as client:
        snap = _ask(client, "snapshot")
    sys.stdout.write(format_pstree(snap, all_frames=args.all_frames, all_tasks=args.all) + "\n")
    return 0


def _cmd_dump(args: argparse.Namespace) -> int:
    from . import _files
    from ._control.server import ControlError
    from ._text import plural

    with _attach(args) as client:
        # The file's name comes from the pid the user typed (or, for a socket
        # path or TCP, the integer the client checked), never from the server's text.
        pid = int(args.target) if str(args.target).isdigit() else int(client.hello.get("pid", 0))
        path = args.output or f"tracedfuture-dump-{pid}.jsonl"
        try:
            if path == "-":
                lines, size = client.dump(sys.stdout.buffer)
                sys.stdout.flush()
                return 0
            # Trace files are the user's only: 0600, written whole, then renamed.
            with _files.create(path) as out:
                lines, size = client.dump(out)
        except ControlError as exc:
            raise UsageError(str(exc)) from None
        except _files.Refused as exc:
            msg = f"not writing {exc.path}: {exc.why}"
            raise UsageError(msg) from None
        except OSError as exc:
            msg = f"cannot write {path}: {exc.strerror or exc}"
            raise UsageError(msg) from None
    events = max(0, lines - 2)
    print(
        f"wrote {path} ({plural(events, 'event')} from process {pid}, {_size(size)}): {PROG} tree {path}",
        file=sys.stderr,
    )
    return 0


def _cmd_top(args: argparse.Namespace) -> int:
    from ._control.console import INSTALL, format_ps, run_top

    with _attach(args) as client:
        if not (sys.stdout.isatty() and sys.stdin.isatty()):
            # Not a terminal: one plain snapshot, as ps prints it, and the lints.
            snap = _ask(client, "snapshot")
            lints = _ask(client, "lints")
            sys.stdout.write(format_ps(snap, lints) + "\n")
            return 0
        try:
            import rich  # noqa: F401
        except ImportError:
            msg = f"the live console needs rich: {INSTALL}"
            raise UsageError(msg) from None
        return run_top(client, args.target, interval=args.interval)


def _positive_seconds(text: str) -> float:
    import argparse

    value = _seconds(text)
    if value <= 0:
        msg = f"expected a number of seconds > 0, such as 1, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _add_attach_commands(commands: Any) -> None:
    target_help = (
        "a process id, the path of its control socket, or 127.0.0.1:PORT (TCP, token in TRACEDFUTURE_CONSOLE_TOKEN); "
        "the process must serve one ('tracedfuture run --console')"
    )

    def attach(name: str, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(
            name, help=help_text, description=help_text[0].upper() + help_text[1:] + "."
        )
        sub.add_argument("target", metavar="PID", help=target_help)
        sub.add_argument(
            "--timeout", type=_positive_seconds, default=10.0, metavar="SECONDS", help="wait this long for an answer"
        )
        return sub

    ps = attach("ps", "list the pending tasks of a running process: id, name, state, age, what each awaits, site")
    ps.add_argument("--json", action="store_true", help="print the snapshot and lints replies as JSON")
    background = "a server's background too (lifespan, server loop, waits on purpose), by default "
    ps.add_argument("--all", action="store_true", help=background + "left out: its requests come first")
    pstree = attach("pstree", "print the await tree of a running process, bare futures, ages and sites included")
    pstree.add_argument(
        "--all-frames",
        action="store_true",
        help="show every frame of each task's stack (default: asyncio's and installed packages' folded into one line)",
    )
    pstree.add_argument("--all", action="store_true", help=background + "folded into one line after its requests")
    dump = attach("dump", "write a running process's flight recorder as a trace file that every viewer reads")
    dump.add_argument("-o", "--output", metavar="FILE", help="default: tracedfuture-dump-PID.jsonl; '-' for stdout")
    top = attach("top", "a live console of a running process's tasks (needs 'tracedfuture[console]')")
    top.add_argument("--interval", type=_positive_seconds, default=1.0, metavar="SECONDS", help="refresh period")


# --- argument parsing --------------------------------------------------------------------


def _version() -> str:
    """``tracedfuture 0.1.0 (compiled core)``: the version and which hot path runs."""
    from ._core import IMPLEMENTATION
    from ._version import __version__

    core = "compiled core" if IMPLEMENTATION == "c" else "pure-Python core"
    return f"{PROG} {__version__} ({core}, tracedfuture.IMPLEMENTATION = {IMPLEMENTATION!r})"


def _parser(viewers: bool = True) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The command's parser, and its ``run`` subparser; without the viewers'
    subparsers (and their imports) for ``run``, which must start light."""
    import argparse

    from ._run import add_run_arguments

    class _Version(argparse.Action):
        """``--version``: the text is made when asked for, as it imports the core."""

        def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
            super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

        def __call__(self, parser: argparse.ArgumentParser, *_: Any, **__: Any) -> None:
            print(_version())  # on standard output, as argparse's own version action
            parser.exit()

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run a program with its asyncio futures traced, and look at the trace.",
        epilog=f"'{PROG} COMMAND -h' explains one command.",
    )
    parser.add_argument("--version", action=_Version, help="show the version and the core in use")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run a script or module with tracing installed process-wide",
        description="Run a program traced, without changing it. Its exit status, output and argv are unchanged.",
        usage=f"{PROG} run [options] script.py [args ...]\n       {PROG} run [options] -m module [args ...]",
    )
    add_run_arguments(run)
    if not viewers:
        return parser, run

    def viewer(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        sub.add_argument("trace", metavar="TRACE", help="a trace file written by 'tracedfuture run -o'")
        sub.add_argument("--progress", action="store_true", help="show progress even when stderr is not a terminal")
        return sub

    tree = viewer("tree", "print the await graph: tasks, what they awaited, outcomes and durations")
    tree.add_argument("--pending", action="store_true", help="only what was still pending when the trace ended")
    tree.add_argument(
        "--failed",
        action="store_true",
        help="only what failed, left an exception unretrieved, or had one caught by the framework (a server's 500)",
    )
    tree.add_argument("--cancelled", action="store_true", help="only what was cancelled")
    tree.add_argument("--abandoned", action="store_true", help="only what was garbage-collected while pending")
    tree.add_argument("--slow", type=_seconds, metavar="SECONDS", help="only what lived at least SECONDS")
    tree.add_argument("--focus", metavar="ID", help="only this task or future (an id, or a task name) and below")
    tree.add_argument(
        "--expand", action="store_true", help="show identical siblings one by one instead of one line with a count"
    )
    tree.add_argument("--depth", type=_count, metavar="N", help="show N levels (1: only the top ones)")
    tree.add_argument(
        "--all",
        action="store_true",
        help="also show asyncio.run's own shutdown tasks, and a server's background (lifespan, server loop...)",
    )
    tree.add_argument(
        "--width", type=_count, metavar="COLUMNS", help="cut lines to COLUMNS (default: the terminal's; 0: never cut)"
    )
    tree.add_argument(
        "--library-sites",
        action="store_true",
        help="show a library's creation sites as they are, without the program's task that led there",
    )
    tree.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="default: auto")

    from ._views.stats import COLUMNS

    stats = viewer("stats", "summarize by creation site: outcomes, lifetime percentiles, cancel msgs")
    stats.add_argument(
        "--sort", choices=COLUMNS, default="count", metavar="COLUMN", help=f"one of {', '.join(COLUMNS)}"
    )
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")

    html = viewer("html", "write a self-contained HTML timeline (one file, works offline)")
    html.add_argument("-o", "--output", metavar="FILE", help="default: TRACE with .html; '-' for stdout")
    html.add_argument(
        "--expected-exceptions",
        type=_exception_names,
        default=(),
        metavar="TYPES",
        help="comma-separated exception types that are normal control flow (EOFError,ConnectionResetError): "
        "their failures are drawn apart from real ones",
    )

    perfetto = viewer("perfetto", "write Chrome trace-event JSON for ui.perfetto.dev or chrome://tracing")
    perfetto.add_argument("-o", "--output", metavar="FILE", help="default: TRACE with .perfetto.json; '-' for stdout")
    _add_attach_commands(commands)
    return parser, run


_COMMANDS = {
    "tree": _cmd_tree,
    "stats": _cmd_stats,
    "html": _cmd_html,
    "perfetto": _cmd_perfetto,
    "ps": _cmd_ps,
    "pstree": _cmd_pstree,
    "dump": _cmd_dump,
    "top": _cmd_top,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tracedfuture`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "run":
        import gc

        # It execs the program: nothing made on the way is worth collecting (and
        # a run that returns, with an error, leaves the collector as it found it).
        collecting = gc.isenabled()
        gc.disable()
        try:
            from ._run import run_command

            return run_command(args[1:], lambda: _parser(viewers=False)[1])
        finally:
            if collecting:
                gc.enable()
    # The viewers' imports, after run's: run must start light.
    from ._text import printable
    from .trace import TraceFormatError

    parser, _ = _parser()
    namespace = parser.parse_args(args)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")  # a trace may hold any string
    try:
        return _COMMANDS[namespace.command](namespace)
    except BrokenPipeError:
        # The reader went away (tree | head): stop quietly, as cat does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (FileNotFoundError, TraceFormatError, UsageError) as exc:
        print(f"{PROG} {namespace.command}: error: {printable(str(exc))}", file=sys.stderr)
    except IsADirectoryError:
        print(f"{PROG} {namespace.command}: error: {namespace.trace} is a directory, not a trace file", file=sys.stderr)
    except OSError as exc:
        name = exc.filename or namespace.trace
        print(f"{PROG} {namespace.command}: error: cannot read {name}: {exc.strerror or exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"\n{PROG} {namespace.command}: interrupted", file=sys.stderr)
        return 130
    return 2
