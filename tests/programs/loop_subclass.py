"""Loop classes with their own create_future, create_task and close."""

import asyncio


class CountingTask(asyncio.Task):
    pass


class MyFuture(asyncio.Future):
    pass


class OwnLoop(asyncio.SelectorEventLoop):
    """Builds its own futures and tasks."""

    def __init__(self):
        super().__init__()
        self.log = []

    def create_future(self):
        self.log.append("future")
        return MyFuture(loop=self)

    def create_task(self, coro, **kwargs):
        self.log.append("task")
        return CountingTask(coro, loop=self, **kwargs)

    def close(self):
        self.log.append("close")
        print("OwnLoop.close, log:", self.log)
        return super().close()


class SuperLoop(asyncio.SelectorEventLoop):
    """Adds to asyncio's through super()."""

    made = 0

    def create_future(self):
        SuperLoop.made += 1
        return super().create_future()

    def create_task(self, coro, **kwargs):
        SuperLoop.made += 1
        return super().create_task(coro, **kwargs)


async def work(n):
    fut = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(fut.set_result, n)
    child = asyncio.create_task(asyncio.sleep(0, n * 2))
    return await fut + await child


async def main():
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work(1), loop=loop)
    fut = loop.create_future()
    fut.set_result("set")
    print(type(loop).__name__, "task:", type(task).__name__, "future:", type(fut).__name__)
    print("result:", await task, await fut)
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(work(i)) for i in range(3)]
    print("task group:", [t.result() for t in tasks], [type(t).__name__ for t in tasks])


for factory in (OwnLoop, SuperLoop):
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
print("SuperLoop made", SuperLoop.made)
loop = OwnLoop()
try:
    loop.run_until_complete(main())
finally:
    loop.close()
try:
    OwnLoop().close()
    asyncio.SelectorEventLoop().close()
except Exception as exc:
    print("close failed:", exc)
