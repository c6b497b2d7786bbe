"""``tracedfuture perfetto``: its output follows the Trace Event Format's rules.

The rules checked are those of the format's specification ("Trace Event Format",
the JSON Object Format) that chrome://tracing and ui.perfetto.dev rely on:
required keys per phase, integer pid/tid, microsecond timestamps, complete
events with a duration, flows whose start and finish share an id, and slices
that nest on each thread.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from ._cli import BIG_FUTURES, SAMPLE, big_trace, make_trace, record_timing, tracedfuture

REQUIRED = {
    "X": {"name", "ph", "ts", "dur", "pid", "tid"},
    "B": {"name", "ph", "ts", "pid", "tid"},
    "E": {"ph", "ts", "pid", "tid"},
    "i": {"name", "ph", "ts", "pid", "tid", "s"},
    "s": {"name", "cat", "ph", "ts", "pid", "tid", "id"},
    "f": {"name", "cat", "ph", "ts", "pid", "tid", "id"},
    "M": {"name", "ph", "pid", "tid", "args"},
}
METADATA = {"process_name", "thread_name", "thread_sort_index", "process_sort_index", "process_labels"}


def check_trace_event_format(document: Any) -> list[str]:
    """Every broken rule, as text (empty when the document is valid)."""
    problems: list[str] = []
    if not isinstance(document, dict) or not isinstance(document.get("traceEvents"), list):
        return ['the JSON Object Format is an object with a "traceEvents" array']
    if document.get("displayTimeUnit", "ms") not in ("ms", "ns"):
        problems.append("displayTimeUnit must be 'ms' or 'ns'")
    flows: dict[tuple[str, Any], list[str]] = defaultdict(list)
    for index, event in enumerate(document["traceEvents"]):
        where = f"event {index} ({event.get('ph')!r} {event.get('name')!r})"
        phase = event.get("ph")
        if phase not in REQUIRED:
            problems.append(f"{where}: unknown phase")
            continue
        missing = REQUIRED[phase] - set(event)
        if missing:
            problems.append(f"{where}: missing {sorted(missing)}")
            continue
        if type(event["pid"]) is not int or type(event["tid"]) is not int:
            problems.append(f"{where}: pid and tid must be integers")
        if phase == "M":
            if event["name"] not in METADATA:
                problems.append(f"{where}: unknown metadata name")
            continue
        if not isinstance(event["ts"], int | float) or event["ts"] < 0:
            problems.append(f"{where}: ts must be a number of microseconds >= 0")
        if phase == "X" and (not isinstance(event["dur"], int | float) or event["dur"] < 0):
            problems.append(f"{where}: dur must be a number of microseconds >= 0")
        if phase == "i" and event["s"] not in ("g", "p", "t"):
            problems.append(f"{where}: instant scope must be g, p or t")
        if "args" in event and not isinstance(event["args"], dict):
            problems.append(f"{where}: args must be an object")
        if phase in ("s", "f"):
            flows[(event["cat"], event["id"])].append(phase)
            if phase == "f" and event.get("bp", "e") != "e":
                problems.append(f"{where}: a flow finish binds to its enclosing slice with bp 'e'")
    for key, phases in flows.items():
        if sorted(phases) != ["f", "s"]:
            problems.append(f"flow {key}: expected one 's' and one 'f', got {phases}")
    return problems


def slices_by_thread(document: dict[str, Any]) -> dict[int, list[tuple[float, float]]]:
    threads: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for event in document["traceEvents"]:
        if event["ph"] == "X":
            threads[event["tid"]].append((event["ts"], event["ts"] + event["dur"]))
    return threads


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("perfetto")
    trace = make_trace(directory, "sample", SAMPLE, "--capture-values")
    done = tracedfuture("perfetto", trace, "-o", directory / "trace.json")
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads((directory / "trace.json").read_text())
    return document


def test_sample_trace_follows_the_trace_event_format(sample: dict[str, Any]) -> None:
    assert check_trace_event_format(sample) == []


def test_each_task_is_a_named_thread(sample: dict[str, Any]) -> None:
    names = {e["args"]["name"] for e in sample["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {"task Task-1 #1", "task waiter #3", "task fetch-2 #6", "task slow-call #11"} <= names


def test_each_future_and_task_is_one_complete_slice(sample: dict[str, Any]) -> None:
    ids = [e["args"]["id"] for e in sample["traceEvents"] if e["ph"] == "X"]
    assert sorted(ids) == list(range(1, 18))


def test_slices_carry_outcome_site_and_cancel_details(sample: dict[str, Any]) -> None:
    slow = next(e for e in sample["traceEvents"] if e["ph"] == "X" and e["name"] == "slow-call")
    assert slow["args"]["outcome"] == "cancelled"
    assert slow["args"]["cancel_msg"] == "deadline exceeded"
    assert slow["args"]["cancelled_by"] == "task Task-1 #1"
    assert slow["args"]["site"].endswith("sample.py:24 in main")


def test_slices_on_each_thread_nest(sample: dict[str, Any]) -> None:
    for tid, slices in slices_by_thread(sample).items():
        open_ends: list[float] = []
        for start, end in sorted(slices, key=lambda s: (s[0], -s[1])):
            while open_ends and open_ends[-1] <= start:
                open_ends.pop()
            assert not open_ends or end <= open_ends[-1], f"thread {tid}: [{start}, {end}] overlaps without nesting"
            open_ends.append(end)


def test_every_wakeup_is_a_flow_from_the_future_to_the_task(sample: dict[str, Any]) -> None:
    events = sample["traceEvents"]
    starts = {e["id"]: e for e in events if e["ph"] == "s"}
    finishes = {e["id"]: e for e in events if e["ph"] == "f"}
    assert starts
    assert starts.keys() == finishes.keys()
    waiter_tid = next(e["tid"] for e in events if e["ph"] == "X" and e["name"] == "waiter")
    assert any(f["tid"] == waiter_tid for f in finishes.values())


def test_flow_ends_lie_inside_slices_of_their_threads(sample: dict[str, Any]) -> None:
    threads = slices_by_thread(sample)
    for event in sample["traceEvents"]:
        if event["ph"] in ("s", "f"):
            assert any(start <= event["ts"] <= end for start, end in threads[event["tid"]]), event


def test_big_trace_follows_the_trace_event_format(tmp_path: Path) -> None:
    output = tmp_path / "big.json"
    began = time.perf_counter()
    done = tracedfuture("perfetto", big_trace(), "-o", output)
    record_timing("perfetto, 100k futures", time.perf_counter() - began)
    assert done.returncode == 0, done.stderr
    document = json.loads(output.read_text())
    assert check_trace_event_format(document) == []
    assert sum(1 for e in document["traceEvents"] if e["ph"] == "X" and e["cat"] == "future") == BIG_FUTURES
