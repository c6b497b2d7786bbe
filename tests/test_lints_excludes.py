"""The lints leave out what waits for ever on purpose, and what the user excludes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import tracedfuture
import tracedfuture.lints
from tracedfuture import TracedFuture
from tracedfuture.exporters import MemoryExporter

STALL = 0.05


async def _wait_for(reply: asyncio.Future[None]) -> None:
    await reply


async def stalled_for(pending_for: float, **lint_options: Any) -> tracedfuture.lints.Lints:
    """A task named poller-1 awaits a reply that comes after ``pending_for`` seconds."""
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[None] = loop.create_future()  # the reply that is late
    loop.call_later(pending_for, reply.set_result, None)
    with tracedfuture.lints.enable(stall=STALL, blocked=None, orphan=None, **lint_options) as lints:
        await asyncio.create_task(_wait_for(reply), name="poller-1")
    return lints


def test_without_excludes_the_late_reply_is_reported_at_each_doubling(memory: MemoryExporter) -> None:
    lints = asyncio.run(stalled_for(0.3))
    assert len(memory.of_kind("stalled")) >= 2
    assert lints.excused["stalled"] == 0


@pytest.mark.parametrize(
    "pattern",
    [
        "tests/test_lints_excludes.py:*",  # the end of the creation site's path
        f"{__file__}:* in stalled_for",  # the whole path, and the function
        "*= loop.create_future()  # the reply that is late",  # the creation line's code
        "poller-*",  # the name of the task awaiting it
    ],
)
def test_a_stall_exclude_pattern_leaves_the_future_out_for_good(memory: MemoryExporter, pattern: str) -> None:
    lints = asyncio.run(stalled_for(0.3, stall_exclude=(pattern,)))
    assert memory.of_kind("stalled") == []
    # The reply, seen at 0.05 s and counted once, not again at 0.1, 0.2...; and
    # poller-1 itself when a scan falls between the reply's result and its end
    # (a pending leaf then, as old as the reply, which every pattern but the
    # creation line's also matches): at most one more.
    assert lints.excused["stalled"] in (1, 2)


def test_a_pattern_that_matches_nothing_excludes_nothing(memory: MemoryExporter) -> None:
    lints = asyncio.run(stalled_for(0.15, stall_exclude=("other/file.py:*", "worker-*", "web.py:*")))
    assert memory.of_kind("stalled")
    assert lints.excused["stalled"] == 0


async def serves_for_ever(seconds: float) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    asyncio.get_running_loop().call_later(seconds, server.close)
    async with server:
        try:
            await server.serve_forever()
        except asyncio.CancelledError:
            pass  # server.close() ends serve_forever() so


async def waits_for_a_stop_event(seconds: float) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    await stop.wait()


@pytest.mark.parametrize("program", [serves_for_ever, waits_for_a_stop_event])
def test_a_wait_on_purpose_in_the_main_task_is_never_a_stall(memory: MemoryExporter, program: Any) -> None:
    async def main() -> tracedfuture.lints.Lints:
        with tracedfuture.lints.enable(stall=STALL, blocked=None, orphan=None) as lints:
            await program(0.3)
        return lints

    lints = asyncio.run(main())
    assert memory.of_kind("stalled") == []
    assert lints.excused["stalled"] == 1


@pytest.mark.parametrize("program", [serves_for_ever, waits_for_a_stop_event])
def test_known_waits_false_reports_them(memory: MemoryExporter, program: Any) -> None:
    async def main() -> None:
        with tracedfuture.lints.enable(stall=STALL, blocked=None, orphan=None, known_waits=False):
            await program(0.15)

    asyncio.run(main())
    assert memory.of_kind("stalled")


def test_an_event_awaited_by_a_task_that_is_not_a_root_task_is_still_a_stall(memory: MemoryExporter) -> None:
    async def main() -> None:
        with tracedfuture.lints.enable(stall=STALL, blocked=None, orphan=None):
            await asyncio.create_task(waits_for_a_stop_event(0.15), name="waiter")

    asyncio.run(main())
    [first, *_] = memory.of_kind("stalled")
    assert first.detail is not None
    assert "waiter" in first.detail


@pytest.mark.slow
def test_aiohttp_run_app_is_not_reported_stalled(tmp_path: Path) -> None:
    pytest.importorskip("aiohttp")
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, os, signal, sys
            from aiohttp import web
            import tracedfuture, tracedfuture.lints
            from tracedfuture.exporters import MemoryExporter

            memory = MemoryExporter()
            installation = tracedfuture.install(exporters=[memory])
            lints = tracedfuture.lints.enable(
                stall=0.05, blocked=None, orphan=None, known_waits=sys.argv[1] == "known"
            )

            async def stop_soon(app):
                asyncio.get_running_loop().call_later(0.5, os.kill, os.getpid(), signal.SIGTERM)

            app = web.Application()
            app.on_startup.append(stop_soon)
            web.run_app(app, host="127.0.0.1", port=0, print=None)
            lints.stop()
            installation.uninstall()
            print(len(memory.of_kind("stalled")), lints.excused["stalled"])
            """
        )
    )

    def run(mode: str) -> list[int]:
        done = subprocess.run(
            [sys.executable, str(script), mode], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        return [int(word) for word in done.stdout.split()]

    assert run("known") == [0, 1]  # run_app's asyncio.sleep(3600) loop, recognised
    reported, excused = run("all")
    assert reported > 0
    assert excused == 0


def test_an_orphan_exclude_leaves_the_future_out(memory: MemoryExporter) -> None:
    async def main() -> tracedfuture.lints.Lints:
        keep = [TracedFuture(label="standby-1"), TracedFuture(label="lost")]
        with tracedfuture.lints.enable(stall=None, blocked=None, orphan=STALL, orphan_exclude=("standby-*",)) as lints:
            await asyncio.sleep(0.2)
        del keep
        return lints

    lints = asyncio.run(main())
    assert [e.name for e in memory.of_kind("orphan")] == ["lost"]
    assert lints.excused["orphan"] == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"stall_exclude": "aiohttp/web.py:*"},
            "stall_exclude must be a sequence of shell patterns, such as ('aiohttp/web.py:*',), "
            "not the single string 'aiohttp/web.py:*'",
        ),
        (
            {"orphan_exclude": [3]},
            "orphan_exclude must be a sequence of shell patterns, such as ('aiohttp/web.py:*', 'heartbeat-*'), not [3]",
        ),
        ({"known_waits": 1}, "known_waits must be True or False, not 1"),
    ],
)
def test_bad_exclude_options_name_themselves(options: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError) as info:
        tracedfuture.lints.enable(stall=1, blocked=None, orphan=1, **options)
    assert str(info.value) == message


UVICORN_APP = """
import asyncio, sys
import uvicorn
import tracedfuture, tracedfuture.lints
from tracedfuture.exporters import MemoryExporter

memory = MemoryExporter()
installation = tracedfuture.install(exporters=[memory])
lints = tracedfuture.lints.enable(stall=0.05, blocked=None, orphan=None, known_waits=sys.argv[1] == "known")


async def app(scope, receive, send):
    assert scope["type"] == "lifespan"
    while True:
        message = await receive()  # waits for the shutdown for the server's whole life
        if message["type"] == "lifespan.startup":
            asyncio.get_running_loop().call_later(0.5, setattr, server, "should_exit", True)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
server.run()
lints.stop()
installation.uninstall()
print(" ".join(sorted({e.site.function for e in memory.of_kind("stalled")})) or "-")
"""


@pytest.mark.slow
def test_uvicorns_lifespan_and_main_loop_are_not_reported_stalled(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    script = tmp_path / "app.py"
    script.write_text(UVICORN_APP)

    def run(mode: str) -> set[str]:
        done = subprocess.run(
            [sys.executable, str(script), mode], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        return set(done.stdout.split())

    assert {"LifespanOn.receive", "Server.main_loop"} <= run("all")  # they are waits a lint sees
    assert not {"LifespanOn.receive", "Server.main_loop"} & run("known")
