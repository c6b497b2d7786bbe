"""CPython's own Future and Task test suites, run against tracedfuture.

``Lib/test/test_asyncio/test_futures.py`` and ``test_tasks.py`` parametrize their
contract by class (``cls``, ``Task``, ``Future``). Here they run:

* against ``TracedFuture`` / ``TracedTask``, the same way CPython runs them
  against ``_CFuture`` / ``_CTask`` and their subclasses;
* in full (every class of both modules, asyncio's own included) with tracing
  installed process-wide, so every loop they create is a traced loop and every
  ``loop.create_future()`` / ``create_task()`` goes through tracedfuture.

The test package ships with CPython builds such as pyenv's and the official
images; a Python without it skips these (CI's has it and must run them).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest

import tracedfuture
from tracedfuture import TracedFuture, TracedTask
from tracedfuture.exporters import MemoryExporter

from .conftest import require


def _load(name: str):  # type: ignore[no-untyped-def]
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


test_futures = _load("test.test_asyncio.test_futures")
test_tasks = _load("test.test_asyncio.test_tasks")
test_utils = _load("test.test_asyncio.utils")


@pytest.fixture(autouse=True)
def _traced_everywhere() -> Iterator[MemoryExporter]:
    require(test_futures is not None and test_tasks is not None, "CPython's test.test_asyncio package is not installed")
    memory = MemoryExporter()
    with tracedfuture.install(exporters=[memory]):
        yield memory


if test_futures is not None and test_tasks is not None and test_utils is not None:

    class TestTracedFuture(test_futures.BaseFutureTests, test_utils.TestCase):
        cls = TracedFuture

    class TestTracedFutureDoneCallbacks(test_futures.BaseFutureDoneCallbackTests, test_utils.TestCase):
        def _new_future(self):  # type: ignore[no-untyped-def]
            return TracedFuture(loop=self.loop)

    class TestTracedTask(test_tasks.BaseTaskTests, test_tasks.SetMethodsTest, test_utils.TestCase):
        Task = TracedTask
        Future = TracedFuture

    @test_tasks.add_subclass_tests
    class TestTracedTaskSubclass(test_tasks.BaseTaskTests, test_utils.TestCase):
        Task = TracedTask
        Future = TracedFuture

    # Every test of both modules, asyncio's own classes included, on traced loops.
    for _module in (test_futures, test_tasks):
        for _name, _obj in vars(_module).items():
            if isinstance(_obj, type) and issubclass(_obj, test_utils.TestCase) and _obj.__module__ == _module.__name__:
                globals()[f"TestStdlib_{_module.__name__.rsplit('.', 1)[-1]}_{_name}"] = _obj
