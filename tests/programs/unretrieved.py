"""A fire-and-forget task fails and is dropped: asyncio logs "Task exception was
never retrieved" when the task is freed, between the program's own lines."""

import asyncio
import sys


async def fails():
    raise ValueError("nobody looked")


async def main():
    task = asyncio.create_task(fails())
    await asyncio.sleep(0)  # the task has run and failed
    print("dropping the task", file=sys.stderr)
    del task
    print("dropped", file=sys.stderr)
    await asyncio.sleep(0)
    print("one iteration later", file=sys.stderr)
    print("done")  # stdout: the order that matters is on stderr, beside asyncio's log


asyncio.run(main())
