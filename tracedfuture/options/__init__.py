"""Every option of tracedfuture, declared once.

One table (:data:`OPTIONS`) holds every option: its name, default, documentation,
how a value is checked and read from text, its ``tracedfuture run`` flag and its
variable. Everything that takes options is built from it:

* :func:`tracedfuture.install` (and ``run``, ``loop_factory``) take the options of
  an installation as keyword arguments, checked by :class:`Options`;
* ``tracedfuture run`` takes every option as a flag (:func:`add_arguments`) and
  passes them to the program as ``TRACEDFUTURE_*`` variables (:func:`to_environment`);
* the start-up hook reads ``TRACEDFUTURE_*`` (:func:`from_environment`), and the
  OpenTelemetry instrumentor reads ``OTEL_PYTHON_TRACEDFUTURE_*``, the options of
  an installation only.

A bad value is checked in one place, its option's row, so that every surface
says the same words about it; only the prefix says where it came from (the
variable, the flag):

>>> from tracedfuture.options import Options
>>> Options(sample_rate=2)
Traceback (most recent call last):
...
tracedfuture.options.OptionError: sample_rate must be between 0.0 and 1.0 (the fraction ... such as 0.1, not 2
>>> from_environment({"TRACEDFUTURE_SAMPLE_RATE": "2"})
Traceback (most recent call last):
...
tracedfuture.options.OptionError: TRACEDFUTURE_SAMPLE_RATE: sample_rate must be between 0.0 and 1.0 (the fraction ...
>>> from_environment({"TRACEDFUTURE_TAIL": "yes", "TRACEDFUTURE_SLOW": "0.5"})
{'tail': True, 'slow': 0.5}
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence

# typing.TYPE_CHECKING without importing typing: this module is on the way of
# every `tracedfuture run` and every traced start (tests/test_layers.py pins what
# they import). Type checkers read any TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from types import SimpleNamespace
    from typing import Any

    from ._options import Options

__all__ = [
    "DESTINATIONS",
    "ENV_PREFIXES",
    "NOT_OPTIONS",
    "OPTIONS",
    "PREFIX",
    "Option",
    "OptionError",
    "OptionTypeError",
    "Options",
    "Redactor",
    "add_arguments",
    "check_install",
    "from_environment",
    "read_arguments",
    "settings_from_environment",
    "takes_value",
    "to_environment",
]

#: The prefix of the variables of ``tracedfuture run`` and the start-up hook.
PREFIX = "TRACEDFUTURE_"
#: The prefixes :func:`from_environment` reads: every option, or an installation's only.
ENV_PREFIXES = (PREFIX, "OTEL_PYTHON_TRACEDFUTURE_")
#: ``TRACEDFUTURE_*`` variables that are not options: the core's choice and its build.
#: Nothing starts tracing for them, and none is called unknown.
NOT_OPTIONS = frozenset({"PURE_PYTHON", "ASYNCIO_STEP", "CLOCK", "STRICT_BUILD", "CFLAGS", "LDFLAGS", "PGO"})
#: The names of the variables in :data:`NOT_OPTIONS`, with their prefix.
NOT_OPTION_VARIABLES = frozenset(PREFIX + name for name in NOT_OPTIONS)
#: The exporters ``tracedfuture run --exporter`` can add.
EXPORTERS = ("jsonl", "structlog", "otel")
#: The lints ``--lints`` records, and their default thresholds in seconds.
LINT_DEFAULTS: dict[str, float | None] = {"stall": 5.0, "blocked": 0.5, "orphan": 30.0}
DEFAULT_OTEL_TIMEOUT = 1.0


class OptionError(ValueError):
    """A bad option value, or an unknown option: the message names the option,
    the value and the fix."""


class OptionTypeError(OptionError, TypeError):
    """An option of the wrong type, or an option that does not exist."""


class _Bad(Exception):
    """Raised by a check: ``must`` is what the value should have been."""

    def __init__(self, must: str, *, wrong_type: bool = False, says_value: bool = False) -> None:
        super().__init__(must)
        self.must = must
        self.wrong_type = wrong_type
        self.says_value = says_value  # ``must`` already shows the bad value


class _AsWritten:
    """A number shown as its text was written: ``2``, not ``'2'``. A flag's or a
    variable's text that reads as a number but is out of range is shown this way,
    so that the message is word for word the one ``install()`` gives for the
    same number."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text.strip()


# --- kinds of value: how each is checked, and read from text --------------------------


class _Kind:
    """How one kind of value is checked (:meth:`check`) and read from text (:meth:`parse`)."""

    metavar = "VALUE"
    must = ""
    #: How ``tracedfuture run`` takes it: ``value``, ``flag`` (``--tail``, no value),
    #: ``list`` (repeatable) or ``optional`` (``--lints`` alone, or ``--lints=...``).
    form = "value"
    #: Joins a repeated flag's values into one variable.
    separator = ","

    def check(self, value: Any) -> Any:
        """The value as kept, or raise :class:`_Bad`."""
        return value

    def parse(self, text: str) -> Any:
        """The value a flag's or a variable's text stands for, or raise :class:`_Bad`."""
        raise NotImplementedError

    def takes(self, following: str) -> bool:
        """With ``form == "optional"``: whether the argument after the flag is its value."""
        return False


class _Bool(_Kind):
    metavar = ""
    must = "true or false (in text also 1/0, yes/no, on/off)"
    form = "flag"
    _TRUE = frozenset({"1", "true", "yes", "on"})
    _FALSE = frozenset({"0", "false", "no", "off"})

    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise _Bad(self.must, wrong_type=True)
        return value

    def parse(self, text: str) -> bool:
        word = text.strip().lower()
        if word in self._TRUE:
            return True
        if word in self._FALSE:
            return False
        raise _Bad(self.must)


class _Int(_Kind):
    metavar = "N"

    def __init__(self, minimum: int, example: str, unit: str = "") -> None:
        self.minimum = minimum
        self.must = f"a whole number{unit} >= {minimum}, such as {example}"

    def check(self, value: Any) -> int:
        # bool is an int to Python, never to a person writing max_failures=True.
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(self.must, wrong_type=True)
        if value < self.minimum:
            raise _Bad(self.must)
        return value

    def parse(self, text: str) -> int:
        try:
            return int(text.strip())
        except ValueError:
            raise _Bad(self.must) from None


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_SIZE = r"(\d+)\s*([kmg]?)(?:i?b)?"


class _Bytes(_Int):
    metavar = "BYTES"

    def __init__(self, minimum: int) -> None:
        self.minimum = minimum
        self.must = (
            f"a whole number of bytes >= {minimum} ({minimum >> 10} KiB), such as 67108864 (64 MiB; in text also 64MiB)"
        )

    def parse(self, text: str) -> int:
        import re  # only for a size given as text

        match = re.fullmatch(_SIZE, text.strip().replace("_", ""), re.IGNORECASE)
        if match is None:
            raise _Bad(self.must)
        return int(match[1]) * _UNITS[match[2].lower()]


class _Number(_Kind):
    """A finite int or float in a range; kept as a float."""

    def __init__(self, must: str, low: float, *, high: float | None = None, open_low: bool = False) -> None:
        self.must = must
        self.low = low
        self.high = high
        self.open_low = open_low
        self.metavar = "FRACTION" if high is not None else "SECONDS"

    def check(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Bad(self.must, wrong_type=True)
        number = float(value)
        if not math.isfinite(number):  # NaN passes every comparison's "not <"
            raise _Bad(self.must)
        if number < self.low or (self.open_low and number == self.low):
            raise _Bad(self.must)
        if self.high is not None and number > self.high:
            raise _Bad(self.must)
        return number

    def parse(self, text: str) -> float:
        try:
            return float(text.strip())
        except ValueError:
            raise _Bad(self.must) from None


def _seconds(example: float, *, positive: bool = False) -> _Number:
    return _Number(f"a number of seconds {'>' if positive else '>='} 0, such as {example}", 0, open_low=positive)


class _Names(_Kind):
    """A sequence of non-empty strings, kept as a tuple; in text, comma-separated."""

    form = "list"

    def __init__(self, what: str, example: str, metavar: str, choices: tuple[str, ...] = ()) -> None:
        self.what = what
        self.example = example
        self.choices = choices
        among = f" among {', '.join(choices)}" if choices else ""
        self.must = f"a sequence of strings ({what}{among}), such as ({example!r},)"
        self.metavar = metavar

    def check(self, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            must = f"{self.must.rpartition(', such as')[0]}, such as ({value!r},), not the single string {value!r}"
            raise _Bad(must, wrong_type=True, says_value=True)
        if isinstance(value, bytes) or not isinstance(value, Iterable):
            raise _Bad(self.must, wrong_type=True)
        items = tuple(value)
        if not all(isinstance(item, str) and item for item in items):
            raise _Bad(self.must, wrong_type=not all(isinstance(item, str) for item in items))
        if self.choices and not all(item in self.choices for item in items):
            raise _Bad(self.must)
        return items

    def parse(self, text: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in text.split(self.separator) if part.strip())


class Redactor:
    """``redact`` made of regular expressions: every match, in any free-text field
    that leaves the process (task names, future labels, cancel messages, captured
    values and exception messages), becomes ``[redacted]``.

    >>> Redactor([r"token=\\S+"])("cancelled: token=abc123 expired")
    'cancelled: [redacted] expired'
    """

    __slots__ = ("_pattern", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        import re

        self.patterns = tuple(patterns)
        self._pattern = re.compile("|".join(f"(?:{p})" for p in self.patterns))

    def __call__(self, text: str) -> str:
        return self._pattern.sub("[redacted]", text)

    def __repr__(self) -> str:
        return f"Redactor({list(self.patterns)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Redactor) and other.patterns == self.patterns

    def __hash__(self) -> int:
        return hash(self.patterns)


class _Redact(_Kind):
    """A callable taking and returning a str, or regular expressions whose matches
    are replaced (a :class:`Redactor`); in text, one regular expression a flag,
    several joined by newlines in the variable."""

    must = "a callable taking and returning a str, or a sequence of regular expressions, such as ('token=\\\\S+',)"
    metavar = "REGEX"
    form = "list"
    separator = "\n"

    def check(self, value: Any) -> Callable[[str], str] | None:
        if value is None or callable(value):
            return value  # type: ignore[no-any-return]
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            raise _Bad(self.must, wrong_type=True)
        patterns = tuple(value)
        if not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise _Bad(self.must, wrong_type=not all(isinstance(p, str) for p in patterns))
        import re

        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                msg = f"{self.must}; {pattern!r} is not one ({exc})"
                raise _Bad(msg, says_value=True) from None
        return Redactor(patterns)

    def parse(self, text: str) -> tuple[str, ...]:
        return tuple(line for line in text.split(self.separator) if line.strip())


class _Path(_Kind):
    must = "a file path, such as trace.jsonl"
    metavar = "PATH"

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _Bad(self.must, wrong_type=True)
        if not value.strip():
            raise _Bad(self.must)
        return value

    def parse(self, text: str) -> str:
        return text


class _Flight(_Path):
    """A flight recorder dump path; ``1`` (or ``on``) is the default path ("")."""

    must = "a file path for the dump, such as flight.jsonl, or 1 for the default path"
    form = "optional"

    def check(self, value: Any) -> str:
        if value == "":
            return ""
        return super().check(value)

    def parse(self, text: str) -> str:
        return "" if text.strip().lower() in _Bool._TRUE else text

    def takes(self, following: str) -> bool:
        return following.endswith(".jsonl")


class _Signal(_Kind):
    must = "a signal that can be caught, such as USR1 or SIGUSR2"
    metavar = "SIG"

    def check(self, value: Any) -> int:
        import signal  # its enums cost start-up: only for this option

        uncatchable = {getattr(signal, n) for n in ("SIGKILL", "SIGSTOP") if hasattr(signal, n)}
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(self.must, wrong_type=True)
        if value not in signal.valid_signals() or value in uncatchable:
            raise _Bad(self.must)
        return int(value)

    def parse(self, text: str) -> int:
        import signal

        name = text.strip().upper()
        if name.isdigit():
            return int(name)
        number = getattr(signal, name if name.startswith("SIG") else "SIG" + name, None)
        if not isinstance(number, int):
            raise _Bad(self.must)
        return int(number)


class _Lints(_Kind):
    """``stall=5,blocked=0.5,orphan=30``; ``1`` is the defaults, ``name=off`` turns one off."""

    must = (
        f"name=seconds pairs among {', '.join(LINT_DEFAULTS)} (seconds > 0, or off), such as stall=5,blocked=0.5, "
        "or 1 for the defaults"
    )
    metavar = "stall=S,blocked=S,orphan=S"
    form = "optional"

    def check(self, value: Any) -> dict[str, float | None]:
        if not isinstance(value, Mapping):
            raise _Bad(self.must, wrong_type=True)
        thresholds = dict(LINT_DEFAULTS)
        for name, seconds in value.items():
            if name not in LINT_DEFAULTS:
                raise _Bad(self.must)
            if seconds is not None and (
                isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0.0 < seconds < math.inf
            ):
                raise _Bad(self.must)
            thresholds[name] = None if seconds is None else float(seconds)
        return thresholds

    def parse(self, text: str) -> dict[str, float | None]:
        if text.strip().lower() in _Bool._TRUE:
            return dict(LINT_DEFAULTS)
        thresholds: dict[str, float | None] = {}
        for part in text.split(","):
            name, equals, value = part.strip().partition("=")
            if name not in LINT_DEFAULTS or not equals:
                raise _Bad(self.must)
            if value.strip().lower() in ("off", "none"):
                thresholds[name] = None
                continue
            try:
                thresholds[name] = float(value)
            except ValueError:
                raise _Bad(self.must) from None
        return thresholds

    def takes(self, following: str) -> bool:
        return following.partition("=")[0] in LINT_DEFAULTS


class _Console(_Kind):
    must = "1 (on), allow-cancel (on, and ps/top may cancel tasks) or 0 (off)"
    metavar = "allow-cancel"
    form = "optional"
    _VALUES = ("on", "allow-cancel", None)

    def check(self, value: Any) -> str | None:
        if value not in self._VALUES:
            raise _Bad(self.must, wrong_type=not isinstance(value, str | None))
        return value  # type: ignore[no-any-return]

    def parse(self, text: str) -> str | None:
        word = text.strip().lower()
        if word in _Bool._TRUE:
            return "on"
        if word == "allow-cancel":
            return "allow-cancel"
        if word in _Bool._FALSE:
            return None
        raise _Bad(self.must)

    def takes(self, following: str) -> bool:
        return following == "allow-cancel"


# --- the table ------------------------------------------------------------------------


class Option:
    """One row of the table: everything known about one option (read-only)."""

    __slots__ = ("default", "doc", "env", "flag", "install", "kind", "name", "short")

    name: str
    default: object
    doc: str
    kind: _Kind
    #: The ``tracedfuture run`` flag, or ``None`` when the option has none.
    flag: str | None
    #: The variable's name after its prefix, or ``None`` when there is none.
    env: str | None
    #: An option of :func:`tracedfuture.install` (else of the process: run and the hook only).
    install: bool
    short: str | None

    # A plain slotted class, not a dataclass: `tracedfuture run` and the start-up
    # hook read the table, and the dataclasses module costs their start-up.
    def __init__(
        self,
        name: str,
        default: object,
        doc: str,
        kind: _Kind,
        flag: str | None,
        env: str | None,
        install: bool = True,
        short: str | None = None,
    ) -> None:
        values = (name, default, doc, kind, flag, env, install, short)
        for slot, value in zip(self._FIELDS, values, strict=True):
            object.__setattr__(self, slot, value)

    _FIELDS = ("name", "default", "doc", "kind", "flag", "env", "install", "short")

    def __setattr__(self, name: str, value: object) -> None:
        msg = f"cannot assign to field {name!r}: an Option is read-only"
        raise AttributeError(msg)

    def __repr__(self) -> str:
        return f"Option({', '.join(f'{f}={getattr(self, f)!r}' for f in self._FIELDS)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Option):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._FIELDS)

    def __hash__(self) -> int:
        return hash((self.name, self.flag, self.env))

    @property
    def variable(self) -> str | None:
        """The ``TRACEDFUTURE_*`` variable, or ``None``."""
        return None if self.env is None else PREFIX + self.env

    def check(self, value: object, shown: object = None) -> object:
        """The value as kept; an :class:`OptionError` naming ``shown`` (the value
        as the user wrote it, default ``value``) if it is bad."""
        try:
            return self.kind.check(value)
        except _Bad as bad:
            raise self._error(bad, value if shown is None else shown) from None

    def from_text(self, text: str) -> object:
        """The checked value a flag's or a variable's text stands for."""
        try:
            value = self.kind.parse(text)
        except _Bad as bad:
            raise self._error(bad, text) from None
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return self.check(value, shown=_AsWritten(text) if number else text)

    def _error(self, bad: _Bad, shown: object) -> OptionError:
        cls = OptionTypeError if bad.wrong_type else OptionError
        if bad.says_value:
            return cls(f"{self.name} must be {bad.must}")
        return cls(f"{self.name} must be {bad.must}, not {shown!r}")


def _install(name: str, default: object, doc: str, kind: _Kind, *, flag: str | None = None) -> Option:
    """A row for an option of an installation: a keyword of :func:`tracedfuture.install`,
    a field of :class:`Options`, a ``tracedfuture run`` flag and a variable."""
    flag = flag or "--" + name.replace("_", "-")
    return Option(name, default, " ".join(doc.split()), kind, flag, name.upper())


#: The options of an installation, in the order of :class:`Options`' fields
#: (tracedfuture/options/_options.py declares them, typed).
INSTALL_OPTIONS: tuple[Option, ...] = (
    _install(
        "capture_values",
        False,
        """Record a truncated repr() of results and the message of exceptions (off:
        only type names are recorded). Runs the results' __repr__, on the loop.""",
        _Bool(),
    ),
    _install(
        "redact",
        None,
        """Applied to every free-text field before it leaves the process: task names,
        future labels, cancel messages, and (with capture_values) values and
        exception messages. A callable taking and returning a str, or regular
        expressions whose matches become [redacted] (the flag is repeatable; the
        variable holds one expression a line).""",
        _Redact(),
    ),
    _install(
        "max_bytes",
        64 << 20,
        """Bytes of raw records a route's ring holds (at least 64 KiB). When the
        ring is drained for exporters and 7/8 of it is unread, new futures are
        handed out untraced and counted; a flight recorder's ring overwrites its
        oldest records instead. The ring is preallocated lazily: untouched pages
        cost no memory (a flight recorder's are backed 8 MiB ahead of its
        records, by a thread of its own).""",
        _Bytes(64 << 10),
    ),
    _install(
        "max_memory",
        64 << 20,
        """Bytes (estimated) the exporters' queues of an installation may hold
        together, shared by the exporters that have a thread of their own (at
        least 1 MiB). Past a queue's share, whole futures are dropped (counted),
        and a future that already had events delivered is marked incomplete.""",
        _Bytes(1 << 20),
    ),
    _install(
        "flush_interval",
        0.1,
        "Seconds between two deliveries to exporters.",
        _seconds(0.1, positive=True),
    ),
    _install(
        "max_failures",
        10,
        "Consecutive failures after which an exporter is disabled.",
        _Int(1, "10", " of failures"),
    ),
    _install(
        "export_timeout",
        10.0,
        """Seconds uninstall(), flush() and the process's exit wait for each
        exporter to take what was queued for it, before giving up on it (reported).""",
        _seconds(10.0),
    ),
    _install(
        "sample_rate",
        1.0,
        """Head sampling: the fraction of futures and tasks traced, decided at
        creation; the others are plain asyncio objects and cost nothing.""",
        _Number("between 0.0 and 1.0 (the fraction of futures traced), such as 0.1", 0, high=1),
    ),
    _install(
        "tail",
        False,
        """Tail sampling: keep a future's events only if it failed, was cancelled,
        abandoned, left an exception unretrieved or lived longer than slow,
        together with the futures and tasks linked to it.""",
        _Bool(),
    ),
    _install(
        "slow",
        1.0,
        "Seconds: the lifetime above which a future is kept by tail sampling.",
        _seconds(1.0),
    ),
    _install(
        "include_modules",
        (),
        """Module name prefixes ("myapp.db") matched against the module that created
        the future: only trace those.""",
        _Names("module name prefixes", "myapp.db", "PREFIX"),
        flag="--include-module",
    ),
    _install(
        "exclude_modules",
        (),
        "Module name prefixes: never trace the futures those modules create.",
        _Names("module name prefixes", "myapp.health", "PREFIX"),
        flag="--exclude-module",
    ),
    _install(
        "include_names",
        (),
        """Shell patterns ("worker-*") matched against task names and future labels:
        only trace those.""",
        _Names("name patterns", "worker-*", "PATTERN"),
        flag="--include-name",
    ),
    _install(
        "exclude_names",
        (),
        "Shell patterns matched against task names and future labels: never trace those.",
        _Names("name patterns", "poll-*", "PATTERN"),
        flag="--exclude-name",
    ),
    _install(
        "app_modules",
        (),
        """Top-level packages ("myservice") whose files are the program's own even
        where they are installed: each future's program line is looked for in them
        too. By default the program is every file outside the standard library,
        site-packages and tracedfuture. Process-wide.""",
        _Names("top-level module names", "myservice", "MODULE"),
        flag="--app-module",
    ),
)


def _process(name: str, doc: str, kind: _Kind, *, default: object = None, short: str | None = None) -> Option:
    """A row for an option of the process: ``tracedfuture run`` and the start-up hook."""
    flag = "--" + name.replace("_", "-")
    return Option(name, default, " ".join(doc.split()), kind, flag, name.upper(), install=False, short=short)


#: Options of the traced process, not of one installation: ``tracedfuture run``'s
#: flags and the start-up hook's variables only.
PROCESS_OPTIONS: tuple[Option, ...] = (
    _process("output", "Write a trace file (JSON lines); {pid} in the path is the pid.", _Path(), short="-o"),
    _process(
        "exporter",
        "Also export to structlog or OpenTelemetry (repeatable); jsonl needs -o.",
        _Names("exporters", "structlog", "{jsonl,structlog,otel}", EXPORTERS),
    ),
    _process(
        "flight",
        """Keep a flight recorder, dumped to PATH (default tracedfuture-flight-PID.jsonl)
        on an unhandled exception and at exit.""",
        _Flight(),
    ),
    _process(
        "dump_signal",
        "Dump the flight recorder when the process gets this signal, such as USR1 (implies --flight).",
        _Signal(),
    ),
    _process(
        "lints",
        """Record lints: stalled futures, a blocked loop, orphans (default
        stall=5,blocked=0.5,orphan=30; name=off turns one off).""",
        _Lints(),
    ),
    _process(
        "console",
        """Serve the control socket for tracedfuture ps/pstree/dump/top (turns on
        the flight recorder); --console=allow-cancel also lets it cancel tasks.""",
        _Console(),
    ),
    _process(
        "follow_children",
        """Also trace Python child processes (multiprocessing, subprocess with
        sys.executable), each into its own file named with its pid.""",
        _Bool(),
        default=False,
    ),
    _process(
        "otel_timeout",
        f"""Seconds the OpenTelemetry exporter waits for a collector before giving up
        (default {DEFAULT_OTEL_TIMEOUT}).""",
        _seconds(DEFAULT_OTEL_TIMEOUT, positive=True),
        default=DEFAULT_OTEL_TIMEOUT,
    ),
)


#: Every option: the process's (listed first by `tracedfuture run -h`), then an installation's.
OPTIONS: tuple[Option, ...] = PROCESS_OPTIONS + INSTALL_OPTIONS
_BY_NAME = {option.name: option for option in INSTALL_OPTIONS}
_BY_FLAG = {flag: option for option in OPTIONS for flag in (option.flag, option.short) if flag}


def check_install(options: Mapping[str, Any]) -> dict[str, Any]:
    """Every option of an installation, as kept: the keywords of
    :func:`tracedfuture.install` checked, the others at their defaults. What
    :class:`Options` is made of, and what an installation keeps; it needs no
    dataclass, so that the start-up hook makes none.

    An unknown keyword raises :class:`OptionTypeError` (naming the one meant); bad
    values, one error naming all of them.

    >>> check_install({"sample_rate": 0.5})["sample_rate"], check_install({})["tail"]
    (0.5, False)
    """
    for key in options:
        if key not in _BY_NAME:
            raise OptionTypeError(_unknown(f"unknown tracedfuture option {key!r}", key, _BY_NAME, repr))
    values: dict[str, Any] = {}
    problems: list[OptionError] = []
    for option in INSTALL_OPTIONS:
        try:
            values[option.name] = option.check(options.get(option.name, option.default))
        except OptionError as exc:
            problems.append(exc)
    if problems:
        # One line for all of them: fixing one at a time is slow going.
        cls = OptionTypeError if isinstance(problems[0], TypeError) else OptionError
        raise cls("; ".join(map(str, problems)))
    return values


def _unknown(head: str, key: str, known: Iterable[str], show: Callable[[str], str]) -> str:
    names = sorted(known)
    import difflib  # only for a wrong name

    close = difflib.get_close_matches(key, names, n=1)
    hint = f"did you mean {show(close[0])}? " if close else ""
    return f"{head}: {hint}valid ones are {', '.join(map(show, names))}"


# --- the environment ------------------------------------------------------------------


def from_environment(environ: Mapping[str, str] | None = None, prefix: str = PREFIX) -> dict[str, Any]:
    """The options that the variables ``prefix + NAME`` set, checked.

    With ``TRACEDFUTURE_`` every option of the table; with
    ``OTEL_PYTHON_TRACEDFUTURE_`` an installation's only. An unset or empty
    variable leaves the option's default; one that turns an option off (``0``)
    leaves it out. A variable with the prefix that is no option (nor one of
    :data:`NOT_OPTIONS`) is an error too, so that a typo does not go unnoticed;
    every error names the variable.
    """
    env = os.environ if environ is None else environ
    table = OPTIONS if prefix == PREFIX else INSTALL_OPTIONS
    by_env = {option.env: option for option in table if option.env is not None}
    for var in sorted(env):
        suffix = var[len(prefix) :]
        if var.startswith(prefix) and suffix not in by_env and suffix not in NOT_OPTIONS:
            raise OptionError(_unknown(f"unknown variable {var}", suffix, by_env, lambda s: prefix + s))
    given: dict[str, Any] = {}
    for option in table:  # in the table's order
        var = prefix + str(option.env)
        raw = env.get(var)
        if raw is None or not raw.strip():
            continue
        try:
            value = option.from_text(raw)
        except OptionError as exc:
            msg = f"{var}: {exc}"
            raise type(exc)(msg) from None
        if not option.install and value in (None, False):
            continue  # a process option turned off
        given[option.name] = value
    return given


def to_environment(namespace: argparse.Namespace | SimpleNamespace) -> dict[str, str]:
    """The ``TRACEDFUTURE_*`` variables that ask for what the flags parsed by
    :func:`add_arguments` (or read by :func:`read_arguments`) ask for, their
    text as given."""
    environ: dict[str, str] = {}
    for option in OPTIONS:
        value = getattr(namespace, option.name, None) if option.flag else None
        if value is None or value == []:
            continue
        variable = option.variable
        assert variable is not None  # every option with a flag has a variable
        if option.kind.form == "flag":
            environ[variable] = "1" if value else "0"
        elif option.kind.form == "list":
            environ[variable] = option.kind.separator.join(value)
        else:
            environ[variable] = value
    return environ


#: The options that say where events go: without one, nothing is traced.
DESTINATIONS = ("output", "exporter", "flight", "dump_signal", "console")


def settings_from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """What the ``TRACEDFUTURE_*`` variables ask the start-up hook for (``{}``:
    nothing), checked by the options table; an :class:`OptionError` names the
    first bad variable.

    Every Python process of the environment runs the hook: one that no variable
    asks to trace (none says where events go) is left exactly alone, whatever
    else is set, but for a bad value of a known option, and options set with
    nowhere to go are an error rather than a silent no-op.

    >>> settings_from_environment({"TRACEDFUTURE_OUTPUT": "t.jsonl", "TRACEDFUTURE_SAMPLE_RATE": "0.5"})
    {'output': 't.jsonl', 'sample_rate': 0.5}
    """
    known = {option.variable for option in OPTIONS}
    ours = {k: v for k, v in environ.items() if k.startswith(PREFIX) and k not in NOT_OPTION_VARIABLES}
    if not any(ours.get(PREFIX + name.upper(), "").strip() for name in DESTINATIONS):
        ours = {k: v for k, v in ours.items() if k in known}
    settings = from_environment(ours, PREFIX)
    if settings and not any(name in settings for name in DESTINATIONS):
        listed = ", ".join(PREFIX + name.upper() for name in settings)
        msg = (
            f"{listed} set, but nothing says where events go: set TRACEDFUTURE_OUTPUT=trace.jsonl, "
            "TRACEDFUTURE_EXPORTER=structlog|otel or TRACEDFUTURE_FLIGHT=1"
        )
        raise OptionError(msg)
    return settings


# --- the command line -----------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Declare a flag for every option that has one (``tracedfuture run``'s).

    Booleans are ``--tail`` / ``--no-tail``; lists are repeatable and take commas
    (``--include-module myapp --include-module lib.db,lib.cache``). A value is
    checked as it is parsed (argparse's one line, naming the flag, then the
    option's message) and kept as the text given, so that it reaches the program
    as a variable unchanged: :func:`to_environment`.
    """
    import argparse  # the command line's alone: install() and the start-up hook go without

    for option in OPTIONS:
        if option.flag is None:
            continue
        flags = (option.short, option.flag) if option.short else (option.flag,)
        kind = option.kind
        if kind.form == "flag":
            parser.add_argument(
                *flags, dest=option.name, action=argparse.BooleanOptionalAction, default=None, help=option.doc
            )
            continue
        keep = _checked_text(option)
        if kind.form == "list":
            parser.add_argument(
                *flags, dest=option.name, action="append", type=keep, metavar=kind.metavar, help=option.doc
            )
        elif kind.form == "optional":
            parser.add_argument(
                *flags, dest=option.name, nargs="?", const="1", type=keep, metavar=kind.metavar, help=option.doc
            )
        else:
            parser.add_argument(*flags, dest=option.name, type=keep, metavar=kind.metavar, help=option.doc)


def _checked_text(option: Option) -> Callable[[str], str]:
    import argparse

    def keep(text: str) -> str:
        try:
            option.from_text(text)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    keep.__name__ = option.name  # argparse names the type in some of its messages
    return keep


def read_arguments(args: Sequence[str]) -> dict[str, Any] | None:
    """The values the flags of :func:`add_arguments` give for ``args``, as
    argparse would read them (a value's text as given and checked, a list for a
    repeatable flag, ``True`` / ``False`` for a switch), without importing
    argparse: ``tracedfuture run`` starts a program, and should start light.

    ``None`` whenever argparse must read them: ``-h``, an unknown or abbreviated
    flag, a bad value, a value that starts with ``-``, a form this does not take
    (``-oPATH``), so that argparse's messages stay the only ones.

    >>> read_arguments(["-o", "t.jsonl", "--tail", "--exclude-module", "a,b", "--lints"])
    {'output': 't.jsonl', 'tail': True, 'exclude_modules': ['a,b'], 'lints': '1'}
    >>> read_arguments(["--sample-rate", "2"]) is None  # argparse says why
    True
    """
    values: dict[str, Any] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        flag, equals, attached = arg.partition("=")
        option = _BY_FLAG.get(flag)
        if option is None and flag.startswith("--no-") and not equals:
            negated = _BY_FLAG.get("--" + flag[5:])
            if negated is None or negated.kind.form != "flag":
                return None
            values[negated.name] = False
            continue
        if option is None or (equals and option.short == flag):
            return None
        form = option.kind.form
        if form == "flag":
            if equals:
                return None
            values[option.name] = True
            continue
        following = args[index] if index < len(args) else None
        if equals:
            text = attached
        elif form == "optional" and (following is None or following.startswith("-")):
            if following is not None and following[1:2].isdigit():
                return None  # argparse may take "-1" as the value
            text = "1"  # the flag alone: its const
        elif following is None or following.startswith("-"):
            return None
        else:
            text = following
            index += 1
        try:
            option.from_text(text)
        except OptionError:
            return None
        if form == "list":
            values.setdefault(option.name, []).append(text)
        else:
            values[option.name] = text
    return values


def takes_value(arg: str, following: str | None) -> bool:
    """Whether ``tracedfuture run``'s own flag ``arg`` consumes the argument
    ``following`` it (everything from the script name on belongs to the program)."""
    flag, equals, _ = arg.partition("=")
    option = _BY_FLAG.get(flag)
    if option is None and flag.startswith("--no-"):
        return False
    if option is None or equals:
        return False
    form = option.kind.form
    if form == "flag":
        return False
    if form == "optional":
        return following is not None and option.kind.takes(following)
    return True


def __getattr__(name: str) -> Any:
    # Options, the dataclass, is made when first asked for (PEP 562): the table
    # above is all that `tracedfuture run` and the start-up hook's checks need.
    if name == "Options":
        from ._options import Options

        globals()["Options"] = Options
        return Options
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
