"""The workloads every benchmark times, and the sizes they run at.

Each workload is a coroutine function taking a size; ``WORKLOADS`` maps a name to
``(description, function, default size, tasks per unit of size)``. The coroutines
call ``asyncio.create_task`` and ``asyncio.gather`` through the module at call
time, so that a peer which wraps them (opentelemetry-instrumentation-asyncio)
sees these calls as it sees an application's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple


async def lifecycle(n: int) -> None:
    """The future lifecycle: create, add_done_callback, call_soon(set_result), await."""
    loop = asyncio.get_running_loop()
    call_soon = loop.call_soon
    for i in range(n):
        fut = loop.create_future()
        fut.add_done_callback(id)
        call_soon(fut.set_result, i)
        await fut


async def leaf() -> None:
    return None


async def task_await(n: int) -> None:
    """Task create+await, one at a time."""
    for _ in range(n):
        await asyncio.create_task(leaf())


async def gather10(n: int) -> None:
    """``gather`` of 10 coroutines (10 tasks), ``n`` times."""
    for _ in range(n):
        await asyncio.gather(leaf(), leaf(), leaf(), leaf(), leaf(), leaf(), leaf(), leaf(), leaf(), leaf())


async def worker(futures: int) -> None:
    loop = asyncio.get_running_loop()
    call_soon = loop.call_soon
    for i in range(futures):
        fut = loop.create_future()
        call_soon(fut.set_result, i)
        await fut


async def many_tasks(n: int) -> None:
    """``n`` tasks alive at once, each awaiting 10 futures resolved through call_soon."""
    await asyncio.gather(*[asyncio.create_task(worker(10)) for _ in range(n)])


async def burst(n: int) -> None:
    """``n`` futures created, resolved and awaited in rounds of 1,000."""
    loop = asyncio.get_running_loop()
    for start in range(0, n, 1000):
        futures = [loop.create_future() for _ in range(min(1000, n - start))]
        for i, fut in enumerate(futures):
            fut.set_result(i)
        for fut in futures:
            await fut


class Workload(NamedTuple):
    title: str
    run: Callable[[int], Coroutine[Any, Any, None]]
    size: int  # at --scale 1
    tasks_per_unit: int  # tasks made per unit of size (0: futures only)
    futures_per_unit: int  # plain futures made per unit of size
    unit: str

    def label(self, n: int) -> str:
        return self.title.format(n=f"{n:,}")


# In the order they run: the two the targets name first, so that a run cut short
# by its budget has them.
WORKLOADS: dict[str, Workload] = {
    "lifecycle": Workload("future lifecycle x{n}", lifecycle, 10_000, 0, 1, "lifecycle"),
    "many": Workload("{n} tasks x 10 futures", many_tasks, 10_000, 1, 10, "task"),
    "burst": Workload("burst of {n} futures", burst, 300_000, 0, 1, "future"),
    "task": Workload("task create+await x{n}", task_await, 5_000, 1, 0, "task"),
    "gather": Workload("gather of 10 tasks x{n}", gather10, 500, 10, 0, "gather"),
}

# The names opentelemetry-instrumentation-asyncio is told to trace: every
# coroutine these workloads hand to create_task or gather.
TRACED_COROUTINES = "leaf,worker"


def sized(name: str, scale: float) -> int:
    return max(1, round(WORKLOADS[name].size * scale))
