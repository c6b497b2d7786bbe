"""The options of an installation, declared once.

Each field of :class:`Options` is one row of the table: its name, type, default,
documentation, how it is checked, its ``tracedfuture run`` flag and its
environment variable. :func:`tracedfuture.install` takes them as keyword
arguments, ``tracedfuture run`` as flags (:func:`add_arguments`,
:func:`from_arguments`) and both ``TRACEDFUTURE_*`` and
``OTEL_PYTHON_TRACEDFUTURE_*`` variables as text (:func:`from_environment`). A value
is checked in one place, :class:`Options` itself, so the three say the same thing
about it; only the prefix names where it came from:

>>> Options(buffer_size=0, sample_rate=7)
Traceback (most recent call last):
...
tracedfuture._options.OptionError: buffer_size must be a whole number of records >= 1, such as 1000000, not 0; \
sample_rate must be between 0.0 and 1.0 (the fraction of futures traced), such as 0.1, not 7
>>> from_environment({"TRACEDFUTURE_SLOW": "-1"}, "TRACEDFUTURE_")
Traceback (most recent call last):
...
tracedfuture._options.OptionError: TRACEDFUTURE_SLOW: slow must be a number of seconds >= 0, such as 1.0, not '-1'
>>> from_environment({"TRACEDFUTURE_TAIL": "yes", "TRACEDFUTURE_SLOW": "0.5"}, "TRACEDFUTURE_")
{'tail': True, 'slow': 0.5}
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

__all__ = [
    "ENV_PREFIXES",
    "NOT_OPTIONS",
    "OPTIONS",
    "Option",
    "OptionError",
    "OptionTypeError",
    "Options",
    "add_arguments",
    "from_arguments",
    "from_environment",
]

_T = TypeVar("_T")

#: The prefixes of the variables :func:`from_environment` reads.
ENV_PREFIXES = ("TRACEDFUTURE_", "OTEL_PYTHON_TRACEDFUTURE_")

#: ``TRACEDFUTURE_*`` variables that are not options (read elsewhere, left alone here).
NOT_OPTIONS = frozenset({"PURE_PYTHON"})


class OptionError(ValueError):
    """A bad option value: the message names the option, the value and the fix."""


class OptionTypeError(OptionError, TypeError):
    """An option of the wrong type, or an option that does not exist."""


class _Bad(Exception):
    """Raised by a check: ``must`` is what the value should have been."""

    def __init__(self, must: str, *, wrong_type: bool = False, says_value: bool = False) -> None:
        super().__init__(must)
        self.must = must
        self.wrong_type = wrong_type
        self.says_value = says_value  # ``must`` already shows the bad value


# --- kinds of value: how each is checked, and read from text --------------------------


class _Kind:
    """How one kind of value is checked (:meth:`check`) and read from text (:meth:`parse`)."""

    metavar = "VALUE"
    must = ""

    def check(self, value: Any) -> Any:
        """The value as kept, or raise :class:`_Bad`."""
        raise NotImplementedError

    def parse(self, text: str) -> Any:
        """The value a flag's or a variable's text stands for, or raise :class:`_Bad`."""
        raise NotImplementedError


class _Bool(_Kind):
    metavar = ""
    must = "true or false"
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
        # bool is an int to Python, never to a person writing buffer_size=True.
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
_SIZE = re.compile(r"(\d+)\s*([kmg]?)(?:i?b)?", re.IGNORECASE)


class _Bytes(_Int):
    metavar = "BYTES"

    def __init__(self, minimum: int) -> None:
        self.minimum = minimum
        self.must = (
            f"a whole number of bytes >= {minimum} ({minimum >> 10} KiB), such as 67108864 (64 MiB; in text also 64MiB)"
        )

    def parse(self, text: str) -> int:
        match = _SIZE.fullmatch(text.strip())
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


class _Names(_Kind):
    """A sequence of non-empty strings, kept as a tuple; in text, comma-separated."""

    def __init__(self, what: str, example: str, metavar: str) -> None:
        self.must = f"a sequence of strings ({what}), such as ({example!r},)"
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
        return items

    def parse(self, text: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in text.split(",") if part.strip())


class _Callable(_Kind):
    must = "a callable taking and returning a str, or None"

    def check(self, value: Any) -> Callable[[str], str] | None:
        if value is not None and not callable(value):
            raise _Bad(self.must, wrong_type=True)
        return value  # type: ignore[no-any-return]

    def parse(self, text: str) -> Any:  # pragma: no cover - no flag, no variable
        raise _Bad(self.must)


# --- the table ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    """One row of the table: everything known about one option."""

    name: str
    default: object
    doc: str
    kind: _Kind
    #: The ``tracedfuture run`` flag, or ``None`` when the option has none.
    flag: str | None
    #: The variable's name after its prefix, or ``None`` when there is none.
    env: str | None

    def check(self, value: object, shown: object = None) -> object:
        """The value as :class:`Options` keeps it; an :class:`OptionError` naming
        ``shown`` (the value as the user wrote it, default ``value``) if it is bad."""
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
        return self.check(value, shown=text)

    def _error(self, bad: _Bad, shown: object) -> OptionError:
        cls = OptionTypeError if bad.wrong_type else OptionError
        if bad.says_value:
            return cls(f"{self.name} must be {bad.must}")
        return cls(f"{self.name} must be {bad.must}, not {shown!r}")


def _option(default: _T, doc: str, kind: _Kind, *, flag: str | None = None, env: bool = True, cli: bool = True) -> _T:
    """A field of :class:`Options`, with its row of the table in the metadata."""
    meta = {"doc": " ".join(doc.split()), "kind": kind, "flag": flag, "env": env, "cli": cli}
    return field(default=default, metadata=meta)


_SECONDS_POSITIVE = "a number of seconds > 0, such as {}"
_SECONDS = "a number of seconds >= 0, such as {}"


@dataclass(frozen=True, kw_only=True)
class Options:
    """The options of :func:`tracedfuture.install`, :func:`tracedfuture.run` and
    :func:`tracedfuture.loop_factory`, checked when made (see the module docs).

    The table below is generated from the fields: name, default, ``tracedfuture
    run`` flag, variable (after ``TRACEDFUTURE_`` or ``OTEL_PYTHON_TRACEDFUTURE_``).
    """

    capture_values: bool = _option(
        False,
        """Record a truncated repr() of results and the message of exceptions (off:
        only type names are recorded). Runs the results' __repr__, on the loop.""",
        _Bool(),
        flag="--capture-values",
    )
    redact: Callable[[str], str] | None = _option(  # noqa: RUF009 - a field(), made by _option
        None,
        """Called with each captured value string before it leaves the recorder;
        returns the text to keep. Only used with capture_values.""",
        _Callable(),
        env=False,
        cli=False,
    )
    buffer_size: int = _option(
        1_000_000,
        """Deprecated, use max_bytes: a ring of this many raw records, used only
        when max_bytes is left at its default.""",
        _Int(1, "1000000", " of records"),
    )
    max_bytes: int = _option(
        64 << 20,
        """Bytes of raw records a route's ring holds (at least 64 KiB). When the
        ring is drained for exporters and 7/8 of it is unread, new futures are
        handed out untraced and counted; a flight recorder's ring overwrites its
        oldest records instead. The ring is preallocated lazily: untouched pages
        cost no memory.""",
        _Bytes(64 << 10),
    )
    max_memory: int = _option(
        64 << 20,
        """Bytes (estimated) the exporters' queues of an installation may hold
        together, shared by the exporters that have a thread of their own (at
        least 1 MiB). Past a queue's share, whole futures are dropped (counted),
        and a future that already had events delivered is marked incomplete.""",
        _Bytes(1 << 20),
    )
    flush_interval: float = _option(
        0.1, "Seconds between two deliveries to exporters.", _Number(_SECONDS_POSITIVE.format(0.1), 0, open_low=True)
    )
    max_failures: int = _option(
        10, "Consecutive failures after which an exporter is disabled.", _Int(1, "10", " of failures")
    )
    export_timeout: float = _option(
        10.0,
        """Seconds uninstall() and flush() wait for each exporter to take what was
        queued for it, before giving up on it (reported).""",
        _Number(_SECONDS.format(10.0), 0),
    )
    sample_rate: float = _option(
        1.0,
        """Head sampling: the fraction of futures and tasks traced, decided at
        creation; the others are plain asyncio objects and cost nothing.""",
        _Number("between 0.0 and 1.0 (the fraction of futures traced), such as 0.1", 0, high=1),
    )
    tail: bool = _option(
        False,
        """Tail sampling: keep a future's events only if it failed, was cancelled,
        abandoned, left an exception unretrieved or lived longer than slow,
        together with the futures and tasks linked to it.""",
        _Bool(),
    )
    slow: float = _option(
        1.0, "Seconds: the lifetime above which a future is kept by tail sampling.", _Number(_SECONDS.format(1.0), 0)
    )
    include_modules: tuple[str, ...] = _option(
        (),
        """Module name prefixes ("myapp.db") matched against the module that created
        the future: only trace those.""",
        _Names("module name prefixes", "myapp.db", "PREFIX"),
        flag="--include-module",
    )
    exclude_modules: tuple[str, ...] = _option(
        (),
        "Module name prefixes: never trace the futures those modules create.",
        _Names("module name prefixes", "myapp.health", "PREFIX"),
        flag="--exclude-module",
    )
    include_names: tuple[str, ...] = _option(
        (),
        """Shell patterns ("worker-*") matched against task names and future labels:
        only trace those.""",
        _Names("name patterns", "worker-*", "PATTERN"),
        flag="--include-name",
    )
    exclude_names: tuple[str, ...] = _option(
        (),
        "Shell patterns matched against task names and future labels: never trace those.",
        _Names("name patterns", "poll-*", "PATTERN"),
        flag="--exclude-name",
    )

    def __post_init__(self) -> None:
        problems: list[OptionError] = []
        for option in OPTIONS:
            try:
                value = option.check(getattr(self, option.name))
            except OptionError as exc:
                problems.append(exc)
            else:
                object.__setattr__(self, option.name, value)
        if problems:
            # One line for all of them: fixing one at a time is slow going.
            cls = OptionTypeError if isinstance(problems[0], TypeError) else OptionError
            raise cls("; ".join(map(str, problems)))

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> Options:
        """``Options(**options)``: what :func:`tracedfuture.install` calls."""
        return cls(**options)


def _unknown(head: str, key: str, known: Iterable[str], show: Callable[[str], str]) -> str:
    names = sorted(known)
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"did you mean {show(close[0])}? " if close else ""
    return f"{head}: {hint}valid ones are {', '.join(map(show, names))}"


def _table() -> tuple[Option, ...]:
    rows = []
    for f in fields(Options):
        meta = f.metadata
        flag = (meta["flag"] or "--" + f.name.replace("_", "-")) if meta["cli"] else None
        env = f.name.upper() if meta["env"] else None
        rows.append(Option(f.name, f.default, meta["doc"], meta["kind"], flag, env))
    return tuple(rows)


#: Every option, in the order of :class:`Options`' fields.
OPTIONS: tuple[Option, ...] = _table()
_BY_NAME = {option.name: option for option in OPTIONS}
_BY_ENV = {option.env: option for option in OPTIONS if option.env is not None}


def _document() -> str:
    lines = [Options.__doc__ or "", ""]
    for option in OPTIONS:
        surfaces = ", ".join(s for s in (option.flag and f"``{option.flag}``", option.env and f"``{option.env}``") if s)
        lines.append(f"    ``{option.name}`` = ``{option.default!r}``" + (f" ({surfaces})" if surfaces else ""))
        lines.append(f"        {option.doc}")
    return "\n".join(lines)


Options.__doc__ = _document()
# The generated __init__ says "unexpected keyword argument"; this one also says
# which option was meant. Type checkers still see the generated signature.
_checked_init = Options.__init__


def _init(self: Options, **options: Any) -> None:
    for key in options:
        if key not in _BY_NAME:
            raise OptionTypeError(_unknown(f"unknown tracedfuture option {key!r}", key, _BY_NAME, repr))
    _checked_init(self, **options)


Options.__init__ = _init  # type: ignore[method-assign]


# --- the environment ------------------------------------------------------------------


def from_environment(environ: Mapping[str, str] | None = None, prefix: str = "TRACEDFUTURE_") -> dict[str, Any]:
    """The options set by the variables ``prefix + NAME`` (see :class:`Options`), checked.

    ``prefix`` is ``"TRACEDFUTURE_"`` or ``"OTEL_PYTHON_TRACEDFUTURE_"``. An unset or
    empty variable leaves the option's default. A variable with the prefix that is
    no option (nor one of :data:`NOT_OPTIONS`) is an error too, so that a typo
    does not go unnoticed; every error names the variable.
    """
    env = os.environ if environ is None else environ
    given: dict[str, Any] = {}
    for var, raw in env.items():
        if not var.startswith(prefix):
            continue
        suffix = var[len(prefix) :]
        option = _BY_ENV.get(suffix)
        if option is None:
            if suffix in NOT_OPTIONS:
                continue
            raise OptionError(_unknown(f"unknown variable {var}", suffix, _BY_ENV, lambda s: prefix + s))
        if not raw.strip():
            continue
        try:
            given[option.name] = option.from_text(raw)
        except OptionError as exc:
            msg = f"{var}: {exc}"
            raise type(exc)(msg) from None
    return given


# --- the command line -----------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> frozenset[str]:
    """Declare a flag for every option that has one; returns the flags that take a value.

    Booleans are ``--tail`` / ``--no-tail``; sequences are repeatable and take
    commas (``--include-module myapp --include-module lib.db,lib.cache``). Every
    default is ``None``, so that :func:`from_arguments` knows what was given.
    """
    takes_value: set[str] = set()
    for option in OPTIONS:
        if option.flag is None:
            continue
        help_text = option.doc + f" Default: {option.default!r}."
        if isinstance(option.kind, _Bool):
            parser.add_argument(
                option.flag, dest=option.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
            continue
        takes_value.add(option.flag)
        parser.add_argument(
            option.flag,
            dest=option.name,
            type=_argument_type(option),
            action="append" if isinstance(option.kind, _Names) else "store",
            default=None,
            metavar=option.kind.metavar,
            help=help_text,
        )
    return frozenset(takes_value)


def _argument_type(option: Option) -> Callable[[str], object]:
    def parse(text: str) -> object:
        if isinstance(option.kind, _Names):
            return option.kind.parse(text)  # checked as a whole by from_arguments
        try:
            return option.from_text(text)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = option.name  # argparse names the type in some of its messages
    return parse


def from_arguments(namespace: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line (those :func:`add_arguments` declared), checked."""
    given: dict[str, Any] = {}
    for option in OPTIONS:
        value = getattr(namespace, option.name, None) if option.flag is not None else None
        if value is None:
            continue
        if isinstance(option.kind, _Names):
            value = tuple(item for part in value for item in part)
        given[option.name] = option.check(value)
    return given
