"""tracedfuture.asgi against a real uvicorn serving a FastAPI app (issue "Point
at the program", B5): request tasks named by route, each timeout's ``async with``
line and the line the request was waiting at, a deadlock in one paragraph, the
raise line of an endpoint's exception that the server turned into a 500 (in
``tree`` and on the request's OpenTelemetry span), and uvicorn's own waits not
reported as stalls. Run once with each implementation of the core."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import _implementations
from tracedfuture._text import parse_request_name
from tracedfuture.exporters import MemoryExporter

# A database client library, installed: its line is where the exception is
# raised, the endpoint's line is the program's.
FAKEDB = """
import asyncio


async def query(sql):
    await asyncio.sleep(0)
    raise LookupError(f"relation {sql!r} does not exist")  # LIBRARY RAISES
"""

SERVER = """
import asyncio, json, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "site-packages"))
import fakedb
import httpx, uvicorn
from fastapi import FastAPI, HTTPException
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import tracedfuture, tracedfuture.lints
from tracedfuture.asgi import RequestNames
from tracedfuture.exporters import JsonLinesExporter, MemoryExporter
from tracedfuture.exporters.otel import OTelExporter
from tracedfuture.graph import format_snapshot, snapshot

memory = MemoryExporter()
spans = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
installation = tracedfuture.install(exporters=[memory, OTelExporter(provider), JsonLinesExporter(sys.argv[1])])
app = FastAPI()
app.add_middleware(RequestNames)
LOCKS = {"a": asyncio.Lock(), "b": asyncio.Lock()}


@app.get("/items/{item_id}")
async def item(item_id: int):
    return {"id": item_id}


@app.get("/fail")
async def fail():
    return await fakedb.query("items")  # RAISES


@app.get("/missing")
async def missing():
    raise HTTPException(status_code=404)


@app.get("/slow")
async def slow():
    async with asyncio.timeout(0.05):  # TIMEOUT
        await asyncio.sleep(10)  # WAITING


@app.get("/transfer/{first}/{second}")
async def transfer(first: str, second: str):
    async with LOCKS[first]:  # HOLDS
        await asyncio.sleep(0.05)
        async with LOCKS[second]:  # WAITS
            return {}


async def main():
    lints = tracedfuture.lints.enable(stall=0.05, blocked=None, orphan=None)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical", timeout_graceful_shutdown=0.2)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        paths = ("/items/42", "/fail", "/slow", "/missing")
        statuses = [(await client.get(path)).status_code for path in paths]
        stuck = [asyncio.create_task(client.get(path)) for path in ("/transfer/a/b", "/transfer/b/a")]
        await asyncio.sleep(0.4)
        snap = snapshot()
        for request in stuck:
            request.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)
    server.should_exit = True
    await serving
    lints.stop()
    return statuses, snap


statuses, snap = asyncio.run(main())
installation.uninstall()
events = list(memory)
names = {}
for e in events:
    if e.is_task and e.name:
        names[e.future_id] = e.name


def site(s):
    return [os.path.basename(s.filename), s.lineno, s.function] if s is not None else None


caught = [[names.get(e.future_id), e.exc_type, site(e.raise_site), site(e.raise_program_site)]
          for e in events if e.kind == "caught"]
failed = [names.get(e.future_id) for e in events if e.kind == "failed" and e.is_task]
cancels = [[names.get(e.future_id), e.canceller, site(e.waiting_site)]
           for e in events if e.kind == "cancel_requested" and e.canceller]
stalls = [e.site.function if e.site else None for e in events if e.kind == "stalled"]
request_spans = [
    {
        "name": span.name,
        "status": span.status.status_code.name,
        "events": [[event.name, dict(event.attributes)] for event in span.events
                   if event.name in ("exception", "cancel_requested")],
    }
    for span in spans.get_finished_spans()
    if span.attributes.get("http.route") in ("/fail", "/slow", "/missing")
]
print(json.dumps({
    "statuses": statuses,
    "names": sorted(set(names.values())),
    "caught": caught,
    "failed": failed,
    "cancels": cancels,
    "stalls": stalls,
    "spans": request_spans,
    "deadlocks": [str(d) for d in snap.deadlocks],
    "tree": format_snapshot(snap),
}))
"""


def _line(text: str, marker: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if marker in line)


@pytest.fixture(scope="module", params=_implementations())
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    for needed in ("uvicorn", "fastapi", "httpx", "opentelemetry.sdk"):
        pytest.importorskip(needed)
    folder = tmp_path_factory.mktemp("asgi")
    (folder / "site-packages").mkdir()
    (folder / "site-packages" / "fakedb.py").write_text(FAKEDB)
    script = folder / "server_app.py"
    script.write_text(SERVER)
    trace = folder / "trace.jsonl"
    env = {**os.environ, "TRACEDFUTURE_PURE_PYTHON": "1" if request.param == "python" else ""}
    done = subprocess.run(
        [sys.executable, str(script), str(trace)], capture_output=True, text=True, timeout=120, check=False, env=env
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    tree = subprocess.run(
        [sys.executable, "-m", "tracedfuture", "tree", "--width", "0", str(trace)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert tree.returncode == 0, tree.stderr
    result["trace_tree"] = tree.stdout
    return result


def _request_line(tree: str, name: str, marker: str) -> str:
    return next(line for line in tree.splitlines() if f"task {name} " in line and marker in line)


def test_request_tasks_are_named_by_method_and_route(served: dict[str, object]) -> None:
    assert served["statuses"] == [200, 500, 500, 404]
    names = set(served["names"])  # type: ignore[arg-type]
    assert {"GET /items/{item_id}", "GET /fail", "GET /slow", "GET /transfer/{first}/{second}"} <= names
    assert "GET /items/42" not in names or "GET /items/{item_id}" in names


def test_each_timeout_names_the_async_with_line(served: dict[str, object]) -> None:
    timeout = _line(SERVER, "# TIMEOUT")
    assert any(f"server_app.py:{timeout}" in text for _, text, _ in served["cancels"]), served["cancels"]  # type: ignore[attr-defined]


def test_a_timed_out_request_names_the_line_it_was_waiting_at(served: dict[str, object]) -> None:
    timeout, waiting = _line(SERVER, "# TIMEOUT"), _line(SERVER, "# WAITING")
    [(_, canceller, where)] = [c for c in served["cancels"] if c[0] == "GET /slow"]  # type: ignore[attr-defined]
    assert "in slow (" in canceller and canceller.endswith(f"server_app.py:{timeout})")
    assert where == ["server_app.py", waiting, "slow"]
    line = _request_line(str(served["trace_tree"]), "GET /slow", "cancel requested")
    assert f"server_app.py:{timeout})" in line, line
    assert re.search(rf"while waiting at \S*server_app\.py:{waiting} in slow", line), line
    [span] = [s for s in served["spans"] if s["name"] == "task GET /slow"]  # type: ignore[attr-defined, index]
    [cancel] = [attributes for name, attributes in span["events"] if name == "cancel_requested"]
    assert cancel["asyncio.cancel.waiting_at"].endswith(f"server_app.py:{waiting} in slow")
    assert f"server_app.py:{timeout})" in cancel["asyncio.canceller"]


def test_an_endpoints_exception_turned_into_a_500_is_recorded_with_its_raise_line(
    served: dict[str, object],
) -> None:
    raises, library = _line(SERVER, "# RAISES"), _line(FAKEDB, "# LIBRARY RAISES")
    caught = {c[0]: c[1:] for c in served["caught"]}  # type: ignore[attr-defined]
    assert caught["GET /fail"] == ["LookupError", ["fakedb.py", library, "query"], ["server_app.py", raises, "fail"]]
    assert "GET /missing" not in caught  # an HTTPException is the framework's answer, no failure
    assert "GET /fail" not in served["failed"]  # type: ignore[operator]  # the task itself ended well
    line = _request_line(str(served["trace_tree"]), "GET /fail", "LookupError")
    assert re.search(rf"raised at \S*server_app\.py:{raises} in fail \(via \S*fakedb\.py:{library} in query\)", line), (
        line
    )


def test_the_requests_span_fails_with_the_exception_and_its_raise_line(served: dict[str, object]) -> None:
    raises, library = _line(SERVER, "# RAISES"), _line(FAKEDB, "# LIBRARY RAISES")
    by_name = {s["name"]: s for s in served["spans"]}  # type: ignore[attr-defined, index]
    failing = by_name["task GET /fail"]
    assert failing["status"] == "ERROR"
    [exception] = [attributes for name, attributes in failing["events"] if name == "exception"]
    assert exception["exception.type"] == "LookupError"
    assert "exception.message" not in exception  # values are off by default
    assert exception["code.line.number"] == raises and exception["code.function.name"] == "fail"
    stack = exception["exception.stacktrace"].splitlines()
    assert stack[0] == "Traceback (most recent call last):" and stack[-1] == "LookupError"
    assert stack[1].endswith(f'server_app.py", line {raises}, in fail')
    assert stack[-2].endswith(f'fakedb.py", line {library}, in query')
    assert by_name["task GET /missing"]["status"] != "ERROR"


def test_the_deadlock_is_one_paragraph_naming_both_locks_and_both_holders(served: dict[str, object]) -> None:
    (paragraph,) = served["deadlocks"]  # type: ignore[misc]
    holds, waits = _line(SERVER, "# HOLDS"), _line(SERVER, "# WAITS")
    assert paragraph.startswith("deadlock: GET /transfer/{first}/{second} holds Lock#")
    assert paragraph.count(f"server_app.py:{holds}") == 2
    assert paragraph.count(f"server_app.py:{waits}") == 2
    assert "held by GET /transfer/{first}/{second}" in paragraph
    assert paragraph in str(served["tree"])


def test_uvicorns_own_waits_are_no_stall(served: dict[str, object]) -> None:
    assert not {"LifespanOn.receive", "Server.main_loop"} & set(served["stalls"])  # type: ignore[arg-type]


def test_request_names_are_what_the_otel_exporter_reads() -> None:
    assert parse_request_name("GET /items/{item_id}") == ("GET", "/items/{item_id}")
    assert parse_request_name("Task-7") is None


def test_the_middleware_re_raises_the_very_exception_and_records_it_on_the_task(memory: MemoryExporter) -> None:
    import asyncio
    import traceback

    from tracedfuture.asgi import RequestNames

    raised = ValueError("no such thing")

    async def app(scope: object, receive: object, send: object) -> None:
        raise raised

    async def request() -> None:
        scope = {"type": "http", "method": "GET", "path": "/boom"}
        await RequestNames(app)(scope, None, None)  # type: ignore[arg-type]

    async def main() -> BaseException | None:
        try:
            await asyncio.create_task(request())
        except ValueError as exc:
            return exc
        return None

    caught = asyncio.run(main())
    assert caught is raised
    frames = traceback.extract_tb(caught.__traceback__)
    assert frames[-1].name == "app" and frames[-1].line == "raise raised"
    [event] = [e for e in memory if e.kind == "caught"]
    assert event.name == "GET /boom" and event.exc_type == "ValueError"
    assert event.raise_site is not None and event.raise_site.function.endswith("<locals>.app")
