"""An aiohttp server under 300 concurrent requests, interrupted by SIGINT while they
are in flight, shutting down gracefully."""

import asyncio
import os
import signal
import sys

import aiohttp
from aiohttp import web

CLIENTS = 300


async def hello(request):
    await asyncio.sleep(0.05)
    return web.json_response({"n": int(request.query["n"])})


async def main():
    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    answered = 0
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

            async def client(n):
                nonlocal answered
                async with session.get(f"http://127.0.0.1:{port}/", params={"n": n}) as response:
                    body = await response.json()
                    assert body == {"n": n}, body
                    answered += 1
                    if answered == CLIENTS // 2:
                        os.kill(os.getpid(), signal.SIGINT)  # while the other half is in flight
                    await asyncio.sleep(10)  # keep the connection busy

            await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    finally:
        print("answered at least half:", answered >= CLIENTS // 2)
        await runner.cleanup()
        print("server shut down")


try:
    asyncio.run(main())
except KeyboardInterrupt:
    print("interrupted by SIGINT")
    sys.exit(130)
