"""``tracedfuture top``, the live console, driven in a real terminal: Debian's tmux.

Each test starts a real stuck service (examples/stuck_service.py) serving its
control socket, runs ``tracedfuture top PID`` in a tmux pane 200x50, sends keys
and reads the screen back with ``capture-pane``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracedfuture.trace import read as read_trace

from ._targets import PY, ROOT, Target, target
from .conftest import require


class Pane:
    """One tmux server (a socket of its own) with one 200x50 window."""

    def __init__(self, command: str, cwd: Path) -> None:
        self.server = f"tfc-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # 'echo EXIT' after the command: its exit status stays on screen.
        shell = f"{command}; echo EXIT $?; sleep 600"
        self._tmux("new-session", "-d", "-x", "200", "-y", "50", "-c", str(cwd), shell)

    def _tmux(self, *args: str) -> str:
        env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "NO_COLOR")}
        env["TERM"] = "xterm-256color"
        result = subprocess.run(
            ["tmux", "-L", self.server, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            check=True,
        )
        return result.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", *keys)

    def wait_for(self, *texts: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if all(text in screen for text in texts):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{texts} not on screen after {timeout}s:\n{screen}")
            time.sleep(0.2)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.server, "kill-server"], capture_output=True, timeout=30, check=False)


@pytest.fixture
def stuck() -> Iterator[Target]:
    with target() as running:
        yield running


@pytest.fixture
def pane_for(tmp_path: Path) -> Iterator[object]:
    require(shutil.which("tmux") is not None, "tmux is not installed (apt-get install tmux)")
    panes: list[Pane] = []

    def start(pid: int, *, command: str | None = None, cwd: Path = ROOT) -> Pane:
        """``tracedfuture top PID`` (or ``command``) in a new pane, in ``cwd``."""
        pane = Pane(command or f"{shlex.quote(PY)} -m tracedfuture top {pid}", cwd)
        panes.append(pane)
        return pane

    yield start
    for pane in panes:
        pane.close()


def test_top_shows_the_task_names_and_quits_on_q(stuck: Target, pane_for: object) -> None:
    pane = pane_for(stuck.pid)  # type: ignore[operator]
    screen = pane.wait_for("worker-a", "worker-b", "request-17", "heartbeat", "Task-1")
    assert f"tracedfuture top  pid {stuck.pid}" in screen
    assert "transfer()" in screen and "examples/stuck_service.py:48 in main" in screen
    pane.keys("q")
    pane.wait_for("EXIT 0")


def test_top_filters_sorts_and_shows_one_task_in_detail(stuck: Target, pane_for: object) -> None:
    pane = pane_for(stuck.pid)  # type: ignore[operator]
    pane.wait_for("worker-b")
    pane.keys("2")  # sort by name, ascending
    screen = pane.wait_for("2:name ▲")
    order = [
        name
        for line in screen.splitlines()
        for name in ("Task-1", "heartbeat", "request-17", "worker-a")
        if f" {name} " in line
    ]
    assert order == ["Task-1", "heartbeat", "request-17", "worker-a"], screen
    pane.keys("/", "worker-b", "Enter")
    screen = pane.wait_for("filter: worker-b")
    assert "worker-a" not in screen.split("filter: worker-b", 1)[1].split("lints", 1)[0]
    pane.keys("Enter")
    screen = pane.wait_for("await chain, down to the leaf future:", "coroutine stack (outermost first):")
    assert "(T) #5 worker-b  transfer()  pending" in screen
    assert "created at examples/stuck_service.py:49 in main by (T) #1 Task-1 (still pending)" in screen
    assert "└─ (F) #2" in screen and "examples/stuck_service.py:46 in main" in screen
    assert "  transfer examples/stuck_service.py:28" in screen
    pane.wait_for("recent events:", " created ")
    pane.keys("Escape")
    pane.wait_for("1:id")
    pane.keys("q")
    pane.wait_for("EXIT 0")


def test_top_highlights_the_stalled_chains_in_its_lints_pane(stuck: Target, pane_for: object) -> None:
    pane = pane_for(stuck.pid)  # type: ignore[operator]
    # The console asks for lints with a 5 s stall threshold.
    screen = pane.wait_for("stalled: (T) #4 worker-a -> (F) #3", "stalled: (T) #5 worker-b -> (F) #2", timeout=60)
    assert "─ lints ─" in screen
    pane.keys("q")
    pane.wait_for("EXIT 0")


def test_top_dumps_pauses_and_refuses_cancel_when_not_allowed(stuck: Target, tmp_path: Path, pane_for: object) -> None:
    pane = pane_for(stuck.pid, cwd=tmp_path)  # type: ignore[operator]
    pane.wait_for("worker-a")
    pane.keys("d")
    pane.wait_for("dumped the flight recorder to tracedfuture-dump-")
    [dump] = list(tmp_path.glob(f"tracedfuture-dump-{stuck.pid}-*.jsonl"))
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    assert "worker-a" in {e.name for e in read_trace(dump).events}
    pane.keys("c")
    pane.wait_for("cancel is not allowed: start the process with 'tracedfuture run --console=allow-cancel'")
    pane.keys("p")
    pane.wait_for("PAUSED (p resumes)")
    pane.keys("q")
    pane.wait_for("EXIT 0")


def test_top_cancels_a_task_after_confirmation_when_allowed(pane_for: object) -> None:
    with target(allow_cancel=True) as running:
        pane = pane_for(running.pid)  # type: ignore[operator]
        pane.wait_for("worker-b", "c cancel")
        pane.keys("/", "worker-b", "Enter")
        pane.wait_for("filter: worker-b")
        pane.keys("c")
        pane.wait_for("cancel task #5? y/n")
        pane.keys("y")
        pane.wait_for("task #5: cancel() returned True")
        deadline = time.monotonic() + 30
        while "worker-b transfer()" in pane.screen():
            assert time.monotonic() < deadline, pane.screen()
            time.sleep(0.2)
        pane.keys("q")
        pane.wait_for("EXIT 0")


def test_top_survives_the_target_exiting(pane_for: object) -> None:
    with target() as running:
        pane = pane_for(running.pid)  # type: ignore[operator]
        pane.wait_for("worker-a")
        running.proc.terminate()
        running.proc.wait(30)
        pane.wait_for(f"process {running.pid} exited or closed the connection; showing the last snapshot. q quits.")
        assert "worker-a" in pane.screen()
        pane.keys("q")
        pane.wait_for("EXIT 0")


def test_top_without_rich_prints_the_pip_install_line(stuck: Target, pane_for: object) -> None:
    code = (
        "import sys; sys.modules['rich'] = None; from tracedfuture.cli import main; "
        f"sys.exit(main(['top', '{stuck.pid}']))"
    )
    pane = pane_for(stuck.pid, command=f"{shlex.quote(PY)} -c {shlex.quote(code)}")  # type: ignore[operator]
    screen = pane.wait_for("EXIT 2")
    assert "tracedfuture top: error: the live console needs rich: pip install 'tracedfuture[console]'" in screen
