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
from typing import Any

__all__ = ["Ring"]

# An honest estimate of one raw record in memory: a tuple of the common length,
# its timestamp (an int object of its own) and the deque slot that holds it. The
# other items (ids, names, code objects, types) are shared with the future or
# between records.
_RECORD_SIZE = sys.getsizeof((None,) * 9) + sys.getsizeof(time.monotonic_ns()) + 8


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
        "_incomplete",
        "_limit",
        "_lock",
        "_on_full",
        "_pending",
        "_taken",
        "capacity",
        "dropped",
        "overwritten",
        "streaming",
        "taken",
        "untraced",
        "written",
    )

    def __init__(self, max_bytes: int, *, streaming: bool, on_full: Any = None) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < _RECORD_SIZE:
            msg = f"max_bytes must be an int of at least one record ({_RECORD_SIZE} bytes), not {max_bytes!r}"
            raise ValueError(msg)
        if on_full is not None and not callable(on_full):
            msg = f"on_full must be a callable taking no arguments, or None, not {on_full!r}"
            raise TypeError(msg)
        self.capacity = max_bytes // _RECORD_SIZE
        self.streaming = bool(streaming)
        self._on_full = on_full
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
        if len(self._pending) < self._limit:
            return True
        self.untraced += 1
        on_full = self._on_full
        if on_full is not None:
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
            taken.extend(batch)
            excess = len(taken) + len(pending) - self.capacity
            for _ in range(max(0, excess)):
                taken.popleft()
            self.taken += n
            return batch

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
