"""A program that fails: an exception out of asyncio.run, its traceback and exit status 1."""

import asyncio


async def step(n):
    if n == 3:
        raise LookupError(f"no step {n}")
    await asyncio.sleep(0)
    return await step(n + 1)


async def main():
    print("starting")
    async with asyncio.TaskGroup() as tg:
        tg.create_task(step(0))


asyncio.run(main())
