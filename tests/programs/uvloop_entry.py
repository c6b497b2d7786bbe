"""The same program on uvloop, through one of its entry points (the first argument)."""

import asyncio
import sys
import warnings

import uvloop

warnings.simplefilter("ignore", DeprecationWarning)  # uvloop.install() and its policy, on 3.12+


async def child(n):
    fut = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.001 * n, fut.set_result, n)
    return await fut


async def main():
    loop = asyncio.get_running_loop()
    print("loop:", type(loop).__module__, isinstance(loop, uvloop.Loop))
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(child(n), name=f"child-{n}") for n in range(5)]
    print("children:", [t.result() for t in tasks])
    reader, writer = await asyncio.open_connection(*SERVER)
    writer.write(b"ping\n")
    print("echo:", (await reader.readline()).decode().strip())
    writer.close()
    await writer.wait_closed()
    try:
        await asyncio.wait_for(asyncio.sleep(10), 0.01)
    except TimeoutError:
        print("wait_for: TimeoutError")
    return "done"


async def serve_and_run():
    global SERVER

    async def echo(reader, writer):
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    SERVER = server.sockets[0].getsockname()[:2]
    async with server:
        return await main()


mode = sys.argv[1]
if mode == "run":
    print(uvloop.run(serve_and_run()))
elif mode == "install":
    uvloop.install()
    print(asyncio.run(serve_and_run()))
elif mode == "policy":
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    print(asyncio.run(serve_and_run()))
elif mode == "runner":
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        print(runner.run(serve_and_run()))
elif mode == "new_event_loop":
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    print(loop.run_until_complete(serve_and_run()))
    loop.close()
else:
    sys.exit(f"unknown mode {mode!r}")
