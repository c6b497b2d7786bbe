"""``tree`` and the HTML report of a real server open on its traffic (issue "Point
at the program", B5): a real uvicorn serves examples/shop.py (FastAPI, with
failing, timing-out and deadlocked endpoints) under ``tracedfuture run``; the
tree starts with the request groups and folds the background into one line; the
report, opened in a real headless Chromium at 1280x800, shows the failures and
cancellations on its first screen and the background folded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._cli import ROOT, make_trace, tracedfuture
from .cdp import Browser, Page, chromium_path, launch
from .conftest import require

# The client is sequential (no task per request), so that the trace's traffic
# is the server's: the two transfers deadlock on the shop's two locks until the
# client gives up and the server's graceful shutdown cancels them.
DRIVER = f"""\
import asyncio, sys
sys.path.insert(0, {str(ROOT / "examples")!r})
import httpx, uvicorn
from shop import app


async def main():
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical", timeout_graceful_shutdown=0.2)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{{port}}", timeout=5) as client:
        for n in range(30):
            await client.get(f"/items/{{n}}")
        for path in ("/fail", "/fail", "/slow", "/slow"):
            await client.get(path)
        stuck = [asyncio.create_task(client.get(path)) for path in ("/transfer/a/b", "/transfer/b/a")]
        await asyncio.sleep(0.2)
        for request in stuck:
            request.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)
    server.should_exit = True
    await serving


asyncio.run(main())
"""

WIDTH, HEIGHT = 1280, 800
SHOP = ROOT / "examples" / "shop.py"


def shop_line(text: str) -> str:
    """``shop.py:N``: the line of examples/shop.py that holds ``text``."""
    lines = SHOP.read_text().splitlines()
    return f"shop.py:{next(n for n, line in enumerate(lines, start=1) if text in line)}"


# Where the shop's failures come from: the query's await (LookupError, caught by
# the framework as a 500), the /slow endpoint's timeout, the transfer's second lock.
QUERY, TIMEOUT, SECOND_LOCK = (
    shop_line("return await answer"),
    shop_line("async with asyncio.timeout(0.05)"),
    shop_line("async with LOCKS[second]"),
)


@pytest.fixture(scope="module")
def shop_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for needed in ("uvicorn", "fastapi", "httpx"):
        pytest.importorskip(needed)
    return make_trace(tmp_path_factory.mktemp("shop"), "shop_driver", DRIVER)


def test_tree_starts_with_the_request_groups_and_folds_the_background(shop_trace: Path) -> None:
    done = tracedfuture("tree", shop_trace)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    roots = [line for line in lines if line and not line.startswith(("├", "└", "│", " "))]
    requests = [n for n, line in enumerate(roots) if " GET /" in line.split("(")[0]]
    others = [n for n, line in enumerate(roots) if n not in requests]
    assert requests and others and max(requests) < min(others), roots
    assert {"GET /items/{item_id}", "GET /fail", "GET /slow", "GET /transfer/{first}/{second}"} <= {
        route
        for line in roots
        for route in ("GET /items/{item_id}", "GET /fail", "GET /slow", "GET /transfer/{first}/{second}")
        if route in line
    }
    background = roots[-2]  # the folded background, then the footer
    assert background.startswith("background: ") and "Server.serve" in background
    assert "LifespanOn.main" in background and "pool keep-alive" in background
    assert "folded: --all shows them" in background
    assert not any("Server.main_loop" in line for line in lines)  # the server loop's sleeps are folded with it
    assert "background tasks folded (--all shows them)" in lines[-1]


def test_tree_all_shows_the_background(shop_trace: Path) -> None:
    done = tracedfuture("tree", "--all", shop_trace)
    assert done.returncode == 0, done.stderr
    assert not any(line.startswith("background: ") for line in done.stdout.splitlines())
    assert "task pool keep-alive" in done.stdout and "Server.main_loop" in done.stdout


def test_tree_failures_sit_under_their_route(shop_trace: Path) -> None:
    lines = tracedfuture("tree", shop_trace).stdout.splitlines()
    fail = next(n for n, line in enumerate(lines) if line.startswith("task GET /fail"))
    assert "failed" in lines[fail + 1] and "LookupError" in lines[fail + 1]


def test_stats_counts_the_500s_apart_from_resolved_with_their_raise_lines(shop_trace: Path) -> None:
    rows = json.loads(tracedfuture("stats", "--json", shop_trace).stdout)["sites"]
    requests = next(row for row in rows if row["tasks"] and row["site"]["file"].endswith("h11_impl.py"))
    assert requests["caught"] == 4 and requests["failed"] == 0
    assert requests["resolved"] + requests["caught"] + requests["cancelled"] == requests["count"]
    raised = {
        (item["exc_type"], f"{Path(item['site']['file']).name}:{item['site']['line']}", item["caught"], item["count"])
        for item in requests["raised"]
    }
    assert raised == {("LookupError", QUERY, True, 2), ("TimeoutError", TIMEOUT, True, 2)}
    table = tracedfuture("stats", shop_trace).stdout.splitlines()
    assert table[0].split()[3:7] == ["resolved", "failed", "caught", "cancelled"]
    row = next(line for line in table if "h11_impl.py" in line and " task " in line)
    assert f"LookupError at examples/{QUERY} in Pool.query x2 (caught)" in row  # cut to the working directory
    assert any(line.startswith("caught: 4 tasks ended after the framework caught an exception") for line in table)


def test_tree_failed_shows_the_500s_as_caught(shop_trace: Path) -> None:
    lines = tracedfuture("tree", "--failed", "--width", "0", shop_trace).stdout.splitlines()
    fail = next(line for line in lines if line.startswith("task GET /fail"))
    assert "  caught " in fail and f"LookupError (caught by the framework)  raised at examples/{QUERY}" in fail
    assert sum(line.startswith("task GET /slow") for line in lines) == 2
    assert "2 failed, 4 caught, " in lines[-1]


def test_perfetto_args_carry_the_caught_exception_and_the_waiting_line(shop_trace: Path) -> None:
    out = shop_trace.with_suffix(".perfetto.json")
    assert tracedfuture("perfetto", shop_trace, "-o", out).returncode == 0
    slices = {e["args"]["id"]: e for e in json.loads(out.read_text())["traceEvents"] if e.get("ph") == "X"}
    fail = next(e["args"] for e in slices.values() if e["name"] == "GET /fail")
    assert fail["outcome"].startswith("caught") and fail["exception"] == "LookupError"
    assert fail["raised_at"].startswith(f"examples/{QUERY}")
    slow = next(e["args"] for e in slices.values() if e["name"] == "GET /slow")
    assert slow["raised_at"].startswith(f"examples/{TIMEOUT}") and slow["waiting_at"].startswith("examples/shop.py:")
    transfer = next(e["args"] for e in slices.values() if e["name"].startswith("GET /transfer"))
    assert transfer["waiting_at"] == f"examples/{SECOND_LOCK} in transfer"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    require(executable is not None, "needs Debian's chromium: apt-get install chromium")
    assert executable is not None
    with launch(executable) as running:
        yield running


@pytest.fixture
def report(browser: Browser, shop_trace: Path) -> Iterator[Page]:
    html = shop_trace.with_suffix(".html")
    done = tracedfuture("html", shop_trace, "-o", html)
    assert done.returncode == 0, done.stderr
    page = browser.new_page()
    page.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )
    page.navigate(html.as_uri())
    assert page.evaluate("window.tracedfuture && window.tracedfuture.ready") is True
    page.evaluate("tracedfuture.draw()")
    yield page
    browser.call("Target.closeTarget", {"targetId": page.call("Target.getTargetInfo")["targetInfo"]["targetId"]})


def _pixel(page: Page, x: float, y: float) -> list[int]:
    """The colour the canvas painted at a client point."""
    return page.evaluate(
        "(() => { const c = document.getElementById('timeline'), b = c.getBoundingClientRect();"
        f" return Array.from(c.getContext('2d').getImageData({x} - b.left, {y} - b.top, 1, 1).data); }})()"
    )


def test_report_opens_on_the_request_groups_with_the_background_folded_last(report: Page) -> None:
    groups = report.evaluate("tracedfuture.groups()")
    kinds = [group["kind"] for group in groups]
    assert kinds[0] == "requests" and kinds[-1] == "background"
    assert kinds.index("background") > max(n for n, kind in enumerate(kinds) if kind == "requests")
    by_label = {group["label"]: group for group in groups}
    assert by_label["GET /fail"]["open"] and not by_label["background"]["open"]
    assert [g["label"] for g in groups][:2] == ["GET /fail", "GET /slow"]  # the worst first
    assert report.evaluate("tracedfuture.laneOrder()")[0] == "group GET /fail"
    assert report.errors() == []


@pytest.mark.parametrize(("outcome", "colour"), [("failed", (229, 57, 53)), ("cancelled", (251, 140, 0))])
def test_failures_and_cancellations_are_painted_on_the_first_screen(
    report: Page, outcome: str, colour: tuple[int, int, int]
) -> None:
    report.evaluate("document.getElementById('arrows').click(), tracedfuture.draw()")  # no arrow over a bar
    bars = report.evaluate(f"tracedfuture.drawnBars({outcome!r})")
    canvas = report.evaluate(
        "(() => { const b = document.getElementById('timeline').getBoundingClientRect();"
        " return {right: b.right, bottom: b.bottom}; })()"
    )
    futures = [bar for bar in bars if not bar["task"] and bar["y"] < min(HEIGHT, canvas["bottom"])]
    assert len(futures) >= 2, bars
    for bar in futures:
        assert bar["x"] < canvas["right"]
        # The time grid (1 px lines, 7% black) is drawn over the bars: where one
        # crosses a bar's middle column, the bar's colour is beside it (a failed
        # or cancelled bar is at least 3 px wide).
        pixels = [_pixel(report, bar["x"] + dx, bar["y"])[:3] for dx in (-1, 0, 1)]
        assert list(colour) in pixels, (bar, pixels)


def test_a_500_is_red_on_the_first_screen_with_its_raise_line_in_the_details(report: Page) -> None:
    report.evaluate("document.getElementById('arrows').click(), tracedfuture.draw()")
    bars = [bar for bar in report.evaluate("tracedfuture.drawnBars('caught')") if bar["y"] < HEIGHT]
    requests = {bar["id"]: bar for bar in bars if bar["task"]}
    assert len(requests) == 4, bars  # the two /fail and the two /slow requests, on the first screen
    (first, *_) = sorted(requests.values(), key=lambda bar: bar["y"])
    red, green, blue = _pixel(report, first["x"], first["y"])[:3]
    assert red > green + 60 and red > blue + 60, (red, green, blue)  # a task's pale red, as a failed task's
    report.click(first["x"], first["y"])
    assert report.evaluate("tracedfuture.selected") == first["id"]
    details = report.evaluate("tracedfuture.details.innerText")
    assert details.startswith("task GET /fail #") and "caught by the framework" in details
    assert "caught exception\nLookupError" in details and f"raised at\nexamples/{QUERY} in Pool.query" in details
    report.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": first["x"], "y": first["y"]})
    tip = report.evaluate("tracedfuture.tooltip.textContent")
    assert "LookupError (caught by the framework)" in tip and f"raised at examples/{QUERY}" in tip
    legend = report.evaluate("document.getElementById('legend').innerText")
    assert "caught by the framework 4" in legend


def test_a_cancelled_requests_details_say_where_it_was_waiting(report: Page) -> None:
    transfer = next(g for g in report.evaluate("tracedfuture.groups()") if g["label"].startswith("GET /transfer"))
    assert transfer["open"]
    lane = report.evaluate("tracedfuture.laneOrder()")
    task = lane[lane.index(f"group {transfer['label']}") + 1]
    details = report.evaluate(f"tracedfuture.select({task}), tracedfuture.details.innerText")
    assert f"while waiting at\nexamples/{SECOND_LOCK} in transfer" in details


def test_the_background_unfolds_from_its_label(report: Page) -> None:
    background = next(g for g in report.evaluate("tracedfuture.groups()") if g["kind"] == "background")
    shown = report.evaluate("tracedfuture.lanesShown")
    report.click(background["x"], background["y"])
    after = next(g for g in report.evaluate("tracedfuture.groups()") if g["kind"] == "background")
    assert after["open"] and report.evaluate("tracedfuture.lanesShown") == shown + after["tasks"]


def test_a_library_future_shows_the_programs_line_first(report: Page) -> None:
    # The client's futures are made inside httpx and its transport, from the driver's lines.
    found = report.evaluate(
        "tracedfuture.select(tracedfuture.programBars('shop_driver.py')[0]), tracedfuture.details.innerText"
    )
    program, via = found.index("program line"), found.index("via")
    assert program < via and "shop_driver.py:" in found[program:via]


def test_clicking_a_failure_in_a_folded_summary_opens_its_lane(report: Page) -> None:
    report.evaluate("tracedfuture.toggleGroup('GET /fail', false)")
    (bar, *_) = [b for b in report.evaluate("tracedfuture.drawnBars('failed')") if not b["task"]]
    report.click(bar["x"], bar["y"])
    assert report.evaluate("tracedfuture.selected") == bar["id"]
    fail = next(g for g in report.evaluate("tracedfuture.groups()") if g["label"] == "GET /fail")
    assert fail["open"]
    assert "LookupError" in report.evaluate("tracedfuture.details.innerText")


HOSTILE_ROUTES = ("GET /<img/src=x/onerror=alert(1)>", "GET /</script><script>alert(2)</script>")
HOSTILE = f"""\
import asyncio


async def main():
    for name in {HOSTILE_ROUTES!r}:
        task = asyncio.create_task(asyncio.sleep(0.001), name=name)
        await task


asyncio.run(main())
"""


def test_group_labels_from_the_trace_are_text(browser: Browser, tmp_path: Path) -> None:
    trace = make_trace(tmp_path, "hostile", HOSTILE)
    html = tmp_path / "hostile.html"
    assert tracedfuture("html", trace, "-o", html).returncode == 0
    page = browser.new_page()
    page.navigate(html.as_uri())
    page.evaluate("tracedfuture.draw()")
    labels = [g["label"] for g in page.evaluate("tracedfuture.groups()")]
    assert set(HOSTILE_ROUTES) <= set(labels)
    where = next(g for g in page.evaluate("tracedfuture.groups()") if g["label"] == HOSTILE_ROUTES[0])
    page.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": where["x"], "y": where["y"]})
    assert HOSTILE_ROUTES[0] in page.evaluate("tracedfuture.tooltip.textContent")
    assert page.dialogs() == [] and page.errors() == []
    assert page.evaluate("document.querySelectorAll('img').length") == 0


def test_search_finds_failures_by_exception(report: Page) -> None:
    # the two failed queries, and the two requests whose LookupError the framework caught
    assert report.evaluate("tracedfuture.search('lookuperror')") == 4  # and its message, when recorded


LOOSE = """\
import asyncio

loop = asyncio.new_event_loop()
outside = loop.create_future()  # outside any task: a lane of its own


async def work():
    await asyncio.sleep(0.001)


async def main():
    await asyncio.gather(*(asyncio.create_task(work()) for _ in range(12)))
    outside.set_result(1)
    await asyncio.sleep(0.2)  # main lives the whole run quietly: the background


loop.run_until_complete(main())
"""


def test_futures_outside_any_task_keep_a_group_of_their_own(tmp_path: Path) -> None:
    from tracedfuture._views._model import load
    from tracedfuture._views.html import report_data

    data = report_data(load(make_trace(tmp_path, "loose", LOOSE)))
    shown = sorted(lane for group in data["groups"] for lane in group["lanes"])
    assert shown == list(range(len(data["lanes"])))  # every lane is in one group
    assert [g["label"] for g in data["groups"]][-2:] == ["futures outside any task", "background"]
