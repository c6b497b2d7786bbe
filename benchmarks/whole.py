"""Whole processes, plain against ``tracedfuture run -o``, in one run:

* the 100,000-future program of ``tests/_cli.py`` (time, peak RSS, futures dropped);
* an empty asyncio program (what starting costs: time and peak RSS), with
  tracedfuture installed from a wheel of this checkout, as users install it
  (``run_o_empty``), and as the benchmark's own interpreter has it, an editable
  install in the repository's venv (``run_o_empty_checkout``);
* the viewers on the 100k program's trace, made at the default settings, against
  plain ``json.loads`` of every line of the same file (bench_viewers.py's commands).

Each figure is the median of ``rounds`` runs, the commands interleaved so that a
busy machine slows them alike. Peak RSS is the child's own (``wait4``), not the
largest of all children. Wall-clock: for a quiet machine."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from bench_viewers import commands as viewer_commands  # noqa: E402

from tests._cli import BIG  # noqa: E402

# An asyncio program that does nothing: what "tracedfuture run" costs to start.
EMPTY = "import asyncio\n\n\nasync def main():\n    await asyncio.sleep(0)\n\n\nasyncio.run(main())\n"


# Runs argv (sys.argv[1:]) and prints its seconds and peak RSS (KiB). A child's
# peak RSS counts the memory of the process it was forked from, so the command is
# forked from this small launcher (python -S, a few MiB), never from the benchmark.
LAUNCH = """import os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    fd = os.open(os.devnull, os.O_RDWR)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - started, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def _once(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, int]:
    """Seconds and the command's own peak RSS (KiB) for one run."""
    done = subprocess.run(
        [sys.executable, "-S", "-c", LAUNCH, *argv], env=env, cwd=cwd, capture_output=True, text=True, check=True
    )
    seconds, kib, status = done.stdout.split()
    if int(status):
        raise subprocess.CalledProcessError(int(status), argv)
    return float(seconds), int(kib)


def _last_line(path: str) -> bytes:
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - 65536))
        return f.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]


def _median(runs: list[tuple[float, int]]) -> tuple[float, float]:
    return statistics.median(s for s, _ in runs), statistics.median(k for _, k in runs) / 1024


def installed_wheel(python: str, folder: str) -> str:
    """The interpreter of a new venv, made from ``python``'s base interpreter, with
    tracedfuture installed from a wheel of this checkout (no other package): what
    ``pip install tracedfuture`` gives a user. An editable install's finder
    (setuptools') costs every interpreter start a few milliseconds, and
    ``tracedfuture run`` starts two: that is the checkout's cost, not a user's."""
    root = os.path.dirname(HERE)
    wheels, venv = os.path.join(folder, "wheel"), os.path.join(folder, "venv")
    subprocess.run(
        [python, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels, root],
        check=True,
        capture_output=True,
    )
    base = subprocess.run(
        [python, "-c", "import sys; print(sys._base_executable)"], text=True, check=True, capture_output=True
    ).stdout.strip()
    subprocess.run([base, "-m", "venv", "--without-pip", venv], check=True, capture_output=True)
    target = os.path.join(venv, "bin", "python")
    wheel = [os.path.join(wheels, name) for name in os.listdir(wheels) if name.endswith(".whl")]
    subprocess.run(
        [python, "-m", "pip", "--python", target, "install", "-q", "--no-deps", "--no-index", *wheel],
        check=True,
        capture_output=True,
    )
    return target


def measure(python: str, env: dict[str, str], rounds: int = 3) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        try:
            wheel_python, installed = installed_wheel(python, folder), "wheel"
        except (subprocess.CalledProcessError, OSError) as exc:  # said in the figure, never hidden
            wheel_python, installed = python, f"checkout (no wheel: {exc})"
        # A start is short: seven times the rounds, for a median that means something.
        runs = (
            ("run_o_100k", BIG, wheel_python, installed, rounds),
            ("run_o_100k_checkout", BIG, python, "checkout", rounds),
            ("run_o_empty", EMPTY, wheel_python, installed, 7 * rounds),
            ("run_o_empty_checkout", EMPTY, python, "checkout", 7 * rounds),
        )
        for name, program, interpreter, how, times in runs:
            script = os.path.join(folder, f"{name}.py")
            with open(script, "w", encoding="utf-8") as f:
                f.write(program)
            trace = os.path.join(folder, f"{name}.jsonl")
            plain_argv = [interpreter, script]
            traced_argv = [interpreter, "-m", "tracedfuture", "run", "-o", trace, script]
            plain, traced = [], []
            for _ in range(times):
                plain.append(_once(plain_argv, env, folder))
                traced.append(_once(traced_argv, env, folder))
            stats = json.loads(_last_line(trace)).get("stats", {})
            (plain_s, plain_mib), (traced_s, traced_mib) = _median(plain), _median(traced)
            out[name] = {
                "plain_s": plain_s,
                "traced_s": traced_s,
                "ratio": traced_s / plain_s,
                "extra_ms": 1000 * (traced_s - plain_s),
                "plain_peak_mib": plain_mib,
                "traced_peak_mib": traced_mib,
                "extra_peak_mib": traced_mib - plain_mib,
                "dropped_futures": stats.get("dropped_futures"),
                "incomplete_futures": stats.get("incomplete_futures"),
                "events_written": stats.get("events_written"),
                "installed": how,
            }
        out["viewers"] = _viewers(Path(folder) / "run_o_100k.jsonl", Path(folder), python, env, rounds)
    return out


def _viewers(trace: Path, folder: Path, python: str, env: dict[str, str], rounds: int) -> dict[str, Any]:
    """Each viewer's median time on the 100k trace, and its ratio to json.loads."""
    todo = {name: [python, *argv[1:]] for name, argv in viewer_commands(trace, folder).items()}
    times: dict[str, list[float]] = {name: [] for name in todo}
    for _ in range(rounds):
        for name, argv in todo.items():
            times[name].append(_once(argv, env, str(folder))[0])
    base = statistics.median(times["json.loads"])
    return {
        "lines": sum(1 for _ in trace.open("rb")),
        "seconds": {name: statistics.median(t) for name, t in times.items()},
        "ratio": {name: statistics.median(t) / base for name, t in times.items() if name != "json.loads"},
    }


if __name__ == "__main__":
    print(
        json.dumps(
            measure(sys.executable, dict(os.environ), rounds=int(sys.argv[1]) if len(sys.argv) > 1 else 3), indent=1
        )
    )
