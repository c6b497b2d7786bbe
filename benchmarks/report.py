"""Turns run.py's figures into benchmarks/RESULTS.md, and judges them against the issue's targets.

``render(data)`` takes the dictionary run.py collects (also written beside the
report as RESULTS.json) and returns the Markdown. A ratio is the median of the
per-round ratios (each round's time over the same round's plain, the variants of
a round run back to back), in the same process; its spread is their
interquartile range. (A ratio of the two medians compares runs minutes apart:
on a VM whose speed drifts it fell outside that range, 0.83x against 0.96-1.01.)
"""

from __future__ import annotations

import statistics
from typing import Any

from variants import BLIND, MODES, PEERS
from workloads import WORKLOADS

# The targets of the open issues, for the compiled implementation on asyncio's
# loop; uvloop gets the slack in the last column. Each row: (issue, title, where
# the figure is, what it names, the limit, uvloop's slack, at most?).
#   micro:   (variant, workloads): the worst median per-round ratio over the workloads
#   cg:      (variant, "lifecycle" | "task"): instructions over plain's (asyncio only)
#   http:    (variant, "throughput" | "p99" | "cpu"): relative to plain's
#   whole:   ("run_o_100k" | "run_o_empty", field): run -o against plain python
#   viewers: (command,): time over json.loads of the same trace
SUBTYPE_FLOOR = "Below the subtype floor"
EVERY_EVENT = "Every event out"
TARGETS: list[tuple[str, str, str, tuple[str, ...], float, float, bool]] = [
    (SUBTYPE_FLOOR, "callgrind, flight recorder, per lifecycle", "cg", ("flight", "lifecycle"), 1.06, 0, True),
    (SUBTYPE_FLOOR, "callgrind, flight recorder, per task create+await", "cg", ("flight", "task"), 1.10, 0, True),
    (SUBTYPE_FLOOR, "callgrind, sampled out, per lifecycle", "cg", ("sampled-out", "lifecycle"), 1.01, 0, True),
    (SUBTYPE_FLOOR, "callgrind, sampled out, per task", "cg", ("sampled-out", "task"), 1.01, 0, True),
    (SUBTYPE_FLOOR, "wall, flight recorder, lifecycle", "micro", ("flight", "lifecycle"), 1.08, 0.03, True),
    (SUBTYPE_FLOOR, "wall, flight recorder, 10k tasks", "micro", ("flight", "many"), 1.12, 0.03, True),
    (SUBTYPE_FLOOR, "wall, flight recorder, 300k-future burst", "micro", ("flight", "burst"), 1.15, 0.03, True),
    (
        SUBTYPE_FLOOR,
        "wall, sampled out",
        "micro",
        ("sampled-out", "lifecycle", "task", "gather", "many", "burst"),
        1.02,
        0.03,
        True,
    ),
    (SUBTYPE_FLOOR, "HTTP, flight recorder, throughput", "http", ("flight", "throughput"), 0.95, 0, False),
    (SUBTYPE_FLOOR, "HTTP, flight recorder, CPU per request", "http", ("flight", "cpu"), 1.06, 0, True),
    (EVERY_EVENT, "300k-future burst, every event to a no-op exporter", "micro", ("noop", "burst"), 1.5, 0, True),
    (EVERY_EVENT, "the same burst, exporter blocked for ever", "micro", ("stuck", "burst"), 1.1, 0, True),
    (EVERY_EVENT, "run -o, 100k futures: whole process", "whole", ("run_o_100k", "ratio"), 1.6, 0, True),
    (EVERY_EVENT, "run -o, 100k futures: futures dropped", "whole", ("run_o_100k", "dropped"), 0, 0, True),
    (EVERY_EVENT, "run -o on an empty asyncio program, extra ms", "whole", ("run_o_empty", "extra_ms"), 40, 0, True),
    (EVERY_EVENT, "run -o on an empty asyncio program, extra peak MiB", "whole", ("run_o_empty", "mib"), 16, 0, True),
    (EVERY_EVENT, "10k tasks x 10 futures, every event to a trace file", "micro", ("jsonl", "many"), 1.35, 0, True),
    (
        EVERY_EVENT,
        "10k tasks x 10 futures, into a MemoryExporter",
        "micro",
        ("memory", "many"),
        1.6,
        0,
        True,
    ),
    (EVERY_EVENT, "lifecycle, every event into a MemoryExporter", "micro", ("memory", "lifecycle"), 1.5, 0, True),
    (
        EVERY_EVENT,
        "tail sampling, healthy",
        "micro",
        ("tail", "lifecycle", "task", "gather", "many"),
        1.25,
        0,
        True,
    ),
    (EVERY_EVENT, "HTTP, to a trace file, throughput", "http", ("jsonl", "throughput"), 0.85, 0, False),
    (EVERY_EVENT, "HTTP, to a trace file, p99", "http", ("jsonl", "p99"), 1.3, 0, True),
    (
        EVERY_EVENT,
        "HTTP, every event counted, throughput",
        "http",
        ("export", "throughput"),
        0.80,
        0,
        False,
    ),
    (EVERY_EVENT, "viewers on the 100k trace: tree", "viewers", ("tree",), 1.5, 0, True),
    (EVERY_EVENT, "viewers on the 100k trace: stats", "viewers", ("stats",), 1.5, 0, True),
    (EVERY_EVENT, "viewers on the 100k trace: html", "viewers", ("html",), 2.0, 0, True),
]

VARIANT_TITLES = {
    "plain": "plain",
    "sampled-out": "sampled out",
    "flight": "flight recorder",
    "tail": "tail-sampled structlog+OTel",
    "memory": "MemoryExporter",
    "jsonl": "JSON-lines file",
    "noop": "no-op exporter",
    "stuck": "exporter blocked forever",
    "debug": "asyncio debug mode",
    "otel-asyncio": "otel-instrumentation-asyncio",
    "aiomonitor": "aiomonitor task factory",
    "export": "every event exported",
}


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def ratio(cell: dict[str, Any], variant: str) -> tuple[float, float, float] | None:
    times = cell["times"]
    if variant not in times or "plain" not in times or not times[variant] or not times["plain"]:
        return None
    plain, mine = times["plain"], times[variant]
    paired = [m / p for m, p in zip(mine, plain, strict=False)]
    r = median(paired)
    if len(paired) >= 2:
        q = statistics.quantiles(paired, n=4, method="inclusive")
        return r, q[0], q[2]
    return r, paired[0], paired[0]


def fmt_ratio(r: tuple[float, float, float] | None) -> str:
    if r is None:
        return "-"
    return f"{r[0]:.2f}x ({r[1]:.2f}-{r[2]:.2f})"


def cells_of(impl: dict[str, Any], group: str) -> dict[tuple[str, str], dict[str, Any]]:
    micro = impl.get("micro") or {}
    return {(c["loop"], c["workload"]): c for c in micro.get("cells", []) if c.get("group", "modes") == group}


def per_unit_extra_us(cell: dict[str, Any], variant: str) -> float | None:
    times = cell["times"]
    if variant not in times or not times[variant] or not times.get("plain"):
        return None
    return (median(times[variant]) - median(times["plain"])) / cell["n"] * 1e6


def tasks_in(cell: dict[str, Any]) -> int:
    return cell["n"] * WORKLOADS[cell["workload"]].tasks_per_unit


def render(data: dict[str, Any]) -> str:
    out: list[str] = []
    w = out.append
    m = data["machine"]
    w("# Benchmark results\n")
    w(
        f"Written by `{data['command']}` on {data['date']}, in {data['seconds'] / 60:.1f} minutes "
        f"(budget {data['budget'] / 60:.0f} minutes). Regenerate with `python benchmarks/run.py`; "
        "`benchmarks/README.md` says what each figure is. The raw figures are in `RESULTS.json`.\n"
    )
    if data.get("quick"):
        w("**A `--quick` smoke run: tiny sizes and 2 rounds. These figures mean nothing.**\n")
    w(
        f"- Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}; load average {data['load_start']} "
        f"at the start, {data['load_end']} at the end."
    )
    w(f"- Python {m['python']} (`{m['executable']}`).")
    w(
        "- "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + "; "
        + ", ".join(f"{v}" for v in m["tools"].values())
        + "."
    )
    for name, impl in data["implementations"].items():
        if impl["available"]:
            plan = impl["plan"]
            w(
                f"- Implementation `{name}`: measured, workload sizes x{plan['scale']:g}, {plan['rounds']} rounds"
                f"{', with the peers' if plan['peers'] else ''}."
            )
        else:
            w(f"- Implementation `{name}`: {impl['why']}.")
    load = data["load_start"].split()[0]
    try:
        busy = float(load) > 0.5 * (m["cores"] or 1)
    except ValueError:
        busy = False
    if busy:
        w(
            "- The machine was busy with other work during this run (see the load average): times and ratios are "
            "provisional; the callgrind counts are not affected."
        )
    w("")
    primary = data.get("primary")
    if primary is None:
        w("No implementation could be measured.\n")
        return "\n".join(out) + "\n"
    _targets(w, data, primary)
    for name, impl in data["implementations"].items():
        if impl["available"]:
            _implementation(w, name, impl)
    _notes(w)
    return "\n".join(out) + "\n"


def _verdict(value: float | None, limit: float, *, at_most: bool = True) -> str:
    if value is None:
        return "not measured"
    ok = value <= limit if at_most else value >= limit
    return "met" if ok else "**missed**"


def _targets(w: Any, data: dict[str, Any], primary: str) -> None:
    impl = data["implementations"][primary]
    w("## Against the targets\n")
    if primary != "c":
        w(
            "The targets are for the compiled implementation, which was not available in this run: below are the "
            f"`{primary}` implementation's figures, judged against them for information.\n"
        )
    else:
        w(
            "The compiled implementation (`c`); ratios to plain asyncio in the same run, "
            "median of the per-round ratios.\n"
        )
    w("| issue | target | asyncio | uvloop |")
    w("| --- | --- | --- | --- |")
    for issue, title, part, what, limit, slack, at_most in TARGETS:
        bound = f"at most {limit:g}" if at_most else f"at least {limit:g}"
        row = [issue, f"{title}: {bound}"]
        for loop in ("asyncio", "uvloop"):
            if part in ("cg", "whole", "viewers") and loop == "uvloop":
                row.append("-")  # measured once, on asyncio's loop
                continue
            figure = _figure(impl, part, what, loop)
            if figure is None:
                row.append("not measured")
                continue
            value, shown = figure
            extra = slack if loop == "uvloop" else 0.0
            row.append(f"{_verdict(value, limit + extra if at_most else limit - extra, at_most=at_most)}: {shown}")
        w("| " + " | ".join(row) + " |")
    mem = _flight_flat(impl.get("memory"))
    w(f"| - | flight recorder memory: bounded, flat over 10x the futures | {mem} | - |")
    w("")
    w(
        "uvloop's limits are asyncio's with the slack the issues give (+0.03 for the flight recorder and sampled "
        "out). callgrind, the whole-process runs and the viewers run on asyncio's loop only. A target missed is "
        "explained under 'Where the instructions go' for its implementation.\n"
    )


def _figure(impl: dict[str, Any], part: str, what: tuple[str, ...], loop: str) -> tuple[float, str] | None:
    """One target's figure and how to show it, or None when it was not measured."""
    if part == "micro":
        cells = cells_of(impl, "modes")
        variant, workloads = what[0], what[1:]
        found = [(wl, ratio(cells[(loop, wl)], variant)) for wl in workloads if (loop, wl) in cells]
        found = [(wl, r) for wl, r in found if r is not None]
        if not found:
            return None
        worst = max(found, key=lambda x: x[1][0])
        shown = ", ".join(f"{wl} {r[0]:.2f}x" for wl, r in found) if len(found) > 1 else f"{worst[1][0]:.2f}x"
        return worst[1][0], shown
    if part == "cg":
        per = (impl.get("callgrind") or {}).get("per") or {}
        mine, base = per.get(f"{what[0]}/{what[1]}"), per.get(f"plain/{what[1]}")
        if not mine or not base:
            return None
        value = mine["per_unit"] / base["per_unit"]
        return value, f"{value:.2f}x ({mine['per_unit'] / 1000:,.1f}k / {base['per_unit'] / 1000:,.1f}k)"
    if part == "http":
        runs = (impl.get("http") or {}).get(loop)
        key = {"throughput": "requests_per_s", "p99": "p99_ms", "cpu": "cpu_us_per_request"}[what[1]]
        value = _http_relative(runs, what[0], key)
        return None if value is None else (value, f"{value:.2f}")
    if part == "whole":
        whole = (impl.get("whole") or {}).get(what[0])
        if not whole:
            return None
        # the repository's editable install, beside the wheel's target figure
        checkout = (impl.get("whole") or {}).get(f"{what[0]}_checkout")
        if what[1] == "ratio":
            text = f"{whole['ratio']:.2f}x ({whole['plain_s']:.2f} s / {whole['traced_s']:.2f} s"
            text += f"; {whole.get('installed', 'checkout')}"
            if checkout:
                text += f"; editable checkout {checkout['ratio']:.2f}x"
            return whole["ratio"], text + ")"
        if what[1] == "dropped":
            dropped = whole.get("dropped_futures")
            return None if dropped is None else (dropped, f"{dropped:,}")
        if what[1] == "extra_ms":
            text = f"+{whole['extra_ms']:.0f} ms ({1000 * whole['plain_s']:.0f} ms plain"
            text += f"; {whole.get('installed', 'checkout')}"
            if checkout:
                text += f"; editable checkout +{checkout['extra_ms']:.0f} ms"
            return whole["extra_ms"], text + ")"
        if "extra_peak_mib" not in whole:
            return None
        return whole["extra_peak_mib"], f"+{whole['extra_peak_mib']:.1f} MiB ({whole['plain_peak_mib']:.0f} MiB plain)"
    if part == "viewers":
        viewers = (impl.get("whole") or {}).get("viewers")
        if not viewers or what[0] not in viewers["ratio"]:
            return None
        value = viewers["ratio"][what[0]]
        return value, f"{value:.2f}x ({viewers['seconds'][what[0]]:.2f} s / {viewers['seconds']['json.loads']:.2f} s)"
    raise ValueError(part)


def _http_relative(
    runs: dict[str, list[dict[str, Any]]] | None, variant: str, key: str = "requests_per_s"
) -> float | None:
    if not runs:
        return None
    plain = [r[key] for r in runs.get("plain", []) if key in r]
    mine = [r[key] for r in runs.get(variant, []) if key in r]
    if not plain or not mine:
        return None
    return median(mine) / median(plain)


def _flight_flat(memory: dict[str, Any] | None) -> str:
    if not memory:
        return "not measured"
    for row in memory["rows"]:
        if row["label"] == "flight x10":
            if "error" in row:
                return f"not measured ({row['error']})"
            points = row["rss_checkpoints_kib"]
            half = points[len(points) // 2 - 1][1] if len(points) >= 2 else points[0][1]
            end = points[-1][1]
            growth = (end - half) / 1024
            verdict = "met" if growth <= max(8.0, 0.05 * half / 1024) else "**missed**"
            limit = (row.get("stats") or {}).get("max_bytes")
            bound = ""
            if limit:
                over = row["peak_rss_kib"] * 1024 - row["rss_before_kib"] * 1024
                bound = f"; grew {over / 2**20:.0f} MiB over its start for a ring of {limit / 2**20:.0f} MiB"
                if over > limit * 1.5 + 32 * 2**20:
                    verdict = "**missed**"
            return (
                f"{verdict}: RSS {half / 1024:.0f} MiB at {points[len(points) // 2 - 1][0]:,} futures, "
                f"{end / 1024:.0f} MiB at {points[-1][0]:,}{bound}"
            )
    return "not measured"


def _implementation(w: Any, name: str, impl: dict[str, Any]) -> None:
    w(f"## Implementation `{name}`\n")
    micro = impl.get("micro")
    if micro is not None:
        _micro(w, micro, cells_of(impl, "modes"), cells_of(impl, "peers"))
    if "callgrind" in impl:
        _callgrind(w, impl["callgrind"])
    if "memory" in impl:
        _memory(w, impl["memory"])
    if "http" in impl:
        _http(w, impl["http"])


def _micro(w: Any, micro: dict[str, Any], modes: dict[Any, Any], peers: dict[Any, Any]) -> None:
    w("### Ratios to plain, in one process\n")
    if "error" in micro:
        w(f"Timing: {micro['error']}. What was finished is below.\n")
    w(
        "Median of the per-round ratios (each round's time over the same round's plain), and in brackets "
        "their interquartile range.\n"
    )
    header = ["loop", "workload", "plain (median)", *[VARIANT_TITLES[v] for v in MODES]]
    w("| " + " | ".join(header) + " |")
    w("|" + " --- |" * len(header))
    failures: list[str] = []
    for (loop, _), cell in modes.items():
        plain = cell["times"].get("plain")
        row = [loop, cell["label"], f"{median(plain) * 1e3:.1f} ms" if plain else "failed"]
        for v in MODES:
            if v in cell["failed"]:
                row.append("failed")
                failures.append(f"{v} on {cell['label']} ({loop}): {cell['failed'][v]}")
            else:
                row.append(fmt_ratio(ratio(cell, v)))
        w("| " + " | ".join(row) + " |")
    w("")
    if peers:
        w("Peers, in cells of their own with their own plain runs, at a fifth of the size (debug mode alone costs")
        w("about 20 times plain):\n")
        header = ["loop", "workload", "plain (median)", *[VARIANT_TITLES[v] for v in PEERS]]
        w("| " + " | ".join(header) + " |")
        w("|" + " --- |" * len(header))
        for (loop, wl), cell in peers.items():
            plain = cell["times"].get("plain")
            row = [loop, cell["label"], f"{median(plain) * 1e3:.1f} ms" if plain else "failed"]
            for v in PEERS:
                if v in cell["failed"]:
                    row.append("failed")
                    failures.append(f"{v} on {cell['label']} ({loop}): {cell['failed'][v]}")
                elif (v, wl) in BLIND:
                    row.append(f"{fmt_ratio(ratio(cell, v))}, sees nothing")
                else:
                    row.append(fmt_ratio(ratio(cell, v)))
            w("| " + " | ".join(row) + " |")
        w("")
    w("### Cost per task\n")
    w("Microseconds added per task over plain (median minus plain's median, over the tasks), and plain's own cost.\n")
    header = ["loop", "workload", "plain us/task", *[VARIANT_TITLES[v] for v in (*MODES, *PEERS)]]
    w("| " + " | ".join(header) + " |")
    w("|" + " --- |" * len(header))
    for key, cell in modes.items():
        if WORKLOADS[cell["workload"]].tasks_per_unit == 0 or not cell["times"].get("plain"):
            continue
        tasks = tasks_in(cell)
        row = [key[0], cell["label"], f"{median(cell['times']['plain']) / tasks * 1e6:.1f}"]
        for v in MODES:
            extra = per_unit_extra_us(cell, v)
            row.append("-" if extra is None else f"{extra * cell['n'] / tasks:+.1f}")
        other = peers.get(key)
        for v in PEERS:
            extra = per_unit_extra_us(other, v) if other else None
            row.append("-" if extra is None or other is None else f"{extra * other['n'] / tasks_in(other):+.1f}")
        w("| " + " | ".join(row) + " |")
    w("")
    if failures:
        w("Failed:\n")
        for line in failures:
            w(f"- {line}")
        w("")


def _callgrind(w: Any, cgdata: dict[str, Any]) -> None:
    w("### Instructions (callgrind)\n")
    per = cgdata.get("per")
    if "error" in cgdata:
        w(f"The callgrind child {cgdata['error']}{'; what it finished is below' if per else ''}.\n")
    if not per:
        return
    w("Instructions per lifecycle and per task create+await on asyncio's loop, all threads, flush included;")
    w("the difference between a run of 2n and one of n, each variant in a process of its own, so fixed costs")
    w("cancel.\n")
    w("| variant | per lifecycle | x plain | per task | x plain |")
    w("| --- | --- | --- | --- | --- |")
    for v in ("plain", *MODES):
        cells = [VARIANT_TITLES[v]]
        for wl in ("lifecycle", "task"):
            mine, base = per.get(f"{v}/{wl}"), per.get(f"plain/{wl}")
            if mine is None:
                cells += ["-", "-"]
                continue
            cells.append(f"{mine['per_unit'] / 1000:,.1f}k")
            cells.append(f"{mine['per_unit'] / base['per_unit']:.2f}x" if base else "-")
        if any(c != "-" for c in cells[1:]):
            w("| " + " | ".join(cells) + " |")
    w("")
    for key, why in cgdata.get("failed", {}).items():
        w(f"- {key} failed: {why}")
    w("#### Where the instructions go\n")
    w("The functions with the most extra instructions per lifecycle over plain (self cost, C level: for the")
    w("pure-Python implementation most of it is the interpreter running `_future.py` and the drain thread).\n")
    for v in MODES:
        key = f"{v}/lifecycle"
        if key not in per or "plain/lifecycle" not in per:
            continue
        extra = per[key]["per_unit"] - per["plain/lifecycle"]["per_unit"]
        w(f"{VARIANT_TITLES[v]}: +{extra / 1000:,.1f}k instructions per lifecycle, of which:\n")
        w("| function | extra per lifecycle |")
        w("| --- | --- |")
        for fn, cost in per[key].get("extra", [])[:10]:
            w(f"| `{fn}` | {cost:,.0f} |")
        w("")


def _memory(w: Any, memory: dict[str, Any]) -> None:
    w("### Memory\n")
    w("The future lifecycle on asyncio's loop, one variant per process. RSS: resident set size before the run,")
    w("its peak (VmHWM), and at half and all of the futures (flat means bounded). tracemalloc runs at a tenth of")
    w("the futures, in processes of their own (it is slow and has memory of its own).\n")
    w(
        "| variant | futures | RSS before | peak RSS | RSS at half / end | tracemalloc peak | retained "
        "| events | seconds |"
    )
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    traced = {r["variant"]: r for r in memory["rows"] if r["tracemalloc"]}
    if any(_why(r["error"]) == "not run (budget)" for r in memory["rows"] if "error" in r):
        w("Some runs did not fit in this part's share of `--budget` (not run): rerun with a larger one.\n")
    for row in memory["rows"]:
        if row["tracemalloc"]:
            continue
        title = VARIANT_TITLES[row["variant"]] + (" (10x the futures)" if row["label"].endswith("x10") else "")
        if "error" in row:
            w(f"| {title} | {row['futures']:,} | {_why(row['error'])} | | | | | | |")
            continue
        pts = row["rss_checkpoints_kib"]
        half = pts[len(pts) // 2 - 1][1] if len(pts) >= 2 else pts[0][1]
        tm = traced.get(row["variant"]) if not row["label"].endswith("x10") else None
        if tm is None:
            tm_peak = tm_kept = "-"
        elif "error" in tm:
            tm_peak, tm_kept = _why(tm["error"]), "-"
        else:
            tm_peak = f"{tm['traced_peak'] / 2**20:.1f} MiB at {tm['futures']:,}"
            tm_kept = f"{tm['traced_current'] / 2**20:.1f} MiB"
        w(
            f"| {title} | {row['futures']:,} | {row['rss_before_kib'] / 1024:.0f} MiB "
            f"| {row['peak_rss_kib'] / 1024:.0f} MiB "
            f"| {half / 1024:.0f} / {pts[-1][1] / 1024:.0f} MiB | {tm_peak} | {tm_kept} | {row.get('recorded', '-')} "
            f"| {row['seconds']:.1f} |"
        )
    w("")


def _why(error: str) -> str:
    """A table cell for a run that did not happen, or failed."""
    return "not run (budget)" if error.startswith(("not run", "stopped after")) else f"failed: {error}"


def _http(w: Any, http: dict[str, Any]) -> None:
    w("### HTTP server under wrk\n")
    w("A keep-alive HTTP/1.1 server on asyncio streams (each request awaits a future, a `sleep(0)` and a `gather`")
    w("of three coroutines), `wrk -t1 -c16 --latency` on 127.0.0.1; medians over the rounds, variants interleaved.")
    w("CPU per request is the server process's user+system time (all its threads) over the requests served.\n")
    w("| loop | variant | requests/s | x plain | p99 latency | server CPU per request | x plain |")
    w("| --- | --- | --- | --- | --- | --- | --- |")
    for loop, runs in http.items():
        good = {v: [r for r in rs if "requests_per_s" in r] for v, rs in runs.items()}
        base = good.get("plain") or []
        for v, rs in runs.items():
            if not good[v]:
                why = next((r["error"] for r in rs if "error" in r), "no run")
                w(f"| {loop} | {VARIANT_TITLES[v]} | failed: {why} | | | | |")
                continue
            rps = median([r["requests_per_s"] for r in good[v]])
            cpu = median([r["cpu_us_per_request"] for r in good[v]])
            p99 = median([r["p99_ms"] for r in good[v]])
            b_rps = median([r["requests_per_s"] for r in base]) if base else None
            b_cpu = median([r["cpu_us_per_request"] for r in base]) if base else None
            w(
                f"| {loop} | {VARIANT_TITLES[v]} | {rps:,.0f} | {rps / b_rps:.2f} | {p99:.2f} ms | {cpu:.1f} us "
                f"| {cpu / b_cpu:.2f}x |"
                if b_rps and b_cpu
                else f"| {loop} | {VARIANT_TITLES[v]} | {rps:,.0f} | - | {p99:.2f} ms | {cpu:.1f} us | - |"
            )
    w("")


def _notes(w: Any) -> None:
    w("## What the peers see\n")
    w("- **asyncio debug mode** (`loop.set_debug(True)`, slow-callback warnings silenced): every handle and task")
    w("  records the stack that made it; it sees every future, callback and task.")
    w("- **opentelemetry-instrumentation-asyncio** (tracing the workloads' coroutines through")
    w("  `OTEL_PYTHON_ASYNCIO_COROUTINE_NAMES_TO_TRACE`, with the SDK's tracer and meter providers) wraps")
    w("  `asyncio.create_task`, `ensure_future`, `gather`, `wait`, `wait_for`, `as_completed`, `to_thread` and")
    w("  `TaskGroup.create_task`. It sees nothing of `loop.create_future()`, of futures awaited inside a task, or of")
    w("  tasks made by `loop.create_task`: on the lifecycle it costs nothing because it sees nothing.")
    w("- **aiomonitor's task factory** (`Monitor(hook_task_factory=True)`, its queues consumed by a thread as")
    w("  `Monitor.start()` does, without its servers) sees tasks made through the loop's task factory, not futures.")
    w("- tracedfuture's modes see every future and task of the traced loop.")


if __name__ == "__main__":
    # Re-render a report from its raw figures: python benchmarks/report.py benchmarks/RESULTS.json
    import json
    import sys

    with open(sys.argv[1], encoding="utf-8") as raw:
        print(render(json.load(raw)), end="")
