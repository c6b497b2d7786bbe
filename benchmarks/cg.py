"""Instructions per lifecycle and per task, counted by callgrind: stable on a noisy machine.

Each variant runs in a process of its own. The child (``--child``) runs under ``valgrind --tool=callgrind`` with
``--zero-before=os_getppid --dump-before=os_getpgrp``: it calls ``os.getppid()``
just before a measured region and ``os.getpgrp()`` just after, so each region
lands in a dump file of its own. Each variant runs its workload at ``n`` and at
``2n`` in the same process, with the flush inside the region; the count per unit
is ``(I(2n) - I(n)) / n``, which cancels what a run costs whatever its size.
Counts include every thread (the drain thread converts on the same interpreter).

``measure()`` runs the child and reads the dumps, including the self cost of each
function, so that the report can say where a mode's extra instructions go.
``loop`` picks the loop (``asyncio``, what run.py counts, or ``uvloop``). By hand:

    python benchmarks/cg.py --loop uvloop --variants plain,sampled-out --workloads burst,many
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
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

SIZES = {"lifecycle": 1000, "task": 500, "burst": 2000, "many": 200, "gather": 100}
# What run.py counts unless told: per lifecycle, per task (alone, and one of
# 10,000 alive with 10 futures each) and per future of a burst.
DEFAULT_WORKLOADS = ("lifecycle", "task", "burst", "many")


def child(argv: list[str]) -> int:
    from micro import one_line
    from variants import open_session
    from workloads import WORKLOADS

    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--out", required=True)
    parser.add_argument("--variants", required=True)
    parser.add_argument("--workloads", default=",".join(SIZES))
    parser.add_argument("--loop", default="asyncio")
    args = parser.parse_args(argv)
    import tracedfuture

    # One line per region, written as it ends: a child stopped by its time limit
    # keeps the regions whose dumps are complete.
    with open(args.out, "w", encoding="utf-8") as out:

        def note(item: dict[str, Any]) -> None:
            out.write(json.dumps(item) + "\n")
            out.flush()

        note({"implementation": getattr(tracedfuture, "IMPLEMENTATION", "python")})
        for workload in args.workloads.split(","):
            n = SIZES[workload]
            run = WORKLOADS[workload].run
            for variant in args.variants.split(","):
                try:
                    session = open_session(variant, args.loop)
                except Exception as exc:
                    note({"failed": f"{variant}/{workload}", "why": one_line(exc)})
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
                        note({"variant": variant, "workload": workload, "n": size})
                except Exception as exc:
                    note({"failed": f"{variant}/{workload}", "why": one_line(exc)})
                finally:
                    session.close()
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


def measure(
    python: str,
    env: dict[str, str],
    variants: list[str],
    timeout: float,
    workloads: list[str] | None = None,
    loop: str = "asyncio",
) -> dict[str, Any]:
    """Run each variant in a child of its own under callgrind (one process per
    variant, as one measures a program: what another variant left behind in the
    same process, its threads and its garbage, counts for nothing); per variant
    and workload, instructions per unit and the functions that account for the
    difference with plain."""
    if shutil.which("valgrind") is None:
        return {"error": "valgrind not found: apt-get install valgrind"}
    deadline = time.monotonic() + timeout
    per: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    errors: list[str] = []
    implementation = "?"
    ordered = ["plain", *[v for v in variants if v != "plain"]] if "plain" in variants else list(variants)
    for i, variant in enumerate(ordered):
        left = deadline - time.monotonic()
        if left < 10:
            errors.append(f"{variant} not run: its share of the budget was used up (rerun with a larger --budget)")
            continue
        found = _measure_one(python, env, variant, left / (len(ordered) - i), workloads, loop)
        implementation = found.get("implementation", implementation)
        per.update(found.get("per", {}))
        failed.update(found.get("failed", {}))
        if "error" in found:
            errors.append(f"{variant}: {found['error']}")
    # Where each variant's extra instructions go, against plain on the same
    # workload; the whole per-function table is too big to keep.
    for key, item in per.items():
        base = f"plain/{key.split('/', 1)[1]}"
        if base in per and key != base:
            item["extra"] = where(per, key, base)
    for item in per.values():
        item.pop("functions", None)
    result: dict[str, Any] = {"implementation": implementation, "per": per, "failed": failed}
    if errors:
        result["error"] = "; ".join(errors)
    return result


def _measure_one(
    python: str, env: dict[str, str], variant: str, timeout: float, workloads: list[str] | None, loop: str
) -> dict[str, Any]:
    folder = tempfile.mkdtemp(prefix="tracedfuture-cg-")
    try:
        out = os.path.join(folder, "regions.jsonl")
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
            variant,
            "--workloads",
            ",".join(workloads or DEFAULT_WORKLOADS),
            "--loop",
            loop,
        ]
        error = None
        try:
            proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                error = f"exit {proc.returncode}: {tail[0][:300]}"
        except subprocess.TimeoutExpired:
            error = f"stopped after {timeout:.0f} s, its share of the budget (rerun with a larger --budget)"
        if not os.path.exists(out):
            return {"error": error or "the child wrote nothing"}
        with open(out, encoding="utf-8") as f:
            lines = [json.loads(line) for line in f if line.endswith("\n")]
        implementation = lines[0].get("implementation", "?") if lines else "?"
        failed = {item["failed"]: item["why"] for item in lines if "failed" in item}
        regions = [item for item in lines if "variant" in item]
        dumps = [p for p in glob.glob(f"{folder}/callgrind.out.*") if p.rsplit(".", 1)[1].isdigit()]
        dumps.sort(key=lambda p: int(p.rsplit(".", 1)[1]))
        # The k-th region noted is the k-th dump (a region is noted once its dump
        # is written); a variant whose n or 2n run is missing is left out.
        pairs: dict[str, dict[int, str]] = {}
        for region, dump in zip(regions, dumps, strict=False):
            pairs.setdefault(f"{region['variant']}/{region['workload']}", {})[region["n"]] = dump
        per: dict[str, dict[str, Any]] = {}
        for key, by_size in pairs.items():
            if len(by_size) != 2:
                continue
            small, large = sorted(by_size)
            t_small, f_small = self_costs(by_size[small])
            t_large, f_large = self_costs(by_size[large])
            n = large - small
            functions = {k: (f_large.get(k, 0) - f_small.get(k, 0)) / n for k in set(f_large) | set(f_small)}
            per[key] = {"per_unit": (t_large - t_small) / n, "functions": functions}
        result: dict[str, Any] = {"implementation": implementation, "per": per, "failed": failed}
        if error:
            result["error"] = error
        return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def where(per: dict[str, Any], key: str, base: str, top: int = 12) -> list[tuple[str, float]]:
    """The functions with the most extra instructions per unit in ``key`` over ``base``."""
    mine, theirs = per[key]["functions"], per[base]["functions"]
    extra = {f: mine.get(f, 0.0) - theirs.get(f, 0.0) for f in set(mine) | set(theirs)}
    return sorted(extra.items(), key=lambda kv: -kv[1])[:top]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Instructions per unit under callgrind, against plain.")
    parser.add_argument("--loop", default="asyncio", choices=("asyncio", "uvloop"))
    parser.add_argument("--variants", default="plain,sampled-out")
    parser.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS))
    parser.add_argument("--budget", type=float, default=1800.0, help="seconds, for every variant")
    parser.add_argument("--top", type=int, default=8, help="functions shown per variant and workload")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    if "plain" not in variants:
        variants.insert(0, "plain")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    # As run.py's children: string hashes, and so dict and set probes, the same every run.
    env.setdefault("PYTHONHASHSEED", "0")
    result = measure(sys.executable, env, variants, args.budget, args.workloads.split(","), args.loop)
    print(f"{result['implementation']} core, {args.loop}; instructions per unit, (I(2n) - I(n)) / n")
    per = result["per"]
    for key in sorted(per, key=lambda k: (k.split("/", 1)[1], k != f"plain/{k.split('/', 1)[1]}", k)):
        base = per.get(f"plain/{key.split('/', 1)[1]}")
        ratio = f"{per[key]['per_unit'] / base['per_unit']:.3f}x" if base else ""
        print(f"{key:28} {per[key]['per_unit']:12,.0f}  {ratio}")
        for name, extra in per[key].get("extra", [])[: args.top]:
            print(f"    {extra:+9.1f}  {name}")
    for key, why in result["failed"].items():
        print(f"{key}: failed: {why}")
    if "error" in result:
        print(result["error"])
    return 0


if __name__ == "__main__":
    if "--child" in sys.argv:
        raise SystemExit(child(sys.argv[1:]))
    raise SystemExit(main(sys.argv[1:]))
