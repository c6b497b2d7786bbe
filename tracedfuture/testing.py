"""Helpers for testing code that uses asyncio, with its futures traced.

>>> import asyncio
>>> from tracedfuture.testing import capture_events
>>> with capture_events() as events:
...     asyncio.run(asyncio.sleep(0))
>>> events.kinds(events.tasks()[0])
['created', 'callback_added', 'resolved', 'callback_scheduled']
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._install import install
from .exporters import MemoryExporter

__all__ = ["capture_events"]


@contextmanager
def capture_events(**options: Any) -> Iterator[MemoryExporter]:
    """Capture the events of futures and tasks created inside the block.

    Inside a running loop it traces that loop; outside one it traces every loop
    created in the block. Yields a :class:`~tracedfuture.exporters.MemoryExporter`,
    a sequence of events that is up to date whenever it is read. ``options`` are
    those of :func:`tracedfuture.install`.
    """
    memory = MemoryExporter()
    loop = asyncio._get_running_loop()
    inst = install(loop, exporters=[memory], **options)
    try:
        yield memory
    finally:
        inst.uninstall()
