"""tracedfuture.flight: the ring of recent events and its dumps."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import tracedfuture
import tracedfuture._core
import tracedfuture.flight
import tracedfuture.trace
from tracedfuture.flight import FlightRecorder


async def lifecycle(n: int) -> None:
    loop = asyncio.get_running_loop()
    for i in range(n):
        fut = loop.create_future()
        loop.call_soon(fut.set_result, i)
        await fut


def wait_for_file(path: Path, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"{path} was not written within {timeout}s")
        time.sleep(0.01)


@pytest.fixture
def no_flight() -> Iterator[None]:
    """Make sure the module-level recorder is off after the test."""
    yield
    tracedfuture.flight.disable()


def test_the_ring_is_bounded_in_bytes_and_counts_the_overwritten_records() -> None:
    recorder = FlightRecorder(max_bytes=64 * 1024)
    tracedfuture.run(lifecycle(5_000), exporters=[recorder])
    stats = recorder.stats()
    assert stats["max_bytes"] <= 64 * 1024
    assert 0 < stats["records"] < stats["written"]
    assert stats["dropped"] == stats["written"] - stats["records"]
    events = recorder.events()
    assert events[-1].kind in ("resolved", "callback_scheduled")


def _thp_mode() -> str | None:
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return None
    return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else None


def _huge_pages_tried() -> int:
    """Huge pages this process holds (kB) plus the kernel's fallbacks so far:
    what grows when a region that asked for huge pages is first written."""
    held = 0
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            held = int(line.split()[1])
    vmstat = dict(line.split() for line in Path("/proc/vmstat").read_text().splitlines())
    return held + 2048 * int(vmstat.get("thp_fault_fallback", 0))


@pytest.mark.skipif(
    tracedfuture.IMPLEMENTATION != "c" or _thp_mode() not in ("madvise", "always"),
    reason="the compiled core on Linux with transparent huge pages given on request",
)
def test_a_large_ring_is_backed_by_huge_pages_where_the_kernel_gives_them_on_request() -> None:
    # 16 MiB of ring, filled: its first records would take 4,096 page faults of
    # 4 KiB pages; the ring asks for 2 MiB pages (the kernel may fall back).
    recorder = FlightRecorder(max_bytes=16 << 20)
    before = _huge_pages_tried()
    tracedfuture.run(lifecycle(60_000), exporters=[recorder])
    assert recorder.stats()["dropped"] > 0, "the ring was filled"
    assert _huge_pages_tried() - before >= 2048


def _resident_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _prefault_threads() -> int:
    tasks = Path("/proc/self/task")
    return sum(1 for t in tasks.iterdir() if (t / "comm").read_text().strip() == "tracedfuture-pf")


def _until(check: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s")
        time.sleep(0.01)


def _kernel() -> tuple[int, ...]:
    return tuple(int(part) for part in platform.release().split("-")[0].split(".")[:2] if part.isdigit())


prefaulting = pytest.mark.skipif(
    tracedfuture.IMPLEMENTATION != "c" or not sys.platform.startswith("linux") or _kernel() < (5, 14),
    reason="the compiled core on Linux 5.14+ (MADV_POPULATE_WRITE)",
)


@prefaulting
def test_a_flight_rings_pages_are_backed_ahead_of_its_writer_by_a_thread_of_its_own() -> None:
    seen: dict[str, float] = {}

    async def program() -> None:
        await lifecycle(1)  # the ring exists
        _until(lambda: _prefault_threads() == 1, "no tracedfuture-pf thread")
        _until(lambda: _resident_mib() - seen["before"] >= 7.5, "the first 8 MiB were not backed")
        time.sleep(0.2)  # the loop blocked: the writer does not move, nor does the window
        seen["ahead"] = _resident_mib() - seen["before"]
        await lifecycle(100_000)  # past the window: its pages were backed ahead of the records
        seen["written"] = recorder.stats()["written"]
        _until(lambda: _resident_mib() - seen["before"] >= seen["ahead"] + 8, "the window did not move")
        assert _prefault_threads() == 1, "it goes on until the whole ring is backed"

    recorder = FlightRecorder()
    tracedfuture._core.stop_prefaulting()  # the threads of earlier rings, whose writers are idle
    gc.collect()
    seen["before"] = _resident_mib()
    tracedfuture.run(program(), exporters=[recorder])
    assert seen["ahead"] < 24, "only a window ahead of the writer, not the whole 64 MiB ring"
    assert seen["written"] >= 300_000
    assert recorder.stats()["dropped"] == 0
    events = recorder.events()
    assert sum(1 for e in events if e.kind == "resolved" and not e.is_task) == 100_001, "every record intact"


@prefaulting
def test_a_rings_prefault_thread_is_joined_by_its_dealloc_and_before_a_fork_then_started_again() -> None:
    tracedfuture._core.stop_prefaulting()  # the threads of earlier rings, whose writers are idle
    ring = tracedfuture._core.Ring(16 << 20, streaming=False)
    _until(lambda: _prefault_threads() == 1, "no tracedfuture-pf thread")
    del ring
    assert _prefault_threads() == 0
    ring = tracedfuture._core.Ring(16 << 20, streaming=False)
    _until(lambda: _prefault_threads() == 1, "no tracedfuture-pf thread")
    tracedfuture._core.stop_prefaulting()
    assert _prefault_threads() == 0
    del ring
    small = tracedfuture._core.Ring(1 << 20, streaming=False)
    streaming = tracedfuture._core.Ring(64 << 20, streaming=True)
    time.sleep(0.05)
    assert _prefault_threads() == 0, "small and streaming rings are backed as records reach them"
    del small, streaming

    async def program() -> None:
        await lifecycle(1)  # the ring exists
        _until(lambda: _prefault_threads() == 1, "no tracedfuture-pf thread")
        tracedfuture._core.stop_prefaulting()  # as before a fork()
        assert _prefault_threads() == 0
        await lifecycle(30_000)  # past the writer's next step (2 MiB)
        assert _prefault_threads() == 1, "the writer started it again"

    tracedfuture.run(program(), exporters=[FlightRecorder()])


def test_nothing_is_converted_while_the_program_runs() -> None:
    recorder = FlightRecorder()
    factory = tracedfuture.loop_factory(exporters=[recorder])
    inst = factory.installation  # type: ignore[attr-defined]
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(lifecycle(100))
    assert inst.stats()["events_delivered"] == 0
    assert recorder.stats()["written"] >= 100 * 3
    inst.uninstall()
    assert len(recorder.events()) >= 100 * 4  # read after uninstall: the ring is still there


def test_max_events_keeps_the_last_events_read() -> None:
    recorder = FlightRecorder(max_events=10)
    tracedfuture.run(lifecycle(20), exporters=[recorder])
    events = recorder.events()
    assert len(events) == 10
    assert events[-1].kind in ("resolved", "callback_scheduled")


def test_a_future_whose_beginning_was_overwritten_reads_as_incomplete_never_pending() -> None:
    recorder = FlightRecorder(max_bytes=64 * 1024)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        early = loop.create_future()
        await lifecycle(5_000)  # pushes early's created out of the ring
        early.set_result(None)

    tracedfuture.run(main(), exporters=[recorder])
    events = recorder.events()
    firsts: dict[int, str] = {}
    for event in events:
        firsts.setdefault(event.future_id, event.kind)
    assert set(firsts.values()) <= {"created", "incomplete"}
    assert "incomplete" in firsts.values()
    incomplete = [e for e in events if e.kind == "incomplete"]
    assert all(e.detail == "history starts before the recorded window" for e in incomplete)


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "100"])
def test_a_bad_max_events_names_the_value(bad: Any) -> None:
    with pytest.raises(
        ValueError, match=f"max_events must be a positive number of events, such as 100_000, or None; not {bad!r}"
    ):
        FlightRecorder(max_events=bad)


def test_a_max_bytes_below_the_minimum_names_the_value() -> None:
    with pytest.raises(ValueError, match=r"max_bytes must be a number of bytes of at least 65536 \(or None\), not 10"):
        FlightRecorder(max_bytes=10)


def test_dump_writes_a_trace_file_that_trace_read_reads(tmp_path: Path) -> None:
    recorder = FlightRecorder()
    tracedfuture.run(lifecycle(5), exporters=[recorder])
    path = recorder.dump(tmp_path / "flight.jsonl")
    trace = tracedfuture.trace.read(path)
    assert trace.events == recorder.events()
    assert trace.header["flight"] == "on demand"
    assert trace.stats["dropped"] == 0
    assert trace.stats["events_written"] == len(trace.events)
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_a_dump_writes_the_lines_of_its_events_byte_for_byte(tmp_path: Path) -> None:
    """A dump writes the held records as lines (a trace file's writer, no
    ``Event`` in between): exactly what its events would write, for every kind
    of history, and for futures whose beginning the window lost."""
    recorder = FlightRecorder(max_bytes=256 * 1024)

    async def child(i: int) -> int:
        await asyncio.sleep(0)
        if i % 3 == 0:
            raise ValueError(f"bad {i}")
        return i

    async def main() -> None:
        loop = asyncio.get_running_loop()
        early = loop.create_future()
        early.add_done_callback(lambda _: None)
        for round in range(40):
            tasks = [asyncio.create_task(child(i), name=f"child-{round}-{i}") for i in range(12)]
            tasks[1].set_name("renamed")
            tasks[2].cancel("stop")
            await asyncio.gather(*tasks, return_exceptions=True)
            fut = loop.create_future()
            fut.add_done_callback(print)
            fut.remove_done_callback(print)
            loop.call_soon(fut.set_exception, KeyError("k"))
            try:
                await fut
            except KeyError:
                pass
            await lifecycle(20)
        early.set_result(None)

    tracedfuture.run(main(), exporters=[recorder])
    gc.collect()  # nothing traced dies between the two reads of the ring
    events = recorder.events()
    path = recorder.dump(tmp_path / "flight.jsonl")
    lines = Path(path).read_bytes().decode().splitlines()[1:-1]  # between header and stats
    assert "incomplete" in {e.kind for e in events}  # the window lost beginnings
    assert {"failed", "cancelled", "renamed", "callback_removed"} <= {e.kind for e in events}
    expected = [
        json.dumps(tracedfuture.trace.event_to_json(e), separators=(",", ":"), ensure_ascii=False) for e in events
    ]
    assert lines == expected
    assert json.loads(Path(path).read_text().splitlines()[-1])["stats"]["events_written"] == len(lines)


def test_the_dumps_stats_line_counts_the_overwritten_records(tmp_path: Path) -> None:
    recorder = FlightRecorder(max_bytes=64 * 1024)
    tracedfuture.run(lifecycle(5_000), exporters=[recorder])
    trace = tracedfuture.trace.read(recorder.dump(tmp_path / "flight.jsonl"))
    assert trace.stats["dropped"] == trace.stats["written"] - trace.stats["records"] > 0


def test_dump_replaces_the_file_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    recorder = FlightRecorder()
    tracedfuture.run(lifecycle(2), exporters=[recorder])
    target = tmp_path / "flight.jsonl"
    target.write_text("an older dump\n")
    recorder.dump(target)
    assert tracedfuture.trace.read(target).events
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flight.jsonl"]


def test_an_unhandled_exception_dumps_and_the_previous_handler_still_runs(tmp_path: Path) -> None:
    recorder = FlightRecorder()
    seen: list[dict[str, Any]] = []
    path = tmp_path / "flight.jsonl"

    def boom() -> None:
        raise RuntimeError("nobody handles this")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: seen.append(context))
        recorder.hook_loop(loop, path)
        loop.call_soon(boom)
        await asyncio.sleep(0.01)

    tracedfuture.run(main(), exporters=[recorder])
    wait_for_file(path)
    assert [str(c["exception"]) for c in seen] == ["nobody handles this"]
    assert tracedfuture.trace.read(path).header["flight"].startswith("exception handler: Exception in callback")


def test_without_a_previous_handler_the_default_handler_still_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = FlightRecorder()
    path = tmp_path / "flight.jsonl"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        recorder.hook_loop(loop, path)
        loop.call_soon(int, "not a number")
        await asyncio.sleep(0.01)

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        tracedfuture.run(main(), exporters=[recorder])
    wait_for_file(path)
    assert any("Exception in callback int" in r.getMessage() for r in caplog.records if r.name == "asyncio")


def test_a_failing_dump_is_logged_and_never_reaches_the_loop(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recorder = FlightRecorder()
    seen: list[str] = []

    async def main(hook: bool) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: seen.append(context["message"]))
        if hook:
            recorder.hook_loop(loop, tmp_path / "no such directory" / "flight.jsonl")
        loop.call_soon(int, "x")
        await asyncio.sleep(0.01)

    asyncio.run(main(hook=False))
    untraced = seen[:]  # "Exception in callback int('x')"; 3.13 leaves the arguments out
    seen.clear()
    with caplog.at_level(logging.ERROR, logger="tracedfuture"):
        tracedfuture.run(main(hook=True), exporters=[recorder])
        deadline = time.monotonic() + 5
        while not any("could not dump" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.01)
    assert seen == untraced == [untraced[0]]
    assert untraced[0].startswith("Exception in callback int(")
    assert any("could not dump" in r.getMessage() for r in caplog.records)


def test_unhook_loop_restores_the_previous_exception_handler() -> None:
    loop = asyncio.new_event_loop()
    try:

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            pass

        loop.set_exception_handler(handler)
        recorder = FlightRecorder()
        recorder.hook_loop(loop, "unused.jsonl")
        assert loop.get_exception_handler() is not handler
        recorder.unhook_loop(loop)
        assert loop.get_exception_handler() is handler
    finally:
        loop.close()


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="SIGUSR1 is POSIX")
def test_enable_dumps_on_the_signal_and_calls_the_previous_python_handler(tmp_path: Path, no_flight: None) -> None:
    received: list[int] = []

    def previous(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    old = signal.signal(signal.SIGUSR1, previous)
    try:
        path = tmp_path / "flight.jsonl"
        tracedfuture.flight.enable(path=path, signal=signal.SIGUSR1)
        asyncio.run(lifecycle(3))
        os.kill(os.getpid(), signal.SIGUSR1)
        wait_for_file(path)
        trace = tracedfuture.trace.read(path)
        assert trace.header["flight"] == "signal SIGUSR1"
        assert trace.events
        assert received == [signal.SIGUSR1]
    finally:
        tracedfuture.flight.disable()
        signal.signal(signal.SIGUSR1, old)


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="SIGUSR1 is POSIX")
def test_disable_restores_the_previous_signal_handler(tmp_path: Path, no_flight: None) -> None:
    before = signal.getsignal(signal.SIGUSR1)
    tracedfuture.flight.enable(path=tmp_path / "flight.jsonl", signal=signal.SIGUSR1)
    assert signal.getsignal(signal.SIGUSR1) is not before
    tracedfuture.flight.disable()
    assert signal.getsignal(signal.SIGUSR1) is before


def test_enable_inside_a_loop_hooks_its_exception_handler(tmp_path: Path, no_flight: None) -> None:
    path = tmp_path / "flight.jsonl"

    async def main() -> None:
        tracedfuture.flight.enable(path=path)
        asyncio.get_running_loop().call_soon(int, "x")
        await asyncio.sleep(0.01)

    asyncio.run(main())
    wait_for_file(path)
    assert tracedfuture.trace.read(path).header["flight"].startswith("exception handler:")


def test_hook_loop_inside_a_later_loop_dumps_its_unhandled_exceptions(tmp_path: Path, no_flight: None) -> None:
    path = tmp_path / "flight.jsonl"
    tracedfuture.flight.enable(path=path)

    async def main() -> None:
        tracedfuture.flight.hook_loop()
        asyncio.get_running_loop().call_soon(int, "x")
        await asyncio.sleep(0.01)

    asyncio.run(main())
    wait_for_file(path)
    # 3.13 leaves a callback's arguments out of its handle's repr when not in debug mode
    callback = "int('x')" if sys.version_info < (3, 13) else "int()"
    assert tracedfuture.trace.read(path).header["flight"] == f"exception handler: Exception in callback {callback}"


def test_dump_without_enable_says_how_to_enable() -> None:
    with pytest.raises(RuntimeError, match=r"call tracedfuture\.flight\.enable\(\) first"):
        tracedfuture.flight.dump("unused.jsonl")


def test_enable_twice_says_to_disable_first(no_flight: None) -> None:
    tracedfuture.flight.enable()
    with pytest.raises(RuntimeError, match=r"already enabled: call tracedfuture\.flight\.disable\(\) first"):
        tracedfuture.flight.enable()


def test_module_dump_writes_the_enabled_recorder(tmp_path: Path, no_flight: None) -> None:
    recorder = tracedfuture.flight.enable(max_events=1_000)
    asyncio.run(lifecycle(3))
    path = tracedfuture.flight.dump(tmp_path / "now.jsonl")
    assert tracedfuture.trace.read(path).events == recorder.events()


def test_enable_at_exit_dumps_when_the_interpreter_exits(tmp_path: Path) -> None:
    path = tmp_path / "exit.jsonl"
    program = textwrap.dedent(
        f"""
        import asyncio, tracedfuture.flight

        async def main():
            await asyncio.sleep(0)

        tracedfuture.flight.enable(path={str(path)!r}, at_exit=True)
        asyncio.run(main())
        """
    )
    subprocess.run([sys.executable, "-c", program], check=True, timeout=60)
    trace = tracedfuture.trace.read(path)
    assert trace.header["flight"] == "at exit"
    assert "created" in [e.kind for e in trace.events]
