"""anyio task groups, cancel scopes and timeouts, on asyncio (and on uvloop when asked)."""

import sys

import anyio
import anyio.lowlevel


async def sleeper(name, delay, results):
    await anyio.sleep(delay)
    results.append(name)


async def ticks(name, n, results):
    for _ in range(n):
        await anyio.lowlevel.checkpoint()  # one loop iteration each: the order is fixed
    results.append(name)


async def failing():
    await anyio.sleep(0.01)
    raise RuntimeError("child failed")


async def main():
    results = []
    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(ticks, f"s{i}", 3 - i, results)
    print("task group:", results)
    with anyio.move_on_after(0.02) as scope:
        await anyio.sleep(10)
    print("move_on_after cancelled:", scope.cancelled_caught)
    try:
        with anyio.fail_after(0.02):
            await anyio.sleep(10)
    except TimeoutError:
        print("fail_after: TimeoutError")
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper, "never", 10, results)
            tg.start_soon(failing)
    except* RuntimeError as group:
        print("group:", [str(e) for e in group.exceptions])
    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "cancelled", 10, results)
        await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    print("after cancel:", results)
    with anyio.CancelScope() as outer:
        with anyio.CancelScope(shield=True):
            outer.cancel()
            await anyio.sleep(0.01)
            print("shielded scope ran")
    send, receive = anyio.create_memory_object_stream(10)
    async with anyio.create_task_group() as tg:

        async def produce():
            async with send:
                for i in range(5):
                    await send.send(i)

        tg.start_soon(produce)
        async with receive:
            print("stream:", [item async for item in receive])
    print("to_thread:", await anyio.to_thread.run_sync(sum, [1, 2, 3]))
    event = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(event.wait)
        event.set()
    print("event set:", event.is_set())


anyio.run(main, backend_options={"use_uvloop": sys.argv[1:] == ["uvloop"]})
