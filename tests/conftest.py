from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

import tracedfuture
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
