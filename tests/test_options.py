"""The options table: install() keywords, `tracedfuture run` flags and variables, all one."""

# ruff: noqa: E501 - the table of expected messages reads best one message a line

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import signal
from typing import Any

import pytest

import tracedfuture
from tracedfuture import cli
from tracedfuture.options import (
    INSTALL_OPTIONS,
    OPTIONS,
    PROCESS_OPTIONS,
    OptionError,
    Options,
    OptionTypeError,
    Redactor,
    add_arguments,
    from_environment,
    read_arguments,
    settings_from_environment,
    takes_value,
    to_environment,
)

PREFIXES = ("TRACEDFUTURE_", "OTEL_PYTHON_TRACEDFUTURE_")


class _Parser(argparse.ArgumentParser):
    """argparse, raising its usage error instead of exiting, to read its message."""

    def error(self, message: str) -> Any:
        raise AssertionError(message)


def _cli(*args: str) -> dict[str, Any]:
    """The options that ``tracedfuture run``'s flags give the program: flags, to
    variables, read back by the start-up hook's reader."""
    parser = _Parser(prog="tracedfuture run")
    add_arguments(parser)
    return from_environment(to_environment(parser.parse_args(list(args))))


def _cli_error(*args: str) -> str:
    with pytest.raises(AssertionError) as info:
        _cli(*args)
    return str(info.value)


def test_every_field_is_a_row_and_the_defaults_are_the_tables() -> None:
    assert [option.name for option in INSTALL_OPTIONS] == [f.name for f in dataclasses.fields(Options)]
    assert set(OPTIONS) == set(INSTALL_OPTIONS) | set(PROCESS_OPTIONS)
    assert len({option.name for option in OPTIONS}) == len(OPTIONS)
    defaults = Options()
    for option in INSTALL_OPTIONS:
        assert getattr(defaults, option.name) == option.default
    for option in OPTIONS:
        assert option.doc
    assert defaults.max_bytes == 64 * 1024 * 1024


def test_flags_and_variables_are_spelled_from_the_option_name() -> None:
    for option in OPTIONS:
        if option.env is not None:
            assert option.env == option.name.upper()
        if option.flag is not None:
            spelled = "--" + option.name.replace("_", "-")
            assert option.flag in (spelled, spelled.removesuffix("s"))  # one module per --include-module
    assert all(o.flag is not None and o.env is not None for o in OPTIONS)


def test_two_bad_options_are_refused_together_naming_each_value_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"^max_failures must be .* not 0; sample_rate must be .* not 7$") as info:
        Options(max_failures=0, sample_rate=7)
    assert "such as 10," in str(info.value)
    assert "such as 0.1" in str(info.value)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"tail": 1}, TypeError, "tail must be true or false (in text also 1/0, yes/no, on/off), not 1"),
        ({"capture_values": "yes"}, TypeError, "capture_values must be true or false (in text also 1/0, yes/no, on/off), not 'yes'"),
        ({"max_failures": True}, TypeError, "max_failures must be a whole number of failures >= 1, such as 10, not True"),
        ({"max_failures": 1e6}, TypeError, "max_failures must be a whole number of failures >= 1, such as 10, not 1000000.0"),
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
        ({"redact": "***"}, TypeError, "redact must be a callable taking and returning a str, or a sequence of regular expressions, such as ('token=\\\\S+',), not '***'"),
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


def test_an_installation_makes_its_options_when_asked_the_same_as_options() -> None:
    # install() keeps the checked values (check_install); .options is made of
    # them when first read, equal to the Options of the same keywords.
    from tracedfuture.exporters import MemoryExporter

    given = {"sample_rate": 1, "slow": 2, "include_names": ["a-*"], "tail": True, "redact": ["token=\\S+"]}
    factory = tracedfuture.loop_factory(exporters=[MemoryExporter()], **given)
    inst = factory.installation  # type: ignore[attr-defined]
    try:
        assert inst._options is None  # nothing made yet
        made = inst.options
        assert type(made) is Options and made is inst.options
        expected = Options(**given)
        assert {f.name: getattr(made, f.name) for f in dataclasses.fields(Options) if f.name != "redact"} == {
            f.name: getattr(expected, f.name) for f in dataclasses.fields(Options) if f.name != "redact"
        }
        assert made.redact("a token=x") == expected.redact("a token=x") == "a [redacted]"
    finally:
        inst.uninstall()


def test_an_unknown_option_suggests_the_closest() -> None:
    expected = r"^unknown tracedfuture option 'sample_rat': did you mean 'sample_rate'\? valid ones are 'app_modules', 'capture_values', "
    with pytest.raises(TypeError, match=expected):
        Options(sample_rat=0.5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=expected):
        Options.parse({"sample_rat": 0.5})


@pytest.mark.parametrize("prefix", PREFIXES)
def test_every_variable_reads_its_option(prefix: str) -> None:
    environ = {
        prefix + "CAPTURE_VALUES": "on",
        prefix + "REDACT": "token=\\S+\n  \npassword=\\S+",
        prefix + "MAX_BYTES": "1MiB",
        prefix + "MAX_MEMORY": "2MiB",
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
        prefix + "APP_MODULES": "myservice",
        "OTEL_SERVICE_NAME": "not ours",
    }
    given = from_environment(environ, prefix)
    assert given == {
        "capture_values": True,
        "redact": Redactor(["token=\\S+", "password=\\S+"]),
        "max_bytes": 1 << 20,
        "max_memory": 2 << 20,
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
        "app_modules": ("myservice",),
    }
    assert set(given) == {option.name for option in INSTALL_OPTIONS}
    assert Options(**given).max_bytes == 1 << 20


def test_the_otel_prefix_reads_an_installations_options_only() -> None:
    with pytest.raises(OptionError, match=r"^unknown variable OTEL_PYTHON_TRACEDFUTURE_OUTPUT: "):
        from_environment({"OTEL_PYTHON_TRACEDFUTURE_OUTPUT": "t.jsonl"}, "OTEL_PYTHON_TRACEDFUTURE_")


def test_every_process_variable_reads_its_option() -> None:
    given = from_environment(
        {
            "TRACEDFUTURE_OUTPUT": "t-{pid}.jsonl",
            "TRACEDFUTURE_EXPORTER": "structlog,otel",
            "TRACEDFUTURE_FLIGHT": "1",
            "TRACEDFUTURE_DUMP_SIGNAL": "usr1",
            "TRACEDFUTURE_LINTS": "stall=2,orphan=off",
            "TRACEDFUTURE_CONSOLE": "allow-cancel",
            "TRACEDFUTURE_FOLLOW_CHILDREN": "yes",
            "TRACEDFUTURE_OTEL_TIMEOUT": "3",
        }
    )
    assert given == {
        "output": "t-{pid}.jsonl",
        "exporter": ("structlog", "otel"),
        "flight": "",
        "dump_signal": int(signal.SIGUSR1),
        "lints": {"stall": 2.0, "blocked": 0.5, "orphan": None},
        "console": "allow-cancel",
        "follow_children": True,
        "otel_timeout": 3.0,
    }
    # Turned off, a process option is left out.
    assert from_environment({"TRACEDFUTURE_CONSOLE": "0", "TRACEDFUTURE_FOLLOW_CHILDREN": "off"}) == {}


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


def test_flags_reach_the_program_as_the_variables_that_read_as_the_same_options() -> None:
    given = _cli(
        "-o",
        "trace.jsonl",
        "--capture-values",
        "--redact=token=\\S+",
        "--redact",
        "secret",
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
        "--lints",
        "--console=allow-cancel",
    )
    assert given == {
        "output": "trace.jsonl",
        "capture_values": True,
        "redact": Redactor(["token=\\S+", "secret"]),
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
        "lints": {"stall": 5.0, "blocked": 0.5, "orphan": 30.0},
        "console": "allow-cancel",
    }
    assert _cli() == {}  # nothing given: nothing overrides the defaults or the environment


def test_run_knows_which_of_its_flags_take_the_next_argument() -> None:
    assert takes_value("--sample-rate", "0.5")
    assert takes_value("-o", "t.jsonl")
    assert takes_value("--include-module", "x")
    assert not takes_value("--sample-rate=0.5", "app.py")
    assert not takes_value("--tail", "app.py")
    assert not takes_value("--no-tail", "app.py")
    assert not takes_value("--lints", "app.py")
    assert takes_value("--lints", "stall=3")
    assert takes_value("--flight", "f.jsonl")
    assert not takes_value("--console", "app.py")
    assert takes_value("--console", "allow-cancel")


READ_AS_ARGPARSE = [
    [],
    ["-o", "t.jsonl"],
    ["--output", "t.jsonl", "-o", "u.jsonl"],
    ["--output=t.jsonl"],
    ["--tail", "--no-tail", "--capture-values"],
    ["--exclude-module", "a,b", "--exclude-module=c", "--include-name", "w-*"],
    ["--lints"],
    ["--lints", "stall=3", "--console"],
    ["--lints=off", "--console", "allow-cancel", "--flight", "f.jsonl"],
    ["--flight", "--dump-signal", "USR1", "--sample-rate", "0.5", "--max-bytes", "1MiB"],
    ["--redact", "token=\\S+", "--exporter", "structlog", "--follow-children"],
    ["--exporter", "structlog,otel", "--otel-timeout=2", "--slow", "0.25"],
]
LEFT_TO_ARGPARSE = [
    ["-h"],
    ["--out", "t.jsonl"],  # an abbreviation
    ["-ot.jsonl"],
    ["-o=t.jsonl"],
    ["-o"],
    ["-o", "-"],
    ["--sample-rate", "2"],
    ["--sample-rate", "-1"],
    ["--tail=1"],
    ["--no-output", "t.jsonl"],
    ["--lints", "-1"],
    ["--lints", "often"],
    ["--output="],
    ["-m"],
]


def _argparse_values(args: list[str]) -> dict[str, Any] | None:
    parser = _Parser(prog="tracedfuture run", add_help=True)
    add_arguments(parser)
    try:
        namespace = parser.parse_args(args)
    except (AssertionError, SystemExit):
        return None
    return {name: value for name, value in vars(namespace).items() if value is not None}


@pytest.mark.parametrize("args", READ_AS_ARGPARSE + LEFT_TO_ARGPARSE, ids=" ".join)
def test_run_reads_its_flags_as_argparse_would_or_leaves_them_to_it(args: list[str]) -> None:
    # tracedfuture run reads its flags without argparse (a lighter start): where
    # it does read them, the values are argparse's; anything else goes to argparse.
    read = read_arguments(args)
    if args in READ_AS_ARGPARSE:
        assert read == _argparse_values(args)
    else:
        assert read is None


def test_redaction_replaces_every_match_and_a_failing_callable_never_leaks() -> None:
    from tracedfuture._pipeline._convert import redacted

    assert Options(redact=["token=\\S+"]).redact("a token=abc and token=def") == "a [redacted] and [redacted]"  # type: ignore[misc,list-item]

    def broken(text: str) -> str:
        raise KeyboardInterrupt

    assert redacted(broken, "token=abc") == "<redaction failed>"


# --- the whole table, surface by surface ----------------------------------------------------

# For every option, a value that is bad on every surface that can give it: as a
# keyword of install() (installation options), as a flag of tracedfuture run
# (unless it is a flag that takes no text), and as TRACEDFUTURE_* and
# OTEL_PYTHON_TRACEDFUTURE_* (installation options) text. (python value, text).
BAD: dict[str, tuple[object, str]] = {
    "capture_values": ("maybe", "maybe"),
    "redact": (["("], "("),
    "max_bytes": (1024, "1024"),
    "max_memory": (1024, "1024"),
    "flush_interval": (0, "0"),
    "max_failures": (0, "0"),
    "export_timeout": (-1, "-1"),
    "sample_rate": (2, "2"),
    "tail": ("maybe", "maybe"),
    "slow": (-1, "-1"),
    "output": (None, ""),
    "exporter": (None, "jaeger"),
    "dump_signal": (None, "KILL"),
    "lints": (None, "stall=-1"),
    "console": (None, "maybe"),
    "follow_children": (None, "maybe"),
    "otel_timeout": (None, "0"),
}
# Lists of names and paths: any text is a good value (an empty variable is unset).
NO_BAD_TEXT = {"include_modules", "exclude_modules", "include_names", "exclude_names", "app_modules", "flight"}


def test_the_walk_covers_the_whole_table() -> None:
    assert set(BAD) | NO_BAD_TEXT == {option.name for option in OPTIONS}


def _run_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The last line ``tracedfuture run`` prints refusing ``args`` (it exits 2
    before the program starts)."""
    try:
        status = cli.main(["run", *args, "app.py"])
    except SystemExit as exc:  # argparse's error
        status = exc.code  # type: ignore[assignment]
    assert status == 2
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1]


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_value_gets_one_message_word_for_word_on_every_surface(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    option = next(o for o in OPTIONS if o.name == name)
    value, text = BAD[name]
    messages: dict[str, str] = {}
    if option.install:
        with pytest.raises(OptionError) as from_python:
            tracedfuture.install(**{name: value})
        messages["install()"] = str(from_python.value)
        with pytest.raises(OptionError) as from_otel:
            from_environment({f"OTEL_PYTHON_TRACEDFUTURE_{option.env}": text}, "OTEL_PYTHON_TRACEDFUTURE_")
        messages["OTEL_PYTHON_TRACEDFUTURE_*"] = str(from_otel.value).removeprefix(
            f"OTEL_PYTHON_TRACEDFUTURE_{option.env}: "
        )
    if text.strip():  # an empty variable leaves the default
        with pytest.raises(OptionError) as from_env:
            settings_from_environment({option.variable: text, "TRACEDFUTURE_OUTPUT": "t.jsonl"})  # type: ignore[dict-item]
        messages["TRACEDFUTURE_*"] = str(from_env.value).removeprefix(f"{option.variable}: ")
        # tracedfuture run reads the variables it inherits through the same table.
        monkeypatch.setenv(str(option.variable), text)
        messages["run, inherited"] = _run_error(capsys, "-o", "t.jsonl").removeprefix(
            f"tracedfuture run: error: {option.variable}: "
        )
        monkeypatch.delenv(str(option.variable))
    if option.kind.form != "flag":
        messages["run " + str(option.flag)] = _run_error(capsys, f"{option.flag}={text}").removeprefix(
            f"tracedfuture run: error: argument {option.short + '/' if option.short else ''}{option.flag}: "
        )
    assert len(messages) >= (1 if name == "output" else 2), messages  # an empty variable is no value
    assert len(set(messages.values())) == 1, messages
    (message,) = set(messages.values())
    assert message.startswith(f"{name} must be "), message
    assert "such as" in message or "among" in message or " or " in message, message


def test_the_start_up_hook_prints_the_tables_message(tmp_path: Any) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "print('ran')"],
        env={
            **__import__("os").environ,
            "TRACEDFUTURE_OUTPUT": str(tmp_path / "t.jsonl"),
            "TRACEDFUTURE_SAMPLE_RATE": "2",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "tracedfuture: error: TRACEDFUTURE_SAMPLE_RATE: sample_rate must be between 0.0 and 1.0 "
        "(the fraction of futures traced), such as 0.1, not 2\n"
    )


def test_option_error_is_public() -> None:
    assert tracedfuture.OptionError is OptionError
    assert OptionError.__module__ == "tracedfuture.options"
