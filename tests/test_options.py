"""The options table: install() keywords, `tracedfuture run` flags and variables, all one."""

# ruff: noqa: E501 - the table of expected messages reads best one message a line

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from typing import Any

import pytest

import tracedfuture
from tracedfuture._options import (
    OPTIONS,
    OptionError,
    Options,
    OptionTypeError,
    add_arguments,
    from_arguments,
    from_environment,
)

PREFIXES = ("TRACEDFUTURE_", "OTEL_PYTHON_TRACEDFUTURE_")


class _Parser(argparse.ArgumentParser):
    """argparse, raising its usage error instead of exiting, to read its message."""

    def error(self, message: str) -> Any:
        raise AssertionError(message)


def _cli(*args: str) -> dict[str, Any]:
    parser = _Parser(prog="tracedfuture run")
    add_arguments(parser)
    return from_arguments(parser.parse_args(list(args)))


def _cli_error(*args: str) -> str:
    with pytest.raises(AssertionError) as info:
        _cli(*args)
    return str(info.value)


def test_every_field_is_a_row_and_the_defaults_are_the_tables() -> None:
    assert [option.name for option in OPTIONS] == [f.name for f in dataclasses.fields(Options)]
    defaults = Options()
    for option in OPTIONS:
        assert getattr(defaults, option.name) == option.default
        assert option.doc
    assert defaults.max_bytes == 64 * 1024 * 1024


def test_flags_and_variables_are_spelled_from_the_option_name() -> None:
    for option in OPTIONS:
        if option.env is not None:
            assert option.env == option.name.upper()
        if option.flag is not None:
            spelled = "--" + option.name.replace("_", "-")
            assert option.flag in (spelled, spelled.removesuffix("s"))  # one module per --include-module
    assert {o.name for o in OPTIONS if o.flag is None} == {"redact"}
    assert {o.name for o in OPTIONS if o.env is None} == {"redact"}


def test_two_bad_options_are_refused_together_naming_each_value_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"^buffer_size must be .* not 0; sample_rate must be .* not 7$") as info:
        Options(buffer_size=0, sample_rate=7)
    assert "such as 1000000" in str(info.value)
    assert "such as 0.1" in str(info.value)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"tail": 1}, TypeError, "tail must be true or false, not 1"),
        ({"capture_values": "yes"}, TypeError, "capture_values must be true or false, not 'yes'"),
        ({"buffer_size": True}, TypeError, "buffer_size must be a whole number of records >= 1, such as 1000000, not True"),
        ({"buffer_size": 1e6}, TypeError, "buffer_size must be a whole number of records >= 1, such as 1000000, not 1000000.0"),
        ({"max_failures": -1}, ValueError, "max_failures must be a whole number of failures >= 1, such as 10, not -1"),
        ({"sample_rate": math.nan}, ValueError, "sample_rate must be between 0.0 and 1.0 (the fraction of futures traced), such as 0.1, not nan"),
        ({"sample_rate": -0.1}, ValueError, "sample_rate must be between 0.0 and 1.0 (the fraction of futures traced), such as 0.1, not -0.1"),
        ({"sample_rate": True}, TypeError, "sample_rate must be between 0.0 and 1.0 (the fraction of futures traced), such as 0.1, not True"),
        ({"slow": -1}, ValueError, "slow must be a number of seconds >= 0, such as 1.0, not -1"),
        ({"slow": math.inf}, ValueError, "slow must be a number of seconds >= 0, such as 1.0, not inf"),
        ({"slow": "1"}, TypeError, "slow must be a number of seconds >= 0, such as 1.0, not '1'"),
        ({"flush_interval": 0}, ValueError, "flush_interval must be a number of seconds > 0, such as 0.1, not 0"),
        ({"export_timeout": math.nan}, ValueError, "export_timeout must be a number of seconds >= 0, such as 10.0, not nan"),
        ({"max_bytes": 1024}, ValueError, "max_bytes must be a whole number of bytes >= 65536 (64 KiB), such as 67108864 (64 MiB; in text also 64MiB), not 1024"),
        ({"include_names": "worker-*"}, TypeError, "include_names must be a sequence of strings (name patterns), such as ('worker-*',), not the single string 'worker-*'"),
        ({"exclude_modules": ["ok", 3]}, TypeError, "exclude_modules must be a sequence of strings (module name prefixes), such as ('myapp.health',), not ['ok', 3]"),
        ({"include_modules": [""]}, ValueError, "include_modules must be a sequence of strings (module name prefixes), such as ('myapp.db',), not ['']"),
        ({"redact": "***"}, TypeError, "redact must be a callable taking and returning a str, or None, not '***'"),
    ],
)  # fmt: skip
def test_a_bad_value_names_the_option_the_value_and_the_fix(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match="^" + re.escape(message) + "$"):
        Options(**options)
    # install() goes through the same check, and installs nothing when it fails.
    before = asyncio_init()
    with pytest.raises(error, match="^" + re.escape(message) + "$"):
        tracedfuture.install(**options)
    assert asyncio_init() is before


def asyncio_init() -> object:
    import asyncio

    return asyncio.BaseEventLoop.__init__


def test_errors_are_option_errors_that_are_value_or_type_errors() -> None:
    with pytest.raises(OptionError):
        Options(slow=-1)
    with pytest.raises(OptionTypeError):
        Options(tail="no")
    assert issubclass(OptionTypeError, TypeError)
    assert issubclass(OptionError, ValueError)


def test_good_values_are_kept_in_one_form() -> None:
    options = Options(sample_rate=1, slow=2, include_names=["a-*", "b-*"], tail=True)
    assert options.sample_rate == 1.0
    assert isinstance(options.sample_rate, float)
    assert options.slow == 2.0
    assert options.include_names == ("a-*", "b-*")
    assert options.tail is True
    assert hash(options) == hash(Options(sample_rate=1.0, slow=2.0, include_names=("a-*", "b-*"), tail=True))


def test_replace_checks_too() -> None:
    with pytest.raises(ValueError, match=r"^max_failures must be"):
        dataclasses.replace(Options(), max_failures=0)


def test_an_unknown_option_suggests_the_closest() -> None:
    expected = r"^unknown tracedfuture option 'sample_rat': did you mean 'sample_rate'\? valid ones are 'buffer_size', "
    with pytest.raises(TypeError, match=expected):
        Options(sample_rat=0.5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=expected):
        Options.parse({"sample_rat": 0.5})


@pytest.mark.parametrize("prefix", PREFIXES)
def test_every_variable_reads_its_option(prefix: str) -> None:
    environ = {
        prefix + "CAPTURE_VALUES": "on",
        prefix + "BUFFER_SIZE": "5000",
        prefix + "MAX_BYTES": "1MiB",
        prefix + "FLUSH_INTERVAL": "0.5",
        prefix + "MAX_FAILURES": "3",
        prefix + "EXPORT_TIMEOUT": "2.5",
        prefix + "SAMPLE_RATE": "0.25",
        prefix + "TAIL": "No",
        prefix + "SLOW": "0",
        prefix + "INCLUDE_MODULES": "myapp, lib.db ,",
        prefix + "EXCLUDE_MODULES": "myapp.health",
        prefix + "INCLUDE_NAMES": "worker-*",
        prefix + "EXCLUDE_NAMES": "poll-*,tick-*",
        "OTEL_SERVICE_NAME": "not ours",
    }
    given = from_environment(environ, prefix)
    assert given == {
        "capture_values": True,
        "buffer_size": 5000,
        "max_bytes": 1 << 20,
        "flush_interval": 0.5,
        "max_failures": 3,
        "export_timeout": 2.5,
        "sample_rate": 0.25,
        "tail": False,
        "slow": 0.0,
        "include_modules": ("myapp", "lib.db"),
        "exclude_modules": ("myapp.health",),
        "include_names": ("worker-*",),
        "exclude_names": ("poll-*", "tick-*"),
    }
    assert set(given) == {option.name for option in OPTIONS if option.env is not None}
    assert Options(**given).max_bytes == 1 << 20


def test_empty_variables_keep_the_default_and_other_tracedfuture_variables_are_left_alone() -> None:
    assert from_environment({"TRACEDFUTURE_SLOW": " ", "TRACEDFUTURE_PURE_PYTHON": "1"}) == {}
    with pytest.raises(ValueError, match=r"^unknown variable TRACEDFUTURE_TAILS: did you mean TRACEDFUTURE_TAIL\?"):
        from_environment({"TRACEDFUTURE_TAILS": "1"})


@pytest.mark.parametrize(
    "text", ["64MiB", "64M", "64mb", "67108864", "65536 KiB"], ids=["MiB", "M", "mb", "bytes", "KiB"]
)
def test_max_bytes_reads_sizes_in_binary_units(text: str) -> None:
    assert from_environment({"TRACEDFUTURE_MAX_BYTES": text}) == {"max_bytes": 64 << 20}
    assert _cli("--max-bytes", text) == {"max_bytes": 64 << 20}


def test_flags_read_every_option_that_has_one() -> None:
    given = _cli(
        "--capture-values",
        "--buffer-size=5000",
        "--flush-interval=0.5",
        "--max-failures=3",
        "--export-timeout=2.5",
        "--sample-rate=0.25",
        "--no-tail",
        "--slow=0",
        "--include-module=myapp,lib.db",
        "--include-module=lib.cache",
        "--exclude-module=myapp.health",
        "--include-name=worker-*",
        "--exclude-name=poll-*",
        "--max-bytes=1MiB",
    )
    assert given == {
        "capture_values": True,
        "buffer_size": 5000,
        "max_bytes": 1 << 20,
        "flush_interval": 0.5,
        "max_failures": 3,
        "export_timeout": 2.5,
        "sample_rate": 0.25,
        "tail": False,
        "slow": 0.0,
        "include_modules": ("myapp", "lib.db", "lib.cache"),
        "exclude_modules": ("myapp.health",),
        "include_names": ("worker-*",),
        "exclude_names": ("poll-*",),
    }
    assert _cli() == {}  # nothing given: nothing overrides the defaults or the environment


def test_add_arguments_says_which_flags_take_a_value() -> None:
    takes_value = add_arguments(argparse.ArgumentParser())
    assert "--sample-rate" in takes_value
    assert "--include-module" in takes_value
    assert "--tail" not in takes_value
    assert "--capture-values" not in takes_value


# Bad text, option by option: what the variable and the flag say must be the same.
BAD_TEXT = [
    ("capture_values", "maybe"),
    ("buffer_size", "0"),
    ("buffer_size", "lots"),
    ("max_bytes", "1KiB"),
    ("max_bytes", "64 parsecs"),
    ("flush_interval", "0"),
    ("max_failures", "3.5"),
    ("export_timeout", "-1"),
    ("sample_rate", "1.5"),
    ("sample_rate", "nan"),
    ("tail", "2"),
    ("slow", "1s"),
    ("slow", "inf"),
]


@pytest.mark.parametrize(("name", "text"), BAD_TEXT)
def test_a_variable_and_a_flag_give_the_same_message_for_the_same_bad_text(name: str, text: str) -> None:
    option = next(o for o in OPTIONS if o.name == name)
    with pytest.raises(ValueError, match=r"^TRACEDFUTURE_") as from_env:
        from_environment({"TRACEDFUTURE_" + option.env: text}, "TRACEDFUTURE_")  # type: ignore[operator]
    core = str(from_env.value).removeprefix(f"TRACEDFUTURE_{option.env}: ")
    assert core.startswith(f"{name} must be ")
    assert core.endswith(f", not {text!r}")
    with pytest.raises(ValueError, match=f"^OTEL_PYTHON_TRACEDFUTURE_{option.env}: {re.escape(core)}$"):
        from_environment({"OTEL_PYTHON_TRACEDFUTURE_" + option.env: text}, "OTEL_PYTHON_TRACEDFUTURE_")  # type: ignore[operator]
    if isinstance(option.default, bool):
        return  # a boolean flag takes no text: --tail / --no-tail
    assert _cli_error(f"{option.flag}={text}") == f"argument {option.flag}: {core}"


@pytest.mark.parametrize(
    ("name", "value"), [("buffer_size", 0), ("flush_interval", 0.0), ("sample_rate", 1.5), ("slow", -1.0)]
)
def test_a_keyword_says_what_the_text_surfaces_say(name: str, value: object) -> None:
    option = next(o for o in OPTIONS if o.name == name)
    with pytest.raises(ValueError) as from_python:
        Options(**{name: value})
    with pytest.raises(ValueError) as from_env:
        from_environment({"TRACEDFUTURE_" + str(option.env): str(value)})
    must = str(from_python.value).rpartition(", not ")[0]
    assert str(from_env.value) == f"TRACEDFUTURE_{option.env}: {must}, not {str(value)!r}"
