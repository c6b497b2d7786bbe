"""Which loops get traced, and how a loop's own methods are kept.

A traced loop's ``create_future``, ``create_task``, ``close`` (and ``call_soon``,
see below) are ours while it is traced, carried in one of two ways:

* by the loop itself, asyncio's own loops (whose instances keep their state in
  a dict anyway): instance attributes that shadow the class's methods; removing
  them restores the loop;
* by the loop's class, for any other loop (uvloop's, whose state lives in its
  compiled base, and whose instances have no dict until something sets an
  attribute): a dict, even an empty one, would be searched by every lookup of a
  method by name on the loop, asyncio's own and uvloop's, and the program's
  ``loop.create_future()`` would lose CPython's specialization (+14% per future
  of a burst, sampled out, on 3.11). The class gets a ``Carrier`` per method,
  for as long as a loop of it is traced, which dispatches to the hooks of a
  traced loop of that class and otherwise calls the class's own method as it
  is; the loop itself gets nothing (``vars(loop)`` is what it would be
  untraced), and its hooks hold it weakly. A loop with one of these methods
  set on itself by the program, or whose class takes no attributes, or that
  cannot be weakly referenced, is carried by the loop itself.

What they do depends on the class:

* where the class's method is asyncio's own (or uvloop's, which does the same
  thing), the attribute is the fast path of ``LoopHooks``, which builds traced
  futures and tasks itself;
* where a loop class defines its own ``create_future`` or ``create_task``
  (``class MyLoop(SelectorEventLoop)`` returning ``MyTask``), that method is
  called and its result returned as it is; what it makes through
  ``super().create_task()`` is traced (asyncio's method is patched on
  ``BaseEventLoop`` for as long as such a loop is traced, and stays asyncio's for
  every other loop), a task it builds itself gets an id, so that events can name
  it;
* ``call_soon`` always calls the loop's own ``call_soon`` (the class's, a
  subclass's override, or an attribute the program set), with one exception: the
  completion callback of a traced task that asyncio steps is run at once instead
  of being queued (``LoopHooks.call_soon``), so that a finished task lives
  exactly as long as the program keeps it. It is set on the loop only when the
  loop's first such task is made (``LoopHooks.call_soon_on_first_task``): a loop
  whose tasks step themselves (the compiled core, ``_core.STEP_REASON == ""``),
  or are all sampled out, keeps its own ``call_soon``, untouched;
* ``close`` always calls the class's (or the instance's) own ``close``.

None of these wrappers shows in a traceback: exceptions leave with the wrapper's
frame removed, as if the loop's own method had been called directly.

Process-wide tracing sees loops being made: it wraps
``asyncio.BaseEventLoop.__init__`` and ``uvloop.Loop.__init__`` (uvloop's loops do
not run asyncio's; uvloop is patched when tracing starts if it is imported, else
as soon as it is imported). Everything is undone when the last process-wide
installation ends.
"""

from __future__ import annotations

import asyncio
import importlib.machinery
import logging
import sys
import threading
import types
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from . import Carrier, LoopHooks, assign_id, carried_hooks, flush_pending_completions, future_id
from ._frames import hide_own_frames, strip_source_traceback
from ._seam import LoopHooksLike

__all__ = [
    "hook_loop",
    "hooks_of",
    "patch_construction",
    "unhook_loop",
    "unpatch_construction",
    "untraceable",
    "warn_once",
]

logger = logging.getLogger("tracedfuture")

_PATCHED = ("create_future", "create_task", "call_soon", "close")
_FACTORIES = ("create_future", "create_task")
_CARRIED = ("create_future", "create_task", "close")  # by the class, when it carries them
_IMMUTABLE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE: static and compiled classes that take no attributes
# The traced loop's attributes whose __self__ is its hooks (hooks_of).
_CARRIERS = ("create_future", "create_task", "close")
_MISSING: Any = object()

_Base: Any = asyncio.BaseEventLoop
# asyncio's own methods, kept before anything here patches the class.
_BASE_METHODS: dict[str, Callable[..., Any]] = {name: vars(_Base)[name] for name in _FACTORIES}
# Implementations that LoopHooks reproduces exactly: asyncio's, and uvloop's
# (uvloop.loop.Loop, a compiled class), added when seen.
_stock: dict[str, set[object]] = {name: {fn} for name, fn in _BASE_METHODS.items()}


def _implementation(cls: type, name: str) -> tuple[object, object]:
    """(the class's ``name``, the nearest stock one in its MRO, or _MISSING),
    seen through the class patch below, which stands for asyncio's method."""
    own: object = _MISSING
    for klass in cls.__mro__:
        fn = vars(klass).get(name, _MISSING)
        if fn is _MISSING:
            continue
        if fn is _CLASS_PATCHES[name]:
            fn = _class_saved[name]
        elif isinstance(fn, Carrier):
            fn = fn.own
        if own is _MISSING:
            own = fn
        if fn is _BASE_METHODS[name] or klass.__module__ == "uvloop.loop":
            _stock[name].add(fn)
            return own, fn
    return own, _MISSING


# --- a loop's own methods ------------------------------------------------------------


class _CallingOwn:
    """The loop's own create_future/create_task, called as it is; ``__self__`` is
    the loop's hooks, as for the hooks' own methods (see :func:`hooks_of`)."""

    __slots__ = ("__self__", "method")

    def __init__(self, method: Callable[..., Any], hooks: LoopHooksLike) -> None:
        self.method = method
        self.__self__ = hooks

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            made = self.method(*args, **kwargs)
        except BaseException as exc:
            hide_own_frames(exc)
            raise
        return _own_made(made)


def _calling_own(own: Callable[..., Any], loop: Any, *args: Any, **kwargs: Any) -> Any:
    """A loop's own create_future/create_task, called as it is, when its class
    carries them (a :class:`Carrier`'s ``traced``): as :class:`_CallingOwn`."""
    try:
        made = own(loop, *args, **kwargs)
    except BaseException as exc:
        hide_own_frames(exc)
        raise
    return _own_made(made)


def _own_made(made: Any) -> Any:
    if isinstance(made, asyncio.Future):
        tb = getattr(made, "_source_traceback", None)
        if tb:
            strip_source_traceback(tb)
        if isinstance(made, asyncio.Task) and future_id(made) is None:
            assign_id(made)  # an id from its creation on, for the events that name it (awaiter, parent)
    return made


def hooks_of(loop: object) -> LoopHooksLike | None:
    """The hooks of a traced loop, else None: those its class carries for it,
    else the ``__self__`` of the loop's ``create_future``, ``create_task`` or
    ``close`` (the first the program did not replace since), which are the
    hooks' own methods, a :class:`_CallingOwn` or the :class:`_TracedClose`
    while it is traced. No attribute of our own is kept on the loop: on 3.13, a
    loop of asyncio's with four attributes more than its own keeps them in a
    dict (its class's shared keys are full), and every attribute access of
    asyncio's code on it takes the slow path (+11% per future lifecycle,
    sampled out)."""
    carried: LoopHooksLike | None = carried_hooks(loop)
    if carried is not None:
        return carried
    for name in _CARRIERS:
        owner = getattr(getattr(loop, name, None), "__self__", None)
        if isinstance(owner, LoopHooks):
            hooks: LoopHooksLike = owner
            return hooks
    return None


def _nothing(installation: object) -> None:
    pass


# What a traced loop's close() does for each of its installations: the layer above
# (``_install``) sets it to the pipeline's drain; _core imports nothing above it.
_close_hook: Callable[[Any], None] = _nothing


def set_close_hook(hook: Callable[[Any], None]) -> None:
    """Call ``hook(installation)`` for each installation of a loop as it closes."""
    global _close_hook
    _close_hook = hook


class _TracedClose:
    """The loop's own close, called as it is, then each installation told;
    ``__self__`` is the loop's hooks (see :func:`hooks_of`)."""

    __slots__ = ("__self__", "close", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, close: Callable[..., Any], hooks: LoopHooksLike) -> None:
        self.loop = loop
        self.close = close
        self.__self__ = hooks

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _closing(self.loop, self.__self__, self.close, args, kwargs)


def _traced_close(close: Callable[..., Any], loop: Any, *args: Any, **kwargs: Any) -> Any:
    """The loop's own close, when its class carries it (a :class:`Carrier`'s
    ``traced``): as :class:`_TracedClose`."""
    return _closing(loop, carried_hooks(loop), close, (loop, *args), kwargs)


def _closing(loop: Any, hooks: Any, close: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not loop.is_running():
        flush_pending_completions(loop)
    try:
        return close(*args, **kwargs)
    except BaseException as exc:
        hide_own_frames(exc)
        raise
    finally:
        # To the exporters' queues; a slow exporter must not stall close().
        for inst in () if hooks is None else hooks.installations:
            _close_hook(inst)


# The loop's instance attributes are read and written one by one, never through
# vars(loop) or loop.__dict__: on 3.11 and 3.12 materializing an instance's dict
# makes every later attribute access of asyncio's own code on that loop slower
# (callgrind: +20% on 3.11, +28% on 3.12 per future lifecycle, for the loop's whole
# life), which would be most of what tracing a loop costs.


def _own_attribute(loop: object, name: str) -> object:
    """The instance attribute ``name`` of ``loop`` if one shadows its class's
    method, else _MISSING (told apart by the method's binding, without the dict)."""
    value = getattr(loop, name, _MISSING)
    if value is _MISSING:
        return _MISSING
    method = getattr(type(loop), name, None)
    bind = getattr(method, "__get__", None)
    try:
        if bind is not None and value == bind(loop, type(loop)):
            return _MISSING  # the class's own method, bound (a bound method equals another of the same)
    except Exception:  # an odd descriptor: take it for an attribute of the instance
        return value
    return value


def _carried_by_class(loop: object) -> bool:
    """Whether the class of ``loop`` carries its traced methods (see the top of
    this module): a loop that is not asyncio's own, whose class takes
    attributes, that can be weakly referenced (its hooks hold it so), and that
    has none of these methods set on itself."""
    cls = type(loop)
    if isinstance(loop, asyncio.BaseEventLoop) or cls.__flags__ & _IMMUTABLE or not cls.__weakrefoffset__:
        return False
    if any(_own_attribute(loop, name) is not _MISSING for name in _PATCHED):
        return False
    for name in _CARRIED:
        own = _implementation(cls, name)[0] if name in _FACTORIES else _class_own(cls, name)
        if own is _MISSING or not callable(own) or isinstance(own, (staticmethod, classmethod)):
            return False  # not a method its class's Carrier can call with the loop first
    return True


def _class_own(cls: type, name: str) -> object:
    """The class's ``name`` as its dict holds it (seen through a Carrier), else _MISSING."""
    for klass in cls.__mro__:
        fn = vars(klass).get(name, _MISSING)
        if fn is not _MISSING:
            return fn.own if isinstance(fn, Carrier) else fn
    return _MISSING


def untraceable(loop: object) -> str | None:
    """Why ``loop`` cannot be traced, or None (tried with ``close``, one of the
    names a traced loop takes anyway: a new name would grow its class's keys).
    A loop whose class carries its methods is not tried: that would give it a
    dict for good."""
    if _carried_by_class(loop):
        return None
    own = _own_attribute(loop, "close")
    try:
        loop.close = loop.close if own is _MISSING else own  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        return (
            f"cannot trace {type(loop).__module__}.{type(loop).__qualname__} loops: their instances take no "
            "attributes; make them through tracedfuture.loop_factory(base=...), which subclasses them"
        )
    if own is _MISSING:
        del loop.close  # type: ignore[attr-defined]
    return None


_warned: set[type] = set()


def warn_once(loop: object, reason: str) -> None:
    """One line through the ``tracedfuture`` logger, once per loop type."""
    if type(loop) not in _warned:
        _warned.add(type(loop))
        logger.warning("tracedfuture: %s", reason)


def hook_loop(loop: asyncio.AbstractEventLoop) -> LoopHooksLike:
    """Give ``loop`` its traced methods; raise TypeError if it cannot take them."""
    reason = untraceable(loop)
    if reason is not None:
        raise TypeError(reason)
    if _carried_by_class(loop):
        return _hook_by_class(loop)
    saved = {name: value for name in _PATCHED if (value := _own_attribute(loop, name)) is not _MISSING}
    close = loop.close
    own: dict[str, Callable[..., Any]] = {}
    for name in _FACTORIES:
        if name in saved:
            continue  # an attribute the user set: shadowed while traced, restored after
        method, stock = _implementation(type(loop), name)
        if method not in _stock[name]:  # else asyncio's or uvloop's: LoopHooks does the same, faster
            own[name] = getattr(loop, name)
            if stock is _BASE_METHODS[name]:
                _needs_class_patch(loop)
        # LoopHooks falls back on the methods it finds on the loop (with a task
        # factory, or for an untraced future): those must be the stock ones, never
        # an override or the class patch, which would come back to LoopHooks.
        if stock is not _MISSING:
            setattr(loop, name, types.MethodType(stock, loop))  # type: ignore[arg-type]
    hooks: LoopHooksLike = LoopHooks(loop)
    hooks.base_call_soon = saved.get("call_soon")  # else the class's, at each call
    ours: dict[str, object] = {
        "create_future": _CallingOwn(own["create_future"], hooks) if "create_future" in own else hooks.create_future,
        "create_task": _CallingOwn(own["create_task"], hooks) if "create_task" in own else hooks.create_task,
        "call_soon": hooks.call_soon,
        "close": _TracedClose(loop, close, hooks),
    }
    hooks.saved = (saved, ours)
    for name, value in ours.items():
        if name == "call_soon":
            # Set by the hooks with the loop's first traced task: a loop whose
            # tasks are all sampled out keeps its own call_soon, untouched.
            hooks.call_soon_on_first_task = value
        else:
            setattr(loop, name, value)
    return hooks


def _hook_by_class(loop: asyncio.AbstractEventLoop) -> LoopHooksLike:
    """Trace ``loop`` through its class's Carriers (see the top of this module)."""
    cls = type(loop)
    bases: dict[str, Any] = {}
    for name in _FACTORIES:
        own, stock = _implementation(cls, name)
        # what LoopHooks falls back on (a task factory, an untraced future): the
        # stock method, never an override, which the Carrier calls itself
        bases[name] = own if stock is _MISSING else stock
    hooks: LoopHooksLike = LoopHooks(loop, (cls, bases["create_future"], bases["create_task"]))
    try:
        _patch_class(cls, loop, lambda: _carriers(cls))
    except BaseException:
        hooks.detach()
        raise
    call_soon = hooks.call_soon  # one bound method: unhook_loop knows it by identity
    hooks.call_soon_on_first_task = call_soon
    hooks.saved = ({}, {"call_soon": call_soon})
    return hooks


def _carriers(cls: type) -> dict[str, object]:
    """The Carriers of a class whose loops it traces: the hooks' own methods
    where its methods are the stock ones, else its own, called as they are."""
    carriers: dict[str, object] = {}
    for name in _FACTORIES:
        own, stock = _implementation(cls, name)
        carriers[name] = Carrier(cls, name, own, None if own is stock else _calling_own)
    carriers["close"] = Carrier(cls, "close", _class_own(cls, "close"), _traced_close)
    return carriers


def unhook_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Restore ``loop`` exactly as it was before :func:`hook_loop`, keeping what
    its own code set on it since (a subclass's ``__init__`` runs after ours)."""
    hooks = hooks_of(loop)
    saved, ours = ({}, {}) if hooks is None or hooks.saved is None else hooks.saved
    if hooks is not None:
        hooks.call_soon_on_first_task = None  # a task made through hooks kept elsewhere sets nothing now
        hooks.saved = None
        hooks.detach()  # carried by the class: no longer the loop's
    for name, value in ours.items():
        if _own_attribute(loop, name) is value:
            delattr(loop, name)
            if name in saved:
                setattr(loop, name, saved[name])
    _release_class_patch(id(loop))


# --- methods set on a class while its loops need them ---------------------------------
#
# asyncio's create_future/create_task on BaseEventLoop, for super() calls from a
# loop's own (_needs_class_patch), and the Carriers of a class that carries its
# loops' methods (_hook_by_class): set once, for as long as one traced loop
# needs them, and put back when the last is untraced or collected.

_class_saved: dict[str, Any] = dict(_BASE_METHODS)  # what BaseEventLoop had when patched
_class_lock = threading.Lock()


class _ClassPatch:
    """Methods set on ``cls``, what it had before, and the loops that need them
    (by id, each with the finalizer that releases it when collected)."""

    __slots__ = ("cls", "patches", "saved", "users")

    def __init__(self, cls: type, patches: dict[str, object], saved: dict[str, Any]) -> None:
        self.cls = cls
        self.patches = patches
        self.saved = saved
        self.users: dict[int, weakref.finalize] = {}  # type: ignore[type-arg]

    def apply(self) -> None:
        for name, patch in self.patches.items():
            self.saved[name] = vars(self.cls).get(name, _MISSING)
            setattr(self.cls, name, patch)

    def restore(self) -> None:
        for name, patch in self.patches.items():
            _restore(self.cls, name, self.saved[name], patch)


_patched: dict[type, _ClassPatch] = {}


def _patch_class(
    cls: type, loop: object, patches: Callable[[], dict[str, object]], saved: dict[str, Any] | None = None
) -> None:
    """Set ``patches()`` on ``cls`` (once) for as long as ``loop``, or another
    loop that asked, is traced (``saved``: where to keep what it had)."""
    with _class_lock:
        _carry_out_releases()  # first: a release queued for this id is an earlier loop's
        entry = _patched.get(cls)
        if entry is None:
            entry = _patched[cls] = _ClassPatch(cls, patches(), {} if saved is None else saved)
            entry.apply()
        key = id(loop)
        if key not in entry.users:
            # May collect garbage, and so run another loop's finalizer, here:
            # which is why releases only queue themselves (see _settle).
            entry.users[key] = weakref.finalize(loop, _release_class_patch, key)
    _settle()


# Arguments pass through untouched, so that a wrong call fails with asyncio's own message.
def _base_create_future(self: Any, *args: Any, **kwargs: Any) -> Any:
    hooks = hooks_of(self)
    try:
        if hooks is None or args or kwargs:
            return _class_saved["create_future"](self, *args, **kwargs)
        return hooks.create_future()
    except BaseException as exc:
        hide_own_frames(exc)
        raise


def _base_create_task(self: Any, *args: Any, **kwargs: Any) -> Any:
    hooks = hooks_of(self)
    try:
        if hooks is None or len(args) + ("coro" in kwargs) != 1:
            return _class_saved["create_task"](self, *args, **kwargs)
        return hooks.create_task(*args, **kwargs)
    except BaseException as exc:
        hide_own_frames(exc)
        raise


_CLASS_PATCHES: dict[str, Callable[..., Any]] = {
    "create_future": _base_create_future,
    "create_task": _base_create_task,
}


def _needs_class_patch(loop: object) -> None:
    """Patch asyncio's create_future/create_task on BaseEventLoop while ``loop``,
    whose class overrides one of them, is traced: what it makes through super()
    is then traced too. Untraced loops get asyncio's methods, called as they are."""
    _patch_class(_Base, loop, lambda: dict(_CLASS_PATCHES), _class_saved)


_released: list[int] = []  # loops done with their class patches, for whoever holds _class_lock next


def _release_class_patch(key: int) -> None:
    """``loop`` (by id) no longer needs its class patches: an untraced loop, or
    a collected one, whose finalizer may run inside the garbage collector while
    this very thread holds ``_class_lock``: it queues the release and never waits."""
    _released.append(key)
    _settle()


def _settle() -> None:
    """Carry out the queued releases, unless another holder of the lock will."""
    while _released and _class_lock.acquire(blocking=False):
        try:
            _carry_out_releases()
        finally:
            _class_lock.release()


def _carry_out_releases() -> None:
    # With _class_lock held.
    while _released:
        key = _released.pop(0)
        for cls, entry in list(_patched.items()):
            finalizer = entry.users.pop(key, None)
            if finalizer is None:
                continue
            finalizer.detach()
            if not entry.users:
                del _patched[cls]
                entry.restore()


# --- seeing loops being made ---------------------------------------------------------

_on_new_loop: Callable[[Any], None] | None = None
_base_init: Callable[..., None] | None = None
_base_init_patch: object = None
_uvloop_classes: list[tuple[type, object, object]] = []  # (uvloop.Loop, its own __init__ or _MISSING, ours)
_finder: _UvloopFinder | None = None


def _new_loop(loop: Any) -> None:
    on_new_loop = _on_new_loop
    if on_new_loop is None:
        return
    reason = untraceable(loop)
    if reason is not None:
        warn_once(loop, reason)
        return
    try:
        on_new_loop(loop)
    except Exception as exc:  # tracing must never stop a loop from being made
        warn_once(loop, f"cannot trace {type(loop).__qualname__} loops: {exc!r}")


def _announcing(original: Callable[..., None]) -> Callable[..., None]:
    """A loop class's ``__init__`` that runs ``original``, then tells tracing that a
    loop was made; its own frame never shows in a traceback."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            original(self, *args, **kwargs)
        except BaseException as exc:
            hide_own_frames(exc)
            raise
        _new_loop(self)

    _copy_names(__init__, original)
    return __init__


def patch_construction(on_new_loop: Callable[[Any], None]) -> None:
    """Call ``on_new_loop(loop)`` for every asyncio and uvloop loop made from now on."""
    global _on_new_loop, _base_init, _base_init_patch, _finder
    _on_new_loop = on_new_loop
    if _base_init is None:
        original = _Base.__init__
        _base_init = original
        _Base.__init__ = _base_init_patch = _announcing(original)
    uvloop = sys.modules.get("uvloop")
    if uvloop is not None:
        _patch_uvloop(uvloop)
    if _finder is None:
        _finder = _UvloopFinder()
        sys.meta_path.insert(0, _finder)


def unpatch_construction() -> None:
    """Undo :func:`patch_construction` exactly."""
    global _on_new_loop, _base_init, _finder
    _on_new_loop = None
    if _base_init is not None:
        _restore(_Base, "__init__", _base_init, _base_init_patch)
        _base_init = None
    while _uvloop_classes:
        cls, init, patch = _uvloop_classes.pop()
        _restore(cls, "__init__", init, patch)
    if _finder is not None:
        if _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
        _finder = None


def _restore(cls: type, name: str, original: object, patch: object) -> None:
    """Put ``original`` back (or remove the attribute if it was inherited), unless
    someone patched the class again after us: theirs is kept, and calls ours."""
    if vars(cls).get(name) is not patch:
        return
    if original is _MISSING:
        delattr(cls, name)
    else:
        setattr(cls, name, original)


def _copy_names(wrapper: Callable[..., Any], original: Callable[..., Any]) -> None:
    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        try:
            setattr(wrapper, attr, getattr(original, attr))
        except (AttributeError, TypeError):
            pass


for _name, _patch in _CLASS_PATCHES.items():
    _copy_names(_patch, _BASE_METHODS[_name])  # BaseEventLoop.create_task reads as asyncio's


def _patch_uvloop(module: types.ModuleType) -> None:
    """Trace every ``uvloop.Loop`` however it is made (``new_event_loop``,
    ``run``, ``install``, its policy, a subclass, uvicorn): uvloop's loops never
    run ``BaseEventLoop.__init__``, but they are all instances of the Python class
    ``uvloop.Loop``, a Python class (in ``uvloop/__init__.py``) whose
    ``__init__`` can be set."""
    cls = getattr(module, "Loop", None)
    if not isinstance(cls, type) or any(entry[0] is cls for entry in _uvloop_classes):
        return
    own = vars(cls).get("__init__", _MISSING)
    original: Callable[..., None] = cls.__init__  # type: ignore[misc]
    __init__ = _announcing(original)
    try:
        cls.__init__ = __init__  # type: ignore[misc]
    except (AttributeError, TypeError):
        logger.warning(
            "tracedfuture: cannot trace %s.%s loops process-wide; make them through "
            "tracedfuture.loop_factory(base=uvloop.new_event_loop)",
            cls.__module__,
            cls.__qualname__,
        )
        return
    _uvloop_classes.append((cls, own, __init__))


class _UvloopFinder:
    """Patches uvloop right after it is imported, leaving no trace of itself on
    the module (its ``__loader__`` and ``__spec__.loader`` are uvloop's own).

    A meta path finder and its loader by protocol, not by ``importlib.abc``
    (whose import costs the traced program's start-up a few milliseconds)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "uvloop":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader)  # type: ignore[assignment]
                return spec
        return None


class _PatchingLoader:
    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        module: types.ModuleType | None = self.loader.create_module(spec)
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        if _on_new_loop is not None:
            try:
                _patch_uvloop(module)
            except Exception as exc:
                logger.warning("tracedfuture: cannot trace uvloop loops process-wide: %r", exc)
