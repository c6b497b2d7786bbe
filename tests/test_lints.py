"""tracedfuture.lints: each lint reproduced by a real program."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
import math
import os
import socket
import threading
import time
from typing import Any

import pytest

import tracedfuture
import tracedfuture.lints
from tracedfuture import Event
from tracedfuture.exporters import MemoryExporter
from tracedfuture.lints import describe, findings, report

from .conftest import require

STALL = 0.05


def fid(fut: asyncio.Future[Any]) -> int:
    return int(fut._tf_id)  # type: ignore[attr-defined]


def only(events: list[Event]) -> Event:
    assert len(events) == 1, events
    return events[0]


# --- stalled ---------------------------------------------------------------------------


async def wait_for_reply(reply: asyncio.Future[None]) -> None:
    await reply


async def worker(reply: asyncio.Future[None]) -> None:
    await wait_for_reply(reply)


names: dict[int, str] = {}


async def stalled_program(pending_for: float, ids: dict[str, int]) -> None:
    """main awaits worker, which awaits a reply that comes after ``pending_for``."""
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[None] = loop.create_future()
    task = asyncio.create_task(worker(reply), name="worker")
    main = asyncio.current_task()
    assert main is not None
    ids.update(main=fid(main), worker=fid(task), reply=fid(reply))
    names[fid(main)] = main.get_name()
    loop.call_later(pending_for, reply.set_result, None)
    with tracedfuture.lints.enable(stall=STALL, blocked=None, orphan=None):
        await task


def test_a_future_awaited_past_the_threshold_is_reported_stalled_with_its_chain(memory: MemoryExporter) -> None:
    ids: dict[str, int] = {}
    asyncio.run(stalled_program(0.08, ids))
    event = only(memory.of_kind("stalled"))
    assert event.future_id == ids["reply"]
    assert event.chain == (ids["main"], ids["worker"], ids["reply"])
    assert event.task_id == ids["worker"]
    assert event.age_ns is not None
    assert event.age_ns >= STALL * 1e9
    assert event.site is not None
    assert event.site.filename == __file__
    assert event.site.function == "stalled_program"
    assert event.detail is not None
    main = f"(T) #{ids['main']} {names[ids['main']]}"
    assert event.detail.startswith(f"{main} -> (T) #{ids['worker']} worker -> (F) #{ids['reply']} pending 0.")
    assert event.detail.endswith(f", created at {os.path.relpath(__file__)}:{event.site.lineno} in stalled_program")


def test_a_stall_is_reported_again_each_time_its_age_doubles(memory: MemoryExporter) -> None:
    ids: dict[str, int] = {}
    asyncio.run(stalled_program(0.45, ids))
    ages = [e.age_ns or 0 for e in memory.of_kind("stalled")]
    # Due at 0.05, 0.1, 0.2 and 0.4 s: once per doubling, never twice for one.
    doublings = [int(math.log2(age / (STALL * 1e9))) for age in ages]
    assert doublings[0] == 0
    assert doublings == sorted(set(doublings))
    # A check delayed by a busy machine may skip a doubling, never add one.
    assert 3 <= len(doublings) <= 4


def test_a_future_resolved_before_the_threshold_is_not_reported(memory: MemoryExporter) -> None:
    ids: dict[str, int] = {}
    asyncio.run(stalled_program(0.0, ids))
    time.sleep(STALL)
    assert memory.of_kind("stalled") == []


# --- blocked loop ----------------------------------------------------------------------


def hog(seconds: float) -> None:
    time.sleep(seconds)  # the line the stack must show


async def hogging_task() -> None:
    hog(0.3)


async def blocked_program(block_in_callback: bool = False) -> int:
    """Blocks the loop for 0.3 s, in a task or in a plain callback; returns the task's id."""
    loop = asyncio.get_running_loop()
    with tracedfuture.lints.enable(blocked=0.1, stall=None, orphan=None):
        await asyncio.sleep(0.05)  # let the heartbeat start
        if block_in_callback:
            loop.call_soon(hog, 0.3)
            await asyncio.sleep(0.01)
            return 0
        task = asyncio.create_task(hogging_task(), name="hog")
        await task
        return fid(task)


def test_a_blocked_loop_is_reported_with_the_loop_threads_stack_and_the_running_task(
    memory: MemoryExporter,
) -> None:
    task_id = asyncio.run(blocked_program())
    event = only(memory.of_kind("blocked_loop"))
    assert event.future_id == 0
    assert event.task_id == task_id
    assert event.age_ns is not None
    assert event.age_ns >= 0.1e9
    assert event.detail is not None
    assert event.detail.startswith(f"running: task #{task_id} hog, in hogging_task ({__file__}:")
    assert "loop thread stack (most recent call last):" in event.detail
    assert "in hog\n    time.sleep(seconds)  # the line the stack must show" in event.detail


def test_a_block_right_after_enable_is_reported(memory: MemoryExporter) -> None:
    async def main() -> None:
        with tracedfuture.lints.enable(blocked=0.1, stall=None, orphan=None):
            hog(0.3)  # before the heartbeat ever ran

    asyncio.run(main())
    event = only(memory.of_kind("blocked_loop"))
    assert event.detail is not None
    assert "time.sleep(seconds)" in event.detail


def test_a_loop_blocked_in_a_plain_callback_names_the_callback(memory: MemoryExporter) -> None:
    asyncio.run(blocked_program(block_in_callback=True))
    event = only(memory.of_kind("blocked_loop"))
    assert event.task_id is None
    assert event.detail is not None
    assert event.detail.startswith(f"running: a callback, in hog ({__file__}:")


def test_an_idle_loop_is_not_blocked(memory: MemoryExporter) -> None:
    async def main() -> None:
        with tracedfuture.lints.enable(blocked=0.05, stall=None, orphan=None):
            await asyncio.sleep(0.3)

    asyncio.run(main())
    assert memory.of_kind("blocked_loop") == []


def test_a_stopped_loop_is_not_blocked(memory: MemoryExporter) -> None:
    loop = asyncio.new_event_loop()
    try:
        lints = tracedfuture.lints.enable(loop, blocked=0.05, stall=None, orphan=None)
        loop.run_until_complete(asyncio.sleep(0.01))
        time.sleep(0.3)  # between two run_until_complete: nothing runs, nothing is late
        loop.run_until_complete(asyncio.sleep(0.01))
        lints.stop()
    finally:
        loop.close()
    assert memory.of_kind("blocked_loop") == []


def test_a_blocked_uvloop_loop_is_reported_too() -> None:
    require(importlib.util.find_spec("uvloop") is not None, "uvloop is not installed")
    import uvloop

    memory = MemoryExporter()
    factory = tracedfuture.loop_factory(base=uvloop.new_event_loop, exporters=[memory])
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            task_id = runner.run(blocked_program())
    finally:
        factory.installation.uninstall()  # type: ignore[attr-defined]
    event = only(memory.of_kind("blocked_loop"))
    assert event.task_id == task_id
    assert event.detail is not None
    assert "time.sleep(seconds)" in event.detail


# --- orphan ----------------------------------------------------------------------------


async def orphan_program(add_callback: bool) -> int:
    fut = asyncio.get_running_loop().create_future()
    if add_callback:
        fut.add_done_callback(print)
    with tracedfuture.lints.enable(orphan=0.05, stall=None, blocked=None):
        await asyncio.sleep(0.2)
    fut.cancel()
    return fid(fut)


def test_a_future_nobody_awaits_or_watches_is_reported_orphan_once(memory: MemoryExporter) -> None:
    fut_id = asyncio.run(orphan_program(add_callback=False))
    event = only([e for e in memory.of_kind("orphan") if e.future_id == fut_id])
    assert event.site is not None
    assert event.site.function == "orphan_program"
    assert event.age_ns is not None
    assert event.age_ns >= 0.05e9
    assert event.detail is not None
    assert event.detail.startswith(f"(F) #{fut_id} pending ")
    assert "with no callback and nobody awaiting it, created at " in event.detail


def test_a_future_with_a_done_callback_is_not_an_orphan(memory: MemoryExporter) -> None:
    fut_id = asyncio.run(orphan_program(add_callback=True))
    assert [e for e in memory.of_kind("orphan") if e.future_id == fut_id] == []


# --- abandoned and unretrieved (recorded by the core, described here) --------------------


def test_an_abandoned_future_is_described_with_its_site_and_last_awaiter(memory: MemoryExporter) -> None:
    ids: dict[str, int] = {}

    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(wait_for_reply(fut))
        await asyncio.sleep(0)
        ids.update(fut=fid(fut), task=fid(task))
        # Nothing but each other holds them now: a cycle the collector frees.
        del fut, task
        gc.collect()

    asyncio.run(main())
    event = only([e for e in memory.of_kind("abandoned") if e.future_id == ids["fut"]])
    text = describe(event)
    assert text.startswith(f"abandoned: (F) #{ids['fut']} collected while pending after ")
    assert f", created at {os.path.relpath(__file__)}:" in text
    assert text.endswith(f", last awaited by #{ids['task']}")


def test_an_unretrieved_exception_is_described_with_its_type_and_site(memory: MemoryExporter) -> None:
    ids: dict[str, int] = {}

    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        fut.set_exception(ValueError("lost"))
        ids["fut"] = fid(fut)
        del fut

    asyncio.run(main())
    gc.collect()
    event = only([e for e in memory.of_kind("unretrieved") if e.future_id == ids["fut"]])
    text = describe(event)
    assert text.startswith(f"unretrieved: (F) #{ids['fut']} was collected ")
    assert "with ValueError nobody retrieved" in text
    assert f"created at {os.path.relpath(__file__)}:" in text


def test_findings_and_report_keep_only_the_problems() -> None:
    events = [Event("created", 1, 0), Event("orphan", 1, 1, detail="(F) #1 pending 1.00s"), Event("resolved", 1, 2)]
    assert [e.kind for e in findings(events)] == ["orphan"]
    assert report(events) == "orphan: (F) #1 pending 1.00s"


# --- the API -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["stall", "blocked", "orphan", "interval"])
@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "5", True])
def test_a_bad_threshold_names_the_option_and_the_value(name: str, bad: Any) -> None:
    with pytest.raises(ValueError) as info:
        tracedfuture.lints.enable(**{"stall": None, "blocked": None, "orphan": None, name: bad})
    assert str(info.value) == (
        f"{name} must be a positive number of seconds, such as 0.5, or None to turn the lint off; not {bad!r}"
    )


def test_the_blocked_loop_lint_outside_a_loop_says_how_to_give_it_one() -> None:
    with pytest.raises(RuntimeError, match=r"call enable\(\) inside the running loop, pass enable\(loop=...\)"):
        tracedfuture.lints.enable(stall=1.0)


def test_stop_ends_the_background_thread() -> None:
    lints = tracedfuture.lints.enable(blocked=None)
    started = lints.running
    lints.stop()
    assert (started, lints.running) == (True, False)
    assert "tracedfuture-lints" not in [t.name for t in threading.enumerate() if t.is_alive()]


class BrokenLoop(asyncio.SelectorEventLoop):
    """A loop whose is_closed() fails once the lints run: a check that raises."""

    lints_started: bool = False

    def is_closed(self) -> bool:
        if self.lints_started and threading.current_thread().name == "tracedfuture-lints":
            raise RuntimeError("is_closed is broken")
        return super().is_closed()


def test_a_failing_check_is_logged_once_and_the_program_runs_on(caplog: pytest.LogCaptureFixture) -> None:
    loop = BrokenLoop()
    try:
        with caplog.at_level(logging.ERROR, logger="tracedfuture"):
            lints = tracedfuture.lints.enable(loop, blocked=0.02, stall=None, orphan=None)
            loop.lints_started = True
            assert loop.run_until_complete(asyncio.sleep(0.2, "still runs")) == "still runs"
            lints.stop()
    finally:
        loop.close()
    failures = [r for r in caplog.records if "lint blocked loop watchdog failed" in r.getMessage()]
    assert len(failures) == 1


async def _transfer(mine: asyncio.Lock, theirs: asyncio.Lock) -> None:
    async with mine:
        await asyncio.sleep(0.01)
        async with theirs:
            pass


async def lock_deadlock() -> None:
    one, two = asyncio.Lock(), asyncio.Lock()
    with tracedfuture.lints.enable(stall=STALL, blocked=None, orphan=None):
        tasks = [
            asyncio.create_task(_transfer(one, two), name="worker-a"),
            asyncio.create_task(_transfer(two, one), name="worker-b"),
        ]
        await asyncio.sleep(STALL * 4)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_a_stall_on_a_lock_in_a_deadlock_says_the_deadlock(memory: MemoryExporter) -> None:
    asyncio.run(lock_deadlock())
    stalls = [e for e in memory.of_kind("stalled") if e.name and e.name.startswith("Lock#")]
    assert stalls
    for event in stalls:
        assert event.detail is not None
        first, paragraph = event.detail.splitlines()
        assert first.startswith("(T) #")
        assert paragraph.startswith("deadlock: worker-")
        assert paragraph.count("held by") == 1
        assert "tests/test_lints.py" in paragraph


# --- servers' own waits are no stall ---------------------------------------------------


async def _aiohttp_server(idle: float) -> None:
    from aiohttp import ClientSession, web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/") as response:
            await response.text()
        await asyncio.sleep(idle)  # the connection kept alive, idle
    await runner.cleanup()


async def _hypercorn_server(idle: float) -> None:
    import httpx
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hi"})

    with socket.socket() as probe:  # a free port: hypercorn says its port only in its log
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.graceful_timeout = 0.2
    config.accesslog = config.errorlog = None
    stop = asyncio.Event()
    serving = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                await client.get(f"http://127.0.0.1:{port}/")
                break
            except httpx.ConnectError:
                await asyncio.sleep(0.01)
        await asyncio.sleep(idle)
    stop.set()
    await serving


async def _grpc_server(idle: float) -> None:
    import grpc

    async def echo(request: bytes, context: Any) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler("test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    waiting = asyncio.create_task(server.wait_for_termination())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        assert await channel.unary_unary("/test.Echo/Echo")(b"hi") == b"hi"
        await asyncio.sleep(idle)
    await server.stop(0.1)
    await waiting


SERVERS = {"aiohttp": _aiohttp_server, "hypercorn": _hypercorn_server, "grpc": _grpc_server}


@pytest.mark.parametrize("framework", sorted(SERVERS))
def test_a_servers_own_waits_are_no_stall(memory: MemoryExporter, framework: str) -> None:
    module = {"grpc": "grpc.aio"}.get(framework, framework)
    if framework == "aiohttp":
        require(importlib.util.find_spec(module) is not None, f"{framework} is not installed")
    elif importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} is not installed")
    if framework == "hypercorn":
        pytest.importorskip("httpx")

    async def main() -> None:
        with tracedfuture.lints.enable(stall=STALL, blocked=None, orphan=None) as lints:
            await SERVERS[framework](idle=8 * STALL)
        assert lints.excused["stalled"] > 0  # there were waits, and they were recognised

    asyncio.run(main())
    # the test's own sleep while the connection idles is a stall; nothing else is
    stalls = [e for e in memory if e.kind == "stalled" and (e.site is None or e.site.filename != __file__)]
    assert stalls == [], [e.detail for e in stalls]


def test_a_known_wait_never_excuses_a_task() -> None:
    from tracedfuture.graph import PendingFuture
    from tracedfuture.lints import _Excuses
    from tracedfuture.trace import Site

    site = Site("/venv/lib/python3.12/site-packages/aiohttp/web_protocol.py", 631, "RequestHandler.start")
    excuses = _Excuses((), known_waits=True)
    waiter = PendingFuture(2, False, None, site, 10, "PENDING", awaited_by=(1,))
    handler = PendingFuture(3, True, "Task-3", site, 10, "PENDING", awaited_by=(1,))
    assert excuses.excused(waiter, None, {})
    assert not excuses.excused(handler, None, {})
