"""Raw records straight to trace-file lines, with no :class:`Event` in between.

A trace file is the most common destination, and it has no use for event
objects: :class:`Lines` folds the records the way
:class:`~tracedfuture._pipeline._convert.Converter` does (it *is* one, with the
same per-future state) and writes the four records that make up most of every
trace (a future created, awaited, resolved, collected) as JSON text directly,
from fragments cached per future (``"is_task"`` and ``"name"``), per creation
site, per callback name and per result type. Every other record goes through the
converter's own code and :func:`~tracedfuture.trace.event_to_json` (and json), so that the
file reads exactly as if each event had been built and written on its own
(``tests/test_lines.py`` compares the two, byte for byte, on both implementations).

It runs on the trace file's own delivery thread (``_sink``), after the queue
decided what is kept: records that are shed are never formatted. A trace file
(``JsonLinesExporter.export_records``) has a batch's lines written to its file
in the same call (:meth:`Lines.write`): the compiled writer formats and writes
with the GIL released, and takes it back once.

With the compiled implementation, :func:`make_lines` returns its
``LineWriter`` (``_core/_lines.c``), the same writer in C: it writes those four
records itself, and the failures and cancels of the common shapes (with the
``unretrieved`` or ``abandoned`` event at collection), from fragments this class
makes (:meth:`Lines.exc_type_text`, :meth:`Lines.canceller_text`, ...), and hands
a future to a :class:`Lines` (:meth:`Lines.adopt`) the first time its history
needs anything else. Both make the same bytes.
"""

from __future__ import annotations

# At load, not at the first failure or cancel: imported then, on the drain thread
# of a busy program, json (and re, and its patterns) took 0.4 s to load, while
# the ring filled and 36,000 futures of the 100k program were dropped.
import json
import os
from collections.abc import Sequence
from typing import Any, Protocol

from .. import _core
from .._core import _events as ev
from .._core._events import Event
from .._tracefile import dumps, event_to_json, json_string
from ._convert import MARK, Converter, _FutureState, caller_text, site_of, type_name

__all__ = ["MARK", "Lines", "LinesLike", "Written", "make_lines"]

Record = tuple[Any, ...]
#: What :meth:`Lines.write` did: (lines, bytes written, the OSError that stopped
#: it, the lines it was writing) or (lines, bytes written, None, None).
Written = tuple[int, int, "OSError | None", "bytes | None"]

_CREATED, _CB_ADDED, _RESOLVED, _COLLECTED = ev.OP_CREATED, ev.OP_CB_ADDED, ev.OP_RESOLVED, ev.OP_COLLECTED
_CACHE_LIMIT = 100_000


class LinesLike(Protocol):
    """A trace-line writer: :class:`Lines`, or the compiled ``LineWriter``."""

    def lines(self, records: Sequence[Record], /) -> tuple[bytes, int]: ...
    def write(self, records: Sequence[Record], fd: int, /) -> Written: ...
    def clear(self) -> None: ...


def make_lines(*, capture_values: bool = False, redact: Any = None, partial: bool = False) -> LinesLike:
    """The fastest trace-line writer available: the compiled implementation's
    ``LineWriter`` around a :class:`Lines`, else the :class:`Lines` itself.
    ``partial``: records of a window, whose futures may have begun before it
    (:class:`Converter`'s)."""
    reference = Lines(capture_values=capture_values, redact=redact, partial=partial)
    writer = _core.impl.LineWriter
    if writer is None:
        return reference
    return writer(reference, redacts=redact is not None)  # type: ignore[no-any-return]


class Lines(Converter):
    """The trace-file lines of an installation's records, in order."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._to_json = event_to_json
        self._texts: dict[str, str] = {}  # a callback or name -> its JSON string
        self._sites: dict[tuple[int, int], tuple[Any, str]] = {}  # (id(code), lasti) -> (code, '{...}')
        self._types: dict[type, str] = {}  # a result type -> ',"result_type":"..."'
        self._heads: dict[int, tuple[str | None, str]] = {}  # fid -> (name, ',"is_task":..,"name":..')

    def lines(self, records: Sequence[Record]) -> tuple[bytes, int]:
        """The lines of ``records`` (UTF-8, each ``\\n``-terminated) and how many."""
        out: list[str] = []
        emit = out.append
        states, heads = self.states, self._heads
        slow = self._convert
        emit_event = self._emit_event(out)
        text, head_of = self._text_of, self._head
        for record in records:
            op = record[0]
            if op == _COLLECTED:
                fid = record[1]
                state = states.get(fid)
                if state is not None and record[3] == "FINISHED" and not (len(record) > 4 and record[4]):
                    del states[fid]
                    heads.pop(fid, None)
                    continue
            elif op == _CREATED:
                _, fid, ts, tid, is_task, code, lasti, thread_id, name, coro, _route, _context, pcode, plasti = record
                state = self._born(fid, is_task, self._name(name), code, lasti, ts, pcode, plasti)
                line = f'{{"kind":"created","future_id":{fid},"ts_ns":{ts}'
                if tid is not None:
                    line += f',"task_id":{tid}'
                line += head_of(fid, state)
                if code is not None:
                    line += ',"site":' + self._site(code, lasti)
                if thread_id is not None:
                    line += f',"thread_id":{thread_id}'
                if coro is not None:
                    line += ',"coro":' + text(coro)
                if is_task and tid is not None:
                    line += f',"parent_id":{tid}'
                if state.program_site is not None:
                    line += ',"program_site":' + self._site(pcode, plasti)  # the site's own text if the same
                emit(line + "}")
                continue
            elif op == _CB_ADDED:
                fid = record[1]
                state = states.get(fid)
                callback = record[4]
                if state is not None and not state.done and callback is not None:
                    awaiter, tid = record[5], record[3]
                    if awaiter is not None:
                        state.awaiter_id = awaiter
                    state.callbacks.append((callback, awaiter))
                    kind = '{"kind":"awaited"' if awaiter is not None else '{"kind":"callback_added"'
                    line = f'{kind},"future_id":{fid},"ts_ns":{record[2]}'
                    if tid is not None:
                        line += f',"task_id":{tid}'
                    line += head_of(fid, state) + ',"callback":' + text(callback)
                    if awaiter is not None:
                        line += f',"awaiter_id":{awaiter}'
                    emit(line + "}")
                    continue
            elif op == _RESOLVED:
                fid = record[1]
                state = states.get(fid)
                if state is not None and record[5] is None:
                    ts, tid = record[2], record[3]
                    rest = f',"future_id":{fid},"ts_ns":{ts}'
                    if tid is not None:
                        rest += f',"task_id":{tid}'
                    rest += head_of(fid, state)
                    result = self._types.get(record[4])
                    if result is None:
                        result = self._result(record[4])
                    emit('{"kind":"resolved"' + rest + result + "}")
                    state.done = True
                    scheduled = state.scheduled = state.callbacks
                    state.callbacks = []
                    for callback, awaiter in scheduled:
                        line = '{"kind":"callback_scheduled"' + rest + ',"callback":' + text(callback)
                        emit(line + (f',"awaiter_id":{awaiter}}}' if awaiter is not None else "}"))
                    continue
            elif op == MARK:
                self._mark(record, emit_event)
                continue
            slow(record, emit_event)
            if op == _COLLECTED:
                heads.pop(record[1], None)
        if not out:
            return b"", 0
        out.append("")
        # Only lone surrogates cannot be encoded, and they appear only inside JSON
        # strings, where backslashreplace's "\udcXX" is exactly their JSON escape.
        return "\n".join(out).encode("utf-8", "backslashreplace"), len(out) - 1

    def write(self, records: Sequence[Record], fd: int) -> Written:
        """The lines of ``records`` appended to the file descriptor ``fd``: how
        many, how many bytes went through, and, when a write failed, its
        ``OSError`` and the lines it was writing. The compiled writer does this
        in one call with the GIL released (a trace file's whole batch)."""
        data, count = self.lines(records)
        view = memoryview(data)
        written = 0
        try:
            while written < len(view):
                written += os.write(fd, view[written:])
        except OSError as exc:
            return count, written, exc, data
        return count, written, None, None

    def clear(self) -> None:
        super().clear()
        self._heads.clear()

    # -- what the compiled writer asks of its reference --------------------------------

    def adopt(self, fid: int, *args: Any, **kwargs: Any) -> None:
        """:meth:`Converter.adopt`, and this writer's cached head of the future goes."""
        super().adopt(fid, *args, **kwargs)
        self._heads.pop(fid, None)

    def text(self, value: str) -> str:
        """A string as JSON (not ASCII-escaped)."""
        return self._text_of(value)

    def site_text(self, code: Any, lasti: int) -> str:
        """``,"site":{...}`` of an instruction."""
        return ',"site":' + self._site(code, lasti)

    def program_site_text(self, code: Any, lasti: int) -> str:
        """``,"program_site":{...}`` of an instruction."""
        return ',"program_site":' + self._site(code, lasti)

    def result_text(self, tp: type) -> str:
        """``,"result_type":"..."`` of a result's type."""
        return self._result(tp)

    def site_json(self, code: Any, lasti: int) -> str:
        """``{...}`` of an instruction: a failure's ``raise_site``, a task's ``waiting_site``."""
        return self._site(code, lasti)

    def exc_type_text(self, tp: type) -> str:
        """``,"exc_type":"..."`` of an exception's type (a failure's, an unretrieved one's)."""
        return ',"exc_type":' + self._text_of(type_name(tp))

    def canceller_text(self, code: Any, lasti: int, user_code: Any, user_lasti: int) -> str:
        """``,"canceller":"..."`` of a cancel's caller (and its user code), or ``""``."""
        text = caller_text((code, lasti, user_code, user_lasti))
        return "" if text is None else ',"canceller":' + self._text_of(text)

    def _emit_event(self, out: list[str]) -> Any:
        emit, event_to_json = out.append, self._to_json

        dumps = json.dumps

        def emit_event(event: Event) -> None:
            emit(dumps(event_to_json(event), separators=(",", ":"), ensure_ascii=False))

        return emit_event

    def _mark(self, record: Record, emit_event: Any) -> None:
        """A future whose later records are dropped: its ``incomplete`` event,
        and nothing more of it (its state goes)."""
        _, fid, ts, why = record
        state = self.states.pop(fid, None)
        self._heads.pop(fid, None)
        if state is None:
            return
        emit_event(
            Event(
                ev.INCOMPLETE,
                fid,
                ts,
                None,
                state.is_task,
                state.name,
                detail=f"events of this future were dropped: {why}",
            )
        )

    def _text_of(self, value: str) -> str:
        cached = self._texts.get(value)
        if cached is None:
            cached = json_string(value)
            if len(self._texts) >= _CACHE_LIMIT:
                self._texts.clear()
            self._texts[value] = cached
        return cached

    def _head(self, fid: int, state: _FutureState) -> str:
        """``,"is_task":..,"name":..`` of a future, as its events repeat it."""
        cached = self._heads.get(fid)
        if cached is not None and cached[0] is state.name:
            return cached[1]
        head = ',"is_task":true' if state.is_task else ',"is_task":false'
        if state.name is not None:
            head += ',"name":' + self._text_of(state.name)
        self._heads[fid] = (state.name, head)
        return head

    def _site(self, code: Any, lasti: int) -> str:
        key = (id(code), lasti)
        cached = self._sites.get(key)
        if cached is not None and cached[0] is code:
            return cached[1]
        site = site_of(code, lasti)
        assert site is not None
        text = dumps({"file": site.filename, "line": site.lineno, "function": site.function})
        if len(self._sites) >= _CACHE_LIMIT:
            self._sites.clear()
        self._sites[key] = (code, text)  # keeps code alive: its id is not reused
        return text

    def _result(self, tp: type) -> str:
        text = ',"result_type":' + self._text_of(type_name(tp))
        if len(self._types) < 10_000:
            self._types[tp] = text
        return text
