"""tracedfuture.asgi against a real uvicorn serving a FastAPI app (issue "Point
at the program", B5): request tasks named by route, each timeout's ``async with``
line, a deadlock in one paragraph, and uvicorn's own waits not reported as stalls."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tracedfuture._text import parse_request_name

SERVER = """
import asyncio, json, sys
import httpx, uvicorn
from fastapi import FastAPI
import tracedfuture, tracedfuture.lints
from tracedfuture.asgi import RequestNames
from tracedfuture.exporters import MemoryExporter
from tracedfuture.graph import format_snapshot, snapshot

memory = MemoryExporter()
installation = tracedfuture.install(exporters=[memory])
app = FastAPI()
app.add_middleware(RequestNames)
LOCKS = {"a": asyncio.Lock(), "b": asyncio.Lock()}


@app.get("/items/{item_id}")
async def item(item_id: int):
    return {"id": item_id}


@app.get("/fail")
async def fail():
    raise ValueError("no such thing")  # RAISES


@app.get("/slow")
async def slow():
    async with asyncio.timeout(0.05):  # TIMEOUT
        await asyncio.sleep(10)


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
        statuses = [(await client.get(path)).status_code for path in ("/items/42", "/fail", "/slow")]
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
failed = [(names.get(e.future_id), e.raise_program_site.lineno if e.raise_program_site else None)
          for e in events if e.kind == "failed" and e.is_task]
cancels = [e.canceller for e in events if e.kind == "cancel_requested" and e.canceller]
stalls = [e.site.function if e.site else None for e in events if e.kind == "stalled"]
print(json.dumps({
    "statuses": statuses,
    "names": sorted(set(names.values())),
    "failed": failed,
    "cancels": cancels,
    "stalls": stalls,
    "deadlocks": [str(d) for d in snap.deadlocks],
    "tree": format_snapshot(snap),
}))
"""


def _line(text: str, marker: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if marker in line)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    for needed in ("uvicorn", "fastapi", "httpx"):
        pytest.importorskip(needed)
    script = tmp_path_factory.mktemp("asgi") / "server_app.py"
    script.write_text(SERVER)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_request_tasks_are_named_by_method_and_route(served: dict[str, object]) -> None:
    assert served["statuses"] == [200, 500, 500]
    names = set(served["names"])  # type: ignore[arg-type]
    assert {"GET /items/{item_id}", "GET /fail", "GET /slow", "GET /transfer/{first}/{second}"} <= names
    assert "GET /items/42" not in names or "GET /items/{item_id}" in names


def test_each_timeout_names_the_async_with_line(served: dict[str, object]) -> None:
    timeout = _line(SERVER, "# TIMEOUT")
    assert any(f"server_app.py:{timeout}" in text for text in served["cancels"]), served["cancels"]  # type: ignore[attr-defined]


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
