"""Tail sampling, decided once, on raw records, for one installation.

With ``tail=True`` an installation keeps a future's events only if the future went
wrong or was slow, together with what it is linked to. Most futures end healthy
and are never exported, so their records are held raw and never converted: the
decision is made here, before conversion, and it is the only place it is made.

A future is *kept* when it fails, is cancelled, is the subject of a lint, is
collected while pending (abandoned) or with an exception nobody retrieved, or lives
longer than ``slow`` (pending or not). Keeping a future keeps its *group*: the
tasks that awaited it and the futures it awaited (its links), and the parent
chain of every member (the task that created it, that task's creator, and so on).
Each member comes out whole: every record it has had, in the order recorded, and
every later record as it arrives. So a kept future always has its ``created`` and
its end, and so do its parent chain and its links.

A healthy future that finished *lingers* for a while (``linger`` futures), in case
a linked future is kept later. One that is still needed (a pending future links
to it, or it is in the parent chain of a pending one) is *pinned* and never
forgotten while so: a task that fails long after its parent finished still
brings the parent in. Past ``max_held`` futures in all, the oldest undecided one
is forgotten whole (counted in ``forgotten``): none of its records is ever
converted, so no history is cut in the middle.

The decision depends only on the records, not on how they were batched, with
one exception: a future still pending after ``slow`` is noticed when a batch
arrives after that moment (:meth:`TailPolicy.feed`'s ``now_ns``).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Any

from .. import _core
from .._core import _events as ev

__all__ = ["TailPolicy", "make_tail"]

Record = tuple[Any, ...]

# Records that keep the future they are about.
_KEEPS = frozenset({ev.OP_FAILED, ev.OP_CANCELLED, ev.OP_LINT, ev.OP_CAUGHT})


class _Held:
    __slots__ = ("created_ns", "done", "links", "parent", "pins", "records")

    def __init__(self, record: Record) -> None:
        self.records: list[Record] = [record]
        self.created_ns: int = record[2]
        # A task's creator (CREATED's task_id); a bare future has no parent chain.
        self.parent: int | None = record[3] if record[4] else None
        # In the order linked (a dict: a set's order would decide the order of
        # a kept group's records made in the same nanosecond).
        self.links: dict[int, None] = {}
        self.pins = 0  # undecided futures that may still need this one
        self.done = False


def make_tail(slow_ns: int, **limits: int) -> Any:
    """The fastest tail sampling available: the compiled implementation's
    ``TailPolicy`` (the same decisions on the records' structs, no Python object
    per record or held future), else :class:`TailPolicy`, the reference."""
    compiled = _core.impl.TailPolicy
    return (compiled or TailPolicy)(slow_ns, **limits)


class TailPolicy:
    """The tail-sampling decision of one installation, on its raw records."""

    def __init__(self, slow_ns: int, *, linger: int = 10_000, max_held: int = 500_000) -> None:
        self.slow_ns = slow_ns
        self.linger = linger
        self.max_held = max_held
        self.forgotten = 0  # futures dropped whole, never converted
        self._items: dict[int, _Held] = {}  # every held future, undecided or lingering
        self._undecided: OrderedDict[int, None] = OrderedDict()  # pending, oldest first
        self._lingering: OrderedDict[int, None] = OrderedDict()  # healthy and done, unpinned
        self._born: deque[tuple[int, int]] = deque()  # (created ns, id) of undecided futures
        self._kept: set[int] = set()  # kept futures not yet collected: their records pass

    def __len__(self) -> int:
        return len(self._items)

    def feed(self, records: Sequence[Record], now_ns: int) -> list[Record]:
        """The records to convert now, in order: those of kept futures, including
        the held history of futures kept by these records."""
        out: list[Record] = []
        items, kept = self._items, self._kept
        for record in records:
            op, fid = record[0], record[1]
            if fid in kept:
                out.append(record)
                if op == ev.OP_COLLECTED:
                    kept.discard(fid)
                continue
            if op == ev.OP_CREATED:
                self._hold(record)
                continue
            item = items.get(fid)
            if item is None:
                if fid == 0:
                    out.append(record)  # a loop-wide lint
                continue  # created before this installation, or forgotten whole
            item.records.append(record)
            if self._decides(item, record):
                self._keep(fid, out)
        self._expire(now_ns, out)
        return out

    def flush(self, now_ns: int) -> list[Record]:
        """At shutdown: what is still pending after ``slow`` is kept; nothing else
        can be decided any more."""
        out: list[Record] = []
        self._expire(now_ns, out)
        return out

    # -- deciding -------------------------------------------------------------------

    def _hold(self, record: Record) -> None:
        fid = record[1]
        item = self._items[fid] = _Held(record)
        self._undecided[fid] = None
        self._born.append((item.created_ns, fid))
        self._pin_chain(item.parent, +1)
        if len(self._items) > self.max_held:
            self._forget_oldest()

    def _decides(self, item: _Held, record: Record) -> bool:
        """Take one more record of a held future; True when it keeps the future."""
        op = record[0]
        if op in _KEEPS:
            return True
        if op == ev.OP_COLLECTED:
            return bool(record[3] != "FINISHED")
        if op == ev.OP_CB_ADDED:
            awaiter = record[5]
            if awaiter is not None and awaiter not in item.links:
                self._link(record[1], item, awaiter)
            return False
        if op == ev.OP_RESOLVED and not item.done:
            if record[2] - item.created_ns >= self.slow_ns:
                return True
            self._settle(record[1], item)
        return False

    def _link(self, fid: int, item: _Held, other_id: int) -> None:
        """``other_id`` (a task) awaits ``fid``: each needs the other while either
        is undecided."""
        item.links[other_id] = None
        other = self._items.get(other_id)
        if other is None:
            return
        other.links[fid] = None
        if not item.done:
            self._pin(other_id, +1)
        if not other.done:
            self._pin(fid, +1)

    def _settle(self, fid: int, item: _Held) -> None:
        """A healthy end: undecided -> lingering (or pinned, if still needed)."""
        item.done = True
        self._undecide(fid, item)
        if not item.pins:
            self._lingering[fid] = None
        while len(self._lingering) > self.linger:
            old, _ = self._lingering.popitem(last=False)
            self._drop(old)

    def _keep(self, fid: int, out: list[Record]) -> None:
        """Keep ``fid``'s group; emit its members' records in recorded order."""
        group: list[_Held] = []
        self._take(fid, group)
        first = group[0] if group else None
        if first is not None:
            for other in list(first.links):
                self._take(other, group)
        for member in list(group):
            parent = member.parent
            while parent is not None and self._take(parent, group):
                parent = group[-1].parent
        records = [record for member in group for record in member.records]
        # Members interleave in time; a stable sort keeps each one's own order
        # (ties are records made in the same nanosecond, kept as recorded).
        records.sort(key=_ts)
        out.extend(records)

    def _take(self, fid: int, group: list[_Held]) -> bool:
        item = self._items.pop(fid, None)
        if item is None:
            return False
        if not item.done:
            self._undecide(fid, item)
        self._lingering.pop(fid, None)
        group.append(item)
        self._kept.add(fid)
        if any(record[0] == ev.OP_COLLECTED for record in item.records):
            self._kept.discard(fid)  # its history is over already
        return True

    def _undecide(self, fid: int, item: _Held) -> None:
        """``fid`` is no longer undecided: what it pinned may be forgotten."""
        self._undecided.pop(fid, None)
        self._pin_chain(item.parent, -1)
        for other in item.links:
            self._pin(other, -1)

    # -- memory ---------------------------------------------------------------------

    def _pin(self, fid: int, delta: int) -> None:
        item = self._items.get(fid)
        if item is None:
            return
        item.pins += delta
        if item.done:
            if item.pins > 0:
                self._lingering.pop(fid, None)
            elif fid not in self._lingering:
                self._lingering[fid] = None

    def _pin_chain(self, parent: int | None, delta: int) -> None:
        seen = 0
        while parent is not None and seen < 1000:  # parent chains cannot loop; be safe anyway
            item = self._items.get(parent)
            if item is None:
                return
            self._pin(parent, delta)
            parent = item.parent
            seen += 1

    def _expire(self, now_ns: int, out: list[Record]) -> None:
        born = self._born
        while born:
            created, fid = born[0]
            if fid not in self._undecided:
                born.popleft()
                continue
            if now_ns - created < self.slow_ns:
                break
            born.popleft()
            self._keep(fid, out)  # still pending after `slow`

    def _forget_oldest(self) -> None:
        if self._lingering:
            old, _ = self._lingering.popitem(last=False)
        else:
            old = next(iter(self._undecided))  # never empty: _hold just made one undecided
        self._drop(old)

    def _drop(self, fid: int) -> None:
        item = self._items.pop(fid, None)
        if item is None:
            return
        self.forgotten += 1
        if not item.done:
            self._undecide(fid, item)
        self._lingering.pop(fid, None)
        for other in item.links:
            linked = self._items.get(other)
            if linked is not None:
                linked.links.pop(fid, None)


def _ts(record: Record) -> int:
    return record[2]  # type: ignore[no-any-return]
