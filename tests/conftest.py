from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Iterator

import pytest

import tracedfuture
from tests import background
from tracedfuture.exporters import MemoryExporter

IN_CI = os.environ.get("CI") == "true"


def require(condition: bool, reason: str) -> None:
    """Skip when a real part is missing here, but fail in CI, which installs it."""
    if not condition:
        if IN_CI:
            pytest.fail(f"CI must have this: {reason}")
        pytest.skip(reason)


@pytest.fixture
def memory() -> Iterator[MemoryExporter]:
    """A process-wide installation into a MemoryExporter, removed afterwards."""
    exporter = MemoryExporter()
    with tracedfuture.install(exporters=[exporter]):
        yield exporter


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _implementations() -> list[str]:
    found = ["python"]
    try:
        from tracedfuture._core import _cfuture  # noqa: F401
    except ImportError:
        if IN_CI:
            found.append("c")  # CI builds the extension: its absence must fail
    else:
        found.append("c")
    return found


@pytest.fixture(params=_implementations())
def impl(request: pytest.FixtureRequest) -> object:
    """Each implementation of the seam (``_seam.py``): the pure-Python reference,
    and the compiled core where it is built."""
    import importlib

    return importlib.import_module(
        "tracedfuture._core._future" if request.param == "python" else "tracedfuture._core._cfuture"
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the background suites of the selected tests (tests/background.py).

    Then keep what collection made (every test module, CPython's test suites,
    the items) out of the garbage collector's way: tests that call gc.collect()
    in a loop (CPython's *_del_collect) otherwise spend seconds walking the
    session's own objects. What tests make is collected as usual. (Freezing
    again later would keep earlier tests' rings alive for good.)"""
    markers = (item.get_closest_marker("background") for item in session.items)
    background.start(*(marker.args[0] for marker in markers if marker is not None))
    gc.freeze()


def pytest_sessionfinish(session: pytest.Session) -> None:
    background.end()
