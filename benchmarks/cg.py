"""Instructions per lifecycle and per task, counted by callgrind: stable on a noisy machine.

The child (``--child``) runs under ``valgrind --tool=callgrind`` with
``--zero-before=os_getppid --dump-before=os_getpgrp``: it calls ``os.getppid()``
just before a measured region and ``os.getpgrp()`` just after, so each region
lands in a dump file of its own. Each variant runs its workload at ``n`` and at
``2n`` in the same process, with the flush inside the region; the count per unit
is ``(I(2n) - I(n)) / n``, which cancels what a run costs whatever its size.
Counts include every thread (the drain thread converts on the same interpreter).

``measure()`` runs the child and reads the dumps, including the self cost of each
function, so that the report can say where a mode's extra instructions go.
"""

from __future__ import annotations

import argparse
import collections
import gc
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

SIZES = {"lifecycle": 300, "task": 150}


def child(argv: list[str]) -> int:
    from micro import one_line
    from variants import open_session
    from workloads import WORKLOADS

    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--out", required=True)
    parser.add_argument("--variants", required=True)
    parser.add_argument("--workloads", default=",".join(SIZES))
    args = parser.parse_args(argv)
    import tracedfuture

    regions: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    for workload in args.workloads.split(","):
        n = SIZES[workload]
        run = WORKLOADS[workload].run
        for variant in args.variants.split(","):
            try:
                session = open_session(variant, "asyncio")
            except Exception as exc:
                failed[f"{variant}/{workload}"] = one_line(exc)
                continue
            try:
                session.loop.run_until_complete(run(max(1, n // 5)))
                session.finish()
                for size in (n, 2 * n):
                    gc.collect()
                    os.getppid()  # callgrind: zero the counters
                    session.loop.run_until_complete(run(size))
                    session.finish()
                    os.getpgrp()  # callgrind: dump the region
                    regions.append({"variant": variant, "workload": workload, "n": size})
            except Exception as exc:
                failed[f"{variant}/{workload}"] = one_line(exc)
            finally:
                session.close()
    result = {
        "implementation": getattr(tracedfuture, "IMPLEMENTATION", "python"),
        "regions": regions,
        "failed": failed,
    }
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(result, out)
    return 0


_NAME = re.compile(r"^\((\d+)\)(?: (.*))?$")


def self_costs(path: str) -> tuple[int, dict[str, int]]:
    """The total and each function's own instructions in one callgrind dump."""
    names: dict[str, str] = {}
    costs: collections.Counter[str] = collections.Counter()
    total = 0
    fn = "?"
    after_calls = False

    def name(text: str) -> str:
        m = _NAME.match(text.strip())
        if not m:
            return text.strip()
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), text.strip())

    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line.startswith("fn="):
                fn = name(line[3:])
            elif line.startswith("cfn="):
                name(line[4:])
            elif line.startswith("calls="):
                after_calls = True
            elif line.startswith("summary:"):
                total = int(line.split()[1])
            elif line[:1].isdigit() or line[:1] in "+-*":
                if after_calls:
                    after_calls = False  # the inclusive cost of the call just named
                    continue
                parts = line.split()
                if len(parts) >= 2:
                    costs[fn] += int(parts[1])
    return total, dict(costs)


def measure(python: str, env: dict[str, str], variants: list[str], timeout: float) -> dict[str, Any]:
    """Run the child under callgrind; per variant and workload, instructions per
    unit and the functions that account for the difference with plain."""
    if shutil.which("valgrind") is None:
        return {"error": "valgrind not found: apt-get install valgrind"}
    folder = tempfile.mkdtemp(prefix="tracedfuture-cg-")
    try:
        out = os.path.join(folder, "regions.json")
        command = [
            "valgrind",
            "--tool=callgrind",
            "--zero-before=os_getppid",
            "--dump-before=os_getpgrp",
            f"--callgrind-out-file={folder}/callgrind.out",
            python,
            os.path.join(HERE, "cg.py"),
            "--child",
            "--out",
            out,
            "--variants",
            ",".join(variants),
        ]
        try:
            proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        if proc.returncode != 0 or not os.path.exists(out):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return {"error": f"exit {proc.returncode}: {tail[0][:300]}"}
        with open(out, encoding="utf-8") as f:
            result: dict[str, Any] = json.load(f)
        dumps = sorted(
            glob.glob(f"{folder}/callgrind.out.*"), key=lambda p: int(p.rsplit(".", 1)[1]) if p[-1].isdigit() else 0
        )
        dumps = [p for p in dumps if p.rsplit(".", 1)[1].isdigit()]
        if len(dumps) < len(result["regions"]):
            return {"error": f"{len(dumps)} callgrind dumps for {len(result['regions'])} regions"}
        per: dict[str, dict[str, Any]] = {}
        regions = result["regions"]
        for i in range(0, len(regions), 2):
            small, large = regions[i], regions[i + 1]
            t_small, f_small = self_costs(dumps[i])
            t_large, f_large = self_costs(dumps[i + 1])
            n = large["n"] - small["n"]
            functions = {k: (f_large.get(k, 0) - f_small.get(k, 0)) / n for k in set(f_large) | set(f_small)}
            per[f"{small['variant']}/{small['workload']}"] = {
                "per_unit": (t_large - t_small) / n,
                "functions": functions,
            }
        return {"implementation": result["implementation"], "per": per, "failed": result["failed"]}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def where(per: dict[str, Any], key: str, base: str, top: int = 12) -> list[tuple[str, float]]:
    """The functions with the most extra instructions per unit in ``key`` over ``base``."""
    mine, theirs = per[key]["functions"], per[base]["functions"]
    extra = {f: mine.get(f, 0.0) - theirs.get(f, 0.0) for f in set(mine) | set(theirs)}
    return sorted(extra.items(), key=lambda kv: -kv[1])[:top]


if __name__ == "__main__":
    if "--child" in sys.argv:
        raise SystemExit(child(sys.argv[1:]))
    print(__doc__)
