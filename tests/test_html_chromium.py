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
