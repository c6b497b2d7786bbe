"""Trace-file lines made straight from raw records (``_pipeline._lines``) read
exactly as the events of the same records, each written on its own: byte for
byte, on both implementations of the hot path."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tracedfuture._core import _events as ev
from tracedfuture._pipeline._convert import Converter
from tracedfuture._pipeline._lines import MARK, Lines, LinesLike
from tracedfuture.trace import encode_line, event_to_json

from .test_seam import Traced


async def _program() -> None:
    loop = asyncio.get_running_loop()

    async def fetch(n: int) -> int:
        await asyncio.sleep(0)
        if n == 2:
            raise ValueError("backend said no")
        return n

    jobs = [asyncio.create_task(fetch(i), name=f"fetch-{i}") for i in range(4)]
    await asyncio.gather(*jobs, return_exceptions=True)
    reply = loop.create_future()
    reply.add_done_callback(print)
    reply.remove_done_callback(print)
    loop.call_soon(reply.set_result, "caf\xe9 \udce9")
    await reply
    done = loop.create_future()
    done.set_result(None)
    done.add_done_callback(lambda f: None)  # added after the end: scheduled at once
    slow = asyncio.create_task(asyncio.sleep(10), name='slow \u2028 "call"')
    await asyncio.sleep(0)
    slow.set_name("renamed")
    slow.cancel("deadline exceeded")
    try:
        await slow
    except asyncio.CancelledError:
        pass
    loop.create_future()  # dropped at once: abandoned
    failing = loop.create_future()
    failing.set_exception(KeyError("k"))
    del failing  # unretrieved
    for i in range(50):
        fut = loop.create_future()
        loop.call_soon(fut.set_result, i)
        await fut


def _records(impl: Any, capture_values: bool) -> list[tuple[Any, ...]]:
    traced = Traced(impl, max_records=100_000, capture_values=capture_values)
    try:
        traced.run(_program())
    finally:
        traced.close()
    gc.collect()
    return traced.ring.take()


def _writers() -> list[str]:
    try:
        from tracedfuture._core import _cfuture  # noqa: F401
    except ImportError:
        return ["reference"]
    return ["reference", "compiled"]


@pytest.fixture(params=_writers())
def make(request: pytest.FixtureRequest) -> Any:
    """A trace-line writer factory: the reference, or the compiled one around it."""

    def make(**options: Any) -> LinesLike:
        if request.param == "reference":
            return Lines(**options)
        from tracedfuture._core import _cfuture

        return _cfuture.LineWriter(Lines(**options), redacts=options.get("redact") is not None)

    return make


def _reference(records: list[tuple[Any, ...]], **options: Any) -> bytes:
    return b"".join(encode_line(event_to_json(e)) for e in Converter(**options).convert(records))


@pytest.mark.parametrize("capture_values", [False, True])
def test_lines_are_the_events_byte_for_byte(impl: Any, make: Any, capture_values: bool) -> None:
    records = _records(impl, capture_values)
    data, count = make(capture_values=capture_values).lines(records)
    assert data == _reference(records, capture_values=capture_values)
    assert count == data.count(b"\n")
    kinds = {json.loads(line)["kind"] for line in data.splitlines()}
    assert {"created", "awaited", "resolved", "callback_scheduled", "failed", "cancelled", "renamed"} <= kinds


@pytest.mark.parametrize("size", [1, 7, 64])
def test_lines_in_batches_are_the_lines_at_once(impl: Any, make: Any, size: int) -> None:
    records = _records(impl, False)
    whole, _ = make().lines(records)
    lines = make()
    parts = [lines.lines(records[i : i + size])[0] for i in range(0, len(records), size)]
    assert b"".join(parts) == whole
    assert whole == _reference(records)


def test_timestamps_are_written_as_json_writes_them(impl: Any, make: Any) -> None:
    # The compiled writer keeps the last second's digits: timestamps before the
    # first second, on either side of a second, going back, and far off.
    stamps = [0, 7, 999_999_999, 10**9, 10**9 + 1, 2 * 10**9 - 1, 2 * 10**9, 1_500_000_123, 10**9, 10**18 + 7]
    stamps += [2**63 - 1, 34_708_723_429_121, 34_708_723_429_121 + 999_999_999, 34_709_000_000_000, 123_456_789]
    records = [(r[0], r[1], stamps[i % len(stamps)], *r[3:]) for i, r in enumerate(_records(impl, False))]
    data, _ = make().lines(records)
    assert data == _reference(records)


def test_a_mark_ends_a_history_with_incomplete(impl: Any, make: Any) -> None:
    records = _records(impl, False)
    created = next(r for r in records if r[0] == ev.OP_CREATED and r[4])
    at = records.index(created) + 1
    fid = created[1]
    marked = [*records[:at], (MARK, fid, created[2], "the exporter's queue was full"), *records[at:]]
    events = [json.loads(line) for line in make().lines(marked)[0].splitlines()]
    mine = [e for e in events if e["future_id"] == fid]
    assert [e["kind"] for e in mine] == ["created", "incomplete"]
    assert mine[1]["detail"] == "events of this future were dropped: the exporter's queue was full"


def test_names_are_redacted_as_in_events(impl: Any, make: Any) -> None:
    records = _records(impl, False)

    def redact(text: str) -> str:
        return text.replace("fetch", "[redacted]")

    data, _ = make(redact=redact).lines(records)
    assert data == _reference(records, redact=redact)
    assert b"fetch-" not in data
    assert b"[redacted]-1" in data


def test_every_history_ends_and_nothing_is_held(impl: Any, make: Any) -> None:
    records = _records(impl, False)
    writer = make()
    writer.lines(records)
    held = writer.held() if hasattr(writer, "held") else 0
    # Only futures still alive when the records were taken (none: all collected).
    assert held == 0


def test_a_loop_wide_lint_is_written_once(impl: Any, make: Any) -> None:
    records = _records(impl, False)
    lint = (ev.OP_LINT, 0, records[3][2], "blocked_loop", None, None, "the loop was blocked for 0.5 s", None)
    marked = [*records[:4], lint, *records[4:]]
    data, _ = make().lines(marked)
    assert data == _reference(marked)
    assert data.count(b'"blocked_loop"') == 1


def _batch(impl: Any, program: Any) -> Any:
    traced = Traced(impl, max_records=100_000)
    try:
        traced.run(program())
    finally:
        traced.close()
    gc.collect()
    return traced.ring.take_batch()


def test_a_batch_is_written_as_its_records(impl: Any, make: Any) -> None:
    batch = _batch(impl, _program)
    assert make().lines(batch)[0] == _reference(list(batch))


async def _common_only() -> None:
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        for i in range(3):
            fut = loop.create_future()
            loop.call_soon(fut.set_result, i)
            await fut

    await asyncio.gather(*[asyncio.create_task(worker(), name=f"w{i}") for i in range(5)])


class _Counting(Lines):
    """The reference, noting the futures whose records the compiled writer hands it
    (and those whose state it hands over)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.handed: set[int] = set()
        self.adopted: set[int] = set()

    def lines(self, records: Any) -> tuple[bytes, int]:
        self.handed.update(r[1] for r in records)
        return super().lines(records)

    def adopt(self, fid: int, *args: Any, **kwargs: Any) -> None:
        self.adopted.add(fid)
        super().adopt(fid, *args, **kwargs)


def _written_by_the_compiled_writer(impl: Any, program: Any) -> tuple[Any, _Counting, bytes]:
    """(the batch of ``program``'s records, the reference that counted what it
    was handed, the compiled writer's lines), which are the reference's."""
    if impl.LineWriter is None:
        pytest.skip("the pure-Python implementation writes with the reference itself")
    batch = _batch(impl, program)
    helper = _Counting()
    data, _ = impl.LineWriter(helper).lines(batch)
    assert data == _reference(list(batch))
    return batch, helper, data


def test_the_compiled_writer_writes_the_common_records_itself(impl: Any) -> None:
    batch, helper, data = _written_by_the_compiled_writer(impl, _common_only)
    futures = {r[1] for r in batch if r[0] == ev.OP_CREATED and not r[4]}
    assert len(futures) == 15
    # A future created, awaited, resolved and collected is never the reference's.
    assert not futures & helper.handed
    # Nor a task named at creation (a rename, on 3.11 and 3.12).
    tasks = {r[1] for r in batch if r[0] == ev.OP_CREATED and r[4]}
    assert not tasks & helper.handed
    assert not helper.adopted
    if sys.version_info < (3, 13):
        renamed = [json.loads(line) for line in data.splitlines() if b'"renamed"' in line]
        assert sorted(e["name"] for e in renamed) == [f"w{i}" for i in range(5)]


async def _waits_and_removals() -> None:
    """asyncio.wait() removes its done callback from every future still pending
    when it returns, 3.11's wait_for() from the one it gave up on, and a program
    removes its own: a callback added twice (two positions in one record), and
    one beside a task's wakeup, which stays."""
    loop = asyncio.get_running_loop()

    async def job(i: int) -> int:
        for _ in range(3 * i):
            await asyncio.sleep(0)
        return i

    async def waits(fut: asyncio.Future[None]) -> None:
        await fut

    jobs = [loop.create_task(job(i)) for i in range(4)]
    _, pending = await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.wait(pending)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(loop.create_task(asyncio.sleep(10)), timeout=0.001)
    fut = loop.create_future()
    fut.add_done_callback(print)
    fut.add_done_callback(repr)
    fut.add_done_callback(print)
    fut.remove_done_callback(print)  # positions 0 and 2
    fut.remove_done_callback(len)  # not there: no record
    waiter = loop.create_task(waits(fut))
    await asyncio.sleep(0)
    fut.add_done_callback(str)
    fut.remove_done_callback(repr)  # the wakeup and str stay, and are scheduled
    fut.set_result(None)
    await waiter


def test_the_compiled_writer_writes_callbacks_removed_itself(impl: Any) -> None:
    batch, helper, data = _written_by_the_compiled_writer(impl, _waits_and_removals)
    removed = [json.loads(line) for line in data.splitlines() if b'"callback_removed"' in line]
    assert [e["callback"] for e in removed[-2:]] == ["print", "repr"]
    # asyncio.wait()'s own, on each job still pending (3.11's wait_for() adds one)
    assert sum(e["callback"].endswith("_on_completion") for e in removed) >= 3
    scheduled = [json.loads(line) for line in data.splitlines() if b'"callback_scheduled"' in line]
    fid = removed[-1]["future_id"]
    assert [e["callback"] for e in scheduled if e["future_id"] == fid] == ["Task.task_wakeup", "str"]
    # Nothing in the program is the reference's: a callback removed is written here.
    assert {r[1] for r in batch if r[0] == ev.OP_CB_REMOVED}
    assert not helper.handed
    assert not helper.adopted


# A record's positions, and whether the compiled writer reads them itself: the
# ring writes a tuple of small ints; anything else is the reference's to read
# (a negative position deletes from the end there, a bool is an int).
ODD_POSITIONS = [((0, 0), True), ((9,), True), ((), True), ((-1,), False), ((True,), False), ((2**70,), False)]


@pytest.mark.parametrize(("indices", "native"), [*ODD_POSITIONS, ([0], False)])
def test_a_callback_removed_at_any_positions_is_written_as_the_reference_writes_it(
    impl: Any, indices: Any, native: bool
) -> None:
    if impl.LineWriter is None:
        pytest.skip("the pure-Python implementation writes with the reference itself")
    records = [(*r[:5], indices) if r[0] == ev.OP_CB_REMOVED else r for r in _batch(impl, _waits_and_removals)]
    helper = _Counting()
    data, _ = impl.LineWriter(helper).lines(records)
    assert data == _reference(records)
    assert (not helper.handed) == native


async def _failures_and_cancels() -> None:
    """Futures and tasks that fail or are cancelled as programs make them do (tasks
    left unnamed: a name given at creation is a rename on 3.11)."""
    loop = asyncio.get_running_loop()

    async def worker(w: int) -> None:
        for i in range(6):
            fut = loop.create_future()
            if i % 3 == 0:
                loop.call_soon(fut.set_exception, ValueError(f"bad {i}"))
                with contextlib.suppress(ValueError):
                    await fut
            elif i % 3 == 1:
                loop.call_soon(fut.cancel, f'stop {w} \u2028 "now"')
                with contextlib.suppress(asyncio.CancelledError):
                    await fut
            else:
                loop.call_soon(fut.set_result, i)
                await fut

    async def fails() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("task failed")

    async def waits(fut: asyncio.Future[None]) -> None:
        await fut

    async def naps() -> None:
        await asyncio.sleep(10)  # where it waits: the program's line

    await asyncio.gather(*[loop.create_task(worker(w)) for w in range(3)])
    with contextlib.suppress(RuntimeError):
        await loop.create_task(fails())
    sleeper = loop.create_task(naps())
    await asyncio.sleep(0)
    sleeper.cancel("deadline")  # cancel_requested, its sleep's future cancelled, then the task
    with contextlib.suppress(asyncio.CancelledError):
        await sleeper
    waited = loop.create_future()
    waiter = loop.create_task(waits(waited))
    await asyncio.sleep(0)
    waited.cancel("gone")  # the task is cancelled through the future it waits on: its cause
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    loop.create_future().cancel()  # no message
    lost = loop.create_future()
    lost.set_exception(KeyError("k"))
    del lost  # unretrieved
    loop.create_future()  # abandoned


def test_the_compiled_writer_writes_failures_and_cancels_itself(impl: Any) -> None:
    batch, helper, data = _written_by_the_compiled_writer(impl, _failures_and_cancels)
    events = [json.loads(line) for line in data.splitlines()]
    kinds = [e["kind"] for e in events]
    assert kinds.count("failed") == 8  # the workers' 6, the task, the unretrieved one
    assert kinds.count("cancelled") == 11  # the workers' 6, the sleep's, 2 tasks, the future waited, the bare one
    assert {"cancel_requested", "unretrieved", "abandoned", "callback_scheduled"} <= set(kinds)
    (request,) = (e for e in events if e["kind"] == "cancel_requested")
    assert {"msg", "canceller_id", "canceller", "waiting_site"} <= set(request)
    assert any("raise_site" in e for e in events if e["kind"] == "failed")
    futures = {r[1] for r in batch if r[0] == ev.OP_CREATED}
    # Failed, cancelled, unretrieved, abandoned: none of them is the reference's.
    assert not futures & helper.handed
    assert not helper.adopted


async def _cancels_across_writers() -> None:
    loop = asyncio.get_running_loop()

    async def waits(fut: asyncio.Future[None]) -> None:
        await fut

    # A future the reference holds (a lint on it: see below), a task of the
    # compiled writer's waiting on it: the future's cancel is the task's cause.
    theirs = loop.create_future()
    theirs.add_done_callback(print)
    theirs.remove_done_callback(print)
    task = loop.create_task(waits(theirs))
    await asyncio.sleep(0)
    theirs.cancel("theirs")
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # A future the compiled writer holds, a task of the reference's (a lint on
    # it) waiting on it.
    ours = loop.create_future()
    handed = loop.create_task(waits(ours))
    handed.add_done_callback(print)
    handed.remove_done_callback(print)
    await asyncio.sleep(0)
    ours.cancel("ours")
    with contextlib.suppress(asyncio.CancelledError):
        await handed


def _with_lints_after_removals(records: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The records, with a lint on each future right after a callback of it was
    removed (as lints.py appends one, off the hot path): a record the compiled
    writer hands to the reference, with its future."""
    out = []
    for r in records:
        out.append(r)
        if r[0] == ev.OP_CB_REMOVED:
            out.append((ev.OP_LINT, r[1], r[2], "stalled", None, None, "no progress", None))
    return out


def test_a_cancel_gives_its_waiter_its_cause_across_the_writers(impl: Any, make: Any) -> None:
    records = _with_lints_after_removals(list(_batch(impl, _cancels_across_writers)))
    data, _ = make().lines(records)
    assert data == _reference(records)
    assert data.count(b'"stalled"') == 2
    tasks = [json.loads(line) for line in data.splitlines() if b'"cancelled"' in line and b'"is_task":true' in line]
    assert [t["msg"] for t in tasks] == ["theirs", "ours"]
    if impl.LineWriter is not None:
        helper = _Counting()
        impl.LineWriter(helper).lines(records)
        assert {r[1] for r in records if r[0] == ev.OP_LINT} <= helper.adopted


@pytest.mark.parametrize(
    "name",
    [
        'quote " backslash \\ slash /',
        "controls \x00\x01\x08\x09\x0a\x0c\x0d\x1b\x1f\x7f",
        "latin caf\xe9, cjk \u4e2d, line separator \u2028, astral \U0001f600",
        "lone surrogates \udce9 \ud800",
        "",
    ],
)
def test_names_are_escaped_as_json_does(impl: Any, make: Any, name: str) -> None:
    async def program() -> None:
        loop = asyncio.get_running_loop()

        async def job() -> None:
            fut = loop.create_future()
            loop.call_soon(fut.set_result, None)
            await fut

        await asyncio.create_task(job(), name=name)

    batch = _batch(impl, program)
    data, _ = make().lines(batch)
    assert data == _reference(list(batch))
    names = {json.loads(line).get("name") for line in data.split(b"\n") if line}
    assert name in names


_SPECIAL = ['"', "\\", "\x00", "\x1f", "\x7f", "\x80", "\xe9", "\u2028", "\U0001f600", "\udce9"]


def test_a_special_character_anywhere_in_a_long_name_is_escaped(impl: Any, make: Any) -> None:
    """Eight plain characters at a time are copied as they are: a character to
    escape at any place, in any word, is not (coroutines' names, as a task's
    created line has them)."""
    names = [f"{'abcdefghijklmnopq'[:at]}{ch}{'rstuvwxyz0123456'[at:]}" for ch in _SPECIAL for at in range(17)]

    async def program() -> None:
        async def job() -> None:
            await asyncio.sleep(0)

        for name in names:
            coro = job()
            coro.__qualname__ = name
            await asyncio.create_task(coro)

    batch = _batch(impl, program)
    data, _ = make().lines(batch)
    assert data == _reference(list(batch))
    coros = {json.loads(line).get("coro") for line in data.split(b"\n") if line}
    assert set(names) <= coros


def test_callbacks_of_many_names_in_turn_are_each_written_as_json_writes_them(impl: Any, make: Any) -> None:
    """A str met again in a batch is copied from its last text: names that take
    turns (some to escape), and the same names again in later batches."""
    names = [f"cb{i}" if i % 3 else f'cb "{i}" \u2028' for i in range(40)]
    callbacks = []
    for name in names:

        def callback(fut: Any) -> None:
            pass

        callback.__qualname__ = name
        callbacks.append(callback)

    async def program() -> None:
        loop = asyncio.get_running_loop()
        for round_ in range(3):
            futures = [loop.create_future() for _ in range(10)]
            for i, fut in enumerate(futures):
                for k in range(4):
                    fut.add_done_callback(callbacks[(i * 7 + k * 13 + round_) % len(callbacks)])
                fut.set_result(i)
            await asyncio.sleep(0)

    records = list(_batch(impl, program))
    whole, _ = make().lines(records)
    assert whole == _reference(records)
    writer = make()
    assert b"".join(writer.lines(records[i : i + 50])[0] for i in range(0, len(records), 50)) == whole
    used = {names[(i * 7 + k * 13 + round_) % len(names)] for round_ in range(3) for i in range(10) for k in range(4)}
    assert len(used) > 30
    assert {json.loads(line).get("callback") for line in whole.splitlines()} >= used


# --- the lines written to a file in the same call (write: a trace file's batch) -------


def _open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def test_write_appends_the_lines_to_a_file(impl: Any, make: Any, tmp_path: Path) -> None:
    batch = _batch(impl, _program)
    path = tmp_path / "t.jsonl"
    fd = _open_append(path)
    try:
        os.write(fd, b"before\n")
        done = make().write(batch, fd)
    finally:
        os.close(fd)
    expected = _reference(list(batch))
    assert done == (expected.count(b"\n"), len(expected), None, None)
    assert path.read_bytes() == b"before\n" + expected


@pytest.mark.parametrize("size", [1, 7, 64])
def test_writes_in_batches_are_the_lines_at_once(impl: Any, make: Any, tmp_path: Path, size: int) -> None:
    """Batches cut anywhere: futures handed to the reference in one batch and
    written by it in the next, its lines put in the writer's own."""
    records = _records(impl, False)
    path = tmp_path / "t.jsonl"
    writer, fd = make(), _open_append(path)
    try:
        counts = [writer.write(records[i : i + size], fd)[0] for i in range(0, len(records), size)]
    finally:
        os.close(fd)
    assert path.read_bytes() == _reference(records)
    assert sum(counts) == path.read_bytes().count(b"\n")


def test_a_failed_write_returns_its_error_and_the_lines(impl: Any, make: Any, tmp_path: Path) -> None:
    batch = _batch(impl, _program)
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)  # not open for writing: EBADF
    try:
        count, written, error, data = make().write(batch, fd)
    finally:
        os.close(fd)
    assert data == _reference(list(batch))
    assert (count, written) == (data.count(b"\n"), 0)
    assert isinstance(error, OSError)
    assert error.errno == errno.EBADF
    assert path.read_bytes() == b""


def test_a_batch_of_nothing_writes_nothing(impl: Any, make: Any, tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    fd = _open_append(path)
    try:
        assert make().write([], fd) == (0, 0, None, None)
    finally:
        os.close(fd)
    assert path.read_bytes() == b""


_GIL_TAKEN = """
import asyncio, gc, os, sys
from tests.test_seam import Traced
from tracedfuture._core import _cfuture
from tracedfuture._pipeline._lines import Lines

async def program():  # tasks unnamed: a name given at creation is a rename on 3.11, the reference's
    loop = asyncio.get_running_loop()

    async def worker():
        for i in range(3):
            fut = loop.create_future()
            loop.call_soon(fut.set_result, i)
            await fut

    await asyncio.gather(*[asyncio.create_task(worker()) for _ in range(5)])

traced = Traced(_cfuture, max_records=100_000)
writer, fd = _cfuture.LineWriter(Lines()), os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
taken = []
try:
    for _ in range(3):  # the same sites, types and names: cached after the first batch
        traced.run(program())
        gc.collect()
        batch = traced.ring.take_batch()
        before = _cfuture._gil_stats()["taken"]
        writer.write(batch, fd)
        taken.append(_cfuture._gil_stats()["taken"] - before)
finally:
    traced.close()
print(*taken)
"""


def test_a_batch_written_to_a_file_takes_the_gil_back_once(impl: Any, tmp_path: Path) -> None:
    """Formatting and writing happen with the GIL released; only a site or type
    seen for the first time needs it, once (and a batch with a share for the
    reference, once more). Counted in a process of its own: tracing's threads of
    other tests take the GIL back too."""
    if impl.LineWriter is None:
        pytest.skip("the pure-Python implementation writes with the GIL held")
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"")
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", _GIL_TAKEN, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(root)},
        cwd=root,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    first, *later = (int(n) for n in done.stdout.split())
    assert first > 1  # the sites and the result type, each once
    assert later == [1, 1]


# --- the lines a program writes itself, without the json package (_tracefile.dumps) ----

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tracedfuture import _tracefile  # noqa: E402

_TEXT = st.text(st.characters(codec=None, blacklist_categories=()), max_size=12)  # lone surrogates too
_PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _TEXT,
    lambda inner: (
        st.lists(inner, max_size=4) | st.lists(inner, max_size=3).map(tuple) | st.dictionaries(_TEXT, inner, max_size=4)
    ),
    max_leaves=20,
)


def _json(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


@settings(derandomize=True, max_examples=400, deadline=None)
@given(_PLAIN)
def test_dumps_writes_what_json_writes(obj: Any) -> None:
    assert _tracefile.dumps(obj) == _json(obj)


@settings(derandomize=True, max_examples=400, deadline=None)
@given(st.text(st.characters(codec=None, blacklist_categories=())))
def test_a_string_is_escaped_as_json_escapes_it(text: str) -> None:
    from json.encoder import encode_basestring

    assert _tracefile.json_string(text) == encode_basestring(text)


class _Str(str):
    pass


class _Int(int):
    pass


def _cycle() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    "obj",
    [
        {"a": _Str("x"), "b": _Int(3)},  # subclasses: json's own rules
        {1: "int key", None: 0, 2.5: True},  # keys json turns into strings
        [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
        {"nan": float("nan"), "inf": [float("inf"), -float("inf")], "e": 1e300, "small": 5e-324},
    ],
)
def test_dumps_leaves_anything_else_to_json(obj: Any) -> None:
    assert _tracefile.dumps(obj) == _json(obj)


def test_dumps_fails_as_json_does() -> None:
    for bad in (_cycle(), {"x": object()}, {(1, 2): 3}):
        with pytest.raises((ValueError, TypeError)) as ours:
            _tracefile.dumps(bad)
        with pytest.raises((ValueError, TypeError)) as theirs:
            _json(bad)
        assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value))
