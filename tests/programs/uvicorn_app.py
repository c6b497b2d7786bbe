"""uvicorn serving an ASGI app on uvloop (its loop setup, loop="uvloop"), asked by an
httpx client from inside the app's lifespan, then shut down."""

import asyncio
import socket
import sys

import httpx
import uvicorn

LOOP = sys.argv[1] if len(sys.argv) > 1 else "uvloop"


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                asyncio.get_running_loop().create_task(clients())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                print("lifespan shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = f"{scope['method']} {scope['path']}".encode()
    await asyncio.sleep(0.01)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def clients():
    print("loop:", type(asyncio.get_running_loop()).__module__)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{PORT}") as client:
        replies = await asyncio.gather(*(client.get(f"/item/{i}") for i in range(20)))
        print("replies:", sorted({r.text for r in replies})[:3], len(replies))
    SERVER.should_exit = True


sock = socket.socket()
sock.bind(("127.0.0.1", 0))
PORT = sock.getsockname()[1]
config = uvicorn.Config(app, loop=LOOP, lifespan="on", log_level="warning")
SERVER = uvicorn.Server(config)
SERVER.run(sockets=[sock])
print("uvicorn exited")
