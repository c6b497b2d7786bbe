"""Tail sampling, decided once on raw records: what it keeps is whole.

The unit tests feed ``TailPolicy`` hand-made records (the layouts of
``_seam.LAYOUTS``); the differential tests run real programs traced with
``tail=True`` and compare what was kept, run after run and beside a second,
non-tail installation.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from typing import Any

import pytest

import tracedfuture
from tracedfuture import _core
from tracedfuture._core import _events as ev
from tracedfuture._pipeline._tail import TailPolicy
from tracedfuture.exporters import MemoryExporter

SLOW = 10**9
_clock = iter(range(1, 10**9))


def _ts() -> int:
    return next(_clock)


def created(fid: int, *, task: bool = False, parent: int | None = None) -> tuple[Any, ...]:
    return (ev.OP_CREATED, fid, _ts(), parent, task, None, 0, 1, None, None, 1, None)


def awaited(fid: int, by: int) -> tuple[Any, ...]:
    return (ev.OP_CB_ADDED, fid, _ts(), by, "Task.task_wakeup", by)


def resolved(fid: int) -> tuple[Any, ...]:
    return (ev.OP_RESOLVED, fid, _ts(), None, int, None)


def failed(fid: int) -> tuple[Any, ...]:
    return (ev.OP_FAILED, fid, _ts(), None, ValueError, None)


def collected(fid: int, state: str = "FINISHED") -> tuple[Any, ...]:
    return (ev.OP_COLLECTED, fid, _ts(), state, False)


def ops_by_future(records: list[tuple[Any, ...]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for record in records:
        out.setdefault(record[1], []).append(record[0])
    return out


# Both implementations of the decision: the reference, and the compiled core's
# twin when it is built (the same tests, as CPython tests its C and Python futures).
POLICIES = [pytest.param(TailPolicy, id="reference")]
if _core.impl.TailPolicy is not None:
    POLICIES.append(pytest.param(_core.impl.TailPolicy, id="compiled"))


@pytest.fixture(params=POLICIES)
def policy_class(request: pytest.FixtureRequest) -> Any:
    return request.param


def test_a_healthy_program_keeps_nothing(policy_class: Any) -> None:
    policy = policy_class(SLOW)
    out = policy.feed([created(1), resolved(1), collected(1)], now_ns=0)
    assert list(out) == []


def test_a_failure_keeps_the_whole_history_of_the_future(policy_class: Any) -> None:
    policy = policy_class(SLOW)
    out = policy.feed([created(1), awaited(1, 9), failed(1)], now_ns=0)
    assert ops_by_future(out)[1] == [ev.OP_CREATED, ev.OP_CB_ADDED, ev.OP_FAILED]


def test_an_exception_a_framework_caught_keeps_the_task_that_went_on(policy_class: Any) -> None:
    policy = policy_class(SLOW)
    born = created(1, task=True)
    caught = (ev.OP_CAUGHT, 1, _ts(), 1, ValueError, None, None, 0, None, 0)
    out = policy.feed([born, caught, resolved(1), collected(1)], now_ns=0)
    assert ops_by_future(out)[1] == [ev.OP_CREATED, ev.OP_CAUGHT, ev.OP_RESOLVED, ev.OP_COLLECTED]


def test_records_after_the_decision_pass_until_the_future_is_collected(policy_class: Any) -> None:
    policy = policy_class(SLOW)
    policy.feed([created(1), failed(1)], now_ns=0)
    assert list(policy.feed([collected(1, "UNRETRIEVED")], now_ns=0)) != []
    assert list(policy.feed([(ev.OP_RENAMED, 1, _ts(), None, "late")], now_ns=0)) == []


def test_a_task_that_fails_late_brings_in_a_healthy_future_it_awaited_whole(policy_class: Any) -> None:
    # The task awaited future 2, which resolved healthy; then the task failed.
    policy = policy_class(SLOW)
    records = [created(1, task=True), created(2), awaited(2, 1), resolved(2), failed(1)]
    kept = ops_by_future(policy.feed(records, now_ns=0))
    assert kept[2] == [ev.OP_CREATED, ev.OP_CB_ADDED, ev.OP_RESOLVED]
    assert kept[1] == [ev.OP_CREATED, ev.OP_FAILED]


def test_the_parent_chain_of_a_kept_task_is_kept_even_after_the_parents_finished(policy_class: Any) -> None:
    policy = policy_class(SLOW, linger=2)
    records = [created(1, task=True), created(2, task=True, parent=1), created(3, task=True, parent=2)]
    records += [resolved(1), resolved(2)]
    # Many healthy futures in between: lingering alone would have forgotten 1 and 2.
    for fid in range(100, 150):
        records += [created(fid), resolved(fid)]
    records.append(failed(3))
    kept = ops_by_future(policy.feed(records, now_ns=0))
    assert sorted(kept) == [1, 2, 3]
    assert all(ops[0] == ev.OP_CREATED for ops in kept.values())
    assert kept[1][-1] == ev.OP_RESOLVED and kept[2][-1] == ev.OP_RESOLVED


def test_a_future_forgotten_past_the_limit_is_dropped_whole(policy_class: Any) -> None:
    policy = policy_class(SLOW, linger=1, max_held=3)
    records = [created(1), created(2), created(3), created(4)]  # 1 is forgotten: past max_held
    records += [failed(1), failed(4)]
    kept = ops_by_future(policy.feed(records, now_ns=0))
    assert 1 not in kept  # neither its failure alone nor a history without created
    assert kept[4] == [ev.OP_CREATED, ev.OP_FAILED]
    assert policy.forgotten == 1


def test_the_decision_does_not_depend_on_how_records_are_batched(policy_class: Any) -> None:
    records = [created(1, task=True), created(2), awaited(2, 1), resolved(2)]
    for fid in range(10, 40):
        records += [created(fid, task=True, parent=1), resolved(fid)]
    records += [created(5, parent=1), failed(5), resolved(1), collected(2)]
    whole = policy_class(SLOW, linger=5).feed(records, now_ns=0)
    for size in (1, 2, 3, 7):
        policy = policy_class(SLOW, linger=5)
        chunked: list[tuple[Any, ...]] = []
        for start in range(0, len(records), size):
            chunked += policy.feed(records[start : start + size], now_ns=0)
        assert sorted(chunked, key=lambda r: r[2]) == sorted(whole, key=lambda r: r[2])


def test_a_task_that_awaited_many_futures_in_turn_brings_in_those_still_held(policy_class: Any) -> None:
    # A task awaits futures one after another; once it ends, they are let go as
    # they age, and it stays linked to the rest, in order.
    records = [created(1, task=True)]
    for fid in range(2, 300):
        records += [created(fid), awaited(fid, 1), resolved(fid)]
    records += [resolved(1), (ev.OP_LINT, 1, _ts(), "stall", None, (), "", 5)]
    kept = ops_by_future(policy_class(SLOW, linger=20).feed(records, now_ns=0))
    assert list(kept) == [1, *range(281, 300)]
    assert kept[1] == [ev.OP_CREATED, ev.OP_RESOLVED, ev.OP_LINT]


def test_a_future_pending_past_slow_is_kept_with_what_it_has(policy_class: Any) -> None:
    policy = policy_class(100)
    first = created(1)
    assert list(policy.feed([first], now_ns=first[2] + 50)) == []
    assert list(policy.feed([], now_ns=first[2] + 100)) == [first]


def test_a_held_record_holds_its_objects_until_the_future_is_let_go(policy_class: Any) -> None:
    import sys

    name = "".join(["a name of ", "its own"])  # an object only these records hold
    kind = type("Result", (), {})
    base_name, base_kind = sys.getrefcount(name), sys.getrefcount(kind)
    policy = policy_class(SLOW, linger=1)
    record = (ev.OP_CREATED, 1, _ts(), None, False, None, 0, 1, name, None, 1, None)
    policy.feed([record, (ev.OP_RESOLVED, 1, _ts(), None, kind, None)], now_ns=0)
    del record
    assert sys.getrefcount(name) == base_name + 1  # held, healthy and lingering
    assert sys.getrefcount(kind) == base_kind + 1
    # Past linger it is let go; a second future naming the same objects, kept,
    # takes them again, in the same call.
    again = [(ev.OP_CREATED, 2, _ts(), None, False, None, 0, 1, name, None, 1, None), created(3), resolved(3)]
    kept = list(policy.feed([*again, (ev.OP_RESOLVED, 2, _ts(), None, kind, None), failed(2)], now_ns=0))
    del again
    assert [r[1] for r in kept] == [2, 2, 2]
    assert sys.getrefcount(name) == base_name + 1  # the kept record's, the policy holds nothing
    assert sys.getrefcount(kind) == base_kind + 1
    del kept
    assert sys.getrefcount(name) == base_name
    assert sys.getrefcount(kind) == base_kind


def test_calls_from_two_threads_at_once_wait_for_each_other(policy_class: Any) -> None:
    import threading

    batches = [[r for fid in range(base, base + 20_000, 2) for r in (created(fid), failed(fid))] for base in (1, 2)]
    policy = policy_class(SLOW)
    kept: list[list[tuple[Any, ...]]] = []
    errors: list[BaseException] = []

    def feed(batch: list[tuple[Any, ...]]) -> None:
        try:
            kept.append(list(policy.feed(batch, now_ns=0)))
            policy.flush(now_ns=0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=feed, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(map(len, kept)) == [20_000, 20_000]
    assert len(policy) == 0


def _stream(seed: int, futures: int, *, real: bool = False, gather: int = 12) -> list[tuple[Any, ...]]:
    """A deterministic jumble of records: tasks with parents, futures awaited by
    tasks, healthy ends, failures, cancellations, lints, late renames, collections
    in any state, and a few records of futures never created here.

    ``real``: records laid out as the ring writes them (a whole CREATED, a
    cancel's who), long histories and tasks that await many futures, so that the
    compiled policy holds them as structs, not as the tuples of odd shapes; a
    gather awaits up to ``gather`` futures."""
    import random

    rng = random.Random(seed)
    records: list[tuple[Any, ...]] = []
    live: list[int] = []
    tasks: list[int] = []
    clock = 0
    code = _stream.__code__
    for fid in range(1, futures + 1):
        clock += rng.randint(0, 3)  # ties happen: equal timestamps
        is_task = rng.random() < 0.3
        parent = rng.choice(tasks) if tasks and rng.random() < 0.7 else None
        if real:
            name = f"Task-{fid}" if is_task else None
            records.append((ev.OP_CREATED, fid, clock, parent, is_task, code, 2, 1, name, "coro", 1, None, code, 4))
        else:
            records.append((ev.OP_CREATED, fid, clock, parent, is_task, None, 0, 1, None, None, 1, None))
        (tasks if is_task else live).append(fid)
        if real and tasks and rng.random() < 0.05:  # a task awaits many futures (a gather)
            awaiter = rng.choice(tasks)
            for target in rng.sample(live + tasks, min(gather, len(live) + len(tasks))):
                records.append((ev.OP_CB_ADDED, target, clock, awaiter, "Task.task_wakeup", awaiter))
        if real and rng.random() < 0.05:  # a long history
            for k in range(30):
                records.append((ev.OP_RENAMED, fid, clock, None, f"name-{k}"))
        for _ in range(rng.randint(0, 3)):
            if not live and not tasks:
                break
            clock += rng.randint(0, 2)
            target = rng.choice(live + tasks)
            roll = rng.random()
            if roll < 0.3 and tasks:
                awaiter = rng.choice(tasks) if rng.random() < 0.9 else None
                records.append((ev.OP_CB_ADDED, target, clock, awaiter, "Task.task_wakeup", awaiter))
            elif roll < 0.6:
                records.append((ev.OP_RESOLVED, target, clock, None, int, None))
            elif roll < 0.65:
                records.append((ev.OP_FAILED, target, clock, None, ValueError, None, None, 0, None, 0))
            elif roll < 0.68:
                who = (code, 2, code, 4, None, None) if real else None
                records.append((ev.OP_CANCELLED, target, clock, None, "msg", who))
            elif roll < 0.69:
                records.append((ev.OP_LINT, target, clock, "stall", None, (), "", 5))
            elif roll < 0.7:
                records.append((ev.OP_CAUGHT, target, clock, None, ValueError, None, None, 0, None, 0))
            elif roll < 0.75:
                records.append((ev.OP_RENAMED, target, clock, None, "renamed"))
            elif roll < 0.9:
                # A state that is not the core's interned string is read as an object.
                state = rng.choice(["FINISHED", "FINISHED", "PENDING", "UNRETRIEVED", "".join(["FINI", "SHED"])])
                records.append((ev.OP_COLLECTED, target, clock, state, False))
                (live if target in live else tasks).remove(target)
            else:
                records.append((ev.OP_RESOLVED, futures + 1000 + target, clock, None, int, None))
    return records


def _compare(records: list[tuple[Any, ...]], seed: int, limits: dict[str, int], slow: int) -> None:
    """Both policies fed ``records`` in the same random batches keep the same
    records, in the same order, and forget and hold as many futures."""
    import random

    policies = [TailPolicy(slow, **limits), _core.impl.TailPolicy(slow, **limits)]
    outs: list[list[tuple[Any, ...]]] = [[], []]
    rng = random.Random(seed)
    start = 0
    while start < len(records):
        size = rng.randint(1, 40)
        now = records[min(start + size, len(records)) - 1][2] + rng.randint(0, 10)
        for policy, out in zip(policies, outs, strict=True):
            out.extend(policy.feed(records[start : start + size], now))
        start += size
    for policy, out in zip(policies, outs, strict=True):
        out.extend(policy.flush(records[-1][2] + 1000))
    assert outs[1] == outs[0]
    assert policies[1].forgotten == policies[0].forgotten
    assert len(policies[1]) == len(policies[0])


@pytest.mark.skipif(_core.impl.TailPolicy is None, reason="no compiled core here")
@pytest.mark.parametrize("real", [False, True], ids=["odd-shapes", "as-recorded"])
@pytest.mark.parametrize("seed", range(12))
def test_the_compiled_policy_keeps_exactly_what_the_reference_keeps(seed: int, real: bool) -> None:
    limits = [{}, {"linger": 3}, {"linger": 1, "max_held": 20}, {"max_held": 50}][seed % 4]
    _compare(_stream(seed, 400, real=real), seed, limits, [SLOW, 40, 5][seed % 3])


@pytest.mark.skipif(_core.impl.TailPolicy is None, reason="no compiled core here")
@pytest.mark.parametrize("seed", range(3))
def test_the_compiled_policy_keeps_what_the_reference_keeps_holding_thousands(seed: int) -> None:
    # Thousands of futures held at once (the compiled policy's slabs fill, are
    # let go and handed out again) and gathers of 40 (a task's links past the
    # size where it looks them up in a set).
    limits = [{}, {"linger": 500}, {"linger": 50, "max_held": 1500}][seed]
    _compare(_stream(seed, 6000, real=True, gather=40), seed, limits, SLOW)


# --- real programs ---------------------------------------------------------------------


async def _program(n: int) -> None:
    """Tasks that await futures; every seventh fails, deterministically."""

    async def worker(i: int) -> int:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        loop.call_soon(fut.set_result, i)
        value = await fut
        inner = asyncio.create_task(asyncio.sleep(0), name=f"inner-{i}")
        await inner
        if i % 7 == 3:
            raise ValueError(i)
        return value

    tasks = [asyncio.create_task(worker(i), name=f"worker-{i}") for i in range(n)]
    await asyncio.gather(*tasks, return_exceptions=True)


def _kept(memory: MemoryExporter) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for event in memory:
        out.setdefault(event.future_id, []).append(event.kind)
    return out


def _shape(kept: dict[int, list[str]], names: dict[int, str]) -> Counter[tuple[str, tuple[str, ...]]]:
    """What was kept, independent of id numbering: (name, kinds) per future."""
    return Counter((names.get(fid), tuple(kinds)) for fid, kinds in kept.items())


def _run_tail(n: int, *, beside: bool) -> Counter[tuple[str, tuple[str, ...]]]:
    tail = MemoryExporter()
    everything = MemoryExporter()
    factory = tracedfuture.loop_factory(exporters=[tail], tail=True, slow=60.0)
    inst = factory.installation  # type: ignore[attr-defined]
    with asyncio.Runner(loop_factory=factory) as runner:
        other = tracedfuture.install(runner.get_loop(), exporters=[everything]) if beside else None
        runner.run(_program(n))
    if other is not None:
        other.uninstall()
    inst.uninstall()
    # The last name a future had (3.11 renames named tasks after creating them);
    # asyncio's own numbering ("Task-41") differs from run to run.
    names = {
        e.future_id: re.sub(r"^Task-\d+$", "Task-N", e.name or "") for e in tail if e.kind in (ev.CREATED, ev.RENAMED)
    }
    return _shape(_kept(tail), names)


def test_every_kept_future_has_its_created_and_its_end() -> None:
    tail = MemoryExporter()
    tracedfuture.run(_program(60), exporters=[tail], tail=True, slow=60.0)
    kept = _kept(tail)
    assert kept, "the failures must be kept"
    ends = {ev.RESOLVED, ev.FAILED, ev.CANCELLED}
    for fid, kinds in kept.items():
        assert kinds[0] == ev.CREATED, (fid, kinds)
        assert ends & set(kinds), (fid, kinds)
    failed_workers = {e.future_id for e in tail if e.kind == ev.FAILED and e.name and e.name.startswith("worker-")}
    assert len(failed_workers) == len([i for i in range(60) if i % 7 == 3])
    # The root task of every kept chain is kept too.
    parents = {e.parent_id for e in tail if e.kind == ev.CREATED and e.parent_id}
    assert parents <= set(kept)


@pytest.mark.parametrize("beside", [False, True], ids=["alone", "beside-a-non-tail-installation"])
def test_the_same_program_keeps_the_same_futures_run_after_run(beside: bool) -> None:
    first = _run_tail(60, beside=False)
    for _ in range(20):
        assert _run_tail(60, beside=beside) == first
