"""Records out of a ring as one batch (``Ring.take_batch``), shed a whole future at a
time, and, with the compiled core, folded into events made when read: each the same
as its reference, on both implementations."""

from __future__ import annotations

import asyncio
import gc
import random
import threading
from typing import Any

import pytest

from tracedfuture._core import _events as ev
from tracedfuture._core._events import Event
from tracedfuture._pipeline._convert import MARK, Converter, site_of, type_name

from .test_lines import ODD_POSITIONS


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


class _Counting(Converter):
    """The reference, noting the futures the compiled fold hands it (their state,
    or records to convert)."""

    def __init__(self) -> None:
        super().__init__()
        self.handed: set[int] = set()

    def adopt(self, fid: int, *args: Any, **kwargs: Any) -> None:
        self.handed.add(fid)
        super().adopt(fid, *args, **kwargs)

    def convert(self, records: Any) -> list[Event]:
        self.handed.update(r[1] for r in records)
        return super().convert(records)


def test_the_compiled_fold_keeps_a_renamed_task(impl: Any) -> None:
    # set_name() (on 3.11 and 3.12, every name given to create_task()) is folded
    # here: the task is not handed to the reference for the rest of its life.
    if impl.EventFold is None:
        pytest.skip("the pure-Python implementation converts with the reference itself")
    records = list(_recorded(impl).take_batch())
    renamed = {r[1] for r in records if r[0] == ev.OP_RENAMED}
    assert len(renamed) == 9  # 3 of 20 tasks, 3 rounds
    helper = _Counting()
    events = list(impl.EventFold(helper, site_of, type_name, Event).events(impl.RecordBatch(records)))
    assert events == Converter().convert(records)
    assert not renamed & helper.handed
    assert {e.name for e in events if e.kind == "renamed"} == {"renamed-5", "renamed-10", "renamed-15"}


@pytest.mark.parametrize("size", [7, 100_000])
def test_the_compiled_fold_keeps_a_future_whose_callbacks_were_removed(impl: Any, size: int) -> None:
    # remove_done_callback() (asyncio.wait() on every future still pending when
    # it returns) is folded here, in batches folded with the GIL (small) and
    # without it: no future is handed to the reference but the cancelled ones
    # (wait_for()'s), whose cancel is the reference's to fold.
    if impl.EventFold is None:
        pytest.skip("the pure-Python implementation converts with the reference itself")
    from .test_lines import _batch, _waits_and_removals

    records = list(_batch(impl, _waits_and_removals))
    removed = {r[1] for r in records if r[0] == ev.OP_CB_REMOVED}
    assert removed
    helper = _Counting()
    fold = impl.EventFold(helper, site_of, type_name, Event)
    events = [e for i in range(0, len(records), size) for e in fold.events(impl.RecordBatch(records[i : i + size]))]
    assert events == Converter().convert(records)
    assert helper.handed == {r[1] for r in records if r[0] in (ev.OP_CANCELLED, ev.OP_CANCEL_REQ)}
    assert removed - helper.handed
    assert {e.future_id for e in events if e.kind == "callback_removed"} == removed
    assert fold.held() == 0


@pytest.mark.parametrize(("indices", "native"), [*ODD_POSITIONS, ([0], False)])
def test_a_callback_removed_at_any_positions_is_folded_as_the_reference_converts_it(
    impl: Any, indices: Any, native: bool
) -> None:
    if impl.EventFold is None:
        pytest.skip("the pure-Python implementation converts with the reference itself")
    from .test_lines import _batch, _waits_and_removals

    batch = _batch(impl, _waits_and_removals)
    records = [(*r[:5], indices) if r[0] == ev.OP_CB_REMOVED else r for r in batch]
    helper = _Counting()
    events = list(impl.EventFold(helper, site_of, type_name, Event).events(impl.RecordBatch(records)))
    assert events == Converter().convert(records)
    # (wait_for()'s task is cancelled on 3.11: the reference's at its cancel)
    removed = {r[1] for r in records if r[0] == ev.OP_CB_REMOVED} - {r[1] for r in records if r[0] == ev.OP_CANCELLED}
    assert removed
    assert (not removed & helper.handed) == native


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
