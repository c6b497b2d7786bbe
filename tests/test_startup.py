"""The start-up hook: ``tracedfuture.pth`` and the ``TRACEDFUTURE_*`` variables.

Every test starts real Python processes, as a container would: the hook is the
installed ``tracedfuture.pth``, nothing is imported or patched by the test.
"""

from __future__ import annotations

import ast
import os
import signal
import site
import subprocess
import time
from pathlib import Path

import pytest

from tracedfuture import options
from tracedfuture.options import NOT_OPTION_VARIABLES, settings_from_environment
from tracedfuture.trace import read

from ._cli import PY, record_timing, write

APP = """\
import asyncio, os, sys

async def main():
    await asyncio.create_task(asyncio.sleep(0.001), name="child")

asyncio.run(main())
print("argv", sys.argv)
print("tracedfuture variables", sorted(k for k in os.environ if k.startswith("TRACEDFUTURE_")))
"""


def clean_environ(**variables: str) -> dict[str, str]:
    """This environment without any TRACEDFUTURE_ variable, plus ``variables``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRACEDFUTURE_")}
    environ.update(variables)
    return environ


def python(*args: str | Path, cwd: Path, timeout: float = 60, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, *map(str, args)],
        cwd=cwd,
        env=clean_environ(**variables),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return write(tmp_path / "app.py", APP)


def installed_hook() -> Path:
    for directory in site.getsitepackages():
        path = Path(directory) / "tracedfuture.pth"
        if path.exists():
            return path
    pytest.fail("pip install -e . puts tracedfuture.pth in site-packages")


def test_the_hook_is_one_line_that_only_looks_at_the_environment() -> None:
    [line] = installed_hook().read_text().splitlines()
    head = (
        "import os, sys; not (sys.flags.ignore_environment or sys.flags.isolated) and "
        '[k for k in os.environ if k[:13] == "TRACEDFUTURE_" and k not in ('
    )
    assert line.startswith(head)
    skipped, rest = line[len(head) :].split(")", 1)
    # The variables that are not options (the core's choice, the build's) start nothing.
    assert set(ast.literal_eval(f"({skipped},)")) == NOT_OPTION_VARIABLES
    assert rest == '] and __import__("tracedfuture._startup", fromlist=["hook"]).hook()'


def test_without_a_variable_the_hook_imports_nothing(tmp_path: Path) -> None:
    done = python(
        "-c",
        "import sys; print(sorted(m for m in sys.modules if m.startswith('tracedfuture') or m == 'asyncio'))",
        cwd=tmp_path,
    )
    assert done.stdout == "[]\n", done.stderr
    assert done.stderr == ""


def test_a_variable_traces_an_unchanged_python_process(app: Path, tmp_path: Path) -> None:
    plain = python("app.py", "x", cwd=tmp_path)
    traced = python("app.py", "x", cwd=tmp_path, TRACEDFUTURE_OUTPUT="t.jsonl")
    assert (traced.stdout, traced.stderr, traced.returncode) == (plain.stdout, plain.stderr, plain.returncode)
    trace = read(tmp_path / "t.jsonl")
    assert trace.header["argv"] == ["app.py", "x"]
    assert "child" in {e.name for e in trace.events if e.is_task}
    assert trace.stats["untraced_children"] == 0


def test_the_collector_runs_for_the_program_as_untraced(tmp_path: Path) -> None:
    # The hook pauses the collector during its imports only, whatever it decides.
    code = "import gc; print(gc.isenabled(), gc.get_threshold())"
    plain = python("-c", code, cwd=tmp_path)
    (tmp_path / "elsewhere.jsonl").write_text("")
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "elsewhere.jsonl")
    for output in ("t.jsonl", "link.jsonl"):  # traced; refused, the program untraced
        traced = python("-c", code, cwd=tmp_path, TRACEDFUTURE_OUTPUT=output)
        assert (traced.stdout, traced.returncode) == (plain.stdout, 0), traced.stderr
    assert plain.stdout.startswith("True ")
    assert "not writing the trace to" in traced.stderr


def test_the_program_does_not_see_the_variables(app: Path, tmp_path: Path) -> None:
    traced = python("app.py", cwd=tmp_path, TRACEDFUTURE_OUTPUT="t.jsonl", TRACEDFUTURE_SAMPLE_RATE="1")
    assert "tracedfuture variables []" in traced.stdout


def test_pid_in_the_output_path_is_replaced(app: Path, tmp_path: Path) -> None:
    done = subprocess.Popen(
        [PY, "app.py"], cwd=tmp_path, env=clean_environ(TRACEDFUTURE_OUTPUT="t-{pid}.jsonl"), stdout=subprocess.DEVNULL
    )
    assert done.wait(60) == 0
    assert read(tmp_path / f"t-{done.pid}.jsonl").events


@pytest.mark.parametrize("variable", ["TRACEDFUTURE_STRICT_BUILD", "TRACEDFUTURE_CFLAGS", "TRACEDFUTURE_SOMETHING"])
def test_a_variable_that_asks_for_no_tracing_leaves_every_process_alone(
    variable: str, app: Path, tmp_path: Path
) -> None:
    done = python("app.py", cwd=tmp_path, **{variable: "1"})
    assert (done.returncode, done.stderr) == (0, "")
    assert f"tracedfuture variables [{variable!r}]" in done.stdout  # the program ran, and saw it
    assert not list(tmp_path.glob("*.jsonl"))


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TRACEDFUTURE_SAMPLE_RATE", "2", "TRACEDFUTURE_SAMPLE_RATE: sample_rate must be between 0.0 and 1.0"),
        ("TRACEDFUTURE_LINTS", "stall=soon", "TRACEDFUTURE_LINTS: lints must be name=seconds pairs"),
        ("TRACEDFUTURE_LINTS", "stal=5", "among stall, blocked, orphan"),
        ("TRACEDFUTURE_DUMP_SIGNAL", "KILL", "dump_signal must be a signal that can be caught, such as USR1"),
        ("TRACEDFUTURE_CONSOLE", "maybe", "TRACEDFUTURE_CONSOLE: console must be 1 (on), allow-cancel"),
        (
            "TRACEDFUTURE_EXPORTER",
            "zipkin",
            "exporter must be a sequence of strings (exporters among jsonl, structlog, otel)",
        ),
        ("TRACEDFUTURE_TAIL", "sometimes", "TRACEDFUTURE_TAIL: tail must be true or false"),
        ("TRACEDFUTURE_OTEL_TIMEOUT", "0", "otel_timeout must be a number of seconds > 0"),
        (
            "TRACEDFUTURE_FLIHGT",
            "1",
            "unknown variable TRACEDFUTURE_FLIHGT: did you mean TRACEDFUTURE_FLIGHT?",
        ),
    ],
)
def test_a_bad_variable_is_one_line_and_the_program_does_not_start(
    variable: str, value: str, expected: str, app: Path, tmp_path: Path
) -> None:
    done = python("app.py", cwd=tmp_path, TRACEDFUTURE_OUTPUT="t.jsonl", **{variable: value})
    assert done.returncode == 2
    assert done.stdout == "", "the program must not start"
    [line] = done.stderr.splitlines()
    assert line.startswith("tracedfuture: error: ")
    assert expected in line


def test_options_without_a_destination_say_which_variable_is_missing(app: Path, tmp_path: Path) -> None:
    done = python("app.py", cwd=tmp_path, TRACEDFUTURE_SAMPLE_RATE="0.5")
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert "TRACEDFUTURE_SAMPLE_RATE set, but nothing says where events go" in line
    assert "TRACEDFUTURE_OUTPUT=trace.jsonl" in line


def test_a_trace_file_that_cannot_be_written_is_one_line(app: Path, tmp_path: Path) -> None:
    done = python("app.py", cwd=tmp_path, TRACEDFUTURE_OUTPUT="no/such/dir/t.jsonl")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "tracedfuture: error: cannot write the trace to no/such/dir/t.jsonl: No such file or directory"
    ]


def test_the_reference_switch_alone_does_not_start_tracing(tmp_path: Path) -> None:
    code = "import sys; print(sorted(m for m in sys.modules if m.startswith('tracedfuture')))"
    done = python("-c", code, cwd=tmp_path, TRACEDFUTURE_PURE_PYTHON="1")
    assert (done.stdout, done.stderr, done.returncode) == ("[]\n", "", 0)


def test_every_option_has_a_variable_and_a_flag() -> None:
    variables = [o.variable for o in options.OPTIONS]
    flags = [o.flag for o in options.OPTIONS]
    assert len(set(variables)) == len(variables) == len(set(flags))
    assert all(v.startswith("TRACEDFUTURE_") and v.upper() == v for v in variables)
    assert {"TRACEDFUTURE_FLIGHT", "TRACEDFUTURE_DUMP_SIGNAL", "TRACEDFUTURE_LINTS", "TRACEDFUTURE_CONSOLE"} <= set(
        variables
    )


def test_lints_spec_overrides_the_defaults_one_by_one() -> None:
    assert settings_from_environment({"TRACEDFUTURE_LINTS": "stall=2,orphan=off", "TRACEDFUTURE_OUTPUT": "t"}) == {
        "lints": {"stall": 2.0, "blocked": 0.5, "orphan": None},
        "output": "t",
    }
    assert settings_from_environment({"TRACEDFUTURE_LINTS": "1", "TRACEDFUTURE_OUTPUT": "t"})["lints"] == (
        options.LINT_DEFAULTS
    )


def test_flight_recorder_from_the_environment_dumps_at_exit(app: Path, tmp_path: Path) -> None:
    done = python("app.py", cwd=tmp_path, TRACEDFUTURE_FLIGHT="flight.jsonl")
    assert done.returncode == 0, done.stderr
    assert "child" in {e.name for e in read(tmp_path / "flight.jsonl").events if e.is_task}


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")
def test_dump_signal_dumps_the_flight_recorder_of_a_running_process(tmp_path: Path) -> None:
    write(
        tmp_path / "wait.py",
        """\
        import asyncio, sys

        async def main():
            asyncio.get_running_loop().create_future()  # pending forever
            print("ready", flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """,
    )
    process = subprocess.Popen(
        [PY, "wait.py"],
        cwd=tmp_path,
        env=clean_environ(TRACEDFUTURE_DUMP_SIGNAL="USR1", TRACEDFUTURE_FLIGHT="flight.jsonl"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGUSR1)
        dump = tmp_path / "flight.jsonl"
        for _ in range(200):
            if dump.exists() and read(dump).stats:
                break
            time.sleep(0.05)
        assert process.poll() is None, "the signal dumps; it does not end the process"
        created = [e for e in read(dump).events if e.kind == "created"]
        assert [e for e in created if e.is_task and e.name == "Task-1"]
    finally:
        process.kill()
        process.communicate()


def test_blocked_loop_lint_watches_every_loop_of_the_process(tmp_path: Path) -> None:
    write(
        tmp_path / "block.py",
        """\
        import asyncio, time

        async def main():
            await asyncio.sleep(0.05)
            time.sleep(0.6)  # the loop is blocked
            await asyncio.sleep(0.05)

        asyncio.run(main())
        asyncio.run(main())
        """,
    )
    done = python(
        "block.py", cwd=tmp_path, TRACEDFUTURE_OUTPUT="t.jsonl", TRACEDFUTURE_LINTS="blocked=0.2,stall=off,orphan=off"
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    blocked = [e for e in read(tmp_path / "t.jsonl").events if e.kind == "blocked_loop"]
    assert len(blocked) == 2
    assert all("time.sleep(0.6)" in (e.detail or "") for e in blocked)


def test_stall_lint_from_the_environment(tmp_path: Path) -> None:
    write(
        tmp_path / "stall.py",
        """\
        import asyncio

        async def main():
            fut = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(fut, 0.5)
            except TimeoutError:
                pass

        asyncio.run(main())
        """,
    )
    done = python("stall.py", cwd=tmp_path, TRACEDFUTURE_OUTPUT="t.jsonl", TRACEDFUTURE_LINTS="stall=0.1,blocked=off")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert [e for e in read(tmp_path / "t.jsonl").events if e.kind == "stalled"]


def test_console_without_the_control_module_is_one_line(app: Path, tmp_path: Path) -> None:
    from tracedfuture._startup import console_available

    if console_available():
        pytest.skip("this tracedfuture has the control socket")
    done = python("app.py", cwd=tmp_path, TRACEDFUTURE_CONSOLE="1")
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert "needs the control socket" in line


def test_the_hooks_cost_without_a_variable_is_measured(tmp_path: Path) -> None:
    """``python -c pass`` with and without the hook's line: recorded, not asserted."""
    line = installed_hook().read_text()
    code = f"import time, os; t = time.perf_counter_ns(); exec({line!r}); print(time.perf_counter_ns() - t)"
    samples = sorted(int(python("-c", code, cwd=tmp_path).stdout) for _ in range(5))
    record_timing("startup hook without variables (us)", samples[2] / 1e3)
    assert samples[2] > 0


@pytest.mark.slow
def test_a_wheel_installs_the_hook_and_it_traces(tmp_path: Path) -> None:
    import venv
    import zipfile

    root = Path(__file__).resolve().parent.parent
    subprocess.run(
        [PY, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(root)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("tracedfuture-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "tracedfuture.pth" in names, "at the top of the wheel: pip puts it in site-packages"
    assert "build_pth.py" not in names
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    fresh = env_dir / "bin" / "python"
    subprocess.run([fresh, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, timeout=300)
    write(tmp_path / "app.py", APP)
    environ = clean_environ(TRACEDFUTURE_OUTPUT="t.jsonl")
    done = subprocess.run([fresh, "app.py"], cwd=tmp_path, env=environ, capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert "child" in {e.name for e in read(tmp_path / "t.jsonl").events if e.is_task}
    # and pip uninstall takes it away again (it is in the wheel's RECORD)
    subprocess.run([fresh, "-m", "pip", "uninstall", "-q", "-y", "tracedfuture"], check=True, timeout=300)
    assert not list((env_dir / "lib").glob("python*/site-packages/tracedfuture.pth"))
