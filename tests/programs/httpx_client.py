"""An httpx client with timeouts, against a local server that answers fast or too slowly."""

import asyncio

import httpx

RELEASE = asyncio.Event()
HANDLERS = set()


async def handle(reader, writer):
    HANDLERS.add(asyncio.current_task())
    request = await reader.readuntil(b"\r\n\r\n")
    path = request.split()[1].decode()
    if path == "/slow":
        await RELEASE.wait()  # until the client has given up
    body = f"you asked for {path}".encode()
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s" % (len(body), body))
    try:
        await writer.drain()
    except ConnectionError:
        pass
    writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=httpx.Timeout(0.3)) as client:
        response = await client.get("/fast")
        print("fast:", response.status_code, response.text)
        try:
            await client.get("/slow")
        except httpx.ReadTimeout as exc:
            print("slow:", type(exc).__name__)
        replies = await asyncio.gather(*(client.get(f"/many/{i}") for i in range(20)))
        print("many:", [r.status_code for r in replies].count(200), "ok")
        try:
            async with asyncio.timeout(0.1):
                await client.get("/slow", timeout=None)
        except TimeoutError:
            print("asyncio.timeout around httpx: TimeoutError")
    RELEASE.set()
    await asyncio.gather(*HANDLERS)
    server.close()
    await server.wait_closed()
    print("server closed")


asyncio.run(main())
