"""What the start-up hook, ``tracedfuture.pth``, costs every Python process.

* ``line``: the hook's one line, executed as ``site`` executes it, in this
  process and with this process's environment (no ``TRACEDFUTURE_*`` variable):
  the whole cost for a process that is not traced.
* ``python -c pass``: the wall time of a whole interpreter start, without a
  variable and with ``TRACEDFUTURE_OUTPUT`` set (tracing installed before the
  program: what turning it on costs at start-up).

Best and median of ``--repeat`` runs. Run: ``python benchmarks/bench_startup_hook.py``.
"""

from __future__ import annotations

import argparse
import os
import site
import statistics
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path


def hook_line() -> str:
    for directory in site.getsitepackages():
        path = Path(directory) / "tracedfuture.pth"
        if path.exists():
            return path.read_text().strip()
    sys.exit("tracedfuture.pth is not installed here: pip install -e . first")


def start(environ: dict[str, str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        began = timeit.default_timer()
        subprocess.run([sys.executable, "-c", "pass"], env=environ, check=True)
        times.append(timeit.default_timer() - began)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    code = compile(hook_line(), "tracedfuture.pth", "exec")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRACEDFUTURE_")}
    os.environ.clear()
    os.environ.update(clean)
    number = 100_000
    best = min(timeit.repeat(lambda: exec(code, {}), number=number, repeat=5)) / number
    print(f"line, {len(clean)} variables in the environment, none TRACEDFUTURE_: {best * 1e6:.2f} us")
    with tempfile.TemporaryDirectory() as directory:
        traced = {**clean, "TRACEDFUTURE_OUTPUT": os.path.join(directory, "t.jsonl")}
        for label, environ in (("no variable", clean), ("TRACEDFUTURE_OUTPUT set", traced)):
            times = start(environ, args.repeat)
            print(
                f"python -c pass, {label}: best {min(times) * 1e3:.1f} ms, "
                f"median {statistics.median(times) * 1e3:.1f} ms"
            )


if __name__ == "__main__":
    main()
