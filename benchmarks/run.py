"""The benchmark suite: one command that measures everything and writes benchmarks/RESULTS.md.

    python benchmarks/run.py            # at most 10 minutes (--budget 600)
    python benchmarks/run.py --quick    # every part once, tiny: a smoke run of a minute or less

Needs ``pip install -e '.[bench]'`` (uvloop, structlog, the OpenTelemetry SDK and the
peers), and Debian's ``valgrind`` and ``wrk``. Each implementation of the hot path
runs in child processes of its own (``TRACEDFUTURE_PURE_PYTHON=1`` forces the
pure-Python one; the compiled one is measured when ``tracedfuture.IMPLEMENTATION``
says ``"c"`` without it). Parts, each in child processes (see their modules):

* ``micro`` (micro.py): the workloads under every mode and peer, ratios of medians
  over ``--rounds`` interleaved rounds in one process, with spreads, and the cost
  per task in microseconds;
* ``callgrind`` (cg.py): instructions per lifecycle and per task, and by function;
* ``memory`` (memory.py): peak RSS and tracemalloc over many futures;
* ``http`` (httpbench.py): a keep-alive server under wrk: throughput, p99, CPU.

The run never takes longer than ``--budget`` seconds: each part gets a share of
it (what one leaves unused goes to the next); a child that overruns its share is
stopped and reported, keeping what it had finished. A part or a mode that fails
is reported as failed in RESULTS.md and the rest still runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from importlib import metadata
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cg  # noqa: E402
import httpbench  # noqa: E402
import report  # noqa: E402
import whole  # noqa: E402
from variants import MODES, PEERS  # noqa: E402

PARTS = ("micro", "callgrind", "memory", "whole", "http")
# Cumulative shares of the budget at which each part must be done.
SHARES = {"micro": 0.45, "callgrind": 0.60, "memory": 0.72, "whole": 0.78, "http": 1.0}
IMPLEMENTATIONS = ("c", "python")
BUDGET_USED = "its share of the budget was used up (a busy machine? rerun with a larger --budget)"


def env_for(implementation: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TRACEDFUTURE_PURE_PYTHON"}
    if implementation == "python":
        env["TRACEDFUTURE_PURE_PYTHON"] = "1"
    env["PYTHONHASHSEED"] = "0"
    return env


def probe(python: str, implementation: str) -> tuple[bool, str]:
    """Whether ``implementation`` is what tracedfuture picks in a child, and why not."""
    code = "import tracedfuture; print(getattr(tracedfuture, 'IMPLEMENTATION', 'python'))"
    try:
        proc = subprocess.run(
            [python, "-c", code], env=env_for(implementation), capture_output=True, text=True, timeout=120, check=False
        )
    except subprocess.TimeoutExpired:
        return False, "importing tracedfuture timed out"
    if proc.returncode != 0:
        return False, f"import tracedfuture failed: {(proc.stderr.strip().splitlines() or ['?'])[-1][:200]}"
    got = proc.stdout.strip()
    if got == implementation:
        return True, ""
    if implementation == "c":
        return False, f"not available: without TRACEDFUTURE_PURE_PYTHON, tracedfuture.IMPLEMENTATION is {got!r}"
    return False, f"TRACEDFUTURE_PURE_PYTHON=1 gave IMPLEMENTATION {got!r}"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for dist in (
        "uvloop",
        "structlog",
        "opentelemetry-sdk",
        "opentelemetry-instrumentation-asyncio",
        "aiomonitor",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    tools = {}
    for tool, flag in (("valgrind", "--version"), ("wrk", "--version")):
        try:
            out = subprocess.run([tool, flag], capture_output=True, text=True, timeout=10, check=False)
            tools[tool] = (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            tools[tool] = "not found"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "versions": versions,
        "tools": tools,
    }


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


class Budget:
    def __init__(self, seconds: float) -> None:
        self.start = time.monotonic()
        self.seconds = seconds

    def until(self, part: str) -> float:
        """Seconds left before ``part`` must be done."""
        return self.start + self.seconds * SHARES[part] - time.monotonic()


def run_micro(python: str, impl: str, plan: dict[str, Any], timeout: float) -> dict[str, Any]:
    variants = ["plain", *MODES, *(PEERS if plan["peers"] else ())]
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl", prefix="tracedfuture-micro-", delete=False) as f:
        path = f.name
    command = [
        python,
        os.path.join(HERE, "micro.py"),
        "--out",
        path,
        "--scale",
        str(plan["scale"]),
        "--rounds",
        str(plan["rounds"]),
        "--loops",
        ",".join(plan["loops"]),
        "--variants",
        ",".join(variants),
        "--peer-scale",
        str(plan["peer_scale"]),
    ]
    error = None
    try:
        proc = subprocess.run(command, env=env_for(impl), capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            error = f"exit {proc.returncode}: {(proc.stderr.strip().splitlines() or ['?'])[-1][:300]}"
    except subprocess.TimeoutExpired:
        error = f"stopped after {timeout:.0f} s: {BUDGET_USED}"
    cells, running = [], None
    with open(path, encoding="utf-8") as f:
        for line in f:
            item = json.loads(line)
            if item["kind"] == "cell":
                cells.append(item)
                running = None
            elif item["kind"] == "start":
                running = item
    os.unlink(path)
    result: dict[str, Any] = {"cells": cells}
    if error:
        if running is not None:
            error += f", during {running['workload']} on {running['loop']} ({running['group']})"
        result["error"] = error
    return result


def run_memory(python: str, impl: str, plan: dict[str, Any], deadline: float) -> dict[str, Any]:
    futures = plan["futures"]
    chosen = ("plain", "flight") if plan["quick"] else ("plain", *MODES)
    jobs: list[tuple[str, str, int, bool]] = [(v, v, futures, False) for v in chosen]
    jobs.append(("flight", "flight x10", futures * 10, False))
    jobs += [(v, v, max(1, futures // 10), True) for v in chosen]
    rows: list[dict[str, Any]] = []
    for variant, label, n, traced in jobs:
        left = deadline - time.monotonic()
        row: dict[str, Any] = {"variant": variant, "label": label, "futures": n, "tracemalloc": traced}
        if left < 5:
            row["error"] = f"not run: {BUDGET_USED}"
            rows.append(row)
            continue
        command = [python, os.path.join(HERE, "memory.py"), "--variant", variant, "--futures", str(n)]
        if traced:
            command.append("--tracemalloc")
        try:
            proc = subprocess.run(command, env=env_for(impl), capture_output=True, text=True, timeout=left, check=False)
            lines = proc.stdout.strip().splitlines()
            if proc.returncode == 0 and lines:
                row.update(json.loads(lines[-1]))
            else:
                row["error"] = f"exit {proc.returncode}: {(proc.stderr.strip().splitlines() or ['?'])[-1][:300]}"
        except subprocess.TimeoutExpired:
            row["error"] = f"stopped after {left:.0f} s: {BUDGET_USED}"
        rows.append(row)
    return {"rows": rows}


def run_http(python: str, impl: str, plan: dict[str, Any], until: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    loops = plan["loops"]
    for i, loop_name in enumerate(loops):
        deadline = time.monotonic() + (until - time.monotonic()) / (len(loops) - i)
        results[loop_name] = httpbench.measure(
            python,
            env_for(impl),
            loop_name,
            rounds=plan["http_rounds"],
            seconds=plan["http_seconds"],
            warm_up=not plan["quick"],
            time_left=lambda deadline=deadline: deadline - time.monotonic(),
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"), help="default: benchmarks/RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few rounds, no callgrind: a smoke run")
    parser.add_argument("--implementations", default=",".join(IMPLEMENTATIONS), help="default: c,python")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"default: {','.join(PARTS)}")
    parser.add_argument("--loops", default="asyncio,uvloop")
    parser.add_argument("--rounds", type=int, default=11, help="interleaved rounds per workload (at least 11)")
    parser.add_argument("--scale", type=float, default=1.0, help="workload sizes for the compiled implementation")
    parser.add_argument(
        "--python-scale", type=float, default=0.1, help="workload sizes for the pure-Python one (default 0.1)"
    )
    parser.add_argument("--budget", type=float, default=600.0, help="seconds the whole run may take (default 600)")
    args = parser.parse_args(argv)
    parts = args.parts.split(",")
    if bad := sorted(set(parts) - set(PARTS)):
        parser.error(f"--parts names {', '.join(bad)}: choose from {', '.join(PARTS)}")
    impls = args.implementations.split(",")
    if bad := sorted(set(impls) - set(IMPLEMENTATIONS)):
        parser.error(f"--implementations names {', '.join(bad)}: choose from c, python")
    if not args.quick and args.rounds < 11:
        parser.error(f"--rounds must be at least 11 (the ratios are medians of interleaved rounds), not {args.rounds}")
    if args.quick:
        args.rounds, args.budget = 2, min(args.budget, 240.0)
        args.scale = args.python_scale = 0.002
        if "callgrind" in parts:
            parts.remove("callgrind")
    python = sys.executable
    budget = Budget(args.budget)
    started = datetime.datetime.now(datetime.UTC)
    data: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load_start": load(),
        "quick": args.quick,
        "budget": args.budget,
        "parts": parts,
        "implementations": {},
    }
    available = []
    for impl in impls:
        ok, why = probe(python, impl)
        data["implementations"][impl] = {"available": ok, "why": why}
        if ok:
            available.append(impl)
    primary = available[0] if available else None
    data["primary"] = primary
    plans = {}
    for impl in available:
        scale = args.scale if impl == "c" else args.python_scale
        plans[impl] = {
            "scale": scale,
            "rounds": args.rounds,
            "loops": args.loops.split(","),
            "peers": impl == primary,
            "peer_scale": 0.2,
            "futures": max(100, round(1_000_000 * scale)) if not args.quick else 2000,
            "http_rounds": 1 if args.quick else 3,
            "http_seconds": 1 if args.quick else 2,
            "quick": args.quick,
        }
        data["implementations"][impl]["plan"] = plans[impl]

    def say(text: str) -> None:
        elapsed = time.monotonic() - budget.start
        print(f"[{elapsed:6.0f} s] {text}", flush=True)

    # Within a part, each implementation (and each loop) gets an equal part of
    # what is left when its turn comes: what one leaves unused goes to the next.
    if "micro" in parts:
        for i, impl in enumerate(available):
            say(f"micro, {impl}: the workloads, every mode{' and peer' if plans[impl]['peers'] else ''}")
            cells: list[dict[str, Any]] = []
            errors = []
            loops = plans[impl]["loops"]
            for j, loop_name in enumerate(loops):
                share = budget.until("micro") / (len(available) - i) / (len(loops) - j)
                result = run_micro(python, impl, {**plans[impl], "loops": [loop_name]}, max(share, 1.0))
                cells += result["cells"]
                if "error" in result:
                    errors.append(result["error"])
            data["implementations"][impl]["micro"] = {
                "cells": cells,
                **({"error": "; ".join(errors)} if errors else {}),
            }
    if "callgrind" in parts:
        for i, impl in enumerate(available):
            share = budget.until("callgrind") / (len(available) - i)
            say(f"callgrind, {impl}: instructions per lifecycle and per task")
            # The modes only: importing the peers' packages (aiomonitor pulls in
            # aiohttp) takes minutes under valgrind, and their timings are above.
            cg_variants = ["plain", *MODES]
            if share < 10:
                data["implementations"][impl]["callgrind"] = {"error": f"not run: {BUDGET_USED}"}
                continue
            data["implementations"][impl]["callgrind"] = cg.measure(python, env_for(impl), cg_variants, share)
    if "memory" in parts:
        for i, impl in enumerate(available):
            deadline = time.monotonic() + budget.until("memory") / (len(available) - i)
            say(f"memory, {impl}: peak RSS and tracemalloc over {plans[impl]['futures']:,} futures")
            data["implementations"][impl]["memory"] = run_memory(python, impl, plans[impl], deadline)
    if "whole" in parts:
        for impl in available:
            say(f"whole, {impl}: tracedfuture run -o on the 100k-future program and on an empty one")
            try:
                data["implementations"][impl]["whole"] = whole.measure(python, env_for(impl), 1 if args.quick else 3)
            except Exception as exc:  # the other parts' figures still count
                data["implementations"][impl]["whole"] = {"error": repr(exc)}
    if "http" in parts:
        for i, impl in enumerate(available):
            deadline = time.monotonic() + budget.until("http") / (len(available) - i)
            say(f"http, {impl}: a keep-alive server under wrk")
            data["implementations"][impl]["http"] = run_http(python, impl, plans[impl], deadline)
    data["seconds"] = time.monotonic() - budget.start
    data["load_end"] = load()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    raw = os.path.splitext(args.out)[0] + ".json"
    with open(raw, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    try:
        text = report.render(data)
    except Exception:
        # The figures are safe in the raw file; say where the report broke.
        text = f"# Benchmark results\n\nThe report could not be written:\n\n```\n{traceback.format_exc()}```\n"
        status = 1
    else:
        status = 0
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    say(f"wrote {args.out} (and the raw figures in {raw})")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
