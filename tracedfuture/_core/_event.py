"""Event and Site: what exporters and users see of a traced future's life.

Made when first asked for: :mod:`tracedfuture._core._events`, the vocabulary,
names them (``_events.Event``), and a traced start that writes only a trace file
never needs them. Public as ``tracedfuture.Event`` and ``tracedfuture.Site``.
"""

# No `from __future__ import annotations` here: NamedTuple compiles each string
# annotation into a ForwardRef, 30 compilations (the annotations below are all
# evaluable).
from typing import NamedTuple

from ._events import EVENT_FIELDS

__all__ = ["Event", "Site"]


class Site(NamedTuple):
    """Where something happened: the first frame outside asyncio and tracedfuture."""

    filename: str
    lineno: int
    function: str

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno} in {self.function}"


class Event(NamedTuple):
    """One thing that happened to one future or task.

    Every event has ``kind``, ``future_id``, ``ts_ns`` and ``task_id``; ``is_task``
    and ``name`` are repeated on every event so that a single event can be shown on
    its own. The other fields are ``None`` unless the kind fills them:

    ========================  ====================================================
    kind                      fields
    ========================  ====================================================
    ``created``               ``site``, ``program_site``, ``thread_id``, ``coro``
                              and ``parent_id`` (tasks), ``name`` (task name or
                              future label);
                              for a future that asyncio's own code made on the
                              program's behalf, ``coro`` names that function
                              (``SubprocessStreamProtocol.__init__``)
    ``callback_added``        ``callback``
    ``callback_removed``      ``callback``
    ``awaited``               ``callback`` (the wakeup), ``awaiter_id``
    ``callback_scheduled``    ``callback``, ``awaiter_id`` (when it is a wakeup)
    ``resolved``              ``result_type``, ``value`` (only with capture_values)
    ``failed``                ``exc_type``, ``exc_msg`` (only with capture_values),
                              ``raise_site``, ``raise_program_site``
    ``cancel_requested``      ``msg``, ``canceller_id``, ``canceller``,
                              ``waiting_site`` (tasks)
    ``cancelled``             ``msg``, ``canceller_id``, ``canceller``,
                              ``waiting_site``
    ``caught``                ``exc_type``, ``exc_msg`` (only with
                              capture_values), ``raise_site``,
                              ``raise_program_site``: an exception raised in
                              the task that a framework caught (a server's
                              500); the task goes on
    ``renamed``               ``name`` (the new name)
    ``abandoned``             ``site``, ``age_ns``, ``awaiter_id`` (last awaiter)
    ``unretrieved``           ``site``, ``age_ns``, ``exc_type``
    ``stalled``               ``chain`` (awaiting task ids down to this future),
                              ``age_ns``, ``detail``
    ``blocked_loop``          ``age_ns`` (how long), ``detail`` (the loop thread's
                              stack), ``task_id`` (the task that was running);
                              ``future_id`` is 0
    ``orphan``                ``site``, ``age_ns``
    ``incomplete``            ``detail`` (why): some of the future's records were
                              lost, or its history began before the recorded
                              window; it is not pending on that account
    ========================  ====================================================

    ``site`` is the first frame outside asyncio and tracedfuture (a library's,
    maybe); ``program_site`` the first frame of the program's own code up the stack
    at creation (``None`` when there was none; what counts as the program:
    ``install(app_modules=...)``). ``raise_site`` is the innermost entry of a
    failure's traceback, ``raise_program_site`` the innermost one in the program.
    ``waiting_site`` is the program's line where a cancelled task was waiting
    when ``cancel()`` was called (the innermost frame of the program's own code
    down its coroutines; ``None`` when it was not waiting there).

    ``context`` (on ``created``) is what the installation's exporters asked to
    capture when the future was made, through an optional ``capture()`` method
    (the OpenTelemetry exporter captures the current span's context). It stays in
    the process: trace files leave it out.

    ``task_id`` is the id of the task that was running when it happened (``None``
    in a plain callback). ``ts_ns`` is :func:`time.monotonic_ns`; the trace's wall
    clock anchor (see :class:`tracedfuture.Installation`) converts it to wall time.
    """

    kind: str
    future_id: int
    ts_ns: int
    task_id: int | None = None
    is_task: bool = False
    name: str | None = None
    site: Site | None = None
    thread_id: int | None = None
    coro: str | None = None
    parent_id: int | None = None
    callback: str | None = None
    awaiter_id: int | None = None
    result_type: str | None = None
    value: str | None = None
    exc_type: str | None = None
    exc_msg: str | None = None
    msg: str | None = None
    canceller_id: int | None = None
    canceller: str | None = None
    age_ns: int | None = None
    chain: tuple[int, ...] | None = None
    detail: str | None = None
    context: object = None
    program_site: Site | None = None
    raise_site: Site | None = None
    raise_program_site: Site | None = None
    waiting_site: Site | None = None

    def fields(self) -> dict[str, object]:
        """The event as a dict without its ``None`` fields (sites as strings)."""
        out: dict[str, object] = {}
        for key, value in zip(self._fields, self, strict=True):
            if value is None:
                continue
            out[key] = str(value) if isinstance(value, Site) else value
        return out


if Event._fields != EVENT_FIELDS:  # the pipeline indexes records by EVENT_FIELDS
    raise ImportError("Event's fields and _events.EVENT_FIELDS differ: change both")  # noqa: EM101

# Public as tracedfuture.Site and tracedfuture.Event: reprs, docs and pickles
# name the package (tracedfuture/__init__.py).
Site.__module__ = Event.__module__ = "tracedfuture"
