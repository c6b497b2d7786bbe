"""Whole processes, plain against ``tracedfuture run -o``, in one run: the
100,000-future program of ``tests/_cli.py`` (time, peak RSS, futures dropped) and
an empty program (what starting costs). Wall-clock: for a quiet machine."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from tests._cli import BIG  # noqa: E402

EMPTY = "print('ok')\n"


def _once(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, int]:
    """Seconds and the peak RSS (KiB) of the largest child, for one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    return seconds, max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def measure(python: str, env: dict[str, str], rounds: int = 3) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, program in (("run_o_100k", BIG), ("run_o_empty", EMPTY)):
            script = os.path.join(folder, f"{name}.py")
            with open(script, "w", encoding="utf-8") as f:
                f.write(program)
            trace = os.path.join(folder, f"{name}.jsonl")
            plain = [_once([python, script], env, folder)[0] for _ in range(rounds)]
            traced = [
                _once([python, "-m", "tracedfuture", "run", "-o", trace, script], env, folder)[0] for _ in range(rounds)
            ]
            with open(trace, encoding="utf-8") as f:
                stats = json.loads(f.readlines()[-1]).get("stats", {})
            out[name] = {
                "plain_s": statistics.median(plain),
                "traced_s": statistics.median(traced),
                "ratio": statistics.median(traced) / statistics.median(plain),
                "extra_ms": 1000 * (statistics.median(traced) - statistics.median(plain)),
                "dropped_futures": stats.get("dropped_futures"),
                "incomplete_futures": stats.get("incomplete_futures"),
                "events_written": stats.get("events_written"),
            }
    return out


if __name__ == "__main__":
    print(
        json.dumps(
            measure(sys.executable, dict(os.environ), rounds=int(sys.argv[1]) if len(sys.argv) > 1 else 3), indent=1
        )
    )
