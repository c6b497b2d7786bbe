"""Records out of a ring as one batch (``Ring.take_batch``), shed a whole future at a
time, and, with the compiled core, folded into events made when read: each the same
as its reference, on both implementations."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import sys
import threading
from typing import Any

import pytest

from tracedfuture._core._events import Event
from tracedfuture._pipeline._convert import MARK, Converter, site_of, type_name


def _recorded(impl: Any) -> Any:
    loop = asyncio.new_event_loop()
    ring = impl.Ring(1 << 22, streaming=True)
    hooks = impl.LoopHooks(loop)
    hooks.bind(ring, 1, 1.0, None, False)

    async def task(i: int) -> int:
        await asyncio.sleep(0)
        if i % 7 == 0:
            raise ValueError(i)
        if i % 5 == 0:
            asyncio.current_task().set_name(f"renamed-{i}")  # type: ignore[union-attr]
        return i

    async def main() -> None:
        for _ in range(3):
            futures = [hooks.create_future() for _ in range(40)]
            for i, fut in enumerate(futures):
                fut.add_done_callback(id)
                if i % 6:
                    fut.set_result(i)
                else:
                    fut.cancel()
            for fut in futures:
                try:
                    await fut
                except BaseException:
                    pass
            del futures
            tasks = [hooks.create_task(task(i)) for i in range(20)]
            await asyncio.gather(*tasks, return_exceptions=True)
            del tasks
            gc.collect()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    gc.collect()
    return ring


def test_a_batch_holds_the_records_take_would_have_given(impl: Any) -> None:
    ring = _recorded(impl)
    window = ring.window()
    batch = ring.take_batch()
    assert list(batch) == window
    assert [batch[i] for i in range(len(batch))] == window
    assert ring.take() == []
    assert list(impl.RecordBatch.join(batch, [(MARK, 1, 2, "why")]))[-1] == (MARK, 1, 2, "why")


def _more(impl: Any, ring: Any, n: int) -> None:
    """n more futures recorded on ``ring``, each created, resolved and awaited."""
    loop = asyncio.new_event_loop()
    hooks = impl.LoopHooks(loop)
    hooks.bind(ring, 1, 1.0, None, False)

    async def main() -> None:
        for i in range(n):
            fut = hooks.create_future()
            fut.set_result(i)
            await fut

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


@pytest.mark.parametrize("read", ["list", "item", "len-then-list", "shed", "join"])
def test_a_lazy_batch_holds_the_records_take_would_have_given(impl: Any, read: str) -> None:
    """``take_batch(lazy=True)``: the same records (copied when first read, by
    whichever reader comes first), and the ring reads on past them."""
    ring = _recorded(impl)
    window = ring.window()
    batch = ring.take_batch(lazy=True)
    assert len(batch) == len(window)
    if read == "list":
        got = list(batch)
    elif read == "item":
        got = [batch[i] for i in range(len(batch))]
    elif read == "len-then-list":
        assert bool(batch)
        got = list(batch)
    elif read == "shed":
        kept, dropped, *_ = batch.shed({}, {}, 1 << 40, 0, 1, 1000)
        assert dropped == 0
        got = list(kept)
    else:
        got = list(impl.RecordBatch.join(batch, []))
    assert got == window
    assert ring.take() == [] and len(ring.take_batch()) == 0  # taken once
    assert ring.stats()["taken"] == len(window)


@pytest.mark.parametrize("order", ["taken-meanwhile", "lazy-read-first", "later-read-first"])
def test_a_take_while_a_lazy_batch_is_pending_gets_what_came_after(impl: Any, order: str) -> None:
    """A flush() or the last drain at exit, while the drain thread holds a lazy
    batch not yet written: they take the records after it, none twice, none
    missed, whichever batch is read (and its take ended) first; and every
    reference the records held is released once (the site's code object is
    back to its count)."""
    site = next(c for c in _more.__code__.co_consts if getattr(c, "co_name", None) == "main")
    gc.collect()
    before = sys.getrefcount(site)
    ring = impl.Ring(1 << 22, streaming=True, history=False)
    _more(impl, ring, 30)
    lazy = ring.take_batch(lazy=True)
    _more(impl, ring, 20)
    later = ring.take_batch(lazy=order != "taken-meanwhile")
    _more(impl, ring, 10)
    assert len(lazy) == 90 and len(later) == 60
    if order == "later-read-first":
        records = list(later)
        records[:0] = list(lazy)
    else:
        records = list(lazy) + list(later)
    assert [r[1] for r in records if r[0] == 0] == sorted({r[1] for r in records if r[0] == 0})
    assert len(records) == 150
    rest = list(ring.take_batch())
    assert len(rest) == 30  # the ring reads on past both
    assert ring.take() == [] and ring.stats()["taken"] == 180
    del lazy, later, records, rest
    gc.collect()
    assert sys.getrefcount(site) <= before + 1  # the core may remember the last site it saw


@pytest.mark.parametrize("read", ["pending", "taken-meanwhile"])
def test_a_forked_child_leaves_the_parents_lazy_batch_alone(impl: Any, read: str) -> None:
    """A fork() while a lazy batch waits (and maybe a take meanwhile ended): the
    child clears the ring, as the drain's fork hook does, and the batches it
    inherited read as empty and release nothing (the ring released every record
    once); the child records and takes on as usual."""
    ring = impl.Ring(1 << 22, streaming=True, history=False)
    _more(impl, ring, 30)
    lazy = ring.take_batch(lazy=True)
    _more(impl, ring, 20)
    later = ring.take_batch() if read == "taken-meanwhile" else None
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            ring.clear()
            inherited = len(list(lazy)) if impl.IMPLEMENTATION == "c" else 0
            site = next(c for c in _more.__code__.co_consts if getattr(c, "co_name", None) == "main")
            held = sys.getrefcount(site)
            del lazy
            if later is not None:
                assert len(list(later)) == 60  # its own: taken and ended before the fork
            del later
            gc.collect()
            if impl.IMPLEMENTATION == "c" and read == "taken-meanwhile":
                assert sys.getrefcount(site) == held - 40  # its own references, released once
            _more(impl, ring, 5)
            code = 0 if inherited == 0 and len(ring.take_batch(lazy=True)) == 15 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(list(lazy)) == 90  # the parent's, unharmed


def test_a_lazy_batch_dropped_unread_lets_its_records_go(impl: Any) -> None:
    """A batch nobody reads (its exporter was disabled meanwhile) is taken all
    the same: the ring reads on past its records."""
    ring = impl.Ring(1 << 22, streaming=True, history=False)
    _more(impl, ring, 30)
    batch = ring.take_batch(lazy=True)
    assert len(batch) == 90
    del batch
    gc.collect()
    assert ring.take() == [] and len(ring.take_batch()) == 0
    assert ring.stats()["taken"] == 90
    _more(impl, ring, 5)
    assert len(ring.take_batch(lazy=True)) == 15


@pytest.mark.parametrize("room", [0, 30, 500, 5_000])
def test_shedding_a_batch_decides_as_the_reference(impl: Any, room: int) -> None:
    from tracedfuture._core._ring import RecordBatch as Reference

    records = list(_recorded(impl).take_batch())
    first, second = records[: len(records) // 2], records[len(records) // 2 :]
    results = []
    for make in (impl.RecordBatch, Reference):
        untold: dict[int, None] = {}
        holed: dict[int, None] = {}
        out = []
        for part in (first, second):
            kept, *counts = make(part).shed(untold, holed, room * 10, room * 2, 10, 50)
            out.append((list(kept), counts))
        results.append((out, list(untold), list(holed)))
    assert results[0] == results[1]


def test_the_compiled_fold_makes_the_converters_events(impl: Any) -> None:
    if impl.EventFold is None:
        pytest.skip("the pure-Python implementation converts with the reference itself")
    records = list(_recorded(impl).take_batch())
    half = len(records) // 2
    converter = Converter()
    expected = converter.convert(records[:half]) + converter.convert(records[half:])
    fold = impl.EventFold(Converter(), site_of, type_name, Event)
    views = [fold.events(impl.RecordBatch(records[:half])), fold.events(records[half:])]
    assert [event for view in views for event in view] == expected
    assert views[0][-1] == views[0][len(views[0]) - 1]
    assert views[1][:3] == expected[len(views[0]) : len(views[0]) + 3]
    assert fold.held() == 0


@pytest.mark.parametrize("seed", range(4))
def test_the_compiled_fold_makes_the_converters_events_in_any_batches(impl: Any, seed: int) -> None:
    # Batches small (folded holding the GIL) and large (folded without it), with
    # marks that hand futures to the reference in the middle of a batch.
    if impl.EventFold is None:
        pytest.skip("the pure-Python implementation converts with the reference itself")
    rng = random.Random(seed)
    records = list(_recorded(impl).take_batch())
    created = [r[1] for r in records if r[0] == 0]
    for fid in rng.sample(created, 12):
        at = rng.randrange(1, len(records))
        records.insert(at, (MARK, fid, records[at - 1][2], "the exporter's queue was full"))
    cuts = sorted(rng.sample(range(1, len(records)), 5))
    parts = [records[a:b] for a, b in zip([0, *cuts], [*cuts, len(records)], strict=True)]
    converter = Converter()
    expected = [event for part in parts for event in converter.convert(part)]
    fold = impl.EventFold(Converter(), site_of, type_name, Event)
    assert [event for part in parts for event in fold.events(impl.RecordBatch(part))] == expected


def test_the_compiled_fold_serves_one_thread_at_a_time(impl: Any) -> None:
    # Two threads fold batches of their own futures into one fold at once (an
    # inline exporter is delivered to by the drain and by flush()): each gets
    # the events of its own records.
    if impl.EventFold is None:
        pytest.skip("the pure-Python implementation converts with the reference itself")
    recordings = [list(_recorded(impl).take_batch()) for _ in range(2)]
    fold = impl.EventFold(Converter(), site_of, type_name, Event)
    got: list[list[Event]] = [[], []]

    def fold_all(k: int) -> None:
        records = recordings[k]
        for _ in range(20):
            for at in range(0, len(records), 300):
                got[k].extend(fold.events(impl.RecordBatch(records[at : at + 300])))

    threads = [threading.Thread(target=fold_all, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for k in range(2):
        converter = Converter()
        assert got[k] == [event for _ in range(20) for event in converter.convert(recordings[k])]
    assert fold.held() == 0
