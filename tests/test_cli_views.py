"""``tracedfuture tree``, ``stats`` and ``html`` on real traces, and their errors.

The traces are made by running real programs under ``tracedfuture run``; every
command runs in a subprocess, as a user would run it.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import time
from pathlib import Path

import pytest

from ._cli import (
    BIG_FUTURES,
    BIG_WORKERS,
    INJECTED_MSG,
    INJECTED_NAME,
    INJECTION,
    PY,
    ROOT,
    SAMPLE,
    big_html,
    big_trace,
    make_trace,
    record_timing,
    tracedfuture,
    write,
)

ANSI = "\x1b["


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_trace(tmp_path_factory.mktemp("sample"), "sample", SAMPLE, "--capture-values")


@pytest.fixture(scope="module")
def injection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_trace(tmp_path_factory.mktemp("injection"), "injection", INJECTION, "--capture-values")


def run_ok(*args: str | Path) -> str:
    """Run a command from the trace's directory (sites print relative to it); expect success."""
    cwd = next((Path(arg).parent for arg in args if str(arg).endswith(".jsonl")), None)
    done = tracedfuture(*args, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout


def line_with(text: str, needle: str) -> str:
    found = [line for line in text.splitlines() if needle in line]
    assert found, f"no line with {needle!r} in:\n{text}"
    return found[0]


# --- tree ----------------------------------------------------------------------------------


def test_tree_puts_tasks_under_the_task_that_created_them(sample: Path) -> None:
    out = run_ok("tree", sample)
    lines = out.splitlines()
    assert lines[0].startswith("task Task-1 #1 (main)  resolved")
    assert line_with(out, "task fetch-2 #").startswith("├── ")


def test_tree_puts_a_future_under_the_task_that_awaited_it(sample: Path) -> None:
    lines = run_ok("tree", sample).splitlines()
    waiter = next(i for i, line in enumerate(lines) if "task waiter #" in line)
    assert lines[waiter + 1].startswith("│   └── future #")
    assert "-> 'hello'" in lines[waiter + 1]


def test_tree_shows_the_exception_of_a_failed_task(sample: Path) -> None:
    line = line_with(run_ok("tree", sample), "task fetch-2 #")
    assert "failed" in line
    assert "ValueError: backend said no" in line


def test_tree_shows_cancel_msg_and_who_cancelled(sample: Path) -> None:
    line = line_with(run_ok("tree", sample), "task slow-call #")
    assert re.search(r"cancelled \S+ .*msg 'deadline exceeded' by task Task-1 #1 in main \(sample\.py:\d+\)", line)


def test_tree_shows_creation_sites_relative_to_the_current_directory(sample: Path) -> None:
    line = line_with(run_ok("tree", sample), "task waiter #")
    assert line.endswith("sample.py:20 in main") or "sample.py:20 in main" in line


def test_tree_shows_pending_and_abandoned_futures(sample: Path) -> None:
    out = run_ok("tree", sample)
    assert "pending" in line_with(out, "sample.py:32 in main")
    assert "abandoned" in line_with(out, "sample.py:33 in main")


def test_tree_pending_filter_keeps_only_pending_and_their_ancestors(sample: Path) -> None:
    body = run_ok("tree", "--pending", sample).split("\n\n")[0].splitlines()
    assert len(body) == 2
    assert body[0].startswith("(task Task-1 #1")  # an ancestor, shown for context
    assert "pending" in body[1]


def test_tree_failed_filter_shows_the_failed_task(sample: Path) -> None:
    body = run_ok("tree", "--failed", sample).split("\n\n")[0]
    assert "task fetch-2 #" in body
    assert "fetch-1" not in body


def test_tree_cancelled_filter_shows_task_and_future_cancelled(sample: Path) -> None:
    body = run_ok("tree", "--cancelled", sample).split("\n\n")[0]
    assert "task slow-call #" in body
    assert "asyncio/tasks.py" in body
    assert "waiter" not in body


def test_tree_slow_filter_keeps_what_lived_at_least_that_long(sample: Path) -> None:
    body = run_ok("tree", "--slow", "0.004", sample).split("\n\n")[0]
    assert "task waiter #" in body  # about 5 ms
    assert "fetch-0" not in body  # well under 1 ms


def test_tree_focus_shows_one_task_with_its_path_and_subtree(sample: Path) -> None:
    body = run_ok("tree", "--focus", "slow-call", sample).split("\n\n")[0].splitlines()
    expected = ["(task Task-1 #1 (main)  ", "└── task slow-call #11 (sleep)  ", "    └── future #13  "]
    assert len(body) == len(expected)
    assert all(line.startswith(start) for line, start in zip(body, expected, strict=True))


def test_tree_focus_by_id_names_an_unknown_id(sample: Path) -> None:
    done = tracedfuture("tree", "--focus", "999", sample)
    assert done.returncode == 2
    assert "no task or future with id 999" in done.stderr
    assert "ids go from 1 to" in done.stderr


def test_tree_is_plain_text_when_piped(sample: Path) -> None:
    assert ANSI not in run_ok("tree", sample)


def test_tree_colours_when_asked(sample: Path) -> None:
    assert ANSI in run_ok("tree", "--color", "always", sample)


def test_tree_colours_on_a_terminal(sample: Path) -> None:
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [PY, "-m", "tracedfuture", "tree", str(sample)], stdout=follower, stderr=subprocess.DEVNULL
    ) as process:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=30)
    os.close(leader)
    assert ANSI.encode() in b"".join(chunks)


def test_tree_escapes_control_characters_from_the_trace(tmp_path: Path) -> None:
    program = """\
import asyncio


async def main():
    await asyncio.create_task(asyncio.sleep(0), name="evil\\x1b[2J")


asyncio.run(main())
"""
    out = run_ok("tree", make_trace(tmp_path, "control", program))
    assert "task evil\\x1b[2J #" in out
    assert "\x1b" not in out


def test_tree_summary_counts_every_outcome(sample: Path) -> None:
    summary = run_ok("tree", sample).splitlines()[-1]
    assert summary.startswith(
        "17 futures and tasks (9 tasks): 12 resolved, 1 failed, 2 cancelled, 1 abandoned, 1 pending"
    )


# --- stats ---------------------------------------------------------------------------------


def test_stats_counts_outcomes_by_creation_site(sample: Path) -> None:
    row = line_with(run_ok("stats", sample), "sample.py:22 in main.<locals>.<listcomp>").split()
    # site (3 words), kind, count, resolved, failed, cancelled, abandoned, pending
    assert row[3:10] == ["task", "4", "3", "1", "0", "0", "0"]


def test_stats_lists_the_most_common_cancel_msgs(sample: Path) -> None:
    assert "'deadline exceeded' x1" in line_with(run_ok("stats", sample), "sample.py:24 in main")


def test_stats_json_gives_nanosecond_percentiles_and_full_paths(sample: Path) -> None:
    report = json.loads(run_ok("stats", "--json", sample))
    fetches = next(s for s in report["sites"] if s["site"] and s["site"]["line"] == 22)
    assert fetches["site"]["file"] == str(sample.parent / "sample.py")
    assert fetches["count"] == 4
    assert fetches["failed"] == 1
    assert 0 < fetches["p50_ns"] <= fetches["p90_ns"] <= fetches["p99_ns"] <= fetches["max_ns"]


def test_stats_pending_futures_have_no_lifetime(sample: Path) -> None:
    report = json.loads(run_ok("stats", "--json", sample))
    pending = next(s for s in report["sites"] if s["site"] and s["site"]["line"] == 32)
    assert pending["pending"] == 1
    assert pending["p50_ns"] is None


def test_stats_sorts_by_the_chosen_column(sample: Path) -> None:
    report = json.loads(run_ok("stats", "--json", "--sort", "max", sample))
    maxima = [s["max_ns"] if s["max_ns"] is not None else -1 for s in report["sites"]]
    assert maxima == sorted(maxima, reverse=True)


def test_stats_rejects_an_unknown_sort_column(sample: Path) -> None:
    done = tracedfuture("stats", "--sort", "median", sample)
    assert done.returncode == 2
    assert "'median'" in done.stderr


# --- html ----------------------------------------------------------------------------------


def test_html_is_one_file_that_loads_nothing_from_the_network(sample: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    run_ok("html", sample, "-o", report)
    page = report.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page
    assert "default-src 'none'" in page


def test_html_escapes_every_trace_string(injection: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    run_ok("html", injection, "-o", report)
    page = report.read_text(encoding="utf-8")
    assert INJECTED_NAME not in page
    assert INJECTED_MSG not in page
    assert "<img" not in page
    assert page.count("<script") == 2  # the data block and the page's own script
    assert page.count("</script>") == 2
    assert "\\u003cimg src=x onerror=alert(1)\\u003e" in page
    assert "\u2028" not in page


def test_html_default_output_sits_next_to_the_trace(sample: Path) -> None:
    run_ok("html", sample)
    assert sample.with_suffix(".html").exists()


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["tree", "stats", "html", "perfetto"])
def test_missing_trace_file_is_one_line_and_exit_2(command: str, tmp_path: Path) -> None:
    done = tracedfuture(command, tmp_path / "nope.jsonl")
    assert done.returncode == 2
    assert done.stderr == f"tracedfuture {command}: error: no such trace file: {tmp_path / 'nope.jsonl'}\n"


def test_a_file_that_is_not_a_trace_is_rejected(tmp_path: Path) -> None:
    other = write(tmp_path / "other.jsonl", '{"hello": "world"}\n')
    done = tracedfuture("tree", other)
    assert done.returncode == 2
    assert f"{other}:1: not a tracedfuture trace" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unsupported_version_is_named(sample: Path, tmp_path: Path) -> None:
    lines = sample.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    header["version"] = 99
    future = write(tmp_path / "future.jsonl", json.dumps(header) + "\n" + "".join(lines[1:]))
    done = tracedfuture("stats", future)
    assert done.returncode == 2
    assert "version 99 is not supported" in done.stderr


def test_a_corrupt_line_is_reported_with_its_number(sample: Path, tmp_path: Path) -> None:
    lines = sample.read_text().splitlines(keepends=True)
    lines[4] = "{not json\n"
    corrupt = write(tmp_path / "corrupt.jsonl", "".join(lines))
    done = tracedfuture("tree", corrupt)
    assert done.returncode == 2
    assert f"{corrupt}:5: not valid JSON" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_truncated_last_line_is_a_warning_not_an_error(sample: Path, tmp_path: Path) -> None:
    text = sample.read_text()
    cut = write(tmp_path / "cut.jsonl", text[: text.rindex("\n", 0, len(text) - 1) + 20])
    done = tracedfuture("tree", cut)
    assert done.returncode == 0, done.stderr
    assert "warning:" in done.stderr
    assert "truncated" in done.stderr


def test_a_directory_is_not_a_trace(tmp_path: Path) -> None:
    done = tracedfuture("stats", tmp_path)
    assert done.returncode == 2
    assert "is a directory" in done.stderr


def test_progress_is_shown_when_asked(sample: Path) -> None:
    done = tracedfuture("stats", "--progress", sample)
    assert "reading " in done.stderr
    assert "100%" in done.stderr


def test_progress_is_not_shown_when_stderr_is_not_a_terminal(sample: Path) -> None:
    assert tracedfuture("stats", sample).stderr == ""


# --- the seeds' examples ---------------------------------------------------------------------

EXAMPLES = sorted((ROOT / "examples").glob("future_*.py"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_every_command_works_on_an_example(example: Path, tmp_path: Path) -> None:
    trace = tmp_path / f"{example.stem}.jsonl"
    done = tracedfuture("run", "-o", trace, example, cwd=example.parent)
    assert done.returncode == 0, done.stderr
    assert "future #" in run_ok("tree", trace)
    assert "future" in run_ok("stats", trace)
    run_ok("html", trace, "-o", tmp_path / "report.html")
    run_ok("perfetto", trace, "-o", tmp_path / "trace.json")


# --- 100,000 futures ---------------------------------------------------------------------------

TOTAL_BIG = BIG_FUTURES + BIG_WORKERS + 3  # main task, and asyncio.run's two shutdown tasks


def timed(*args: str | Path) -> tuple[str, float]:
    began = time.perf_counter()
    out = run_ok(*args)
    return out, time.perf_counter() - began


def test_tree_on_100k_futures() -> None:
    out, seconds = timed("tree", big_trace())
    record_timing("tree, 100k futures", seconds)
    assert out.splitlines()[-1].startswith(f"{TOTAL_BIG} futures and tasks ({BIG_WORKERS + 3} tasks): ")


def test_stats_on_100k_futures() -> None:
    out, seconds = timed("stats", "--json", big_trace())
    record_timing("stats, 100k futures", seconds)
    site = json.loads(out)["sites"][0]
    assert site["count"] == BIG_FUTURES
    assert (site["failed"], site["cancelled"]) == (BIG_FUTURES // 50, BIG_FUTURES // 50)


def test_html_on_100k_futures() -> None:
    report, seconds = big_html()
    record_timing("html, 100k futures", seconds)
    assert report.stat().st_size < 200 * BIG_FUTURES  # bytes: about 170 per future today
