"""``Waker`` and ``write`` of the seam, on both implementations, and the GIL
handed to tracing's threads by the compiled core (``_core/_gil.h``).

The reference's are ``threading.Event`` and ``os.write``: the compiled ones
must behave as they do. What the compiled ones add (the program's thread hands
the GIL over at its next traced future instead of a switch interval later) is
a matter of when threads run, never of what they do: it is checked here by its
counters, and measured in ``benchmarks/`` (``run -o`` on the 100k program).
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from typing import Any

import pytest

from tests.test_seam import Traced


def test_a_waker_is_an_event(impl: Any) -> None:
    waker = impl.Waker()
    assert waker.is_set() is False
    assert waker.wait(0) is False
    started = time.monotonic()
    assert waker.wait(0.05) is False  # times out, False
    assert time.monotonic() - started >= 0.04
    waker.set()
    assert waker.is_set() is True
    assert waker.wait() is True
    assert waker.wait(10) is True  # set: at once
    waker.clear()
    assert waker.is_set() is False
    assert waker.wait(-1) is False  # a negative timeout is no wait


def test_a_waker_wakes_a_thread_that_waits(impl: Any) -> None:
    waker, woken = impl.Waker(), []
    thread = threading.Thread(target=lambda: woken.append(waker.wait(30)))
    thread.start()
    time.sleep(0.05)
    waker.set()
    thread.join(10)
    assert woken == [True]


def test_write_is_os_write(impl: Any, tmp_path: Any) -> None:
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        assert impl.write(fd, b"line\n") == 5
        assert impl.write(fd, memoryview(b"abcdef")[2:]) == 4
        assert impl.write(fd, b"") == 0
    finally:
        os.close(fd)
    assert (tmp_path / "out").read_bytes() == b"line\ncdef"
    with pytest.raises(OSError) as caught:
        impl.write(fd, b"closed")
    assert caught.value.errno == errno.EBADF
    with pytest.raises(TypeError):
        impl.write(1, "not bytes")


def test_a_busy_program_hands_the_gil_to_a_thread_that_asks(impl: Any) -> None:
    """The program's thread makes traced futures without pause (its loop
    calls select() between steps: CPython's waiter would wait switch intervals
    for the GIL, or longer); a thread that waits on a Waker asks for the GIL
    back, and is handed it at a traced future."""
    if impl.IMPLEMENTATION == "python":
        pytest.skip("the reference waits as threading.Event does: CPython hands the GIL over")
    before = impl._gil_stats()
    waker, turns, stop = impl.Waker(), [0], threading.Event()

    def asker() -> None:
        while not stop.is_set():
            waker.wait(0.001)  # released, then asked for back
            waker.clear()
            turns[0] += 1

    thread = threading.Thread(target=asker)
    thread.start()
    traced = Traced(impl)
    try:

        async def busy() -> None:
            loop = asyncio.get_running_loop()
            deadline = time.monotonic() + 30
            while impl._gil_stats()["handed"] == before["handed"] and time.monotonic() < deadline:
                for _ in range(100):
                    fut = loop.create_future()
                    fut.set_result(None)
                    await fut
                await asyncio.sleep(0)

        traced.run(busy())
    finally:
        stop.set()
        thread.join(10)
        traced.close()
    assert impl._gil_stats()["handed"] > before["handed"]
    assert turns[0] > 0
