"""The seam (``tracedfuture/_core/_seam.py``), implementation by implementation: the
record layouts, rings bounded in bytes, bind(), live() and info()."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

import pytest

from tracedfuture._core import _seam

CREATED, CB_ADDED, CB_REMOVED = _seam.OPS["CREATED"], _seam.OPS["CB_ADDED"], _seam.OPS["CB_REMOVED"]
RESOLVED, FAILED, CANCELLED = _seam.OPS["RESOLVED"], _seam.OPS["FAILED"], _seam.OPS["CANCELLED"]
CANCEL_REQ, RENAMED, COLLECTED, LINT = (
    _seam.OPS["CANCEL_REQ"],
    _seam.OPS["RENAMED"],
    _seam.OPS["COLLECTED"],
    _seam.OPS["LINT"],
)

# What each field may hold (the page: ints, strings, types, code objects, None).
OPT_INT = (int, type(None))
OPT_STR = (str, type(None))
WHO = (tuple, type(None))
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "task_id": OPT_INT,
    "is_task": (bool,),
    "code": (types.CodeType, type(None)),
    "lasti": (int,),
    "thread_id": (int,),
    "name": OPT_STR,
    "coro": OPT_STR,
    "route": (int,),
    "context": (object,),
    "program_code": (types.CodeType, type(None)),
    "program_lasti": (int,),
    "raise_code": (types.CodeType, type(None)),
    "raise_lasti": (int,),
    "raise_program_code": (types.CodeType, type(None)),
    "raise_program_lasti": (int,),
    "callback_name": (str,),
    "awaiter_id": OPT_INT,
    "removed_indices": (tuple,),
    "result_type": (type,),
    "value_repr": OPT_STR,
    "exc_type": (type,),
    "exc_msg": OPT_STR,
    "msg": OPT_STR,
    "who": WHO,
    "state": (str,),
    "incomplete": (bool,),
    "kind": (str,),
    "chain": (tuple, type(None)),
    "detail": OPT_STR,
    "age_ns": OPT_INT,
}


class Traced:
    """A loop traced by one implementation's LoopHooks, with no installation."""

    def __init__(
        self, impl: Any, *, max_records: int = 10_000, streaming: bool = True, history: bool = True, **bind: Any
    ) -> None:
        self.impl = impl
        self.loop = asyncio.new_event_loop()
        self.full_calls = 0
        self.ring = impl.Ring(
            max_records * impl.Ring.record_size, streaming=streaming, on_full=self._on_full, history=history
        )
        self.hooks = impl.LoopHooks(self.loop)
        self.bind(**bind)
        vars(self.loop).update(
            _tracedfuture_hooks=self.hooks,
            create_future=self.hooks.create_future,
            create_task=self.hooks.create_task,
            call_soon=self.hooks.call_soon,
        )

    def _on_full(self) -> None:
        self.full_calls += 1

    def bind(
        self, *, route: int = 7, sample_rate: float = 1.0, capture: Any = None, capture_values: bool = False
    ) -> None:
        self.hooks.bind(self.ring, route, sample_rate, capture, capture_values)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.impl.flush_pending_completions(self.loop)
        self.loop.close()


@pytest.fixture
def traced(impl: Any) -> Iterator[Traced]:
    t = Traced(impl)
    yield t
    t.close()


def check_shape(record: tuple[Any, ...]) -> None:
    op, fid, ts = record[:3]
    name, fields = _seam.LAYOUTS[op]
    assert len(record) == 3 + len(fields), (name, record)
    assert isinstance(fid, int) and isinstance(ts, int) and ts > 0
    for field, value in zip(fields, record[3:], strict=True):
        assert isinstance(value, FIELD_TYPES[field]), (name, field, value)


def test_every_op_has_the_shape_of_its_layout(traced: Traced) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        fut.add_done_callback(print)
        fut.remove_done_callback(print)
        fut.set_result(3)
        bad = loop.create_future()
        bad.set_exception(ValueError("boom"))
        bad.exception()
        gone = loop.create_future()
        gone.cancel("why")
        task = loop.create_task(asyncio.sleep(10), name="sleeper")
        task.set_name("renamed")
        await asyncio.sleep(0)
        task.cancel("stop")
        try:
            await task
        except asyncio.CancelledError:
            pass
        await loop.create_task(asyncio.sleep(0))
        assert traced.impl.caught(asyncio.current_task(), bad.exception())

    traced.run(traced.loop.create_task(main()))
    gc.collect()
    traced.ring.append((LINT, 0, 1, "blocked_loop", None, None, "stack", 5))
    records = traced.ring.take()
    for record in records:
        check_shape(record)
        if record[0] in (_seam.OPS["CANCELLED"], _seam.OPS["CANCEL_REQ"]) and record[5] is not None:
            assert len(record[5]) == 6, record  # who: canceller, its program line, where the task waited
    ops = {record[0] for record in records}
    assert ops == set(_seam.LAYOUTS)


def test_created_names_the_site_task_and_route(traced: Traced) -> None:
    async def main() -> int | None:
        asyncio.get_running_loop().create_future()  # the site
        return traced.impl.future_id(asyncio.current_task())

    traced.run(main())
    created = [r for r in traced.ring.take() if r[0] == CREATED]
    task, fut = created[0], created[1]
    assert task[4] is True and task[9] == "test_created_names_the_site_task_and_route.<locals>.main"
    assert fut[4] is False and fut[3] == task[1]  # made by the task
    assert fut[5].co_name == "main" and fut[10] == 7 and task[10] == 7


def test_a_record_names_the_task_running_then_whoever_entered_it(traced: Traced) -> None:
    # The compiled core remembers the running task's id while asyncio's table of
    # running tasks is unchanged; anyone who enters or leaves a task (asyncio's
    # own step, an eager start, nest_asyncio) changes it, and records name the
    # task running then.
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        first = loop.create_future()
        other = asyncio.Task(asyncio.sleep(0), loop=loop)  # asyncio's own: not traced
        asyncio.tasks._leave_task(loop, me)
        asyncio.tasks._enter_task(loop, other)
        try:
            inside = loop.create_future()
            inside.set_result(None)
        finally:
            asyncio.tasks._leave_task(loop, other)
            asyncio.tasks._enter_task(loop, me)
        after = loop.create_future()
        await other
        ids = (traced.impl.future_id(me), traced.impl.assign_id(other))
        return (*ids, *(traced.impl.future_id(f) for f in (first, inside, after)))

    if traced.impl.IMPLEMENTATION == "c":  # remembered where asyncio keeps a dict of them (3.11-3.13)
        assert (sys.version_info < (3, 14)) == traced.impl.REMEMBERS_RUNNING_TASK
    me, other, first, inside, after = traced.run(main())
    records = traced.ring.take()
    made_by = {r[1]: r[3] for r in records if r[0] == CREATED}
    assert other != me and (made_by[first], made_by[inside], made_by[after]) == (me, other, me)
    assert [r[3] for r in records if r[0] == RESOLVED and r[1] == inside] == [other]


async def sites_of_every_kind() -> None:
    """Futures and tasks made by the program, by asyncio on its behalf (a sleep,
    a gather), by a primitive (a lock, a queue: their label reads the frame),
    from a callback, and from a coroutine awaited in another."""
    loop = asyncio.get_running_loop()
    loop.create_future()
    await asyncio.sleep(0.001)
    await asyncio.gather(asyncio.sleep(0), asyncio.sleep(0))
    lock, queue = asyncio.Lock(), asyncio.Queue()
    await lock.acquire()
    waiter = asyncio.create_task(lock.acquire())
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    lock.release()
    queue.put_nowait(1)
    await asyncio.gather(waiter, getter)
    made = loop.create_future()
    loop.call_soon(lambda: made.set_result(loop.create_future()))
    await made

    async def inner() -> None:
        await asyncio.wait_for(loop.create_future(), 0.001)

    with contextlib.suppress(asyncio.TimeoutError):
        await inner()


def test_sites_are_the_same_walking_frames_in_place_or_through_frame_objects(impl: Any) -> None:
    if impl.IMPLEMENTATION != "c":
        pytest.skip("the compiled core's walk")
    if not impl._frames_in_place():  # its layouts are 3.11-3.13's, checked at import
        assert sys.version_info >= (3, 14)
        pytest.skip("frames are walked in place on 3.11-3.13")
    runs = []
    # a first run warms the code up: a call's instruction offset is the same
    # from then on (CPython specializes calls as they run)
    for in_place in (True, True, False, True):
        impl._frames_in_place(in_place)
        t = Traced(impl)
        try:
            t.run(t.loop.create_task(sites_of_every_kind(), name="main"))
            runs.append([r[3:] for r in t.ring.take() if r[0] == CREATED])
        finally:
            impl._frames_in_place(True)
            t.close()
    del runs[0]
    # fields after task_id, is_task: code, lasti, thread, name, coro, route, context, program code, lasti
    # (default names count tasks and primitives: the runs' numbers differ)
    sites = [[(*r[2:4], re.sub(r"(Task-|#)\d+$", r"\1", r[5] or ""), r[6], *r[9:]) for r in run] for run in runs]
    assert sites[0] == sites[1] == sites[2]
    assert {"Lock#", "Queue#"} <= {name for _, _, name, *_ in sites[0]}  # labels read from the frame
    assert any(coro == "sleep" and code is not None for code, _, _, coro, *_ in sites[0])  # asyncio's, for the program


def test_capture_values_is_per_loop(impl: Any) -> None:
    with_values, without = Traced(impl, capture_values=True), Traced(impl, capture_values=False)
    try:

        async def main() -> None:
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(["secret"])

        with_values.run(main())
        without.run(main())
        [kept] = [r for r in with_values.ring.take() if r[0] == RESOLVED and r[4] is list]
        [plain] = [r for r in without.ring.take() if r[0] == RESOLVED and r[4] is list]
        assert kept[5] == "['secret']" and plain[5] is None
    finally:
        with_values.close()
        without.close()


def test_rebinding_affects_only_futures_made_afterwards(traced: Traced) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        before = loop.create_future()
        traced.bind(capture_values=True)
        after = loop.create_future()
        before.set_result(1)
        after.set_result(2)

    traced.run(main())
    values = [r[5] for r in traced.ring.take() if r[0] == RESOLVED and r[4] is int]
    assert values == [None, "2"]


def test_a_loop_bound_to_no_ring_hands_out_plain_futures(traced: Traced) -> None:
    traced.hooks.bind(None, 0, 1.0, None, False)

    async def main() -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        return loop.create_future(), loop.create_task(asyncio.sleep(0))

    fut, task = traced.run(main())
    assert type(fut) is asyncio.Future and type(task) is asyncio.Task
    assert traced.ring.take() == []


def test_sample_rate_zero_decides_before_anything_is_made(traced: Traced) -> None:
    traced.bind(sample_rate=0.0)

    async def main() -> Any:
        return asyncio.get_running_loop().create_future()

    assert type(traced.run(main())) is asyncio.Future


def test_live_lists_pending_traced_futures_and_tasks_oldest_first(traced: Traced) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        me = asyncio.current_task()
        pending = [obj for obj in traced.impl.live() if obj in (first, second, me)]
        assert pending == [me, first, second]
        first.set_result(None)
        assert first not in traced.impl.live() and second in traced.impl.live()
        third = loop.create_future()  # made after a future left: still the newest
        pending = [obj for obj in traced.impl.live() if obj in (first, second, third, me)]
        assert pending == [me, second, third]
        second.cancel()
        third.cancel()

    traced.run(main())
    assert [obj for obj in traced.impl.live() if obj.get_loop() is traced.loop] == []


def test_info_gives_id_creation_site_creator_and_label(traced: Traced) -> None:
    async def main() -> tuple[Any, ...]:
        fut = traced.impl.TracedFuture(label="db reply")
        me = traced.impl.future_id(asyncio.current_task())
        return traced.impl.info(fut), traced.impl.future_id(fut), me

    (fid, created_ns, code, lasti, creator, label, pcode, plasti), expected_id, me = traced.run(main())
    assert fid == expected_id and creator == me and label == "db reply"
    assert code.co_name == "main" and isinstance(lasti, int) and created_ns > 0
    assert (pcode, plasti) == (code, lasti)  # the program made it itself
    assert traced.impl.info(object()) is None and traced.impl.info(asyncio.Future(loop=traced.loop)) is None


def test_a_tasks_end_is_recorded_as_it_ends_and_nothing_is_queued_for_it(traced: Traced) -> None:
    async def main() -> tuple[list[int], int, int]:
        loop = asyncio.get_running_loop()

        async def fails() -> None:
            raise ValueError

        task = asyncio.create_task(fails())
        fid = traced.impl.future_id(task)
        await asyncio.sleep(0)  # its one step ran
        ends = [r[0] for r in traced.ring.take() if r[1] == fid and r[0] in (RESOLVED, FAILED, CANCELLED)]
        queued = len(loop._ready)  # type: ignore[attr-defined]
        handle = loop.call_soon(print)  # anything else is the loop's own call_soon
        handle.cancel()
        task.exception()
        return ends, queued, len(loop._ready)  # type: ignore[attr-defined]

    ends, queued, after = traced.run(main())
    assert ends == [FAILED]
    assert queued == 0 and after == 1


def test_records_hold_no_user_object(traced: Traced) -> None:
    class Payload:
        pass

    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(Payload())

    traced.run(main())
    gc.collect()
    for record in traced.ring.window():
        assert not any(isinstance(item, Payload) for item in record)


# --- rings ---------------------------------------------------------------------------


def test_capacity_is_the_byte_limit_over_the_record_size(impl: Any) -> None:
    size = impl.Ring.record_size
    assert impl.Ring(100 * size, streaming=True).capacity == 100
    assert impl.Ring(100 * size + size - 1, streaming=False).capacity == 100
    stats = impl.Ring(10 * size, streaming=True).stats()
    assert set(stats) == {"capacity", "record_size", "written", "taken", "overwritten", "dropped", "untraced"}
    assert stats["capacity"] == 10 and stats["record_size"] == size


def test_a_ring_smaller_than_one_record_is_refused_with_the_reason(impl: Any) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        impl.Ring(1, streaming=True)


def lint(i: int) -> tuple[Any, ...]:
    return (LINT, 0, i + 1, "stalled", None, None, None, i)


def test_take_returns_what_was_written_since_the_last_take(impl: Any) -> None:
    ring = impl.Ring(10 * impl.Ring.record_size, streaming=True)
    for i in range(3):
        ring.append(lint(i))
    assert [r[7] for r in ring.take()] == [0, 1, 2]
    ring.append(lint(3))
    assert [r[7] for r in ring.take()] == [3]
    assert ring.take() == []
    assert [r[7] for r in ring.window()] == [0, 1, 2, 3]  # taken records stay in the window
    assert ring.stats()["taken"] == 4 and ring.stats()["written"] == 4


def test_non_streaming_ring_overwrites_the_oldest_and_counts(impl: Any) -> None:
    ring = impl.Ring(5 * impl.Ring.record_size, streaming=False)
    for i in range(8):
        ring.append(lint(i))
    assert [r[7] for r in ring.window()] == [3, 4, 5, 6, 7]
    assert ring.stats()["overwritten"] == 3 and ring.stats()["dropped"] == 0
    assert [r[7] for r in ring.take()] == [3, 4, 5, 6, 7]


def test_window_keeps_the_last_capacity_records_taken_or_not(impl: Any) -> None:
    ring = impl.Ring(4 * impl.Ring.record_size, streaming=True)
    for i in range(3):
        ring.append(lint(i))
    ring.take()
    for i in range(3, 6):
        ring.append(lint(i))
    assert [r[7] for r in ring.window()] == [2, 3, 4, 5]
    assert ring.stats()["overwritten"] == 0  # only taken records left the window


def test_streaming_ring_drops_records_of_a_full_ring_and_counts(impl: Any) -> None:
    ring = impl.Ring(3 * impl.Ring.record_size, streaming=True)
    for i in range(5):
        ring.append(lint(i))
    assert [r[7] for r in ring.take()] == [0, 1, 2]
    assert ring.stats()["dropped"] == 2


def test_without_history_taken_records_leave_the_window_at_once(impl: Any) -> None:
    # No flight recorder reads the route: what was taken is let go, not kept
    # until its room is needed.
    ring = impl.Ring(10 * impl.Ring.record_size, streaming=True, history=False)
    for i in range(3):
        ring.append(lint(i))
    assert [r[7] for r in ring.take_batch()] == [0, 1, 2]
    ring.append(lint(3))
    assert [r[7] for r in ring.window()] == [3]
    assert [r[7] for r in ring.take()] == [3]
    assert ring.window() == []
    assert ring.stats()["taken"] == 4 and ring.stats()["dropped"] == 0


@pytest.mark.parametrize("history", [True, False])
@pytest.mark.parametrize("streaming", [True, False])
def test_a_ring_holds_its_records_in_order_past_its_first_allocation(impl: Any, streaming: bool, history: bool) -> None:
    # The compiled ring allocates its slots as records need them (4,096 at first,
    # doubling up to the capacity): what is held reads the same at every size.
    ring = impl.Ring(20_000 * impl.Ring.record_size, streaming=streaming, history=history)
    for i in range(9_000):
        ring.append(lint(i))
    assert [r[7] for r in ring.take_batch()] == list(range(9_000))
    for i in range(9_000, 30_000):
        ring.append(lint(i))
        if i % 7_000 == 0:
            assert [r[7] for r in ring.take_batch()][-1] == i
    held = [r[7] for r in ring.window()]
    if history:
        assert held == list(range(10_000, 30_000))  # the capacity's newest records
    else:
        assert held == list(range(28_001, 30_000))  # only what was not taken
    stats = ring.stats()
    assert stats["written"] == 30_000 and stats["dropped"] == 0


# Records of every size, as the hot path writes them: the compiled ring packs
# each into the words it uses (a CREATED 7 to 13, a RESOLVED 5 or 6, a cancel
# that says who 11: trailing fields that read zero are left out), so where one
# ends and the next begins moves with the history, and a record may run past
# the buffer's end into its slack.
ID_FIELDS = {"task_id", "awaiter_id"}


async def every_size(n: int, ring: Any = None, every: int = 0) -> list[Any]:
    """A history of futures and tasks that resolve, fail and are cancelled (with
    a message: who cancelled, and where the task waited), from the first
    future's id on; ``every`` futures, the batches taken from ``ring``."""
    loop = asyncio.get_running_loop()
    first = loop.create_future()
    taken: list[Any] = [first]
    for i in range(n):
        if every and i % every == 0:
            taken.append(list(ring.take_batch()))
        fut = loop.create_future()
        if i % 3 == 0:
            fut.add_done_callback(id)
            loop.call_soon(fut.set_result, i)
            await fut
        elif i % 3 == 1:
            task = loop.create_task(asyncio.sleep(10), name=f"t{i}")
            await asyncio.sleep(0)
            task.cancel("enough")
            with contextlib.suppress(asyncio.CancelledError):
                await task
        else:
            fut.set_exception(ValueError(i))
            fut.exception()
        del fut
    return taken


def history(
    impl: Any, n: int, max_records: int, *, streaming: bool, every: int = 0, kept: bool = True, **bind: Any
) -> tuple[list[Any], list[Any]]:
    """(what the takes returned, then what the window holds), each record with
    its ids counted from the first future's and without its time."""
    t = Traced(impl, max_records=max_records, streaming=streaming, history=kept, **bind)
    gc.disable()  # every COLLECTED record where refcounting puts it, run after run
    try:
        first, *batches = t.run(t.loop.create_task(every_size(n, t.ring, every), name="main"))
        base = impl.future_id(first)
        del first
        t.close()
        taken = [r for batch in batches for r in batch] + list(t.ring.take())
        window = t.ring.window()
    finally:
        gc.enable()

    def same(record: tuple[Any, ...]) -> tuple[Any, ...]:
        _, fields = _seam.LAYOUTS[record[0]]
        items = [v - base if f in ID_FIELDS and v is not None else v for f, v in zip(fields, record[3:], strict=True)]
        return (record[0], record[1] - base, *lines(items))

    return [same(r) for r in taken], [same(r) for r in window]


def lines(items: list[Any]) -> list[Any]:
    """Each (code, lasti) as (code, line): a call's instruction offset depends
    on how far CPython has specialized it (3.11's PRECALL or CALL), its line
    does not."""
    out = list(items)
    for k, item in enumerate(items):
        if isinstance(item, tuple):
            out[k] = tuple(lines(list(item)))
        elif isinstance(item, types.CodeType) and k + 1 < len(items) and isinstance(items[k + 1], int):
            out[k + 1] = next((line for a, b, line in item.co_lines() if a <= items[k + 1] < b), None)
    return out


# Captured contexts and values fill the fields a ring otherwise leaves out.
CAPTURING = {"capture": lambda: "the context", "capture_values": True}


@pytest.mark.parametrize("bind", [{}, CAPTURING], ids=["plain", "capturing"])
@pytest.mark.parametrize("max_records", [1, 2, 3, 7, 13, 64])
def test_an_overwriting_ring_holds_the_newest_records_of_every_size(
    impl: Any, max_records: int, bind: dict[str, Any]
) -> None:
    everything, _ = history(impl, 60, 100_000, streaming=True, **bind)
    sizes = {len(r) for r in everything}
    assert {CREATED, CB_ADDED, RESOLVED, FAILED, CANCEL_REQ, CANCELLED, COLLECTED} <= {r[0] for r in everything}
    assert len(sizes) >= 4 and any(r[0] == CANCEL_REQ and r[4] is not None for r in everything)  # who
    added = [r for r in everything if r[0] == CB_ADDED]
    assert {r[4] is None for r in added} == {True, False}  # a callback's, and a task's wakeup
    resolved = [r for r in everything if r[0] == RESOLVED]
    assert all((r[4] is not None) == bool(bind) for r in resolved)  # the value's repr
    created = [r for r in everything if r[0] == CREATED]
    assert {r[10] for r in created} == ({"the context"} if bind else {None})
    assert {r[8] for r in created if r[3]} >= {"every_size", "sleep"}  # a task's coroutine
    taken, window = history(impl, 60, max_records, streaming=False, **bind)
    assert window == everything[-max_records:]
    assert taken == everything[-max_records:]


@pytest.mark.parametrize("history_kept", [True, False])
def test_a_streaming_ring_grows_and_takes_records_of_every_size_in_order(impl: Any, history_kept: bool) -> None:
    # 20,000 records held at most: the compiled ring starts with room for 4,096
    # whole records' words and grows (twice, here) while batches are taken.
    everything, _ = history(impl, 6_000, 100_000, streaming=True)
    assert len(everything) > 20_000
    taken, window = history(impl, 6_000, 20_000, streaming=True, every=500, kept=history_kept)
    assert taken == everything
    assert window == (everything[-20_000:] if history_kept else [])


def test_a_created_record_names_the_thread_and_route_it_was_made_in(impl: Any) -> None:
    # The compiled ring keeps a loop's usual thread and route once, not in every
    # CREATED: one made in another thread, or after the hooks were bound to
    # another route, still says its own.
    t = Traced(impl)  # route 7
    try:

        async def main() -> tuple[list[Any], int | None]:
            loop = asyncio.get_running_loop()
            here = loop.create_future()
            there: list[Any] = []
            worker = threading.Thread(target=lambda: there.append(loop.create_future()))
            worker.start()
            worker.join()
            t.bind(route=8)
            rerouted = loop.create_future()
            t.bind(route=7)
            again = loop.create_future()
            return [impl.future_id(f) for f in (here, *there, rerouted, again)], worker.ident

        ids, ident = t.run(main())
        fields = _seam.LAYOUTS[CREATED][1]
        at = [3 + fields.index("thread_id"), 3 + fields.index("route")]
        main_thread = threading.get_ident()
        expected = [(main_thread, 7), (ident, 7), (main_thread, 8), (main_thread, 7)]
        for records in (t.ring.window(), t.ring.take()):
            created = {r[1]: [r[k] for k in at] for r in records if r[0] == CREATED}
            assert [tuple(created[fid]) for fid in ids] == expected
    finally:
        t.close()


def test_clear_forgets_everything_held(impl: Any) -> None:
    ring = impl.Ring(4 * impl.Ring.record_size, streaming=True)
    ring.append(lint(0))
    ring.take()
    ring.append(lint(1))
    ring.clear()
    assert ring.window() == [] and ring.take() == []


def unread(ring: Any) -> int:
    stats = ring.stats()
    return int(stats["written"] - stats["taken"])


def test_streaming_refuses_new_futures_at_seven_eighths_and_calls_on_full(impl: Any) -> None:
    t = Traced(impl, max_records=16)  # 7/8 of 16: new futures traced while fewer than 14 are unread
    try:

        async def main() -> tuple[int, list[Any]]:
            loop = asyncio.get_running_loop()
            return unread(t.ring), [loop.create_future() for _ in range(20)]

        before, futures = t.run(main())
        traced = [f for f in futures if impl.future_id(f) is not None]
        assert len(traced) == 14 - before
        # refused ones are the loop's own futures, as sampled-out ones are
        assert [type(f) for f in futures] == [impl.TracedFuture] * len(traced) + [asyncio.Future] * (20 - len(traced))
        assert t.ring.stats()["untraced"] == 20 - len(traced)
        assert t.full_calls == 1  # once until the reader takes: a refusal costs no call
        t.ring.take()
        t.run(main())
        assert t.full_calls == 2
    finally:
        t.close()


def test_a_record_of_a_traced_future_that_finds_the_ring_full_marks_it_incomplete(impl: Any) -> None:
    t = Traced(impl, max_records=16)
    try:

        async def main() -> tuple[list[Any], int]:
            loop = asyncio.get_running_loop()
            futures = [loop.create_future() for _ in range(20)]
            futures = [f for f in futures if impl.future_id(f) is not None]  # 14 unread now
            dropped = t.ring.stats()["dropped"]
            for fut in futures:
                fut.add_done_callback(print)  # 2 fit (16), the rest are dropped
            assert t.ring.stats()["dropped"] - dropped == len(futures) - 2
            return futures, len(futures)

        futures, n = t.run(main())
        ids = [impl.future_id(f) for f in futures]
        t.ring.take()
        del futures
        gc.collect()
        collected = {r[1]: r[4] for r in t.ring.take() if r[0] == COLLECTED}
        assert [collected[fid] for fid in ids] == [False, False] + [True] * (n - 2)
    finally:
        t.close()


def test_a_non_streaming_ring_never_refuses_a_future(impl: Any) -> None:
    t = Traced(impl, max_records=8, streaming=False)
    try:

        async def main() -> list[Any]:
            loop = asyncio.get_running_loop()
            return [loop.create_future() for _ in range(50)]

        futures = t.run(main())
        assert all(impl.future_id(f) is not None for f in futures)
        assert t.ring.stats()["untraced"] == 0 and t.ring.stats()["overwritten"] > 0
        assert len(t.ring.window()) == 8
    finally:
        t.close()


def test_on_full_that_raises_does_not_break_future_creation(impl: Any) -> None:
    def broken() -> None:
        raise RuntimeError("reader is broken")

    loop = asyncio.new_event_loop()
    hooks = impl.LoopHooks(loop)
    hooks.bind(impl.Ring(2 * impl.Ring.record_size, streaming=True, on_full=broken), 1, 1.0, None, False)
    vars(loop).update(_tracedfuture_hooks=hooks, create_future=hooks.create_future)
    try:
        futures = [loop.create_future() for _ in range(5)]
        assert len(futures) == 5
    finally:
        loop.close()


def test_take_batch_gives_the_records_take_would_and_advances(impl: Any) -> None:
    t = Traced(impl)
    try:

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for i in range(5):
                fut = loop.create_future()
                loop.call_soon(fut.set_result, i)
                await fut

        t.run(main())
        batch = t.ring.take_batch()
        assert isinstance(batch, impl.RecordBatch)
        records = list(batch)
        assert len(batch) == len(records) > 0
        for record in records:
            check_shape(record)
        assert records == t.ring.window()  # oldest first, as written
        assert t.ring.take() == [] and len(t.ring.take_batch()) == 0  # taken once
        assert t.ring.stats()["taken"] == len(records)
    finally:
        t.close()


@pytest.mark.parametrize(("streaming", "history"), [(True, False), (True, True), (False, True)])
def test_a_held_ring_traces_no_new_future_unless_a_flight_recorder_reads_it(
    impl: Any, streaming: bool, history: bool
) -> None:
    """``hold(True)``: every new future is handed out untraced (counted), until
    ``hold(False)``; a ring a flight recorder reads (history) or one that only
    overwrites is never held."""
    loop = asyncio.new_event_loop()
    try:
        ring = impl.Ring(1 << 20, streaming=streaming, history=history)
        hooks = impl.LoopHooks(loop)
        hooks.bind(ring, 1, 1.0, None, False)
        held_for_real = streaming and not history
        ring.hold(True)
        futures = [hooks.create_future() for _ in range(10)]
        assert ring.stats()["untraced"] == (10 if held_for_real else 0)
        assert all(not impl.future_id(f) for f in futures) is held_for_real
        # Refused, a future is exactly the loop's own, as a sampled-out one is:
        # nothing of a subtype's cost while the exporters are stuck.
        assert all(type(f) is asyncio.Future for f in futures) is held_for_real

        async def nothing() -> None:
            pass

        task = hooks.create_task(nothing())
        assert type(task) is (asyncio.Task if held_for_real else impl.TracedTask)
        if held_for_real:
            assert impl.future_id(task) is None
        loop.run_until_complete(task)
        ring.hold(False)
        traced = hooks.create_future()
        assert ring.stats()["untraced"] == (11 if held_for_real else 0)
        assert impl.future_id(traced)
        for fut in [*futures, traced]:
            fut.cancel()
    finally:
        loop.close()


# --- hooks carried by the loop's class -----------------------------------------------


def _carried_loop_class() -> tuple[Any, Any]:
    """A class of uvloop loops of this test's own (uvloop.Loop stays untouched),
    and uvloop's compiled base, whose methods are the stock ones."""
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed")

    class CarriedLoop(uvloop.Loop):  # type: ignore[misc, name-defined]
        pass

    return CarriedLoop, uvloop.loop.Loop


def test_a_carrier_dispatches_to_the_hooks_its_class_carries_for_a_loop(impl: Any) -> None:
    cls, stock = _carried_loop_class()
    loop, other = cls(), cls()
    hooks = impl.LoopHooks(loop, (cls, stock.create_future, stock.create_task))
    ring = impl.Ring(1 << 20, streaming=False)
    try:
        assert impl.carried_hooks(loop) is hooks and hooks.carrier_class is cls and hooks.loop is loop
        assert impl.carried_hooks(other) is None
        cls.create_future = impl.Carrier(cls, "create_future", stock.create_future, None)
        cls.create_task = impl.Carrier(cls, "create_task", stock.create_task, None)
        hooks.bind(ring, 1, 1.0, None, False)
        traced, untraced = loop.create_future(), other.create_future()
        assert impl.future_id(traced) and type(traced) is impl.TracedFuture
        assert type(untraced) is asyncio.Future and impl.future_id(untraced) is None
        hooks.bind(ring, 1, 0.0, None, False)
        # sampled out: exactly what the class's own methods make
        fut, task = loop.create_future(), loop.create_task(asyncio.sleep(0))
        assert (type(fut), type(task)) == (asyncio.Future, asyncio.Task) and impl.future_id(fut) is None
        loop.run_until_complete(task)
        # read and refused as the class's own
        assert repr(loop.create_future) == repr(types.MethodType(stock.create_future, loop))
        assert loop.create_task.__qualname__ == stock.create_task.__qualname__
        with pytest.raises(TypeError) as own_error:
            stock.create_future(other, 1)
        with pytest.raises(TypeError) as error:
            loop.create_future(1)
        assert str(error.value) == str(own_error.value)
        assert "create_future" not in vars(loop)
        hooks.bind(ring, 1, 1.0, None, False)
        hooks.detach()
        assert impl.carried_hooks(loop) is None and hooks.carrier_class is None
        assert impl.future_id(loop.create_future()) is None
    finally:
        for name in ("create_future", "create_task"):
            if name in vars(cls):
                delattr(cls, name)
        loop.close()
        other.close()


def test_a_carrier_with_traced_calls_it_with_own_and_the_loop(impl: Any) -> None:
    cls, stock = _carried_loop_class()
    loop, other = cls(), cls()
    hooks = impl.LoopHooks(loop, (cls, stock.create_future, stock.create_task))
    calls: list[tuple[Any, ...]] = []

    def traced(own: Any, *args: Any, **kwargs: Any) -> str:
        calls.append((own, args, kwargs))
        return "traced"

    cls.close = impl.Carrier(cls, "close", stock.close, traced)
    try:
        assert loop.close(1, x=2) == "traced"
        assert calls == [(stock.close, (loop, 1), {"x": 2})]
        other.close()  # not carried: the class's own, called as it is
        assert other.is_closed()
        with pytest.raises(ValueError, match="create_future and create_task only"):
            impl.Carrier(cls, "close", stock.close, None)
        # a subclass's loop, carried by the subclass, through its parent's carrier (super()): the parent's own
        sub = type("Sub", (cls,), {})()
        impl.LoopHooks(sub, (type(sub), stock.create_future, stock.create_task))
        assert cls.close(sub) is None and sub.is_closed()
    finally:
        del cls.close
        hooks.detach()
        stock.close(loop)


def test_hooks_carried_by_the_class_hold_their_loop_weakly(impl: Any) -> None:
    import weakref

    cls, stock = _carried_loop_class()
    loop = cls()
    hooks = impl.LoopHooks(loop, (cls, stock.create_future, stock.create_task))
    ref = weakref.ref(loop)
    loop.close()
    del loop
    gc.collect()
    assert ref() is None and hooks.loop is None and hooks.carrier_class is None
    with pytest.raises(RuntimeError, match="no loop"):
        hooks.create_future()


def test_only_a_loop_that_is_not_asyncios_own_is_carried_by_its_class(impl: Any) -> None:
    cls, stock = _carried_loop_class()
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError, match="carry their hooks themselves"):
            impl.LoopHooks(loop, (type(loop), loop.create_future, loop.create_task))
        with pytest.raises(TypeError, match="not an instance"):
            impl.LoopHooks(loop, (cls, stock.create_future, stock.create_task))
    finally:
        loop.close()
