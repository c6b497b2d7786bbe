"""``tracedfuture stats``: one row per creation site, for a terminal or for machines.

Lifetimes are those of the futures that ended (resolved, failed, cancelled or
abandoned); a future still pending when the trace stopped has no lifetime yet and
is only counted. Percentiles use the nearest-rank method, so p99 of 10 values is
the largest one: every reported number is a lifetime that really occurred.

The outcome columns split ``count``: each future or task is in one of them. A
task that returned after a framework caught an exception in it (a server's 500,
``tracedfuture.asgi``) is counted as ``caught``, beside ``failed``, not as
``resolved``; ``raised`` names the exceptions of a row's failures and caught
ones, each with the program's line that raised it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .._core._events import Outcome, Site
from .._fold import FutureState
from .._text import format_duration, plural, printable, site_text, untraced_children_note
from ._model import CAUGHT, VIEW_OUTCOMES, Model, view_outcome

__all__ = ["COLUMNS", "SiteStats", "collect", "render_json", "render_table"]

# Sort keys accepted by --sort: numeric columns sort largest first, "site" A to Z.
COLUMNS = ("site", "count", *VIEW_OUTCOMES, "p50", "p90", "p99", "max")
_TOP_MSGS = 3
_MSG_WIDTH = 60  # a cancel message longer than this is cut in the table (whole in --json)
_SITE_WIDTH = 60


@dataclass
class SiteStats:
    """The futures and tasks created at one site: the program's own line, and,
    when a library made them on its behalf, the library's line (``via``)."""

    site: Site | None
    via: Site | None = None
    tasks: int = 0
    futures: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    lifetimes: list[int] = field(default_factory=list)
    cancel_msgs: Counter[str | None] = field(default_factory=Counter)
    # (exception type, the program's line that raised it, else the innermost, caught)
    raised: Counter[tuple[str, Site | None, bool]] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        return self.tasks + self.futures

    def percentile(self, percent: float) -> int | None:
        """Nearest-rank percentile of the lifetimes (``lifetimes`` must be sorted)."""
        if not self.lifetimes:
            return None
        rank = max(1, math.ceil(percent / 100 * len(self.lifetimes)))
        return self.lifetimes[rank - 1]

    def sort_value(self, column: str) -> Any:
        if column == "site":
            return site_text(self.site)
        if column == "count":
            return self.count
        if column in VIEW_OUTCOMES:
            return self.outcomes[column]
        if column == "max":
            return self.lifetimes[-1] if self.lifetimes else -1
        value = self.percentile(float(column[1:]))
        return -1 if value is None else value


def collect(model: Model, sort: str = "count") -> list[SiteStats]:
    """Group the records by creation site, sorted by ``sort`` (one of :data:`COLUMNS`)."""
    if sort not in COLUMNS:
        msg = f"cannot sort by {sort!r}: choose one of {', '.join(COLUMNS)}"
        raise ValueError(msg)
    groups: dict[tuple[Site | None, Site | None], SiteStats] = {}
    for record in model.records.values():
        program = record.program_site
        key = (record.site, None) if program is None or program == record.site else (program, record.site)
        stats = groups.get(key)
        if stats is None:
            stats = groups[key] = SiteStats(*key)
        if record.is_task:
            stats.tasks += 1
        else:
            stats.futures += 1
        outcome = view_outcome(record)
        stats.outcomes[outcome] += 1
        lifetime = record.lifetime_ns()
        if lifetime is not None:
            stats.lifetimes.append(lifetime)
        if outcome == Outcome.CANCELLED:
            stats.cancel_msgs[record.msg] += 1
        elif outcome in (Outcome.FAILED, CAUGHT):
            stats.raised[_raised_key(record, outcome == CAUGHT)] += 1
    rows = list(groups.values())
    for stats in rows:
        stats.lifetimes.sort()
    if sort == "site":
        rows.sort(key=lambda s: s.sort_value("site"))
    else:
        rows.sort(key=lambda s: (-s.sort_value(sort), s.sort_value("site")))
    return rows


def _raised_key(record: FutureState, caught: bool) -> tuple[str, Site | None, bool]:
    return (record.exc_type or "exception", record.raise_program_site or record.raise_site, caught)


def _kind(stats: SiteStats) -> str:
    if stats.tasks and stats.futures:
        return "both"
    return "task" if stats.tasks else "future"


def _msgs(stats: SiteStats) -> str:
    return ", ".join(
        f"{'(no msg)' if msg is None else _cut(repr(msg))} x{n}" for msg, n in stats.cancel_msgs.most_common(_TOP_MSGS)
    )


def _cut(text: str) -> str:
    return text if len(text) <= _MSG_WIDTH else text[: _MSG_WIDTH - 3] + "..."


def _raised(stats: SiteStats) -> str:
    """``LookupError at shop.py:42 in Pool.query x2 (caught)``: the commonest first."""
    return ", ".join(
        exc + (f" at {site_text(site)}" if site is not None else "") + f" x{n}" + (" (caught)" if caught else "")
        for (exc, site, caught), n in stats.raised.most_common(_TOP_MSGS)
    )


def _site_cell(stats: SiteStats) -> str:
    """The program's line, then the library's: the library's is cut first."""
    text = printable(site_text(stats.site))
    if stats.via is None:
        return _clip_site(text)
    via = printable(site_text(stats.via))
    room = _SITE_WIDTH - len(text) - len(" (via )")
    if room < 12:
        return _clip_site(text)
    return f"{text} (via {_clip_site(via) if len(via) <= room else '...' + via[-(room - 3) :]})"


def _clip_site(text: str) -> str:
    return text if len(text) <= _SITE_WIDTH else "..." + text[-(_SITE_WIDTH - 3) :]


def render_table(model: Model, rows: list[SiteStats]) -> Iterator[str]:
    """Yield an aligned text table, then a line explaining the columns."""
    header = ["site", "kind", "count", *VIEW_OUTCOMES, "p50", "p90", "p99", "max", "raised", "cancel msgs"]
    table = [header]
    for stats in rows:
        table.append(
            [
                _site_cell(stats),
                _kind(stats),
                str(stats.count),
                *(str(stats.outcomes[outcome]) for outcome in VIEW_OUTCOMES),
                *(format_duration(stats.percentile(p)) for p in (50, 90, 99)),
                format_duration(stats.lifetimes[-1] if stats.lifetimes else None),
                printable(_raised(stats)),
                printable(_msgs(stats)),
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [cell.rjust(width) for cell, width in zip(row[2:-2], widths[2:-2], strict=True)]
        cells += [row[-2].ljust(widths[-2]), row[-1]]
        yield "  ".join(cells).rstrip()
    yield ""
    total = sum(stats.count for stats in rows)
    yield (
        f"{plural(total, 'future or task', 'futures and tasks')} from {plural(len(rows), 'site')} in {model.path}; "
        "lifetimes (p50..max) count those that ended, not the pending ones"
    )
    caught = sum(stats.outcomes[CAUGHT] for stats in rows)
    if caught:
        yield (
            f"caught: {plural(caught, 'task')} ended after the framework caught an exception "
            "in them (a server's 500): counted apart from resolved, with the line that raised it"
        )
    dropped = model.dropped()
    if dropped:
        yield (
            f"the trace's stats line counts {plural(dropped, 'future')} untraced, dropped or incomplete: "
            "the counts above are lower bounds"
        )
    yield from filter(None, [untraced_children_note(model.stats)])


def render_json(model: Model, rows: list[SiteStats]) -> dict[str, Any]:
    """The same table as a JSON-ready dict: durations in nanoseconds, full paths."""
    sites = []
    for stats in rows:
        site, via = stats.site, stats.via
        sites.append(
            {
                "site": _site_json(site),
                "via": _site_json(via),
                "tasks": stats.tasks,
                "futures": stats.futures,
                "count": stats.count,
                **{outcome: stats.outcomes[outcome] for outcome in VIEW_OUTCOMES},
                "p50_ns": stats.percentile(50),
                "p90_ns": stats.percentile(90),
                "p99_ns": stats.percentile(99),
                "max_ns": stats.lifetimes[-1] if stats.lifetimes else None,
                "raised": [
                    {"exc_type": exc, "site": _site_json(site), "caught": caught, "count": n}
                    for (exc, site, caught), n in stats.raised.most_common(_TOP_MSGS)
                ],
                "cancel_msgs": [{"msg": msg, "count": n} for msg, n in stats.cancel_msgs.most_common(_TOP_MSGS)],
            }
        )
    return {
        "trace": model.path,
        "futures_and_tasks": len(model.records),
        "futures_not_shown_whole": model.dropped(),
        "sites": sites,
    }


def _site_json(site: Site | None) -> dict[str, Any] | None:
    return None if site is None else {"file": site.filename, "line": site.lineno, "function": site.function}
