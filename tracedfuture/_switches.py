"""The switches of ``tracedfuture run`` and the ``TRACEDFUTURE_*`` variables: one table.

:data:`SWITCHES` is everything that can be asked for without changing the
program: each row is a ``tracedfuture run`` flag and a ``TRACEDFUTURE_*`` variable
with one parser, so the two cannot drift. A bad value is one line naming the flag
or the variable, the value and the fix (:class:`SwitchError`; argparse's error for
a flag).

``tracedfuture run`` parses its flags here, turns them into variables
(:func:`to_environment`) and starts the program with them; the start-up hook
(``tracedfuture._startup``) reads them back (:func:`from_environment`).
"""

from __future__ import annotations

import argparse
import difflib
import math
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["SWITCHES", "Switch", "SwitchError", "add_arguments", "from_environment", "takes_value", "to_environment"]

PREFIX = "TRACEDFUTURE_"
EXPORTERS = ("jsonl", "structlog", "otel")
LINT_DEFAULTS: dict[str, float | None] = {"stall": 5.0, "blocked": 0.5, "orphan": 30.0}
DEFAULT_OTEL_TIMEOUT = 1.0
# Variables other parts of tracedfuture read; the hook neither starts for them nor
# calls them unknown.
# Variables of tracedfuture that are not start-up switches: the implementation
# choice, and the compiled core's build (setup.py, CI).
OTHER_VARIABLES = frozenset(
    {"TRACEDFUTURE_PURE_PYTHON", "TRACEDFUTURE_STRICT_BUILD", "TRACEDFUTURE_CFLAGS", "TRACEDFUTURE_LDFLAGS"}
)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class SwitchError(ValueError):
    """A bad switch value; the message names the switch, the value and the fix."""


# --- parsers: text -> value, or ValueError("expected ..., not 'text'") ---------------------


def _install_option(name: str) -> Callable[[str], Any]:
    """A parser for an install() option, from the one options table (``_options``)."""

    def parse(text: str) -> Any:
        from ._options import OPTIONS, OptionError

        (option,) = [option for option in OPTIONS if option.name == name]
        try:
            return option.from_text(text)
        except OptionError as exc:
            raise ValueError(str(exc)) from None

    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        msg = f"expected a fraction between 0 and 1, such as 0.1 for one future in ten, not {text!r}"
        raise ValueError(msg)
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < math.inf:
        msg = f"expected a number of seconds >= 0, such as 0.5, not {text!r}"
        raise ValueError(msg)
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0.0 < value < math.inf:
        msg = f"expected a number of seconds > 0, such as 1.0, not {text!r}"
        raise ValueError(msg)
    return value


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    msg = f"expected 1 or 0 (or true/false, yes/no, on/off), not {text!r}"
    raise ValueError(msg)


def _path(text: str) -> str:
    if not text.strip():
        msg = "expected a file path, such as trace.jsonl, not an empty string"
        raise ValueError(msg)
    return text


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        msg = f"expected one or more comma-separated names, such as app,app.db, not {text!r}"
        raise ValueError(msg)
    return names


def _exporters(text: str) -> tuple[str, ...]:
    names = _names(text)
    for name in names:
        if name not in EXPORTERS:
            msg = f"expected exporters among {', '.join(EXPORTERS)} (comma-separated), not {text!r}"
            raise ValueError(msg)
    return names


def _flight(text: str) -> str:
    """A flight recorder dump path; ``1`` (or ``on``) is the default path."""
    if text.strip().lower() in _TRUE:
        return ""
    return _path(text)


def _signal(text: str) -> int:
    name = text.strip().upper()
    number = int(name) if name.isdigit() else getattr(signal, name if name.startswith("SIG") else "SIG" + name, -1)
    uncatchable = {getattr(signal, n) for n in ("SIGKILL", "SIGSTOP") if hasattr(signal, n)}
    if number not in signal.valid_signals() or number in uncatchable or isinstance(number, bool):
        msg = f"expected a signal that can be caught, such as USR1 or SIGUSR2, not {text!r}"
        raise ValueError(msg)
    return int(number)


def _lints(text: str) -> dict[str, float | None]:
    """``stall=5,blocked=0.5,orphan=30``; ``1`` is the defaults, ``name=off`` turns one off."""
    thresholds = dict(LINT_DEFAULTS)
    if text.strip().lower() in _TRUE:
        return thresholds
    fix = f"expected name=seconds pairs among {', '.join(LINT_DEFAULTS)}, such as stall=5,blocked=0.5"
    for part in text.split(","):
        name, equals, value = part.strip().partition("=")
        if name not in LINT_DEFAULTS or not equals:
            msg = f"{fix} (or 1 for the defaults), not {text!r}"
            raise ValueError(msg)
        if value.strip().lower() in ("off", "none"):
            thresholds[name] = None
            continue
        try:
            seconds = float(value)
        except ValueError:
            seconds = 0.0
        if not 0.0 < seconds < math.inf:
            msg = f"{fix}, with seconds > 0 (or off), not {name}={value!r}"
            raise ValueError(msg)
        thresholds[name] = seconds
    return thresholds


def _console(text: str) -> str | None:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return "on"
    if lowered == "allow-cancel":
        return "allow-cancel"
    if lowered in _FALSE:
        return None
    msg = f"expected 1 or allow-cancel, not {text!r}"
    raise ValueError(msg)


# --- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Switch:
    """One thing ``tracedfuture run`` and the start-up hook can be asked for.

    ``name`` is the key of the parsed settings (an :func:`tracedfuture.install`
    option's name where it is one); the variable is ``TRACEDFUTURE_`` + ``NAME``.
    ``form`` is how the flag is written: ``value`` (``--slow 0.5``), ``flag``
    (``--tail``), ``list`` (repeatable; comma-separated in the variable) or
    ``optional`` (``--lints`` alone, or ``--lints=stall=5``; ``takes`` says which
    following argument it may take without ``=``).
    """

    name: str
    flag: str
    parse: Callable[[str], Any]
    help: str
    metavar: str | None = None
    form: str = "value"
    short: str | None = None
    takes: Callable[[str], bool] | None = None
    install_option: bool = False

    @property
    def variable(self) -> str:
        return PREFIX + self.name.upper()


def _looks_like_trace(text: str) -> bool:
    return text.endswith(".jsonl")


def _looks_like_lints(text: str) -> bool:
    return text.partition("=")[0] in LINT_DEFAULTS


SWITCHES: tuple[Switch, ...] = (
    Switch("output", "--output", _path, "write a trace file (JSON lines); {pid} in it is the pid", "TRACE", short="-o"),
    Switch(
        "exporter",
        "--exporter",
        _exporters,
        "also export to structlog or OpenTelemetry (repeatable); jsonl needs -o",
        "{jsonl,structlog,otel}",
        form="list",
    ),
    Switch(
        "sample_rate",
        "--sample-rate",
        _fraction,
        "trace only this fraction of futures (head sampling)",
        "FRACTION",
        install_option=True,
    ),
    Switch(
        "max_bytes",
        "--max-bytes",
        _install_option("max_bytes"),
        "bytes of raw records each ring holds (the flight recorder's window), such as 64MiB",
        "BYTES",
        install_option=True,
    ),
    Switch(
        "max_memory",
        "--max-memory",
        _install_option("max_memory"),
        "bytes the exporters' queues may hold before dropping whole futures, counted (default 64MiB)",
        "BYTES",
        install_option=True,
    ),
    Switch(
        "export_timeout",
        "--export-timeout",
        _install_option("export_timeout"),
        "seconds exit waits for the exporters, in all (default 10)",
        "SECONDS",
        install_option=True,
    ),
    Switch(
        "tail",
        "--tail",
        _boolean,
        "keep only failed, cancelled, abandoned or slow futures",
        form="flag",
        install_option=True,
    ),
    Switch(
        "slow",
        "--slow",
        _seconds,
        "with --tail: the lifetime above which a future is kept",
        "SECONDS",
        install_option=True,
    ),
    Switch(
        "include_modules",
        "--include-module",
        _names,
        "only trace these modules",
        "PREFIX",
        form="list",
        install_option=True,
    ),
    Switch(
        "exclude_modules",
        "--exclude-module",
        _names,
        "never trace these modules",
        "PREFIX",
        form="list",
        install_option=True,
    ),
    Switch(
        "include_names", "--include-name", _names, "only these task names", "PATTERN", form="list", install_option=True
    ),
    Switch(
        "exclude_names", "--exclude-name", _names, "never these task names", "PATTERN", form="list", install_option=True
    ),
    Switch(
        "capture_values",
        "--capture-values",
        _boolean,
        "record results' repr and exception messages",
        form="flag",
        install_option=True,
    ),
    Switch(
        "flight",
        "--flight",
        _flight,
        "keep a flight recorder, dumped to PATH (default tracedfuture-flight-PID.jsonl) on an unhandled "
        "exception and at exit",
        "PATH",
        form="optional",
        takes=_looks_like_trace,
    ),
    Switch(
        "dump_signal",
        "--dump-signal",
        _signal,
        "dump the flight recorder when the process gets this signal, such as USR1 (implies --flight)",
        "SIG",
    ),
    Switch(
        "lints",
        "--lints",
        _lints,
        "record lints: stalled futures, a blocked loop, orphans (default stall=5,blocked=0.5,orphan=30; name=off)",
        "stall=S,blocked=S,orphan=S",
        form="optional",
        takes=_looks_like_lints,
    ),
    Switch(
        "console",
        "--console",
        _console,
        "serve the control socket for tracedfuture ps/pstree/dump/top (turns on the flight recorder); "
        "--console=allow-cancel also lets it cancel tasks",
        "allow-cancel",
        form="optional",
        takes="allow-cancel".__eq__,
    ),
    Switch(
        "follow_children",
        "--follow-children",
        _boolean,
        "also trace Python child processes (multiprocessing, subprocess with sys.executable), "
        "each into its own file named with its pid",
        form="flag",
    ),
    Switch(
        "otel_timeout",
        "--otel-timeout",
        _positive_seconds,
        f"seconds the OpenTelemetry exporter waits for a collector before giving up (default {DEFAULT_OTEL_TIMEOUT})",
        "SECONDS",
    ),
)
_BY_VARIABLE = {switch.variable: switch for switch in SWITCHES}
# What makes the start-up hook trace: somewhere for events to go.
_DESTINATIONS = ("output", "exporter", "flight", "dump_signal", "console")


# --- the environment -------------------------------------------------------------------------


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings the ``TRACEDFUTURE_*`` variables ask for (``{}``: none).

    Raises :class:`SwitchError` naming the first bad variable.

    >>> from_environment({"TRACEDFUTURE_OUTPUT": "t.jsonl", "TRACEDFUTURE_SAMPLE_RATE": "0.5"})
    {'output': 't.jsonl', 'sample_rate': 0.5}
    >>> from_environment({"TRACEDFUTURE_SAMPLE_RATE": "2", "TRACEDFUTURE_OUTPUT": "t.jsonl"})
    Traceback (most recent call last):
    ...
    tracedfuture._switches.SwitchError: TRACEDFUTURE_SAMPLE_RATE='2': expected a fraction between 0 and 1, ...
    """
    settings: dict[str, Any] = {}
    names = sorted(key for key in environ if key.startswith(PREFIX) and key not in OTHER_VARIABLES)
    if not any(_BY_VARIABLE[name].name in _DESTINATIONS for name in names if name in _BY_VARIABLE):
        # Nothing asks for tracing: every Python process of the environment runs
        # the hook, and one that was not asked to trace is left exactly alone.
        names = [name for name in names if name in _BY_VARIABLE]
    for variable in names:
        switch = _BY_VARIABLE.get(variable)
        if switch is None:
            close = difflib.get_close_matches(variable, [*_BY_VARIABLE, *OTHER_VARIABLES], n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            msg = f"{variable} is not a tracedfuture variable: {hint}the variables are {', '.join(_BY_VARIABLE)}"
            raise SwitchError(msg)
        text = environ[variable]
        try:
            value = switch.parse(text)
        except ValueError as exc:
            msg = f"{variable}={text!r}: {exc}"
            raise SwitchError(msg) from None
        if value is None or value is False:
            continue  # turned off explicitly
        settings[switch.name] = value
    if settings and not any(name in settings for name in _DESTINATIONS):
        listed = ", ".join(PREFIX + name.upper() for name in settings)
        msg = (
            f"{listed} set, but nothing says where events go: set TRACEDFUTURE_OUTPUT=trace.jsonl, "
            "TRACEDFUTURE_EXPORTER=structlog|otel or TRACEDFUTURE_FLIGHT=1"
        )
        raise SwitchError(msg)
    return settings


def to_environment(options: argparse.Namespace) -> dict[str, str]:
    """The variables that ask for what ``tracedfuture run``'s parsed flags ask for."""
    environ: dict[str, str] = {}
    for switch in SWITCHES:
        value = getattr(options, switch.name, None)
        if value is None or value is False or value == []:
            continue
        if switch.form == "flag":
            text = "1"
        elif switch.form == "list":
            text = ",".join(item for items in value for item in items)
        else:
            text = str(value)
        environ[switch.variable] = text
    return environ


# --- argparse, for tracedfuture run ----------------------------------------------------------


def _argparse_type(switch: Switch) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return switch.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = switch.name  # argparse names the type in some messages
    return convert


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare every switch as a ``tracedfuture run`` option on ``parser``.

    Values are kept as the text given (validated), so that they travel to the
    program as variables unchanged.
    """
    for switch in SWITCHES:
        flags = (switch.short, switch.flag) if switch.short else (switch.flag,)
        dest = switch.name
        if switch.form == "flag":
            parser.add_argument(*flags, dest=dest, action="store_true", default=None, help=switch.help)
            continue
        check = _argparse_type(switch)

        def keep(text: str, check: Callable[[str], Any] = check) -> str:
            check(text)
            return text

        def keep_list(text: str, keep: Callable[[str], str] = keep) -> tuple[str, ...]:
            return _names(keep(text))

        keep.__name__ = keep_list.__name__ = switch.name
        if switch.form == "list":
            parser.add_argument(
                *flags,
                dest=dest,
                action="append",
                default=[],
                type=keep_list,
                metavar=switch.metavar,
                help=switch.help,
            )
        elif switch.form == "optional":
            parser.add_argument(
                *flags,
                dest=dest,
                nargs="?",
                const="1",
                default=None,
                type=keep,
                metavar=switch.metavar,
                help=switch.help,
            )
        else:
            parser.add_argument(*flags, dest=dest, type=keep, metavar=switch.metavar, help=switch.help)


def takes_value(arg: str, following: str | None) -> bool:
    """Whether run's own option ``arg`` consumes the argument ``following`` it
    (everything from the script name on belongs to the program)."""
    for switch in SWITCHES:
        if arg in (switch.flag, switch.short):
            if switch.form == "flag":
                return False
            if switch.form == "optional":
                return following is not None and switch.takes is not None and switch.takes(following)
            return True
    return False
