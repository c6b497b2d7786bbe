"""What asyncio's debug mode prints (run with PYTHONASYNCIODEBUG=1): reprs with their
creation site, "Task was destroyed but it is pending!", "Future exception was never
retrieved", "coroutine ... was never awaited" with where it was created."""

import asyncio
import gc
import sys


async def forever():
    await asyncio.sleep(3600)


async def fails():
    raise ValueError("nobody looked")


async def main():
    loop = asyncio.get_running_loop()
    print("debug:", loop.get_debug())
    fut = loop.create_future()
    print(repr(fut))
    print("source traceback of a future:", [(f.name, f.lineno) for f in fut._source_traceback][-2:])
    task = asyncio.create_task(forever(), name="forever")
    await asyncio.sleep(0)
    print(repr(task))
    print("source traceback of a task:", [(f.name, f.lineno) for f in task._source_traceback][-2:])
    failing = loop.create_future()
    failing.set_exception(ValueError("unretrieved"))
    del failing
    failed_task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    del failed_task
    forever()  # never awaited
    gc.collect()
    await asyncio.sleep(0)
    sys.stderr.flush()


loop = asyncio.new_event_loop()
loop.set_debug(True)
loop.run_until_complete(main())
loop.close()  # the pending "forever" task is destroyed with the loop
del loop
gc.collect()
print("end")
