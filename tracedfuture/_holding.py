"""Raw records held unconverted, for tail-sampled loops.

When every installation that receives a loop's events samples by tail
(``tail=True``), most futures end healthy and are never exported. Converting
their records to events only to drop them would be most of tracing's cost, so the
drain holds them raw instead. A future is *released* (its records, and those of
the futures and tasks linked to it, converted in their original order) when it
fails, is cancelled, is the subject of a lint, is abandoned or leaves an exception
unretrieved, or lives longer than ``slow``. A healthy one is forgotten, after
lingering a while in case a linked future is released later.

This is only an optimisation: the installation's :class:`~tracedfuture._delivery.TailSampler`
still decides what is kept, from the events of what was released; holding
releases a superset of what it can keep (the future, the tasks and futures linked
to it by awaiting, and the tasks above them).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from . import _events as ev

__all__ = ["Holding"]


class _Held:
    __slots__ = ("created_ns", "links", "parent", "records", "slow_ns")

    def __init__(self, record: tuple[Any, ...], slow_ns: int) -> None:
        self.records = [record]
        self.created_ns: int = record[2]
        self.slow_ns = slow_ns
        self.links: set[int] = set()
        # For a task, the task that created it (OP_CREATED's task_id).
        self.parent: int | None = record[3] if record[4] else None


class Holding:
    """The held futures of lazy routes, with the links that decide their release."""

    def __init__(self, *, linger: int = 10_000, max_held: int = 500_000) -> None:
        self.linger = linger
        self.max_held = max_held
        self.held: dict[int, _Held] = {}
        self.lingering: OrderedDict[int, _Held] = OrderedDict()
        self.born: deque[tuple[int, int]] = deque()
        self.forgotten = 0  # futures never converted

    def __contains__(self, fid: int) -> bool:
        return fid in self.held or fid in self.lingering

    def hold(self, record: tuple[Any, ...], slow_ns: int) -> None:
        """Start holding a future, from its OP_CREATED record."""
        fid = record[1]
        self.held[fid] = _Held(record, slow_ns)
        self.born.append((record[2], fid))

    def add(self, record: tuple[Any, ...]) -> bool:
        """Hold one more record of a held future; True when it must be released."""
        op, fid = record[0], record[1]
        item = self.held.get(fid)
        if item is None:
            item = self.lingering.get(fid)
            if item is None:
                return False
            item.records.append(record)
            if op == ev.OP_COLLECTED:
                if record[3] == "UNRETRIEVED":
                    return True
                self._forget(fid)  # collected healthy: never needed
            return op in (ev.OP_FAILED, ev.OP_LINT)
        item.records.append(record)
        if op == ev.OP_CB_ADDED:
            awaiter = record[5]
            if awaiter is not None:
                item.links.add(awaiter)
                other = self.held.get(awaiter) or self.lingering.get(awaiter)
                if other is not None:
                    other.links.add(fid)
            return False
        if op == ev.OP_RESOLVED:
            if record[2] - item.created_ns >= item.slow_ns:
                return True
            del self.held[fid]
            self.lingering[fid] = item
            return False
        if op == ev.OP_COLLECTED:
            return bool(record[3] != "FINISHED")
        return op in (ev.OP_FAILED, ev.OP_CANCELLED, ev.OP_LINT)

    def release(self, fid: int) -> list[tuple[Any, ...]]:
        """Stop holding ``fid`` and what is linked to it; their records, in order."""
        group: list[_Held] = []
        self._take(fid, group)
        item = group[0] if group else None
        if item is not None:
            for other in list(item.links):
                self._take(other, group)
            # The tasks above the future and above the tasks linked to it.
            for member in list(group):
                parent = member.parent
                while parent is not None and self._take(parent, group):
                    parent = group[-1].parent
        records = [record for member in group for record in member.records]
        records.sort(key=_ts)  # a stable sort: ties keep the order they were recorded in
        return records

    def release_all(self) -> list[tuple[Any, ...]]:
        """Every held (still pending) future's records, in order."""
        records = [record for item in self.held.values() for record in item.records]
        self.held.clear()
        self.born.clear()
        records.sort(key=_ts)
        return records

    def due(self, now_ns: int) -> list[int]:
        """Held futures still pending after ``slow``: they must be released."""
        out = []
        born = self.born
        while born:
            created, fid = born[0]
            item = self.held.get(fid)
            if item is None:
                born.popleft()
                continue
            if now_ns - created < item.slow_ns:
                break
            born.popleft()
            out.append(fid)
        while len(self.lingering) > self.linger:
            fid, _ = self.lingering.popitem(last=False)
            self.forgotten += 1
        while len(self.held) > self.max_held:
            fid = next(iter(self.held))
            del self.held[fid]
            self.forgotten += 1
        return out

    def _take(self, fid: int, group: list[_Held]) -> bool:
        item = self.held.pop(fid, None) or self.lingering.pop(fid, None)
        if item is None:
            return False
        group.append(item)
        return True

    def _forget(self, fid: int) -> None:
        if self.lingering.pop(fid, None) is not None:
            self.forgotten += 1


def _ts(record: tuple[Any, ...]) -> int:
    return record[2]  # type: ignore[no-any-return]
