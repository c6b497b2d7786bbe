"""The viewers against plain ``json.loads`` of every line, each a whole process.

The trace is the tests' 100,000-future trace (``tests/_cli.py``'s ``BIG``: 200
worker tasks awaiting 500 futures each, about 400,000 events), made once with
``tracedfuture run -o``. Each command runs as its own process, as a user runs it:

* ``json.loads``: ``python -c`` reading the file and parsing every line with the
  standard library, nothing else (the yardstick);
* ``tree``, ``stats``, ``html``: ``python -m tracedfuture ...``, output to a file.

The commands run ``--repeat`` times, interleaved, so that a busy machine slows them
alike; the best time of each is kept. Both wall-clock time and the process's CPU
time (user + system, from ``getrusage``) are reported, as ratios to
``json.loads``; the targets are tree and stats at most 1.5x, html at most 2x.
Run: ``python benchmarks/bench_viewers.py [--repeat 3] [--trace big.jsonl]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests._cli import BIG  # noqa: E402 - the tests' program, not a copy

TARGETS = {"tree": 1.5, "stats": 1.5, "html": 2.0}
PLAIN = "import json, sys\nwith open(sys.argv[1], 'rb') as f:\n    for line in f:\n        json.loads(line)\n"


def make_trace(directory: Path) -> Path:
    script = directory / "big.py"
    script.write_text(BIG, encoding="utf-8")
    trace = directory / "big.jsonl"
    subprocess.run(
        [sys.executable, "-m", "tracedfuture", "run", "-o", str(trace), str(script)], check=True, cwd=directory
    )
    return trace


def commands(trace: Path, out: Path) -> dict[str, list[str]]:
    py = sys.executable
    return {
        "json.loads": [py, "-c", PLAIN, str(trace)],
        "tree": [py, "-m", "tracedfuture", "tree", str(trace)],
        "stats": [py, "-m", "tracedfuture", "stats", str(trace)],
        "html": [py, "-m", "tracedfuture", "html", str(trace), "-o", str(out / "big.html")],
    }


def run(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        subprocess.run(argv, check=True, stdout=devnull, stderr=devnull)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trace", type=Path, help="an existing trace to use instead of making one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-viewers-") as tmp:
        directory = Path(tmp)
        trace = args.trace or make_trace(directory)
        size = trace.stat().st_size
        lines = sum(1 for _ in trace.open("rb"))
        print(f"trace: {trace} ({size / 1e6:.1f} MB, {lines:,} lines)")
        try:
            import orjson  # noqa: F401

            print("orjson: installed (tracedfuture[fast])")
        except ImportError:
            print("orjson: not installed (pip install 'tracedfuture[fast]' reads traces faster)")
        todo = commands(trace, directory)
        best = {name: (float("inf"), float("inf")) for name in todo}
        for _ in range(args.repeat):
            for name, argv in todo.items():
                wall, cpu = run(argv)
                best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
        base_wall, base_cpu = best["json.loads"]
        print(f"{'command':12s} {'wall':>8s} {'ratio':>6s} {'cpu':>8s} {'ratio':>6s}  target")
        failed = False
        for name, (wall, cpu) in best.items():
            target = TARGETS.get(name)
            ratio_wall, ratio_cpu = wall / base_wall, cpu / base_cpu
            verdict = ""
            if target is not None:
                ok = min(ratio_wall, ratio_cpu) <= target
                failed |= not ok
                verdict = f"<= {target}x {'met' if ok else 'NOT MET'}"
            print(f"{name:12s} {wall:7.2f}s {ratio_wall:5.2f}x {cpu:7.2f}s {ratio_cpu:5.2f}x  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
