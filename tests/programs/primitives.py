"""TaskGroup, timeout, wait_for, shield, as_completed and gather, with failures and cancellations."""

import asyncio


async def job(name, delay, fail=False):
    await asyncio.sleep(delay)
    if fail:
        raise ValueError(f"{name} failed")
    return name


async def ticks(name, n):
    for _ in range(n):
        await asyncio.sleep(0)  # one loop iteration each: the order is fixed
    return name


async def task_groups():
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(job(f"tg-{i}", 0.001 * i)) for i in range(3)]
    print("task group:", [t.result() for t in tasks])
    try:
        async with asyncio.TaskGroup() as tg:
            slow = tg.create_task(job("slow", 10))
            tg.create_task(job("bad", 0.001, fail=True))
    except* ValueError as group:
        print("task group failed:", [str(e) for e in group.exceptions], "slow cancelled:", slow.cancelled())


async def timeouts():
    try:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(10)
    except TimeoutError:
        print("timeout: TimeoutError")
    async with asyncio.timeout(None) as cm:
        cm.reschedule(asyncio.get_running_loop().time() + 5)
        print("rescheduled, expired:", cm.expired())
    try:
        await asyncio.wait_for(job("late", 10), timeout=0.01)
    except TimeoutError:
        print("wait_for: TimeoutError")
    print("wait_for in time:", await asyncio.wait_for(job("early", 0), timeout=5))


async def shielding():
    inner = asyncio.create_task(job("shielded", 0.02), name="shielded")
    outer = asyncio.ensure_future(asyncio.shield(inner))
    await asyncio.sleep(0)
    outer.cancel("outer only")
    try:
        await outer
    except asyncio.CancelledError as exc:
        print("shield: outer cancelled with", exc.args)
    print("shield: inner still", await inner)


async def completions():
    order = []
    for fut in asyncio.as_completed([ticks(f"c{n}", n) for n in (3, 1, 2)]):
        order.append(await fut)
    print("as_completed:", order)
    results = await asyncio.gather(job("g1", 0), job("g2", 0, fail=True), return_exceptions=True)
    print("gather:", [repr(r) for r in results])
    done, pending = await asyncio.wait(
        [asyncio.create_task(job("w", 0)), asyncio.create_task(job("w2", 10))], timeout=0.01
    )
    print("wait:", len(done), "done", len(pending), "pending")
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


async def cancellation():
    task = asyncio.create_task(job("victim", 10), name="victim")
    await asyncio.sleep(0)
    task.cancel("stop now")
    try:
        await task
    except asyncio.CancelledError as exc:
        print("cancelled:", exc.args, task.cancelled(), repr(task))
    event = asyncio.Event()
    waiter = asyncio.create_task(event.wait())
    await asyncio.sleep(0)
    event.set()
    print("event:", await waiter)
    queue = asyncio.Queue()
    consumer = asyncio.create_task(queue.get())
    await queue.put("item")
    print("queue:", await consumer)


async def main():
    await task_groups()
    await timeouts()
    await shielding()
    await completions()
    await cancellation()
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(1)
    print("future:", repr(fut))
    return "main done"


print(asyncio.run(main()))
