"""What both implementations of the hot path share, neither importing the other.

Like CPython's ``asyncio/base_futures.py`` and ``format_helpers.py``, which the C
``_asyncio`` uses without importing ``futures.py``: the text a future's value,
exception, cancel message or callback becomes, and asyncio's own
``create_future`` / ``create_task`` code re-pointed at traced classes.
``_future`` imports these; ``_cfuture.c`` looks them up once, at import. Frames
(who is the program, who cancelled) are ``_frames``'s business.
"""

from __future__ import annotations

import asyncio
import types
from functools import partial
from typing import Any

__all__ = [
    "MAX_VALUE_CHARS",
    "asyncio_factories",
    "callback_name",
    "exc_message_default",
    "text",
    "value_repr_default",
]

MAX_VALUE_CHARS = 200


# --- text, only with capture_values ---------------------------------------------------


def value_repr_default(value: object) -> str:
    """``repr(value)``, cut to 200 characters; never raises."""
    try:
        shown = repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__qualname__}>"
    if len(shown) > MAX_VALUE_CHARS:
        shown = shown[: MAX_VALUE_CHARS - 3] + "..."
    return shown


def exc_message_default(exc: BaseException) -> str:
    """``str(exc)``, cut to 200 characters; never raises."""
    try:
        return str(exc)[:MAX_VALUE_CHARS]
    except Exception:
        return f"<unprintable {type(exc).__qualname__}>"


def callback_name(fn: object) -> str:
    """The qualname of a done callback, through ``functools.partial``."""
    while isinstance(fn, partial):
        fn = fn.func
    name = getattr(fn, "__qualname__", None)
    if not isinstance(name, str):
        name = type(fn).__qualname__
    return name


def text(value: object) -> str | None:
    """``str(value)`` for a cancel msg, which may be any object; never raises."""
    if value is None or isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__qualname__}>"


# --- asyncio's own create_future / create_task, naming the traced classes ---------------


def _asyncio_function(method: Any, **replace: Any) -> types.FunctionType:
    """A copy of one of ``BaseEventLoop``'s methods whose globals name other
    objects (``futures`` and ``tasks`` whose ``Future`` / ``Task`` are traced):
    asyncio's code, file and line numbers, and so asyncio's checks, errors and
    debug-mode frames, building traced objects."""
    namespace = dict(method.__globals__)
    for module_name, attrs in replace.items():
        module = types.ModuleType(namespace[module_name].__name__)
        vars(module).update(vars(namespace[module_name]))
        vars(module).update(attrs)
        namespace[module_name] = module
    function = types.FunctionType(method.__code__, namespace, method.__name__, method.__defaults__, method.__closure__)
    function.__kwdefaults__ = method.__kwdefaults__
    function.__qualname__ = method.__qualname__
    return function


EAGER_FACTORY = getattr(asyncio, "eager_task_factory", None)
_set_task_name = getattr(asyncio.tasks, "_set_task_name", None)  # 3.11, 3.12


def asyncio_factories(future_type: type, task_type: type) -> tuple[Any, Any, Any]:
    """asyncio's ``create_future``, ``create_task`` and the eager branch of
    ``create_task`` (``None`` before 3.12), building ``future_type`` and
    ``task_type``: the reference calls them for asyncio's loops, the compiled
    core on its rare paths (debug mode, a task factory, an argument asyncio
    rejects)."""
    create_future = _asyncio_function(asyncio.BaseEventLoop.create_future, futures={"Future": future_type})
    create_task = _asyncio_function(asyncio.BaseEventLoop.create_task, tasks={"Task": task_type})
    if EAGER_FACTORY is None:
        return create_future, create_task, None
    # asyncio's eager_task_factory with task_type as its task constructor.
    factory = types.FunctionType(
        EAGER_FACTORY.__code__,
        EAGER_FACTORY.__globals__,
        EAGER_FACTORY.__name__,
        EAGER_FACTORY.__defaults__,
        tuple(types.CellType(task_type) for _ in EAGER_FACTORY.__code__.co_freevars),
    )
    factory.__kwdefaults__ = EAGER_FACTORY.__kwdefaults__

    def eager_create_task(loop: Any, coro: Any, *, name: str | None = None, context: Any = None) -> Any:
        # BaseEventLoop.create_task's factory branch, with the traced factory.
        loop._check_closed()
        task = factory(loop, coro) if context is None else factory(loop, coro, context=context)
        if _set_task_name is not None:
            _set_task_name(task, name)
        else:
            task.set_name(name)
        return task

    return create_future, create_task, eager_create_task
