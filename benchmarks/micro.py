"""Child process of run.py: each workload, each variant, interleaved rounds in one process.

For each loop and workload: one warm-up run of every variant at a tenth of the
size, then ``--rounds`` rounds; each round runs every variant once, starting one
place further along the list each time, so plain and traced runs alternate and
no variant always runs after the same neighbour. A variant that raises is
reported as failed (one line) and left out of the following rounds; the others go
on. Results are appended to ``--out`` as JSON lines, one per finished cell, so
that a child stopped by its time limit keeps what it measured.

Run by hand: ``python benchmarks/micro.py --out /tmp/micro.jsonl --quick``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from variants import BLIND, MODES, PEERS, VARIANTS, open_session
from workloads import WORKLOADS, sized


def one_line(exc: BaseException) -> str:
    if isinstance(exc, ImportError) and exc.name:
        return f"{exc.name} is not installed: pip install -e '.[bench]'"
    text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]


def timed(variant: str, loop_name: str, workload: str, n: int) -> tuple[float, int | None]:
    """One run: seconds from the workload's start to the end of ``finish()``."""
    session = open_session(variant, loop_name)
    try:
        gc.collect()
        start = time.perf_counter()
        session.loop.run_until_complete(WORKLOADS[workload].run(n))
        session.finish()
        elapsed = time.perf_counter() - start
        recorded = session.recorded() if session.recorded is not None else None
    finally:
        session.close()
    return elapsed, recorded


def check(variant: str, workload: str, recorded: int | None) -> str | None:
    """Why a run that completed does not count, or None."""
    if recorded is None or variant == "sampled-out" or (variant, workload) in BLIND:
        return None
    if recorded == 0:
        what = "events" if variant in MODES else "spans or tasks"
        return f"recorded no {what}: it did not trace this workload"
    return None


def cell(loop_name: str, workload: str, n: int, variants: list[str], rounds: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {v: [] for v in variants}
    failed: dict[str, str] = {}
    recorded: dict[str, int | None] = {}
    alive = list(variants)
    for variant in list(alive):
        try:
            _, recorded[variant] = timed(variant, loop_name, workload, max(1, n // 10))
            why = check(variant, workload, recorded[variant])
        except Exception as exc:
            why = one_line(exc)
        if why is not None:
            failed[variant] = why
            alive.remove(variant)
    for r in range(rounds):
        if "plain" not in alive:
            break
        shift = r % len(alive)
        for variant in alive[shift:] + alive[:shift]:
            if variant in failed:
                continue
            try:
                elapsed, recorded[variant] = timed(variant, loop_name, workload, n)
            except Exception as exc:
                failed[variant] = f"round {r + 1}: {one_line(exc)}"
                continue
            times[variant].append(elapsed)
        alive = [v for v in alive if v not in failed]
    return {
        "kind": "cell",
        "loop": loop_name,
        "workload": workload,
        "n": n,
        "label": WORKLOADS[workload].label(n),
        "times": {v: t for v, t in times.items() if v not in failed},
        "failed": failed,
        "recorded": recorded,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON-lines file the results are appended to")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every workload's size")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--loops", default="asyncio,uvloop")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--peer-scale",
        type=float,
        default=0.2,
        help="the peers run in cells of their own (with plain), at this fraction of the size: debug mode alone "
        "costs about 20 times plain; 0 leaves the peers out",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 3 rounds: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.scale, args.rounds = min(args.scale, 0.01), 3
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or "plain" not in variants:
        parser.error(f"--variants must include plain and name only {', '.join(VARIANTS)}; got {args.variants!r}")
    import tracedfuture

    header = {
        "kind": "header",
        "implementation": getattr(tracedfuture, "IMPLEMENTATION", "python"),
        "python": sys.version.split()[0],
        "scale": args.scale,
        "rounds": args.rounds,
    }
    with open(args.out, "a", encoding="utf-8") as out:
        out.write(json.dumps(header) + "\n")
        out.flush()
        modes = [v for v in variants if v not in PEERS]
        peers = [v for v in variants if v in PEERS]
        for loop_name in args.loops.split(","):
            for workload in args.workloads.split(","):
                groups = [("modes", modes, sized(workload, args.scale))]
                if peers and args.peer_scale > 0:
                    groups.append(("peers", ["plain", *peers], sized(workload, args.scale * args.peer_scale)))
                for group, chosen, n in groups:
                    start = {"kind": "start", "group": group, "loop": loop_name, "workload": workload, "n": n}
                    out.write(json.dumps(start) + "\n")
                    out.flush()
                    result = cell(loop_name, workload, n, chosen, args.rounds)
                    out.write(json.dumps({**result, "group": group}) + "\n")
                    out.flush()
    return 0


if __name__ == "__main__":
    # A stray event loop policy or a leftover loop would change what is timed.
    asyncio.set_event_loop(None)
    raise SystemExit(main())
