"""Settings are per installation: what one asks for costs and shows only on its loops."""

from __future__ import annotations

import asyncio
import threading
import time

import tracedfuture
from tracedfuture._core import _events as ev
from tracedfuture.exporters import MemoryExporter


class CountsRepr:
    calls = 0

    def __repr__(self) -> str:
        type(self).calls += 1
        return "<CountsRepr>"


async def _resolve(value: object) -> object:
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return await fut


def test_capture_values_of_one_installation_never_reprs_results_on_another_loop() -> None:
    capturing, plain = MemoryExporter(), MemoryExporter()
    loop_a, loop_b = asyncio.new_event_loop(), asyncio.new_event_loop()
    a = tracedfuture.install(loop_a, exporters=[capturing], capture_values=True)
    b = tracedfuture.install(loop_b, exporters=[plain])
    try:
        CountsRepr.calls = 0
        loop_b.run_until_complete(_resolve(CountsRepr()))
        assert CountsRepr.calls == 0
        loop_a.run_until_complete(_resolve(CountsRepr()))
        assert CountsRepr.calls >= 1
        assert any(e.value == "<CountsRepr>" for e in capturing.of_kind(ev.RESOLVED))
        assert all(e.value is None for e in plain.of_kind(ev.RESOLVED))
    finally:
        a.uninstall()
        b.uninstall()
        loop_a.close()
        loop_b.close()


def test_two_installations_on_one_loop_see_only_what_each_asked_for() -> None:
    capturing, plain = MemoryExporter(), MemoryExporter()
    loop = asyncio.new_event_loop()
    a = tracedfuture.install(loop, exporters=[capturing], capture_values=True)
    b = tracedfuture.install(loop, exporters=[plain])
    try:
        loop.run_until_complete(_resolve("secret"))
        assert "'secret'" in [e.value for e in capturing.of_kind(ev.RESOLVED)]
        assert [e.value for e in plain.of_kind(ev.RESOLVED)] == [None] * len(plain.of_kind(ev.RESOLVED))
    finally:
        a.uninstall()
        b.uninstall()
        loop.close()


def test_redact_applies_to_cancel_messages() -> None:
    memory = MemoryExporter()

    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        fut.cancel("token=hunter2")
        try:
            await fut
        except asyncio.CancelledError:
            pass

    tracedfuture.run(main(), exporters=[memory], redact=lambda text: text.replace("hunter2", "***"))
    msgs = [e.msg for e in memory.of_kind(ev.CANCELLED)]
    assert "token=***" in msgs
    assert not any("hunter2" in (m or "") for m in msgs)


def test_a_slow_flush_interval_of_one_installation_does_not_slow_another() -> None:
    slow, fast = MemoryExporter(), MemoryExporter()
    done = threading.Event()

    def run(exporter: MemoryExporter, interval: float) -> None:
        async def main() -> None:
            await _resolve(1)
            await asyncio.sleep(0.5)

        tracedfuture.run(main(), exporters=[exporter], flush_interval=interval)

    thread = threading.Thread(target=run, args=(slow, 30.0))
    thread.start()
    try:
        start = time.monotonic()
        loop = asyncio.new_event_loop()
        inst = tracedfuture.install(loop, exporters=[fast], flush_interval=0.05)
        try:
            loop.run_until_complete(_resolve(2))
            # Delivered by the drain thread on the fast installation's schedule,
            # without anyone flushing: not held back by the other's 30 s.
            # (Its private lists: reading it would flush.)
            while not (fast._events or fast._unread) and time.monotonic() - start < 5:
                time.sleep(0.01)
            assert fast._events or fast._unread
        finally:
            inst.uninstall()
            loop.close()
    finally:
        thread.join()
        done.set()
