"""``tracedfuture run``: a traced program cannot tell the difference.

Each test runs the same program twice in real subprocesses, once as ``python
script.py`` (or ``python -m module``) and once as ``tracedfuture run``, and
compares what a user would see: exit status, standard output, standard error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracedfuture.trace import read

from ._cli import PY, python, tracedfuture, write

# Prints everything Python sets up for __main__, then behaves as its argv says.
INTROSPECT = """\
import asyncio, sys

print("argv", sys.argv)
print("path0", sys.path[0])
print("file", __file__, "name", __name__, "package", __package__, "spec", __spec__ is None)
print("globals", sorted(globals()))
print("main module is globals", sys.modules["__main__"].__dict__ is globals())


async def main():
    await asyncio.create_task(asyncio.sleep(0.001), name="child")


asyncio.run(main())
if "--raise" in sys.argv:
    raise RuntimeError("the program failed")
if "--exit" in sys.argv:
    sys.exit(int(sys.argv[sys.argv.index("--exit") + 1]))
if "--exit-message" in sys.argv:
    sys.exit("fatal: the program gave up")
if "--interrupt" in sys.argv:
    raise KeyboardInterrupt
"""


def same_as_untraced(untraced: subprocess.CompletedProcess[str], traced: subprocess.CompletedProcess[str]) -> None:
    assert traced.stdout == untraced.stdout
    assert traced.stderr == untraced.stderr
    assert traced.returncode == untraced.returncode


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return write(tmp_path / "app" / "main.py", INTROSPECT)


def test_script_sees_the_same_argv_path_and_main_module(app: Path, tmp_path: Path) -> None:
    untraced = python("app/main.py", "x", "--flag", cwd=tmp_path)
    traced = tracedfuture("run", "-o", "t.jsonl", "app/main.py", "x", "--flag", cwd=tmp_path)
    assert untraced.returncode == 0, untraced.stderr
    same_as_untraced(untraced, traced)


def test_program_options_that_look_like_ours_go_to_the_program(app: Path, tmp_path: Path) -> None:
    traced = tracedfuture("run", "-o", "t.jsonl", "app/main.py", "-o", "other", "--tail", "-m", "x", cwd=tmp_path)
    assert "argv ['app/main.py', '-o', 'other', '--tail', '-m', 'x']" in traced.stdout
    assert read(tmp_path / "t.jsonl").events


def test_module_mode_matches_python_dash_m(app: Path, tmp_path: Path) -> None:
    untraced = python("-m", "main", "a", "-o", "b", cwd=tmp_path / "app")
    traced = tracedfuture("run", "-o", "../t.jsonl", "-m", "main", "a", "-o", "b", cwd=tmp_path / "app")
    assert untraced.returncode == 0, untraced.stderr
    same_as_untraced(untraced, traced)


def test_uncaught_exception_prints_the_same_traceback_and_exits_1(app: Path, tmp_path: Path) -> None:
    untraced = python("app/main.py", "--raise", cwd=tmp_path)
    traced = tracedfuture("run", "-o", "t.jsonl", "app/main.py", "--raise", cwd=tmp_path)
    assert untraced.returncode == 1
    assert "RuntimeError: the program failed" in untraced.stderr
    same_as_untraced(untraced, traced)


def test_uncaught_exception_in_module_mode_prints_the_same_traceback(app: Path, tmp_path: Path) -> None:
    untraced = python("-m", "main", "--raise", cwd=tmp_path / "app")
    traced = tracedfuture("run", "-o", "../t.jsonl", "-m", "main", "--raise", cwd=tmp_path / "app")
    assert untraced.returncode == 1
    same_as_untraced(untraced, traced)


def test_syntax_error_is_reported_as_python_reports_it(tmp_path: Path) -> None:
    write(tmp_path / "broken.py", "print('a'\n")
    untraced = python("broken.py", cwd=tmp_path)
    traced = tracedfuture("run", "-o", "t.jsonl", "broken.py", cwd=tmp_path)
    assert untraced.returncode == 1
    same_as_untraced(untraced, traced)


def test_sys_exit_code_passes_through(app: Path, tmp_path: Path) -> None:
    untraced = python("app/main.py", "--exit", "7", cwd=tmp_path)
    traced = tracedfuture("run", "-o", "t.jsonl", "app/main.py", "--exit", "7", cwd=tmp_path)
    assert untraced.returncode == 7
    same_as_untraced(untraced, traced)


def test_sys_exit_message_is_printed_and_exits_1(app: Path, tmp_path: Path) -> None:
    untraced = python("app/main.py", "--exit-message", cwd=tmp_path)
    traced = tracedfuture("run", "-o", "t.jsonl", "app/main.py", "--exit-message", cwd=tmp_path)
    assert untraced.returncode == 1
    same_as_untraced(untraced, traced)


@pytest.mark.skipif(os.name != "posix", reason="death by SIGINT is POSIX")
def test_keyboard_interrupt_ends_the_process_like_python(app: Path, tmp_path: Path) -> None:
    untraced = python("app/main.py", "--interrupt", cwd=tmp_path)
    traced = tracedfuture("run", "-o", "t.jsonl", "app/main.py", "--interrupt", cwd=tmp_path)
    assert untraced.returncode == -2  # killed by SIGINT, as Python does since 3.8
    same_as_untraced(untraced, traced)
    assert read(tmp_path / "t.jsonl").stats, "the trace was finished before the process died"


def test_missing_script_is_reported_as_python_reports_it(tmp_path: Path) -> None:
    untraced = python("nowhere.py", cwd=tmp_path)
    traced = tracedfuture("run", "-o", "t.jsonl", "nowhere.py", cwd=tmp_path)
    assert untraced.returncode == 2
    same_as_untraced(untraced, traced)


def test_missing_module_is_reported_as_python_reports_it(tmp_path: Path) -> None:
    untraced = python("-m", "no_such_module_here", cwd=tmp_path)
    traced = tracedfuture("run", "-o", "t.jsonl", "-m", "no_such_module_here", cwd=tmp_path)
    assert untraced.returncode == 1
    same_as_untraced(untraced, traced)


def test_directory_with_dunder_main_runs_like_python(tmp_path: Path) -> None:
    write(tmp_path / "pkgdir" / "__main__.py", "import sys\nprint('argv', sys.argv, 'path0', sys.path[0])\n")
    untraced = python("pkgdir", "x", cwd=tmp_path)
    traced = tracedfuture("run", "-o", "t.jsonl", "pkgdir", "x", cwd=tmp_path)
    assert untraced.returncode == 0, untraced.stderr
    same_as_untraced(untraced, traced)


def test_trace_records_the_programs_tasks(app: Path, tmp_path: Path) -> None:
    tracedfuture("run", "-o", "t.jsonl", "app/main.py", cwd=tmp_path)
    trace = read(tmp_path / "t.jsonl")
    names = {event.name for event in trace.events if event.is_task}
    assert "child" in names


def test_trace_header_holds_the_programs_argv(app: Path, tmp_path: Path) -> None:
    tracedfuture("run", "-o", "t.jsonl", "app/main.py", "x", cwd=tmp_path)
    assert read(tmp_path / "t.jsonl").header["argv"] == ["app/main.py", "x"]


def test_events_from_atexit_handlers_and_late_threads_are_kept(tmp_path: Path) -> None:
    write(
        tmp_path / "late.py",
        """\
        import asyncio, atexit, threading, time

        async def named(name):
            await asyncio.create_task(asyncio.sleep(0), name=name)

        def in_thread():
            time.sleep(0.2)  # still running when the main script returns
            asyncio.run(named("from-thread"))

        atexit.register(lambda: asyncio.run(named("from-atexit")))
        threading.Thread(target=in_thread).start()
        """,
    )
    done = tracedfuture("run", "-o", "t.jsonl", "late.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    names = {event.name for event in read(tmp_path / "t.jsonl").events if event.is_task}
    assert {"from-thread", "from-atexit"} <= names


def test_capture_values_option_reaches_the_trace(app: Path, tmp_path: Path) -> None:
    tracedfuture("run", "-o", "plain.jsonl", "app/main.py", cwd=tmp_path)
    tracedfuture("run", "--capture-values", "-o", "values.jsonl", "app/main.py", cwd=tmp_path)
    assert not [e for e in read(tmp_path / "plain.jsonl").events if e.value is not None]
    assert [e for e in read(tmp_path / "values.jsonl").events if e.value is not None]


def test_sample_rate_zero_traces_no_future(app: Path, tmp_path: Path) -> None:
    done = tracedfuture("run", "--sample-rate", "0", "-o", "t.jsonl", "app/main.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not [e for e in read(tmp_path / "t.jsonl").events if e.kind == "created"]


def test_filter_and_tail_options_are_accepted(app: Path, tmp_path: Path) -> None:
    options = ["--tail", "--slow", "0.5", "--include-module", "app", "--exclude-module", "app.vendor"]
    options += ["--include-name", "child*", "--exclude-name", "noisy-*"]
    done = tracedfuture("run", *options, "-o", "t.jsonl", "app/main.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("argv ['app/main.py']")


def test_bad_sample_rate_is_a_usage_error_naming_the_value(app: Path, tmp_path: Path) -> None:
    done = tracedfuture("run", "--sample-rate", "1.5", "-o", "t.jsonl", "app/main.py", cwd=tmp_path)
    assert done.returncode == 2
    assert "'1.5'" in done.stderr
    assert "Traceback" not in done.stderr


def test_nothing_to_export_to_is_a_usage_error(app: Path, tmp_path: Path) -> None:
    done = tracedfuture("run", "app/main.py", cwd=tmp_path)
    assert done.returncode == 2
    assert "-o trace.jsonl" in done.stderr


def test_nothing_to_run_is_a_usage_error(tmp_path: Path) -> None:
    done = tracedfuture("run", "-o", "t.jsonl", cwd=tmp_path)
    assert done.returncode == 2
    assert "say what to run" in done.stderr


@pytest.mark.parametrize(
    ("exporter", "package", "extra"), [("structlog", "structlog", "structlog"), ("otel", "opentelemetry", "otel")]
)
def test_missing_exporter_package_prints_the_pip_command(
    exporter: str, package: str, extra: str, app: Path, tmp_path: Path
) -> None:
    # The package is made unimportable the way a missing one is: import raises ModuleNotFoundError.
    code = (
        f"import sys; sys.modules[{package!r}] = None; from tracedfuture.cli import main; "
        f"sys.exit(main(['run', '--exporter', {exporter!r}, 'app/main.py']))"
    )
    done = subprocess.run([PY, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert f"pip install 'tracedfuture[{extra}]'" in done.stderr
    assert "argv" not in done.stdout, "the program must not run without its exporter"


def test_structlog_exporter_runs_the_program(app: Path, tmp_path: Path) -> None:
    pytest.importorskip("structlog")
    done = tracedfuture("run", "--exporter", "structlog", "app/main.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "argv ['app/main.py']" in done.stdout


def test_console_script_runs_the_command(app: Path, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "tracedfuture"
    assert script.exists(), "pip install -e . registers the tracedfuture console script"
    untraced = python("app/main.py", "x", cwd=tmp_path)
    traced = subprocess.run(
        [script, "run", "-o", "t.jsonl", "app/main.py", "x"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    same_as_untraced(untraced, traced)
