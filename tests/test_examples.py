"""The seeds' three example programs, traced: they print the lines the seeds
show, then the lifecycle events of their future."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.splitlines()


def lifecycle(lines: list[str]) -> list[str]:
    start = next(i for i, line in enumerate(lines) if line.startswith("lifecycle of future"))
    return [line.split()[0] for line in lines[start + 1 :]]


def test_future_event_loop_prints_the_seed_lines_then_the_lifecycle() -> None:
    lines = run_example("future_event_loop.py")
    assert lines[:6] == [
        "scheduling mark_done",
        "entering event loop",
        "setting future result to 'the result'",
        "returned result: 'the result'",
        "closing event loop",
        "future result: 'the result'",
    ]
    # run_until_complete adds its own done callback: that is what wakes the loop.
    assert lifecycle(lines) == ["created", "callback_added", "resolved", "callback_scheduled"]


def test_future_await_prints_the_seed_lines_then_the_lifecycle() -> None:
    lines = run_example("future_await.py")
    assert lines[:3] == [
        "scheduling mark_done",
        "setting future result to 'the result'",
        "returned result: 'the result'",
    ]
    assert lifecycle(lines) == ["created", "awaited", "resolved", "callback_scheduled"]
    assert "awaiter Task-1" in lines[-1]


def test_future_callback_prints_the_seed_lines_then_the_lifecycle() -> None:
    lines = run_example("future_callback.py")
    assert lines[:4] == [
        "registering callbacks on future",
        "setting result of future",
        "1: future done: the result",
        "2: future done: the result",
    ]
    assert lifecycle(lines) == [
        "created",
        "callback_added",
        "callback_added",
        "resolved",
        "callback_scheduled",
        "callback_scheduled",
    ]


@pytest.mark.parametrize("name", ["future_event_loop.py", "future_await.py", "future_callback.py"])
def test_example_under_tracedfuture_run_keeps_its_output(name: str, tmp_path: Path) -> None:
    plain = run_example(name)
    traced = subprocess.run(
        [sys.executable, "-m", "tracedfuture", "run", "-o", str(tmp_path / "t.jsonl"), str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert traced.returncode == 0, traced.stderr
    # Same program output (the lifecycle table's ids may differ: run traces first).
    seed_lines = [line for line in plain if not line.startswith(("lifecycle", "  "))]
    assert [line for line in traced.stdout.splitlines() if not line.startswith(("lifecycle", "  "))] == seed_lines
