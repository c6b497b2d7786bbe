"""Real target processes serving the control socket, for the attach tests.

A target is started with ``tracedfuture run --console`` (``--console=allow-cancel``
to allow cancels), in a runtime directory of its own (``XDG_RUNTIME_DIR``, 0700),
so tests never see each other's sockets. TCP, which ``run`` does not offer, is
started by a small launcher that calls ``tracedfuture._control.server.start(tcp=...)``
and then runs the program as ``python program.py`` would (``runpy``).
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
STUCK = ROOT / "examples" / "stuck_service.py"

LAUNCHER = """\
import runpy, sys
import tracedfuture._control.server as control
control.start(allow_cancel={allow_cancel!r}, tcp={tcp!r})
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@dataclass
class Target:
    proc: subprocess.Popen[str]
    runtime: Path
    env: dict[str, str]

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def socket(self) -> Path:
        return self.runtime / "tracedfuture" / f"{self.pid}.sock"


def runtime_dir() -> Path:
    # Short, under /tmp: a Unix socket path has at most 107 bytes.
    return Path(tempfile.mkdtemp(prefix="tfc-", dir="/tmp"))


@contextmanager
def target(
    program: Path | str = STUCK,
    *args: str,
    allow_cancel: bool = False,
    tcp: int | None = None,
    ready: str = "serving",
    cwd: Path = ROOT,
) -> Iterator[Target]:
    """Run ``program`` with the control socket; yields once it printed ``ready``."""
    runtime = runtime_dir()
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "PYTHONUNBUFFERED": "1"}
    if tcp is None:
        console = "--console=allow-cancel" if allow_cancel else "--console"
        command = [PY, "-m", "tracedfuture", "run", console, str(program), *args]
    else:
        command = [PY, "-c", LAUNCHER.format(allow_cancel=allow_cancel, tcp=tcp), str(program), *args]
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    found = Target(proc, runtime, env)
    try:
        _wait_for(proc, ready, found.socket)
        yield found
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        shutil.rmtree(runtime, ignore_errors=True)


def _wait_for(proc: subprocess.Popen[str], ready: str, socket: Path, timeout: float = 60) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = ""
    while ready not in seen:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"target exited ({proc.returncode}) before {ready!r}: {seen!r} {err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"target did not print {ready!r} within {timeout}s: {seen!r}")
        readable, _, _ = select.select([proc.stdout], [], [], 0.5)
        if readable:
            seen += proc.stdout.readline()
    while not socket.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"no socket at {socket}")
        time.sleep(0.05)


def tracedfuture(*args: str | int | Path, timeout: float = 60, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """The ``tracedfuture`` command in a subprocess (its own environment: the
    client finds a target's socket from the target's, in /proc)."""
    return subprocess.run(
        [PY, "-m", "tracedfuture", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def line_of(path: Path, text: str) -> int:
    """The line number of the first line of ``path`` that contains ``text``."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")
