"""The HTML report in a real headless Chromium (Debian's ``chromium``).

Driven through the DevTools protocol over a pipe (``tests/cdp.py``, standard
library only); nothing is downloaded. Skipped where Chromium is missing, failed
in CI, which installs it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracedfuture._views._model import load

from ._cli import (
    ARTIFACTS,
    BIG_FUTURES,
    INJECTED_MSG,
    INJECTED_NAME,
    INJECTION,
    SAMPLE,
    big_html,
    make_trace,
    record_timing,
    tracedfuture,
)
from .cdp import Browser, Page, chromium_path, launch
from .conftest import require


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    require(executable is not None, "needs Debian's chromium: apt-get install chromium")
    assert executable is not None
    with launch(executable) as running:
        yield running


def report_of(directory: Path, name: str, program: str) -> Path:
    trace = make_trace(directory, name, program, "--capture-values")
    report = directory / f"{name}.html"
    done = tracedfuture("html", trace, "-o", report, cwd=directory)
    assert done.returncode == 0, done.stderr
    return report


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return report_of(tmp_path_factory.mktemp("html"), "sample", SAMPLE)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    opened = browser.new_page()
    yield opened
    browser.call("Target.closeTarget", {"targetId": opened.call("Target.getTargetInfo")["targetInfo"]["targetId"]})


def open_report(page: Page, report: Path) -> None:
    page.navigate(report.as_uri())
    assert page.evaluate("window.tracedfuture && window.tracedfuture.ready") is True
    # Picks an option of one of the page's own controls, as a person would.
    page.evaluate(
        "window.choose = (id, value) => { const box = document.getElementById(id);"
        " box.value = value; box.dispatchEvent(new Event('change')); }"
    )


def test_report_loads_without_console_errors(page: Page, sample_report: Path) -> None:
    open_report(page, sample_report)
    assert page.errors() == []


def test_report_draws_one_bar_per_future_and_task(page: Page, sample_report: Path) -> None:
    open_report(page, sample_report)
    assert page.evaluate("tracedfuture.total") == 17
    assert page.evaluate("tracedfuture.bars") == 17


def test_clicking_a_bar_shows_its_details(page: Page, sample_report: Path) -> None:
    open_report(page, sample_report)
    failed_task = 6  # fetch-2
    where = page.evaluate(f"tracedfuture.locate({failed_task})")
    page.click(where["x"], where["y"])
    assert page.evaluate("tracedfuture.selected") == failed_task
    details = page.evaluate("tracedfuture.details.innerText")
    assert "task fetch-2 #6" in details
    assert "ValueError: backend said no" in details
    assert "sample.py:22 in main.<locals>.<listcomp>" in details


def test_details_of_a_cancelled_task_name_msg_and_canceller(page: Page, sample_report: Path) -> None:
    open_report(page, sample_report)
    assert page.evaluate("tracedfuture.select(11)") is True
    details = page.evaluate("tracedfuture.details.innerText")
    assert "deadline exceeded" in details
    assert "task Task-1 #1" in details


def test_arrows_link_futures_to_the_tasks_they_woke(page: Page, sample_report: Path) -> None:
    open_report(page, sample_report)
    assert page.evaluate("tracedfuture.arrows") > 0


def test_zooming_in_leaves_fewer_bars_in_view(page: Page, sample_report: Path) -> None:
    open_report(page, sample_report)
    for _ in range(4):
        page.evaluate("document.getElementById('zoom-in').click()")
    assert 0 < page.evaluate("tracedfuture.draw(), tracedfuture.bars") < 17


def test_search_finds_tasks_by_name_and_site(page: Page, sample_report: Path) -> None:
    open_report(page, sample_report)
    assert page.evaluate("tracedfuture.search('fetch-')") == 4
    assert page.evaluate("tracedfuture.search('sample.py:7')") == 3


def test_screenshot_for_people(page: Page, sample_report: Path) -> None:
    page.call(
        "Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 430, "deviceScaleFactor": 1, "mobile": False}
    )
    open_report(page, sample_report)
    page.evaluate("tracedfuture.select(6)")
    page.evaluate("new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "html-report.png"
    page.screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trace_strings_cannot_inject_html_or_script(page: Page, tmp_path: Path) -> None:
    report = report_of(tmp_path, "injection", INJECTION)
    open_report(page, report)
    page.evaluate("tracedfuture.select(2)")  # the task with the hostile name, cancelled with the hostile msg
    time.sleep(0.2)
    assert page.dialogs() == []
    assert page.errors() == []
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate("document.scripts.length") == 2
    details = page.evaluate("tracedfuture.details.innerText")
    assert INJECTED_NAME in details  # shown as text, exactly
    assert INJECTED_MSG in details


def test_the_dialog_detector_sees_a_real_alert(page: Page, tmp_path: Path) -> None:
    # Guards the test above: an alert that did fire would be caught.
    hostile = tmp_path / "hostile.html"
    hostile.write_text("<!doctype html><img src=x onerror=alert(1)>")
    page.navigate(hostile.as_uri())
    time.sleep(0.2)
    assert page.dialogs() == ["1"]


def test_100k_future_report_becomes_usable_quickly(page: Page) -> None:
    report, _ = big_html()
    began = time.perf_counter()
    open_report(page, report)
    seconds = time.perf_counter() - began
    record_timing("html page usable in Chromium, 100k futures", seconds)
    assert page.errors() == []
    assert page.evaluate("tracedfuture.total") == BIG_FUTURES + 203
    assert page.evaluate("tracedfuture.bars") > 0
    frame_ms = page.evaluate("tracedfuture.draw()")
    record_timing("html redraw in Chromium, 100k futures (ms)", frame_ms)
    where = page.evaluate("tracedfuture.locate(50000)")
    page.click(where["x"], where["y"])
    assert page.evaluate("tracedfuture.selected") == 50000
    assert seconds < 20


# --- filter, sort, labels, expected failures -----------------------------------------------

LONG_NAME = "long-running-worker-with-a-name-much-longer-than-the-label-column-0123456789"
LANES = f"""\
import asyncio

KEEP = []


async def work(n):
    await asyncio.sleep(0.01 * n)
    return n


async def fail():
    await asyncio.sleep(0.02)
    raise ValueError("a real problem")


async def close():
    await asyncio.sleep(0.03)
    raise EOFError("the peer closed the connection")


async def stuck():
    fut = asyncio.get_running_loop().create_future()
    KEEP.append(fut)
    await fut


async def main():
    KEEP.append(asyncio.create_task(stuck(), name="stuck"))
    tasks = [
        asyncio.create_task(work(1), name="short"),
        asyncio.create_task(work(30), name={LONG_NAME!r}),
        asyncio.create_task(fail(), name="fails"),
        asyncio.create_task(close(), name="closes"),
    ]
    await asyncio.gather(*tasks, return_exceptions=True)


loop = asyncio.new_event_loop()  # never closed: "stuck" is still pending when the trace ends
loop.run_until_complete(main())
"""


@pytest.fixture(scope="module")
def lanes_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    directory = tmp_path_factory.mktemp("lanes")
    trace = make_trace(directory, "lanes", LANES)
    report = directory / "lanes.html"
    done = tracedfuture("html", trace, "-o", report, "--expected-exceptions", "EOFError,ConnectionResetError")
    assert done.returncode == 0, done.stderr
    ids = {r.name: r.id for r in load(trace).records.values() if r.is_task and r.name}
    return report, ids


def test_filter_to_pending_keeps_only_the_stuck_lane(page: Page, lanes_report: tuple[Path, dict[str, int]]) -> None:
    report, ids = lanes_report
    open_report(page, report)
    assert page.evaluate("tracedfuture.filter('pending')") == 1
    assert page.evaluate("tracedfuture.laneOrder()") == [ids["stuck"]]
    assert page.evaluate("tracedfuture.filter('all')") == page.evaluate("tracedfuture.lanes")


def test_filter_from_the_page_control(page: Page, lanes_report: tuple[Path, dict[str, int]]) -> None:
    report, ids = lanes_report
    open_report(page, report)
    page.evaluate("choose('filter', 'failed')")
    assert page.evaluate("tracedfuture.laneOrder()") == [ids["fails"]]  # not the expected EOFError
    page.evaluate("choose('filter', 'expected')")
    assert page.evaluate("tracedfuture.laneOrder()") == [ids["closes"]]


def test_expected_failures_are_counted_and_drawn_apart(page: Page, lanes_report: tuple[Path, dict[str, int]]) -> None:
    report, _ = lanes_report
    open_report(page, report)
    legend = page.evaluate("document.getElementById('legend').innerText")
    assert "failed 1" in legend
    assert "expected failure 1" in legend


def test_sort_by_outcome_puts_failures_first_and_resolved_last(
    page: Page, lanes_report: tuple[Path, dict[str, int]]
) -> None:
    report, ids = lanes_report
    open_report(page, report)
    page.evaluate("choose('sort', 'outcome')")
    order = page.evaluate("tracedfuture.laneOrder()")
    assert order[:3] == [ids["fails"], ids["closes"], ids["stuck"]]
    assert set(order[3:]) >= {ids["short"], ids[LONG_NAME]}


def test_sort_by_start_and_by_duration(page: Page, lanes_report: tuple[Path, dict[str, int]]) -> None:
    report, ids = lanes_report
    open_report(page, report)
    by_start = page.evaluate("tracedfuture.sort('start'), tracedfuture.laneOrder()")
    assert by_start == sorted(by_start)  # ids are given in order of creation
    by_duration = page.evaluate("tracedfuture.sort('duration'), tracedfuture.laneOrder()")
    assert by_duration.index(ids[LONG_NAME]) < by_duration.index(ids["short"])


def test_a_long_lane_label_is_whole_on_hover_and_in_a_wider_column(
    page: Page, lanes_report: tuple[Path, dict[str, int]]
) -> None:
    report, ids = lanes_report
    open_report(page, report)
    task = ids[LONG_NAME]
    page.evaluate("tracedfuture.draw()")
    assert page.evaluate(f"tracedfuture.labelShown({task})").endswith("\u2026")
    where = page.evaluate(f"tracedfuture.labelPoint({task})")
    page.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": where["x"], "y": where["y"]})
    assert LONG_NAME in page.evaluate("tracedfuture.tooltip.hidden ? '' : tracedfuture.tooltip.textContent")
    # Drag the column's edge to the right, as a person would.
    box = page.evaluate(
        "(() => { const b = document.getElementById('timeline').getBoundingClientRect();"
        " return {x: b.left, y: b.top}; })()"
    )
    edge = box["x"] + page.evaluate("tracedfuture.gutter")
    y = where["y"]
    page.call(
        "Input.dispatchMouseEvent", {"type": "mousePressed", "x": edge, "y": y, "button": "left", "clickCount": 1}
    )
    page.call(
        "Input.dispatchMouseEvent", {"type": "mouseMoved", "x": edge + 500, "y": y, "button": "left", "buttons": 1}
    )
    page.call(
        "Input.dispatchMouseEvent",
        {"type": "mouseReleased", "x": edge + 500, "y": y, "button": "left", "clickCount": 1},
    )
    assert page.evaluate("tracedfuture.gutter") > 600
    page.evaluate("tracedfuture.draw()")
    assert page.evaluate(f"tracedfuture.labelShown({task})") == f"{LONG_NAME} #{task} \u00b7 work"
    assert page.errors() == []


def test_filtering_100k_futures_stays_quick(page: Page) -> None:
    report, _ = big_html()
    open_report(page, report)
    began = time.perf_counter()
    page.evaluate("tracedfuture.filter('failed')")
    frame_ms = page.evaluate("tracedfuture.draw()")
    record_timing("html filter to failed in Chromium, 100k futures", time.perf_counter() - began)
    record_timing("html redraw filtered in Chromium, 100k futures (ms)", frame_ms)
    assert page.evaluate("tracedfuture.lanesShown") == 200  # every worker saw a failure
    assert page.evaluate("tracedfuture.sort('outcome'), tracedfuture.lanesShown") == 200
    assert page.errors() == []


# A real program with a hang: an aiohttp server whose /slow handler waits for an
# event nobody sets. The loop is left as a hang leaves it: the slow requests pending.
STUCK_SERVER = """\
import asyncio

from aiohttp import ClientSession, web

never = None


async def fast(request):
    await asyncio.sleep(0.002)
    return web.Response(text="ok")


async def slow(request):
    await never.wait()  # the bug: nothing ever sets it
    return web.Response(text="late")


async def main():
    global never
    never = asyncio.Event()
    app = web.Application()
    app.router.add_get("/fast", fast)
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    session = ClientSession()

    async def get(path):
        async with session.get(url + path) as response:
            return await response.text()

    await asyncio.gather(*(get("/fast") for _ in range(40)))
    stuck = [asyncio.create_task(get("/slow"), name=f"slow-request-{i}") for i in range(3)]
    await asyncio.gather(*(get("/fast") for _ in range(20)))
    await asyncio.sleep(0.2)
    return stuck


loop = asyncio.new_event_loop()
KEEP = loop.run_until_complete(main())
"""


def test_screenshots_of_a_real_program_for_the_docs(page: Page, tmp_path: Path) -> None:
    pytest.importorskip("aiohttp")
    trace = make_trace(tmp_path, "stuck_server", STUCK_SERVER)
    report = tmp_path / "stuck_server.html"
    done = tracedfuture("html", trace, "-o", report, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    page.call(
        "Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 560, "deviceScaleFactor": 1, "mobile": False}
    )
    open_report(page, report)
    page.evaluate("tracedfuture.setGutter(330)")
    frames = "new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))"
    page.evaluate(frames)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(str(ARTIFACTS / "html-report-aiohttp.png"))
    page.evaluate("choose('filter', 'pending')")
    assert page.evaluate("tracedfuture.lanesShown") >= 3  # the three stuck client requests, and the server's
    stuck = page.evaluate("tracedfuture.laneOrder()")
    page.evaluate(f"tracedfuture.select({stuck[0]})")
    page.evaluate(frames)
    page.screenshot(str(ARTIFACTS / "html-report-pending.png"))
    for name in ("html-report-aiohttp.png", "html-report-pending.png"):
        assert (ARTIFACTS / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.errors() == []
