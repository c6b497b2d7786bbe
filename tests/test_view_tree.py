"""``tracedfuture tree`` at scale: collapsing, depth, shutdown tasks, threads,
terminal width, library sites, incomplete histories. Real programs traced by
``tracedfuture run``, viewed in a subprocess (and in a real terminal for width)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import termios
from pathlib import Path

import pytest

from ._cli import PY, make_trace, tracedfuture, write

AIOHTTP_300 = """\
import asyncio

from aiohttp import ClientSession, web


async def hello(request):
    await asyncio.sleep(0.001)
    return web.Response(text="hello")


async def main():
    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with ClientSession() as session:

        async def fetch():
            async with session.get(f"http://127.0.0.1:{port}/") as response:
                return await response.text()

        replies = await asyncio.gather(*(fetch() for _ in range(300)))
    await runner.cleanup()
    print(len(replies), set(replies))


asyncio.run(main())
"""

# A shared reply whose owner gave up: the others wait for ever (a coalescing hang).
COALESCING = """\
import asyncio

inflight = {}


async def lookup(key):
    if key in inflight:
        return await inflight[key]
    inflight[key] = asyncio.get_running_loop().create_future()
    await asyncio.sleep(0.01)
    raise ConnectionResetError("backend went away")  # never resolves inflight[key]


async def main():
    owner = asyncio.create_task(lookup("user:1"), name="owner")
    await asyncio.sleep(0)
    follower = asyncio.create_task(lookup("user:1"), name="follower")
    await asyncio.gather(owner, return_exceptions=True)
    await asyncio.sleep(0.02)
    follower.cancel()
    await asyncio.gather(follower, return_exceptions=True)


asyncio.run(main())
"""

THREADS = """\
import asyncio
import threading


async def work(n):
    await asyncio.sleep(0.001 * n)


def in_thread():
    asyncio.run(work(1))


thread = threading.Thread(target=in_thread)
thread.start()
asyncio.run(work(2))
thread.join()
"""


@pytest.fixture(scope="module")
def aiohttp_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("aiohttp")
    return make_trace(tmp_path_factory.mktemp("aiohttp"), "aio", AIOHTTP_300)


def tree(*args: str | Path) -> list[str]:
    trace = next(Path(arg) for arg in args if str(arg).endswith(".jsonl"))
    done = tracedfuture("tree", *args, cwd=trace.parent)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def handmade(path: Path, *events: dict[str, object], stats: dict[str, object] | None = None) -> Path:
    header = {"format": "tracedfuture-trace", "version": 1, "wall_anchor_ns": 10**18, "monotonic_anchor_ns": 0}
    lines = [header, *events] + ([{"stats": stats}] if stats is not None else [])
    return write(path, "".join(json.dumps(line) + "\n" for line in lines))


def test_300_identical_aiohttp_requests_fit_in_under_60_lines(aiohttp_trace: Path) -> None:
    lines = tree(aiohttp_trace)
    assert len(lines) < 60
    fetches = next(line for line in lines if "(main.<locals>.fetch)" in line)
    assert fetches.startswith("├── 300x tasks #")
    assert "resolved p50 " in fetches
    assert ", max " in fetches


def test_expand_shows_every_future_and_task(aiohttp_trace: Path) -> None:
    lines = tree("--expand", aiohttp_trace)
    total = int(lines[-1].split()[0])
    assert sum(1 for line in lines if "(main.<locals>.fetch)" in line) == 300
    assert f"; {total - 2} shown, 2 shutdown tasks of asyncio.run hidden" in lines[-1]
    assert len(lines) == total - 2 + 2  # every record but the hidden ones, a blank line, the summary


def test_depth_1_shows_only_the_top_and_counts_what_is_below(aiohttp_trace: Path) -> None:
    lines = tree("--depth", "1", aiohttp_trace)
    body = lines[: lines.index("")]
    assert all(not line.startswith(("├", "└", "│", " ")) for line in body)
    assert any("futures and tasks below, --depth)" in line for line in body)


def test_asyncio_runs_shutdown_tasks_are_hidden_unless_all(aiohttp_trace: Path) -> None:
    assert not any("shutdown_asyncgens" in line for line in tree(aiohttp_trace))
    shown = tree("--all", aiohttp_trace)
    assert any("(BaseEventLoop.shutdown_asyncgens)" in line for line in shown)
    assert "hidden" not in shown[-1]


def test_library_sites_are_attributed_to_the_programs_own_line(aiohttp_trace: Path) -> None:
    lines = tree(aiohttp_trace)
    line = next(line for line in lines if "_wait_for_available_connection" in line)
    # the line in fetch() that called into aiohttp, not the line that made the task
    assert "aio.py:22 in main.<locals>.fetch  (via aiohttp/connector.py:" in line
    raw = tree("--library-sites", aiohttp_trace)
    line = next(line for line in raw if "_wait_for_available_connection" in line)
    assert "(via" not in line
    assert line.endswith("in BaseConnector._wait_for_available_connection")


def test_lines_fit_a_real_terminal_with_the_site_kept(aiohttp_trace: Path) -> None:
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 100, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    with subprocess.Popen(
        [PY, "-m", "tracedfuture", "tree", "--color", "never", str(aiohttp_trace)],
        stdout=follower,
        stderr=subprocess.DEVNULL,
        cwd=aiohttp_trace.parent,
        env=env,
    ) as process:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=60)
    os.close(leader)
    lines = b"".join(chunks).decode().replace("\r\n", "\n").splitlines()
    body = lines[: lines.index("")]
    assert len(body) > 5
    assert max(len(line) for line in body) <= 100
    assert any(line.endswith("aio.py:7 in hello") for line in body)  # the site survives the cut
    assert any(line.endswith("aio.py:22 in main.<locals>.fetch") for line in body)  # the library's part went first


def test_width_cuts_free_text_not_the_site(tmp_path: Path) -> None:
    long_msg = "x" * 300
    trace = handmade(
        tmp_path / "long.jsonl",
        {
            "kind": "created",
            "future_id": 1,
            "ts_ns": 1,
            "is_task": False,
            "site": {"file": "/app/a.py", "line": 3, "function": "f"},
        },
        {"kind": "cancelled", "future_id": 1, "ts_ns": 5, "is_task": False, "msg": long_msg},
    )
    (line,) = [line for line in tree("--width", "90", trace) if "future #1" in line]
    assert len(line) <= 90
    assert line.endswith("a.py:3 in f")
    assert "cancelled" in line


def test_a_shared_future_whose_creator_finished_says_so(tmp_path: Path) -> None:
    lines = tree(make_trace(tmp_path, "coalescing", COALESCING))
    (line,) = [line for line in lines if "coalescing.py:9 in lookup" in line]
    assert "(its creator task owner #" in line
    assert "had failed" in line


def test_tasks_of_several_threads_are_grouped_by_thread(tmp_path: Path) -> None:
    lines = tree(make_trace(tmp_path, "threads", THREADS))
    headers = [line for line in lines if line.startswith("loop ")]
    assert len(headers) == 2
    assert all(" on thread " in line for line in headers)
    assert all(line.startswith(("loop ", "  ", "")) for line in lines[: lines.index("")])


def test_repeated_stall_findings_are_one_tag_with_a_count(tmp_path: Path) -> None:
    stall = {"kind": "stalled", "future_id": 1, "is_task": False, "detail": "waiting on the db\nmore"}
    trace = handmade(
        tmp_path / "stalls.jsonl",
        {"kind": "created", "future_id": 1, "ts_ns": 1, "is_task": False},
        *({**stall, "ts_ns": 2 + i, "age_ns": 2**i * 10**9} for i in range(3)),
    )
    (line,) = [line for line in tree(trace) if "future #1" in line]
    assert line.count("[stalled") == 1
    assert "[stalled x3: waiting on the db]" in line


def test_pending_at_exit_is_measured_to_the_end_of_the_trace(tmp_path: Path) -> None:
    trace = handmade(
        tmp_path / "killed.jsonl",
        {"kind": "created", "future_id": 1, "ts_ns": 1_000, "is_task": True, "name": "serve", "coro": "serve"},
        {"kind": "created", "future_id": 2, "ts_ns": 1_177_000, "task_id": 1, "is_task": False},
        stats={"events_written": 2, "end_ns": 1_500_001_000},
    )
    (line,) = [line for line in tree(trace) if "future #2" in line]
    assert "pending 1.50s+" in line


def test_futures_without_created_or_marked_incomplete_are_never_pending(tmp_path: Path) -> None:
    trace = handmade(
        tmp_path / "holes.jsonl",
        {
            "kind": "awaited",
            "future_id": 7,
            "ts_ns": 10,
            "is_task": False,
            "awaiter_id": 9,
            "callback": "Task.task_wakeup",
        },
        {"kind": "created", "future_id": 8, "ts_ns": 11, "is_task": False},
        {"kind": "incomplete", "future_id": 8, "ts_ns": 12, "is_task": False},
    )
    lines = tree(trace)
    assert "incomplete" in next(line for line in lines if "future #7" in line)
    assert "incomplete" in next(line for line in lines if "future #8" in line)
    assert not any("pending" in line for line in lines if "future #" in line)
    assert "0 pending, 2 incomplete" in lines[-1]
    pending_only = tree("--pending", trace)
    assert not any("future #" in line for line in pending_only)


def test_the_footer_says_how_many_futures_the_trace_does_not_show_whole(tmp_path: Path) -> None:
    trace = handmade(
        tmp_path / "lossy.jsonl",
        {"kind": "created", "future_id": 1, "ts_ns": 1, "is_task": False},
        stats={"untraced_futures": 3, "dropped_futures": 2, "dropped_events": 40, "incomplete_futures": 1},
    )
    lines = tree(trace)
    assert "stats line counts 6 futures untraced, dropped or incomplete" in lines[-1]


def test_stats_and_html_say_it_too(tmp_path: Path) -> None:
    trace = handmade(
        tmp_path / "lossy.jsonl",
        {"kind": "created", "future_id": 1, "ts_ns": 1, "is_task": False},
        stats={"dropped_futures": 2},
    )
    done = tracedfuture("stats", trace)
    assert "stats line counts 2 futures untraced, dropped or incomplete" in done.stdout.splitlines()[-1]
    report = json.loads(tracedfuture("stats", "--json", trace).stdout)
    assert report["futures_not_shown_whole"] == 2
    page = tracedfuture("html", trace, "-o", "-").stdout
    assert '"not_shown_whole":2' in page


def test_pending_tasks_are_not_grouped_so_each_shows_what_it_waits_on(tmp_path: Path) -> None:
    site = {"file": "app.py", "line": 3, "function": "handle"}
    events: list[dict[str, object]] = [
        {"kind": "created", "future_id": 1, "ts_ns": 1, "is_task": True, "name": "main", "coro": "main"}
    ]
    for k in range(4):
        task, fut = 10 + 2 * k, 11 + 2 * k
        events += [
            {"kind": "created", "future_id": task, "ts_ns": 10 + k, "is_task": True, "task_id": 1, "coro": "handle"},
            {
                "kind": "created",
                "future_id": fut,
                "ts_ns": 20 + k,
                "is_task": False,
                "task_id": task,
                "name": "Lock#1",
                "site": site,
            },
            {"kind": "awaited", "future_id": fut, "ts_ns": 30 + k, "awaiter_id": task, "callback": "Task.task_wakeup"},
        ]
    lines = tree("--pending", handmade(tmp_path / "stuck.jsonl", *events))
    handlers = [line for line in lines if "(handle)" in line]
    assert len(handlers) == 4
    assert not any("4x" in line for line in lines)
    waits = [lines[lines.index(h) + 1] for h in handlers]
    assert all("Lock#1" in w for w in waits)
    assert [re.search(r"Lock#1 (#\d+)", w)[1] for w in waits] == ["#11", "#13", "#15", "#17"]  # each its own


# --- a server's tasks in groups (task_groups, which tree and html share) -----------------

SERVICE = """\
import asyncio

KEEP = []


async def keepalive():
    while True:
        await asyncio.sleep(1)


async def lookup():
    await asyncio.sleep(0.001)


async def handle(n):
    await asyncio.create_task(lookup(), name=f"lookup-{n}")
    await asyncio.sleep(0.005)


async def stuck():
    await asyncio.get_running_loop().create_future()


async def main():
    KEEP.append(asyncio.create_task(keepalive(), name="keepalive"))
    await asyncio.sleep(0.02)
    await asyncio.gather(*(asyncio.create_task(handle(n), name=f"handle-{n}") for n in range(12)))
    KEEP.append(asyncio.create_task(stuck(), name="stuck"))
    await asyncio.sleep(0.05)


loop = asyncio.new_event_loop()
loop.run_until_complete(main())
"""


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_trace(tmp_path_factory.mktemp("service"), "service", SERVICE)


def _groups(trace: Path) -> dict[str, set[str]]:
    from tracedfuture._views._model import load, task_groups

    model = load(trace)
    return {group.label: {model.records[task].name or "" for task in group.ids} for group in task_groups(model)}


def test_many_tasks_of_one_coroutine_and_line_are_a_group_with_their_subtasks(service: Path) -> None:
    groups = _groups(service)
    (label,) = [label for label in groups if label.startswith("handle \u00b7 ")]
    line = next(n for n, text in enumerate(SERVICE.splitlines(), start=1) if "gather(" in text)
    assert f"service.py:{line} in main" in label
    assert groups[label] == {f"handle-{n}" for n in range(12)} | {f"lookup-{n}" for n in range(12)}


def test_a_quiet_task_started_before_the_traffic_is_background_a_stuck_one_after_it_is_not(service: Path) -> None:
    groups = _groups(service)
    assert "keepalive" in groups["background"]
    assert "stuck" in groups["other tasks"] and "stuck" not in groups["background"]


def test_a_program_without_traffic_has_no_groups(tmp_path: Path) -> None:
    from ._cli import SAMPLE

    assert _groups(make_trace(tmp_path, "sample", SAMPLE)) == {}


def _caught_request(tmp_path: Path) -> Path:
    """A request task whose exception the framework caught (a 500), then returned."""
    site = {"file": "/app/server.py", "line": 9, "function": "serve"}
    raised = {"file": "/app/app.py", "line": 43, "function": "boom"}
    return handmade(
        tmp_path / "caught.jsonl",
        {"kind": "created", "future_id": 1, "ts_ns": 1, "is_task": True, "name": "GET /boom", "site": site},
        {"kind": "created", "future_id": 2, "ts_ns": 2, "is_task": True, "name": "GET /boom", "site": site},
        {"kind": "caught", "future_id": 1, "ts_ns": 5, "is_task": True, "exc_type": "KeyError", "raise_site": raised},
        {"kind": "resolved", "future_id": 1, "ts_ns": 6, "is_task": True, "result_type": "NoneType"},
        {"kind": "resolved", "future_id": 2, "ts_ns": 7, "is_task": True, "result_type": "NoneType"},
    )


def test_stats_counts_a_caught_exception_apart_from_resolved(tmp_path: Path) -> None:
    trace = _caught_request(tmp_path)
    (row,) = json.loads(tracedfuture("stats", "--json", trace).stdout)["sites"]
    assert (row["resolved"], row["failed"], row["caught"]) == (1, 0, 1)
    assert row["raised"] == [
        {
            "exc_type": "KeyError",
            "site": {"file": "/app/app.py", "line": 43, "function": "boom"},
            "caught": True,
            "count": 1,
        }
    ]
    assert "KeyError at /app/app.py:43 in boom x1 (caught)" in tracedfuture("stats", trace).stdout


def test_the_report_gives_a_caught_exception_an_outcome_of_its_own(tmp_path: Path) -> None:
    from tracedfuture._views._model import load
    from tracedfuture._views.html import report_data

    data = report_data(load(_caught_request(tmp_path)))
    outcomes = [data["meta"]["outcomes"][code] for code in data["bars"]["outcome"]]
    assert sorted(outcomes) == ["caught", "resolved"]
    assert data["meta"]["counts"]["caught"] == 1 and data["meta"]["counts"]["resolved"] == 1
    caught = outcomes.index("caught")
    assert data["details"][str(caught)]["caught"] is True
    assert data["details"][str(caught)]["raised"] == ["/app/app.py:43 in boom", ""]
    expected = report_data(load(_caught_request(tmp_path)), expected_exceptions=["KeyError"])
    assert expected["meta"]["counts"]["expected"] == 1 and expected["meta"]["counts"]["caught"] == 0
