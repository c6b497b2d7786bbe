"""Helpers for the command line tests: run ``tracedfuture`` in a real subprocess,
and make real traces by running real programs under ``tracedfuture run``."""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"

# Tasks, awaited futures, a failure, a cancel with a msg, a pending and an abandoned future.
SAMPLE = """\
import asyncio

KEEP = []


async def fetch(n):
    await asyncio.sleep(0.001 * n)
    if n == 2:
        raise ValueError("backend said no")
    return n


async def waiter(fut):
    return await fut


async def main():
    loop = asyncio.get_running_loop()
    reply = loop.create_future()
    waiting = asyncio.create_task(waiter(reply), name="waiter")
    loop.call_later(0.005, reply.set_result, "hello")
    jobs = [asyncio.create_task(fetch(i), name=f"fetch-{i}") for i in range(4)]
    await asyncio.gather(*jobs, return_exceptions=True)
    slow = asyncio.create_task(asyncio.sleep(10), name="slow-call")
    await asyncio.sleep(0.002)
    slow.cancel("deadline exceeded")
    try:
        await slow
    except asyncio.CancelledError:
        pass
    await waiting
    KEEP.append(loop.create_future())  # still pending when the program ends
    loop.create_future()  # dropped at once: abandoned


asyncio.run(main())
print("sample done")
"""

# The strings a hostile (or unlucky) program can put into a trace.
INJECTED_NAME = "<img src=x onerror=alert(1)>"
INJECTED_MSG = "</script><script>alert(1)</script>"
INJECTION = f"""\
import asyncio


async def main():
    task = asyncio.create_task(asyncio.sleep(10), name={INJECTED_NAME!r})
    await asyncio.sleep(0)
    task.cancel({INJECTED_MSG!r})
    try:
        await task
    except asyncio.CancelledError:
        pass
    fut = asyncio.get_running_loop().create_future()
    fut.set_result("<b>&amp;</b>\\u2028")
    await fut


asyncio.run(main())
"""

BIG_FUTURES = 100_000
BIG_WORKERS = 200
# 200 worker tasks awaiting 500 futures each: 1 in 50 fails, 1 in 50 is cancelled.
BIG = f"""\
import asyncio


async def worker(w, count):
    loop = asyncio.get_running_loop()
    for i in range(count):
        fut = loop.create_future()
        k = w * count + i
        if k % 50 == 7:
            loop.call_soon(fut.set_exception, ValueError(f"bad {{k}}"))
            try:
                await fut
            except ValueError:
                pass
        elif k % 50 == 13:
            loop.call_soon(fut.cancel, f"stop {{k % 3}}")
            try:
                await fut
            except asyncio.CancelledError:
                pass
        else:
            loop.call_soon(fut.set_result, k)
            await fut


async def main():
    per = {BIG_FUTURES} // {BIG_WORKERS}
    workers = [asyncio.create_task(worker(w, per), name=f"worker-{{w}}") for w in range({BIG_WORKERS})]
    await asyncio.gather(*workers)


asyncio.run(main())
"""


def tracedfuture(
    *args: str | Path, cwd: Path | None = None, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m tracedfuture ARGS`` in a subprocess, output captured as text."""
    return subprocess.run(
        [PY, "-m", "tracedfuture", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def python(*args: str | Path, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python ARGS``: the untraced run to compare with."""
    return subprocess.run([PY, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def make_trace(directory: Path, name: str, program: str, *run_options: str) -> Path:
    """Run ``program`` under ``tracedfuture run -o`` and return the trace's path."""
    script = write(directory / f"{name}.py", program)
    trace = directory / f"{name}.jsonl"
    done = tracedfuture("run", "-o", trace, *run_options, script.name, cwd=directory)
    assert done.returncode == 0, done.stderr
    return trace


@functools.cache
def _session_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="tracedfuture-cli-tests-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@functools.cache
def big_trace() -> Path:
    """The 100,000-future trace, made once per test session. Complete: room for
    all of it (the default max_memory drops futures of a burst the trace file's
    writer cannot keep up with), and time at exit to write it on a loaded machine."""
    return make_trace(_session_dir(), "big", BIG, "--max-memory", str(1 << 30), "--export-timeout", "300")


@functools.cache
def big_html() -> tuple[Path, float]:
    """``tracedfuture html`` on the big trace, made once: (report, seconds it took)."""
    report = _session_dir() / "big.html"
    began = time.perf_counter()
    done = tracedfuture("html", big_trace(), "-o", report)
    seconds = time.perf_counter() - began
    assert done.returncode == 0, done.stderr
    return report, seconds


def record_timing(name: str, seconds: float) -> None:
    """Keep a measured duration in artifacts/timings.json (for people, not asserted)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "timings.json"
    timings = json.loads(path.read_text()) if path.exists() else {}
    timings[name] = round(seconds, 2)
    path.write_text(json.dumps(timings, indent=2, sort_keys=True) + "\n")
    print(f"{name}: {seconds:.2f}s")
