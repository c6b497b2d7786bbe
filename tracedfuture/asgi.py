"""Name each request's task after its method and route: an ASGI middleware.

>>> from tracedfuture.asgi import RequestNames
>>> async def app(scope, receive, send): ...
>>> app = RequestNames(app)

Wrap any ASGI application (Starlette, FastAPI, a plain ASGI callable): each
HTTP or websocket request's task is renamed ``GET /items/{item_id}`` once the
framework has routed it (the route template, read from ``scope["route"]`` as
Starlette and FastAPI set it), and ``GET /items/42`` (the path) until then or
when the framework names no route. Every view shows that name: ``tree``,
``pstree``, ``top``, the HTML report's lanes; the OpenTelemetry exporter puts it
on the task's span as ``http.request.method`` and ``http.route``.

With FastAPI or Starlette::

    app = FastAPI()
    app.add_middleware(RequestNames)

The middleware renames the task it runs in (the server's task for the
request: uvicorn and hypercorn run one per request) and nothing else: the
request's messages and its response are handed on unchanged; the scope is
handed on as a copy that notices when the router sets ``scope["route"]``. Outside a
task (no running loop) it does nothing.

An endpoint that raises (a database client's error, a bug) ends in the server:
Starlette's ``ServerErrorMiddleware`` sends the 500 and re-raises, uvicorn logs
it, and the request's task ends well, so no failed future would say where it
was raised. The exception passes through this middleware on its way out: it is
recorded on the request's task as a ``caught`` event (its type; its message
only with ``capture_values=True``, through ``redact``; where it was raised and
the program's line there), and re-raised as it came. ``tree`` shows it on the
request, the OpenTelemetry exporter as an ``exception`` event on the request's
span with status ERROR. What the framework answers itself (FastAPI's
``HTTPException``, a handler registered for an exception) never reaches here,
and is no failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._core import caught
from ._text import request_name

__all__ = ["RequestNames"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestNames:
    """ASGI middleware: the request's task is named ``METHOD /route/{template}``."""

    __slots__ = ("app",)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        task = asyncio.current_task() if kind in ("http", "websocket") else None
        if task is None:
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", "WEBSOCKET")) if kind == "http" else "WEBSOCKET"
        path = scope.get("path")
        _rename(task, request_name(method, str(path) if path is not None else "?"))
        routed = False
        named_scope: Scope = {}

        def name_by_route() -> None:
            # The router fills scope["route"] in before the endpoint runs, so by
            # the endpoint's first receive() or send() the template is known.
            nonlocal routed
            if routed:
                return
            template = _template(named_scope.get("route"))
            if template is not None:
                routed = True
                _rename(task, request_name(method, template))

        named_scope = _Scope(scope, name_by_route)

        async def receive_named() -> Message:
            name_by_route()
            return await receive()

        async def send_named(message: Message) -> None:
            name_by_route()
            await send(message)

        try:
            await self.app(named_scope, receive_named, send_named)
        except Exception as exc:
            # The server turns it into a 500, logs it, and the task ends well:
            # no failure would say where it was raised. Recorded on the request's
            # task, then let go exactly as it came (a bare raise adds nothing).
            name_by_route()
            caught(task, exc)
            raise
        finally:
            name_by_route()  # a handler that failed before it read or sent anything


class _Scope(dict):  # type: ignore[type-arg]
    """The request's scope, a copy (as Starlette's ``Mount`` makes) that tells
    when the router sets ``scope["route"]``: an endpoint that neither reads nor
    sends before it blocks still gets its task named after the route."""

    __slots__ = ("_routed",)

    def __init__(self, scope: Scope, routed: Callable[[], None]) -> None:
        super().__init__(scope)
        self._routed = routed

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        if key == "route":
            self._routed()

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        if "route" in self:
            self._routed()


def _template(route: object) -> str | None:
    """The route's template (``/items/{item_id}``): Starlette's and FastAPI's
    ``path_format`` (converters left out), else ``path``."""
    for attribute in ("path_format", "path"):
        value = getattr(route, attribute, None)
        if isinstance(value, str) and value:
            return value
    return None


def _rename(task: asyncio.Task[Any], name: str) -> None:
    try:
        if task.get_name() != name:
            task.set_name(name)
    except Exception:  # an observer never breaks the observed
        pass
