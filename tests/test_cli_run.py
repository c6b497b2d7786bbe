"""``tracedfuture run``: a traced program cannot tell the difference.

Each test runs the same program twice in real subprocesses, once as ``python
script.py`` (or ``python -m module``) and once as ``tracedfuture run``, and
compares what a user would see: exit status, standard output, standard error.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tracedfuture.trace import read

from ._cli import PY, python, record_timing, tracedfuture, write

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


THREADS = """\
import asyncio, threading

async def main():
    await asyncio.gather(*(asyncio.sleep(0.001) for _ in range(100)))
    await asyncio.sleep(0.05)  # past a flush_interval: the drain has written to the trace file

asyncio.run(main())
print(sorted(t.name for t in threading.enumerate()))
"""


def test_a_program_traced_into_a_trace_file_sees_one_more_thread(tmp_path: Path) -> None:
    write(tmp_path / "threads.py", THREADS)
    done = tracedfuture("run", "-o", "t.jsonl", "threads.py", cwd=tmp_path)
    assert (done.stdout, done.returncode) == ("['MainThread', 'tracedfuture-drain']\n", 0), done.stderr
    trace = read(tmp_path / "t.jsonl")
    assert trace.stats["events_written"] == len(trace.events) > 200


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
    assert done.stderr.endswith("such as 0.1, not 1.5\n")
    assert "Traceback" not in done.stderr


def test_with_no_destination_the_trace_goes_to_a_file_named_after_the_program_and_pid(
    app: Path, tmp_path: Path
) -> None:
    untraced = python("app/main.py", "x", cwd=tmp_path)
    done = tracedfuture("run", "app/main.py", "x", cwd=tmp_path)
    assert (done.stdout, done.returncode) == (untraced.stdout, 0)
    (path,) = tmp_path.glob("main-*.jsonl")
    pid = int(path.stem.removeprefix("main-"))
    first, *rest = done.stderr.splitlines(keepends=True)
    assert first == f"tracedfuture: writing the trace to {path.name} (read it with: tracedfuture tree {path.name})\n"
    assert "".join(rest) == untraced.stderr
    trace = read(path)
    assert trace.header["pid"] == pid
    assert "child" in {event.name for event in trace.events if event.is_task}
    assert path.stat().st_mode & 0o777 == 0o600  # created through _files, as every output is


def test_with_no_destination_a_module_names_its_trace(tmp_path: Path) -> None:
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "serve.py", INTROSPECT)
    done = tracedfuture("run", "-m", "pkg.serve", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [p.name.split("-")[0] for p in tmp_path.glob("*.jsonl")] == ["serve"]


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


# --- the program runs as python runs it: no frame of tracedfuture or runpy -------------------

DEBUG_PROGRAM = """\
import asyncio, gc, sys

async def never():
    return 1

async def fails():
    raise ValueError("lost")

async def main():
    never()  # never awaited: "Coroutine created at" and its frames
    asyncio.get_running_loop().create_task(fails())  # its exception is never retrieved
    await asyncio.sleep(0.01)

loop = asyncio.new_event_loop()
loop.set_debug(True)
loop.slow_callback_duration = 3600  # "Executing ... took 0.1 seconds" depends on the machine's load
loop.run_until_complete(main())
loop.close()
del loop
gc.collect()
print("done", file=sys.stderr)
"""


@pytest.mark.parametrize("mode", ["script", "module"])
def test_debug_mode_tracebacks_match_a_plain_run_byte_for_byte(mode: str, tmp_path: Path) -> None:
    write(tmp_path / "dbg.py", DEBUG_PROGRAM)
    target = ["dbg.py"] if mode == "script" else ["-m", "dbg"]
    untraced = python(*target, cwd=tmp_path)
    traced = tracedfuture("run", "-o", "t.jsonl", *target, cwd=tmp_path)
    assert "Coroutine created at (most recent call last)" in untraced.stderr
    assert "Task exception was never retrieved" in untraced.stderr
    same_as_untraced(untraced, traced)
    assert "tracedfuture" not in traced.stderr
    assert "runpy" not in traced.stderr or "runpy" in untraced.stderr


def test_the_program_is_the_process_tracedfuture_run_started(tmp_path: Path) -> None:
    """Same pid, so signals sent to ``tracedfuture run`` reach the program's handlers."""
    write(
        tmp_path / "serve.py",
        """\
        import asyncio, os, signal

        async def main():
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            print("pid", os.getpid(), flush=True)
            await stop.wait()
            print("stopped by SIGTERM")

        asyncio.run(main())
        """,
    )
    process = subprocess.Popen(
        [PY, "-m", "tracedfuture", "run", "-o", "t.jsonl", "serve.py"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == f"pid {process.pid}\n"
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert (out, err, process.returncode) == ("stopped by SIGTERM\n", "", 0)
    assert read(tmp_path / "t.jsonl").stats


def test_interpreter_options_reach_the_program(app: Path, tmp_path: Path) -> None:
    code = "import sys; print(sys.flags.dev_mode, sys.flags.optimize)"
    write(tmp_path / "flags.py", code)
    done = subprocess.run(
        [PY, "-X", "dev", "-O", "-m", "tracedfuture", "run", "-o", "t.jsonl", "flags.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.stdout, done.returncode) == ("True 1\n", 0), done.stderr


ORIG_ARGV = """\
import os, sys
print(sys.orig_argv[1:], sys.flags.optimize, sys.flags.dont_write_bytecode, sys.flags.dev_mode, sys.warnoptions)
with open(f"/proc/{os.getpid()}/cmdline", "rb") as cmdline:
    print(cmdline.read().split(b"\\0")[1:-1])
"""


@pytest.mark.parametrize(
    ("variables", "flags"),
    [
        ({"PYTHONDONTWRITEBYTECODE": "1"}, []),
        ({"PYTHONOPTIMIZE": "1"}, []),
        ({"PYTHONOPTIMIZE": "2", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONWARNINGS": "ignore"}, []),
        ({}, ["-X", "dev", "-W", "error", "-Wdefault"]),
        ({"PYTHONOPTIMIZE": "1"}, ["-X", "dev", "-B"]),
    ],
    ids=["B-from-env", "O-from-env", "many-from-env", "X-and-W-flags", "env-and-flags"],
)
def test_the_program_sees_the_untraced_orig_argv(variables: dict[str, str], flags: list[str], tmp_path: Path) -> None:
    # Options that come from the environment stay in the environment: the program's
    # sys.orig_argv and /proc/PID/cmdline hold only the flags really typed.
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("needs /proc")
    write(tmp_path / "argv.py", ORIG_ARGV)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONOPTIMIZE", "PYTHONDONTWRITEBYTECODE"))}
    env.pop("PYTHONWARNINGS", None)
    env.update(variables)

    def run(*args: str) -> str:
        done = subprocess.run([PY, *args], cwd=tmp_path, capture_output=True, text=True, check=False, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    plain = run(*flags, "argv.py")
    traced = run(*flags, "-m", "tracedfuture", "run", "--flight", "argv.py")
    assert traced == plain
    assert plain.startswith(f"{[*flags, 'argv.py']}")


# --- switches -----------------------------------------------------------------------------------


def test_flight_switch_does_not_take_the_script_as_its_path(app: Path, tmp_path: Path) -> None:
    done = tracedfuture("run", "--flight", "app/main.py", "x", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("argv ['app/main.py', 'x']")
    [dump] = tmp_path.glob("tracedfuture-flight-*.jsonl")
    assert "child" in {e.name for e in read(dump).events if e.is_task}


def test_flight_switch_takes_a_trace_path(app: Path, tmp_path: Path) -> None:
    done = tracedfuture("run", "--flight", "f.jsonl", "app/main.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert read(tmp_path / "f.jsonl").events


def test_lints_switch_takes_its_thresholds(tmp_path: Path) -> None:
    write(
        tmp_path / "block.py",
        """\
        import asyncio, time

        async def main():
            await asyncio.sleep(0.05)
            time.sleep(0.5)

        asyncio.run(main())
        """,
    )
    done = tracedfuture("run", "--lints", "blocked=0.2", "-o", "t.jsonl", "block.py", cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert [e for e in read(tmp_path / "t.jsonl").events if e.kind == "blocked_loop"]


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        (["--lints=stall=-1"], "argument --lints: lints must be name=seconds pairs among stall, blocked, orphan"),
        (["--dump-signal", "STOP"], "argument --dump-signal: dump_signal must be a signal that can be caught"),
        (["--console=yes-please"], "argument --console: console must be 1 (on), allow-cancel (on, and ps/top may "
         "cancel tasks) or 0 (off), not 'yes-please'"),
        (["--otel-timeout", "soon"], "argument --otel-timeout: otel_timeout must be a number of seconds > 0"),
        (["--exporter", "zipkin"], "argument --exporter: exporter must be a sequence of strings (exporters among "
         "jsonl, structlog, otel)"),
    ],
)  # fmt: skip
def test_a_bad_switch_is_one_line_naming_it_and_the_program_does_not_start(
    flag: list[str], expected: str, app: Path, tmp_path: Path
) -> None:
    done = tracedfuture("run", *flag, "-o", "t.jsonl", "app/main.py", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert expected in done.stderr.splitlines()[-1]
    assert "Traceback" not in done.stderr


def test_a_bad_variable_stops_tracedfuture_run_too(app: Path, tmp_path: Path) -> None:
    env = {**os.environ, "TRACEDFUTURE_LINTS": "often"}
    done = tracedfuture("run", "-o", "t.jsonl", "app/main.py", cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "tracedfuture run: error: TRACEDFUTURE_LINTS: lints must be name=seconds pairs among stall, blocked, orphan "
        "(seconds > 0, or off), such as stall=5,blocked=0.5, or 1 for the defaults, not 'often'\n"
    )


def test_variables_apply_under_tracedfuture_run_and_flags_win(app: Path, tmp_path: Path) -> None:
    env = {**os.environ, "TRACEDFUTURE_OUTPUT": "from-env.jsonl", "TRACEDFUTURE_CAPTURE_VALUES": "1"}
    done = tracedfuture("run", "-o", "from-flag.jsonl", "app/main.py", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "from-env.jsonl").exists()
    assert [e for e in read(tmp_path / "from-flag.jsonl").events if e.value is not None]


# --- exporters never write to the program's stdout ---------------------------------------------


def test_structlog_goes_to_stderr_when_the_program_does_not_configure_it(app: Path, tmp_path: Path) -> None:
    pytest.importorskip("structlog")
    untraced = python("app/main.py", cwd=tmp_path)
    traced = tracedfuture("run", "--exporter", "structlog", "app/main.py", cwd=tmp_path)
    assert traced.returncode == 0, traced.stderr
    assert traced.stdout == untraced.stdout
    assert "task.created" in traced.stderr


def test_structlog_follows_the_programs_own_configuration(tmp_path: Path) -> None:
    pytest.importorskip("structlog")
    write(
        tmp_path / "configured.py",
        """\
        import asyncio, structlog, sys
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stdout))
        asyncio.run(asyncio.sleep(0))
        """,
    )
    done = tracedfuture("run", "--exporter", "structlog", "configured.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "task.created" in done.stdout, "the program sent structlog to stdout itself"
    assert done.stderr == ""


def test_otel_with_no_collector_gives_up_with_one_line(app: Path, tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = {**os.environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{port}/v1/traces"}
    untraced = python("app/main.py", cwd=tmp_path)
    began = time.monotonic()
    traced = tracedfuture("run", "--exporter", "otel", "--otel-timeout", "0.5", "app/main.py", cwd=tmp_path, env=env)
    record_timing("tracedfuture run --exporter otel, no collector, --otel-timeout 0.5 (s)", time.monotonic() - began)
    assert traced.returncode == 0
    assert traced.stdout == untraced.stdout
    [line] = traced.stderr.splitlines()
    assert line.startswith(f"tracedfuture: OpenTelemetry: http://127.0.0.1:{port}/v1/traces did not take spans")
    assert "within 0.5s" in line


def test_otel_with_a_collector_adds_nothing_to_stderr(app: Path, tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.proto")
    from .otlp_receiver import OTLPReceiver

    untraced = python("app/main.py", cwd=tmp_path)
    with OTLPReceiver() as receiver:
        env = {**os.environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint}
        traced = tracedfuture("run", "--exporter", "otel", "app/main.py", cwd=tmp_path, env=env)
        spans = receiver.wait_for(2)
    same_as_untraced(untraced, traced)
    assert "task main" in {span.name for span in spans}


# --- child processes --------------------------------------------------------------------------

CHILDREN = """\
import asyncio, multiprocessing, os, subprocess, sys

def work(tag):
    async def main():
        await asyncio.create_task(asyncio.sleep(0), name=f"in-{tag}")
    asyncio.run(main())

if __name__ == "__main__":
    for method in sys.argv[1].split(","):
        if method == "subprocess":
            subprocess.run([sys.executable, "-c", "import kids; kids.work('subprocess')"], check=True)
        elif method == "os.fork":
            pid = os.fork()
            if pid == 0:
                work("os.fork")
                sys.exit(0)  # through atexit, unlike multiprocessing's children
            os.waitpid(pid, 0)
        else:
            process = multiprocessing.get_context(method).Process(target=work, args=(method,))
            process.start()
            process.join()
            assert process.exitcode == 0
    print("parent done")
"""

METHODS = ["fork", "spawn", "forkserver", "subprocess", "os.fork"]


def child_traces(directory: Path) -> dict[str, set[str]]:
    """For each trace of a child, the names of the tasks in it."""
    found: dict[str, set[str]] = {}
    for path in directory.glob("t.*.jsonl"):
        trace = read(path)
        assert trace.stats, f"{path.name} was finished"
        assert path.name == f"t.{trace.header['pid']}.jsonl"
        found[path.name] = {e.name for e in trace.events if e.is_task and e.name and e.name.startswith("in-")}
    return found


@pytest.mark.skipif(os.name != "posix", reason="fork and forkserver are POSIX")
def test_follow_children_traces_each_python_child_into_its_own_file(tmp_path: Path) -> None:
    write(tmp_path / "kids.py", CHILDREN)
    untraced = python("kids.py", ",".join(METHODS), cwd=tmp_path)
    traced = tracedfuture("run", "--follow-children", "-o", "t.jsonl", "kids.py", ",".join(METHODS), cwd=tmp_path)
    same_as_untraced(untraced, traced)
    names = set().union(*child_traces(tmp_path).values())
    assert names == {f"in-{method}" for method in METHODS}
    assert "untraced_children" not in read(tmp_path / "t.jsonl").stats


@pytest.mark.skipif(os.name != "posix", reason="fork is POSIX")
def test_without_follow_children_children_are_counted_not_traced(tmp_path: Path) -> None:
    write(tmp_path / "kids.py", CHILDREN)
    methods = "fork,subprocess,os.fork"
    untraced = python("kids.py", methods, cwd=tmp_path)
    traced = tracedfuture("run", "-o", "t.jsonl", "kids.py", methods, cwd=tmp_path)
    same_as_untraced(untraced, traced)
    assert not list(tmp_path.glob("t.*.jsonl"))
    trace = read(tmp_path / "t.jsonl")
    assert trace.stats["untraced_children"] == 3
    assert not [e for e in trace.events if e.name and e.name.startswith("in-")], "the children wrote nothing"
    note = "3 child processes were started untraced: trace them too with tracedfuture run --follow-children"
    assert tracedfuture("tree", "t.jsonl", cwd=tmp_path).stdout.splitlines()[-1] == note
    assert tracedfuture("stats", "t.jsonl", cwd=tmp_path).stdout.splitlines()[-1] == note


@pytest.mark.skipif(sys.version_info < (3, 12), reason="3.12 added the multi-threaded fork() warning")
@pytest.mark.parametrize("threads", ["", "--thread", "--long-trace", "--flight"])
def test_tracings_threads_do_not_add_the_fork_warning(threads: str, tmp_path: Path) -> None:
    write(
        tmp_path / "forks.py",
        """\
        import asyncio, os, sys, threading, time
        if "--thread" in sys.argv:
            threading.Thread(target=time.sleep, args=(0.5,)).start()  # the program's own: it warns
        async def many():
            loop = asyncio.get_running_loop()
            for _ in range(500):
                futures = [loop.create_future() for _ in range(500)]
                for f in futures:
                    f.set_result(None)
                for f in futures:
                    await f
        if "--long-trace" in sys.argv:  # a trace file past DropBehind.START: its thread runs
            asyncio.run(many())
            deadline = time.monotonic() + 30
            while os.path.exists("t.jsonl") and time.monotonic() < deadline:  # traced
                with open("/proc/self/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[17]) >= 3:  # the drain's, DropBehind's
                        break
                time.sleep(0.01)
        if "--flight" in sys.argv and "tracedfuture" in sys.modules:  # traced: its ring's prefault thread runs
            asyncio.run(asyncio.sleep(0))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                names = [open(f"/proc/self/task/{t}/comm").read() for t in os.listdir("/proc/self/task")]
                if "tracedfuture-pf\\n" in names:
                    break
                time.sleep(0.01)
            else:
                sys.exit("no tracedfuture-pf thread")
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        """,
    )
    untraced = python("forks.py", threads, cwd=tmp_path)
    output = ("--flight", "f.jsonl") if threads == "--flight" else ("-o", "t.jsonl")
    traced = tracedfuture("run", *output, "forks.py", threads, cwd=tmp_path)
    warned = "is multi-threaded, use of fork() may lead to deadlocks" in untraced.stderr
    assert warned == (threads == "--thread")
    if threads == "--long-trace":
        from tracedfuture._files import DropBehind

        assert (tmp_path / "t.jsonl").stat().st_size > DropBehind.START
    pid = re.compile(r"pid=\d+")
    assert pid.sub("pid=N", traced.stderr) == pid.sub("pid=N", untraced.stderr)


# --- redaction from the command line and the environment -----------------------------------------

SECRETS = """\
import asyncio

async def main():
    job = asyncio.create_task(asyncio.sleep(10), name="job token=s3cr3t-name")
    await asyncio.sleep(0)
    job.cancel("expired: token=s3cr3t-msg")
    try:
        await job
    except asyncio.CancelledError:
        print("cancelled")

asyncio.run(main())
"""


def test_redact_scrubs_names_and_cancel_messages_from_the_trace(tmp_path: Path) -> None:
    write(tmp_path / "secrets.py", SECRETS)
    done = tracedfuture("run", "--redact", r"token=\S+", "-o", "t.jsonl", "secrets.py", cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "cancelled\n", "")
    text = (tmp_path / "t.jsonl").read_text()
    assert "s3cr3t" not in text
    events = read(tmp_path / "t.jsonl").events
    assert "job [redacted]" in {e.name for e in events}
    assert "expired: [redacted]" in {e.msg for e in events if e.kind == "cancelled"}


def test_redact_from_the_environment_takes_one_expression_a_line(tmp_path: Path) -> None:
    write(tmp_path / "secrets.py", SECRETS)
    env = {**os.environ, "TRACEDFUTURE_REDACT": "s3cr3t-name\ns3cr3t-msg"}
    done = tracedfuture("run", "-o", "t.jsonl", "secrets.py", cwd=tmp_path, env=env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "cancelled\n", "")
    assert "s3cr3t" not in (tmp_path / "t.jsonl").read_text()


# --- a loop the program never closes ----------------------------------------------------------

NEVER_CLOSED = """\
import asyncio

KEEP = []


async def stuck():
    fut = asyncio.get_running_loop().create_future()
    KEEP.append(fut)
    await fut


async def main():
    KEEP.append(asyncio.create_task(stuck(), name="stuck"))
    await asyncio.gather(*(asyncio.sleep(0.001 * n) for n in range(20)))


loop = asyncio.new_event_loop()  # never closed: collected while the interpreter finalizes
loop.run_until_complete(main())
print("done")
"""


def test_a_loop_never_closed_exits_as_it_does_untraced(tmp_path: Path) -> None:
    # Its __del__ closes it during finalization, when a daemon thread of tracing
    # may hold the drain's lock for ever: closing must not wait for it.
    write(tmp_path / "never_closed.py", NEVER_CLOSED)
    plain = python("never_closed.py", cwd=tmp_path)
    traced = tracedfuture("run", "-o", "t.jsonl", "never_closed.py", cwd=tmp_path, timeout=60)
    assert (traced.returncode, traced.stdout, traced.stderr) == (plain.returncode, plain.stdout, plain.stderr)
    assert "stuck" in {e.name for e in read(tmp_path / "t.jsonl").events}
