"""A websockets echo server and a client."""

import asyncio

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosedOK


async def echo(websocket):
    async for message in websocket:
        await websocket.send(f"echo: {message}")


async def main():
    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as websocket:
            for text in ("hello", "world", "x" * 1000):
                await websocket.send(text)
                print((await websocket.recv())[:20])
        clients = [connect(f"ws://127.0.0.1:{port}") for _ in range(10)]
        sockets = await asyncio.gather(*(c.__aenter__() for c in clients))
        await asyncio.gather(*(ws.send(f"client {i}") for i, ws in enumerate(sockets)))
        print(sorted(await asyncio.gather(*(ws.recv() for ws in sockets))))
        for ws in sockets:
            await ws.close()
            try:
                await ws.recv()
            except ConnectionClosedOK as exc:
                closed = type(exc).__name__
        print("closed:", closed)


asyncio.run(main())
