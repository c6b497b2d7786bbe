"""Real programs, plain and under ``tracedfuture run``: the same stdout, stderr and
exit status, byte for byte, and a trace that holds their futures and tasks.

Each program under ``tests/programs/`` prints only what is the same from one run
to the next (no addresses, ports or timings). The traced run uses the command
line people use, ``tracedfuture run -o trace.jsonl program.py args``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tracedfuture.trace import read

from .conftest import require

PROGRAMS = Path(__file__).resolve().parent / "programs"
_SCRIPT = Path(sys.executable).with_name("tracedfuture")
TRACEDFUTURE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "tracedfuture"]


@dataclass(frozen=True)
class Case:
    program: str
    args: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()  # modules of the test extra
    env: tuple[tuple[str, str], ...] = ()
    traced_at_least: int = 10  # futures and tasks in the trace


UVLOOP = ("uvloop",)
CASES = {
    "asyncio primitives": Case("primitives.py", traced_at_least=30),  # 37 on 3.12, 40+ on 3.11
    "a crash": Case("crash.py", traced_at_least=3),
    "subprocesses and executors": Case("subprocesses.py", traced_at_least=20),
    "loop subclasses": Case("loop_subclass.py", traced_at_least=15),
    "aiohttp server under load, SIGINT": Case("aiohttp_server.py", needs=("aiohttp",), traced_at_least=1000),
    "httpx client with timeouts": Case("httpx_client.py", needs=("httpx",), traced_at_least=100),
    "websockets echo": Case("websockets_echo.py", needs=("websockets",), traced_at_least=100),
    "anyio": Case("anyio_program.py", needs=("anyio",), traced_at_least=20),
    "anyio on uvloop": Case("anyio_program.py", ("uvloop",), needs=("anyio", *UVLOOP), traced_at_least=20),
    "uvloop.run": Case("uvloop_entry.py", ("run",), needs=UVLOOP, traced_at_least=20),
    "uvloop.install": Case("uvloop_entry.py", ("install",), needs=UVLOOP, traced_at_least=20),
    "uvloop policy": Case("uvloop_entry.py", ("policy",), needs=UVLOOP, traced_at_least=20),
    "Runner(loop_factory=uvloop.new_event_loop)": Case(
        "uvloop_entry.py", ("runner",), needs=UVLOOP, traced_at_least=20
    ),
    "uvloop.new_event_loop": Case("uvloop_entry.py", ("new_event_loop",), needs=UVLOOP, traced_at_least=20),
    "uvicorn on uvloop": Case("uvicorn_app.py", ("uvloop",), needs=("uvicorn", "httpx", *UVLOOP), traced_at_least=100),
    "uvicorn on asyncio": Case("uvicorn_app.py", ("asyncio",), needs=("uvicorn", "httpx"), traced_at_least=100),
    "a failed task dropped": Case("unretrieved.py", traced_at_least=2),
    "debug mode": Case("debug_mode.py", env=(("PYTHONASYNCIODEBUG", "1"),), traced_at_least=5),
}


def _run(command: list[str], case: Case, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONASYNCIODEBUG", "TRACEDFUTURE_"))}
    env.update(case.env)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, timeout=300, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("case", [pytest.param(case, id=name) for name, case in CASES.items()])
def test_traced_run_is_byte_for_byte_the_plain_run(case: Case, tmp_path: Path) -> None:
    for module in case.needs:
        require(importlib.util.find_spec(module) is not None, f"{module} (the test extra) is not installed")
    program = [str(PROGRAMS / case.program), *case.args]
    plain = _run([sys.executable, *program], case, tmp_path)
    trace = tmp_path / "trace.jsonl"
    traced = _run([*TRACEDFUTURE, "run", "-o", str(trace), *program], case, tmp_path)
    assert plain.stdout, plain.stderr.decode(errors="replace")
    assert (traced.returncode, traced.stdout.decode(errors="replace"), traced.stderr.decode(errors="replace")) == (
        plain.returncode,
        plain.stdout.decode(errors="replace"),
        plain.stderr.decode(errors="replace"),
    )
    assert (traced.stdout, traced.stderr) == (plain.stdout, plain.stderr)  # bytes, not only text
    created = sum(1 for event in read(trace).events if event.kind == "created")
    assert created >= case.traced_at_least, f"only {created} futures and tasks traced"
