"""A small FastAPI shop with the bugs a real service has, for docs/reading-a-server.md.

    tracedfuture run --console -o shop.jsonl uvicorn shop:app --app-dir examples

- ``GET /items/{item_id}``: the traffic, a short query through a connection pool;
- ``GET /fail``: its query fails, and uvicorn answers 500;
- ``GET /slow``: its query outlives an ``asyncio.timeout``;
- ``GET /transfer/{first}/{second}``: takes two locks in the order given, so
  ``/transfer/a/b`` and ``/transfer/b/a`` at once deadlock.

The pool keeps one task alive for the whole run (a keep-alive ping), as real
pools do; the lifespan starts and stops it.
"""

import asyncio
import contextlib

from fastapi import FastAPI

from tracedfuture.asgi import RequestNames


class Pool:
    """A stand-in for a database pool. As a real driver's protocol does, a query
    is a future that the connection resolves when the answer arrives."""

    def __init__(self) -> None:
        self.keepalive: asyncio.Task[None] | None = None

    async def ping(self) -> None:
        while True:
            await asyncio.sleep(1)

    async def query(self, sql: str, seconds: float = 0.002) -> dict[str, int]:
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        if "missing" in sql:
            error = LookupError(f"relation {sql.rsplit(maxsplit=1)[-1]!r} does not exist")
            loop.call_later(seconds, answer.set_exception, error)
        else:
            loop.call_later(seconds, answer.set_result, {"rows": 1})
        return await answer


pool = Pool()
LOCKS = {"a": asyncio.Lock(), "b": asyncio.Lock()}


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
    pool.keepalive = asyncio.create_task(pool.ping(), name="pool keep-alive")
    yield
    pool.keepalive.cancel()


app = FastAPI(lifespan=lifespan)
app.add_middleware(RequestNames)


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    return await pool.query(f"SELECT * FROM items WHERE id = {item_id}")


@app.get("/fail")
async def fail() -> dict[str, int]:
    return await pool.query("SELECT * FROM missing")


@app.get("/slow")
async def slow() -> dict[str, int]:
    async with asyncio.timeout(0.05):
        return await pool.query("SELECT * FROM reports", 10)


@app.get("/transfer/{first}/{second}")
async def transfer(first: str, second: str) -> dict[str, str]:
    async with LOCKS[first]:
        await pool.query("UPDATE accounts", 0.05)
        async with LOCKS[second]:
            return {"moved": f"{first}->{second}"}
