"""The pure-Python :class:`Ring`: the raw records of one route, bounded in bytes.

The reference implementation of the ring described in ``_seam.py`` (the compiled
core has its own, an array of C structs). Used by ``_future``.
"""

from __future__ import annotations

import collections
import itertools
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

__all__ = ["RecordBatch", "Ring"]

# An honest estimate of one raw record in memory: a tuple of the common length,
# its timestamp (an int object of its own) and the deque slot that holds it. The
# other items (ids, names, code objects, types) are shared with the future or
# between records.
_RECORD_SIZE = sys.getsizeof((None,) * 9) + sys.getsizeof(time.monotonic_ns()) + 8


_CREATED, _COLLECTED = 0, 8  # _seam.OPS; _events imports this module's layer, not the reverse


class RecordBatch(list[tuple[Any, ...]]):
    """Records taken out of a ring, oldest first: the reference twin of the
    compiled ``RecordBatch`` (``_batch.c``), which holds C structs and makes a
    record's tuple only when it is read. Here the records are tuples already.

    >>> batch = RecordBatch([(0, 1, 10), (8, 1, 11, "FINISHED", False)])
    >>> kept, dropped, *_ = batch.shed({1: None}, {}, 10_000, 0, 100, 10)
    >>> len(kept), dropped
    (0, 2)
    """

    __slots__ = ()

    @staticmethod
    def join(*parts: Iterable[tuple[Any, ...]]) -> RecordBatch:
        """One batch of the records of ``parts`` (batches or lists of tuples), in order."""
        return RecordBatch(itertools.chain.from_iterable(parts))

    def shed(
        self, untold: dict[int, None], holed: dict[int, None], room: int, reserve: int, unit: int, max_screened: int
    ) -> tuple[RecordBatch, int, int, int, list[tuple[int, int]]]:
        """What an exporter's queue keeps of this batch, a whole future at a time:
        ``(kept, dropped, dropped_futures, incomplete_futures, marks)``.

        Records of futures in ``untold`` (dropped whole) or ``holed`` (marked
        incomplete) are dropped. If the rest needs more than ``room`` bytes
        (``unit`` per record), the later records of futures already queued go
        first, in ``room``; new futures (their ``created`` is in this batch)
        only in ``room - reserve``, whole or not at all (added to ``untold``). An
        already queued future that loses a record joins ``holed``, and ``marks``
        says where: ``(future_id, ts_ns)`` of the record it lost. A future's end
        (``collected``) takes it off the screens, which keep ``max_screened`` ids
        at most, the newest.
        """
        records: list[tuple[Any, ...]] = self
        dropped = dropped_futures = incomplete = 0
        marks: list[tuple[int, int]] = []
        if untold or holed:
            kept: list[tuple[Any, ...]] = []
            ended: list[int] = []
            for record in records:
                fid = record[1]
                if fid in untold or fid in holed:
                    dropped += 1
                    if record[0] == _COLLECTED:
                        ended.append(fid)
                else:
                    kept.append(record)
            _forget(untold, holed, ended, max_screened)
            records = kept
        if len(records) * unit > room:
            born = {r[1] for r in records if r[0] == _CREATED}
            out: list[tuple[Any, ...]] = []
            owed_room, new_room = room, room - reserve
            gone: dict[int, None] = {}  # new futures dropped whole in this batch, in order
            ended = []
            for record in records:
                fid = record[1]
                if fid in untold or fid in holed or fid in gone:
                    dropped += 1
                elif fid in born or not fid:
                    if new_room >= unit:
                        out.append(record)
                        new_room -= unit
                        owed_room -= unit
                        continue
                    dropped += 1
                    if fid:
                        gone[fid] = None
                        dropped_futures += 1
                elif owed_room >= unit:
                    out.append(record)
                    owed_room -= unit
                    new_room -= unit
                    continue
                else:
                    dropped += 1
                    holed[fid] = None
                    incomplete += 1
                    marks.append((fid, record[2]))
                if record[0] == _COLLECTED:
                    ended.append(fid)
            if gone:
                # Their records kept earlier in this batch go too: whole futures.
                kept_before = len(out)
                out = [r for r in out if r[1] not in gone]
                dropped += kept_before - len(out)
                untold.update(gone)
            _forget(untold, holed, ended, max_screened)
            records = out
        if records is self:
            return self, 0, 0, 0, marks
        return RecordBatch(records), dropped, dropped_futures, incomplete, marks


def _forget(untold: dict[int, None], holed: dict[int, None], ended: list[int], limit: int) -> None:
    for fid in ended:
        untold.pop(fid, None)
        holed.pop(fid, None)
    for screened in (untold, holed):
        while len(screened) > limit:
            del screened[next(iter(screened))]


class Ring:
    """The raw records of one route, bounded in bytes (see ``_seam``).

    Unread records are a deque the hot path appends to; records already taken stay
    in a second deque so that :meth:`window` still shows them, and the two together
    never hold more than ``capacity`` records.

    >>> ring = Ring(10 * Ring.record_size, streaming=False)
    >>> for i in range(12):
    ...     ring.append((9, 0, i))
    >>> [r[2] for r in ring.take()], ring.stats()["overwritten"]
    ([2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 2)
    """

    record_size = _RECORD_SIZE

    __slots__ = (
        "_held",
        "_hurried",
        "_incomplete",
        "_limit",
        "_lock",
        "_on_full",
        "_pending",
        "_taken",
        "capacity",
        "dropped",
        "history",
        "overwritten",
        "streaming",
        "taken",
        "untraced",
        "written",
    )

    def __init__(self, max_bytes: int, *, streaming: bool, on_full: Any = None, history: bool = True) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < _RECORD_SIZE:
            msg = f"max_bytes must be an int of at least one record ({_RECORD_SIZE} bytes), not {max_bytes!r}"
            raise ValueError(msg)
        if on_full is not None and not callable(on_full):
            msg = f"on_full must be a callable taking no arguments, or None, not {on_full!r}"
            raise TypeError(msg)
        self.capacity = max_bytes // _RECORD_SIZE
        self.streaming = bool(streaming)
        # Taken records stay in the window until their room is needed; without
        # history (no flight recorder reads the window), take() lets them go.
        self.history = bool(history)
        self._on_full = on_full
        self._hurried = False  # on_full was called since the last take: once is enough
        self._held = False  # hold(True): its reader takes nothing now, so no new future is traced
        # A new future is traced while fewer than 7/8 of the capacity is unread
        # (streaming); a flight recorder alone never refuses one.
        self._limit = -(-7 * self.capacity // 8) if self.streaming else sys.maxsize
        self._pending: collections.deque[tuple[Any, ...]] = collections.deque()
        self._taken: collections.deque[tuple[Any, ...]] = collections.deque()
        self._incomplete: set[int] = set()
        self._lock = threading.Lock()
        self.written = self.taken = self.overwritten = self.dropped = self.untraced = 0

    def __repr__(self) -> str:
        mode = "streaming" if self.streaming else "overwriting"
        return f"<tracedfuture Ring {mode} capacity={self.capacity} unread={len(self._pending)}>"

    def put(self, record: tuple[Any, ...]) -> None:
        """Write one record (the hot path)."""
        pending = self._pending
        if len(pending) >= self.capacity:
            if self.streaming:
                self.dropped += 1
                self._incomplete.add(record[1])
                return
            pending.popleft()
            self.overwritten += 1
        elif self._taken and len(self._taken) + len(pending) >= self.capacity:
            self._taken.popleft()  # already read: it only leaves the window
        pending.append(record)
        self.written += 1

    def admit(self) -> bool:
        """May a new future be traced? Counts and signals a refusal."""
        if len(self._pending) < self._limit and not self._held:
            return True
        self.untraced += 1
        on_full = self._on_full
        if on_full is not None and not self._hurried:
            self._hurried = True
            try:
                on_full()
            except Exception:  # the reader's hurry must not break future creation
                pass
        return False

    def was_incomplete(self, fid: int) -> bool:
        """Did the ring drop one of ``fid``'s records? Forgets the mark."""
        incomplete = self._incomplete
        if fid in incomplete:
            incomplete.discard(fid)
            return True
        return False

    def take(self) -> list[tuple[Any, ...]]:
        """The records written since the last take(), oldest first."""
        with self._lock:
            pending, taken = self._pending, self._taken
            n = len(pending)
            # popleft while writers append on the right: atomic, no record lost.
            batch = [pending.popleft() for _ in range(n)]
            if self.history:
                taken.extend(batch)
            excess = len(taken) + len(pending) - self.capacity
            for _ in range(max(0, excess)):
                taken.popleft()
            self.taken += n
            self._hurried = False
            return batch

    def take_batch(self) -> RecordBatch:
        """The records written since the last take(), as one :class:`RecordBatch`."""
        return RecordBatch(self.take())

    def window(self, limit: int | None = None) -> list[tuple[Any, ...]]:
        """Every record still held, taken or not, oldest first (the newest
        ``limit`` of them, if given)."""
        keep = self.capacity if limit is None else max(0, min(limit, self.capacity))
        with self._lock:
            pending, taken = self._pending, self._taken
            if len(pending) >= keep:
                return list(itertools.islice(pending, len(pending) - keep, None)) if keep else []
            from_taken = keep - len(pending)
            return [*itertools.islice(taken, max(0, len(taken) - from_taken), None), *pending]

    def append(self, record: tuple[Any, ...]) -> None:
        """Write a record made off the hot path (a lint), from any thread."""
        self.put(record)

    def hold(self, held: bool) -> None:
        """``hold(True)``: the reader takes nothing now; no new future is traced
        (each counted in ``untraced``) until ``hold(False)``. A ring that a
        flight recorder reads (``history``) is never held: what went wrong
        while an exporter was stuck is what it is for."""
        self._held = bool(held) and self.streaming and not self.history

    def stats(self) -> dict[str, int]:
        return {
            "capacity": self.capacity,
            "record_size": _RECORD_SIZE,
            "written": self.written,
            "taken": self.taken,
            "overwritten": self.overwritten,
            "dropped": self.dropped,
            "untraced": self.untraced,
        }

    def clear(self) -> None:
        """Forget every record held (after ``fork()``, in the child)."""
        with self._lock:
            self._pending.clear()
            self._taken.clear()
            self._incomplete.clear()
            self._hurried = False
