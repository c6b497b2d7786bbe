"""Bad trace files: each gets one line naming the file, the line and the problem,
and exit status 2, from the reader and from every viewer; never a traceback.

A targeted corpus (the cases found by hand, run as a user would, in subprocesses)
and property tests (hypothesis, fixed seed, bounded) over the reader and the four
viewers in this process.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracedfuture import cli, trace

from ._cli import tracedfuture

VIEWERS = ("tree", "stats", "html", "perfetto")
HEADER = {"format": "tracedfuture-trace", "version": 1, "wall_anchor_ns": 10**18, "monotonic_anchor_ns": 5}
CREATED = {"kind": "created", "future_id": 1, "ts_ns": 10, "is_task": False}
SITE = {"file": "/app/a.py", "line": 3, "function": "f"}


def lines(*objects: Any) -> str:
    return "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objects)


# (name, file text, the line the error names)
CORPUS: list[tuple[str, str | bytes, int]] = [
    ("nested-lists", lines(HEADER, "[" * 5000), 2),
    ("nested-objects", lines(HEADER, '{"a":' * 5000), 2),
    ("nested-in-an-event", lines(HEADER, '{"kind":"created","future_id":1,"ts_ns":1,"x":' + "[" * 5000), 2),
    ("stats-a-number", lines(HEADER, CREATED, {"stats": 5}), 3),
    ("stats-a-list", lines(HEADER, CREATED, {"stats": [1, 2]}), 3),
    ("stats-a-string", lines(HEADER, CREATED, {"stats": "done"}), 3),
    ("stats-huge-end", lines(HEADER, CREATED, {"stats": {"end_ns": 10**400}}), 3),
    ("site-line-1e999", lines(HEADER, {**CREATED, "site": {**SITE, "line": 1e999}}), 2),
    ("site-line-float", lines(HEADER, {**CREATED, "site": {**SITE, "line": 3.5}}), 2),
    ("site-a-list", lines(HEADER, {**CREATED, "site": [1]}), 2),
    ("ts-10-to-the-400", lines(HEADER, {**CREATED, "ts_ns": 10**400}), 2),
    ("ts-minus-10-to-the-20", lines(HEADER, {**CREATED, "ts_ns": -(10**20)}), 2),
    ("ts-past-64-bits", lines(HEADER, CREATED, {**CREATED, "kind": "resolved", "ts_ns": 2**64}), 3),
    ("id-negative", lines(HEADER, {**CREATED, "future_id": -1}), 2),
    ("age-huge", lines(HEADER, CREATED, {**CREATED, "kind": "abandoned", "age_ns": 10**30}), 3),
    ("int-past-the-digit-limit", lines(HEADER, '{"kind":"created","future_id":1,"ts_ns":' + "9" * 5000 + "}"), 2),
    ("nan", lines(HEADER, '{"kind":"created","future_id":1,"ts_ns":NaN}'), 2),
    ("chain-of-strings", lines(HEADER, CREATED, {**CREATED, "kind": "stalled", "chain": ["a"]}), 3),
    ("future-0-created", lines(HEADER, {**CREATED, "future_id": 0}), 2),
    ("bool-as-id", lines(HEADER, {**CREATED, "future_id": True}), 2),
    ("not-utf8", lines(HEADER).encode() + b'{"kind":"created","future_id":1,"ts_ns":1,"name":"\xff"}\n', 2),
    ("header-anchor-huge", lines({**HEADER, "wall_anchor_ns": 10**400}, CREATED), 1),
    ("header-anchor-negative", lines({**HEADER, "monotonic_anchor_ns": -1}, CREATED), 1),
    ("header-version-text", lines({**HEADER, "version": "1"}, CREATED), 1),
    ("header-a-list", lines([1, 2], CREATED), 1),
    ("unknown-kind", lines(HEADER, {**CREATED, "kind": "exploded"}), 2),
    ("event-a-string", lines(HEADER, '"created"'), 2),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("bad")
    files = {}
    for name, text, _ in CORPUS:
        path = directory / f"{name}.jsonl"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        files[name] = path
    return files


@pytest.mark.parametrize(("name", "line"), [(name, line) for name, _, line in CORPUS], ids=[c[0] for c in CORPUS])
def test_the_reader_names_the_file_and_line(corpus: dict[str, Path], name: str, line: int) -> None:
    path = corpus[name]
    with pytest.raises(trace.TraceFormatError) as caught:
        trace.read(path)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert "\n" not in str(caught.value)
    assert len(str(caught.value)) < 400


@pytest.mark.parametrize("command", VIEWERS)
def test_every_viewer_gives_one_line_and_exit_2(corpus: dict[str, Path], command: str, tmp_path: Path) -> None:
    failures = []
    for name, _, line in CORPUS:
        path = corpus[name]
        status, stderr = run_viewer(command, path, tmp_path / "out")
        if (
            status != 2
            or not stderr.startswith(f"tracedfuture {command}: error: {path}:{line}: ")
            or stderr.count("\n") != 1
        ):
            failures.append((name, status, stderr[-300:]))
    assert failures == []


@pytest.mark.parametrize("command", VIEWERS)
def test_as_a_user_runs_it_there_is_no_traceback(corpus: dict[str, Path], command: str, tmp_path: Path) -> None:
    lines_of = {name: line for name, _, line in CORPUS}
    for name in ("nested-lists", "stats-a-number", "site-line-1e999", "ts-10-to-the-400"):
        path, line = corpus[name], lines_of[name]
        extra = ["-o", str(tmp_path / "out")] if command in ("html", "perfetto") else []
        done = tracedfuture(command, path, *extra)
        assert done.returncode == 2
        assert done.stderr.startswith(f"tracedfuture {command}: error: {path}:{line}: ")
        assert done.stderr.count("\n") == 1


# --- property tests ------------------------------------------------------------------------

FIELDS = [
    "kind",
    "future_id",
    "ts_ns",
    "task_id",
    "is_task",
    "name",
    "site",
    "thread_id",
    "coro",
    "parent_id",
    "callback",
    "awaiter_id",
    "result_type",
    "value",
    "exc_type",
    "exc_msg",
    "msg",
    "canceller_id",
    "canceller",
    "age_ns",
    "chain",
    "detail",
    "stats",
    "context",
]
KINDS = [*sorted(trace.KINDS), "incomplete", "nonsense"]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, 3, 2**63, 2**64 - 1, 10**400]),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["</script>", "\u2028", "\x1b[2J", "\ud800", "%%DATA%%", "<img src=x onerror=alert(1)>"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["file", "line", "function", "x"]), inner, max_size=4)
    ),
    max_leaves=6,
)
IDS = st.integers(min_value=0, max_value=6)


@st.composite
def event_objects(draw: st.DrawFn) -> Any:
    """Mostly plausible events (so the viewers get far), with some field made wrong."""
    obj: dict[str, Any] = {
        "kind": draw(st.sampled_from(KINDS)),
        "future_id": draw(IDS),
        "ts_ns": draw(st.integers(min_value=0, max_value=10**6)),
        "is_task": draw(st.booleans()),
    }
    for key in draw(st.lists(st.sampled_from(FIELDS), max_size=4)):
        if key in ("task_id", "awaiter_id", "parent_id", "canceller_id"):
            obj[key] = draw(IDS | VALUES)
        elif key == "site":
            obj[key] = draw(st.just(SITE) | VALUES)
        else:
            obj[key] = draw(VALUES)
    return obj


LINES = st.one_of(
    event_objects().map(json.dumps),
    event_objects().map(json.dumps),
    event_objects().map(json.dumps),
    st.builds(lambda v: json.dumps({"stats": v}), VALUES),
    VALUES.map(json.dumps),
    st.sampled_from(["", "{", "[" * 3000, '{"kind":', "NaN", "\x00"]),
)
FILES = st.tuples(
    st.one_of(st.just(json.dumps(HEADER)), VALUES.map(json.dumps), st.just('{"format":"tracedfuture-trace"}')),
    st.lists(LINES, max_size=12),
    st.booleans(),
)


def run_viewer(command: str, path: Path, out: Path) -> tuple[int, str]:
    args = [command, str(path)] + (["-o", str(out)] if command in ("html", "perfetto") else [])
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = cli.main(args)
    return status, stderr.getvalue()


@settings(
    derandomize=True, max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(FILES)
def test_any_file_is_read_or_refused_in_one_line(tmp_path: Path, file: tuple[str, list[str], bool]) -> None:
    head, body, final_newline = file
    text = "\n".join([head, *body]) + ("\n" if final_newline else "")
    path = tmp_path / "fuzz.jsonl"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    problem = ""
    try:
        trace.read(path)
    except trace.TraceFormatError as exc:
        problem = str(exc)
    readable = not problem
    assert readable or (problem.startswith(f"{path}:") and "\n" not in problem)
    for command in VIEWERS:
        status, stderr = run_viewer(command, path, tmp_path / "out")
        if readable:
            assert status == 0, (command, stderr)
        else:
            assert status == 2, (command, stderr)
            assert stderr.startswith(f"tracedfuture {command}: error: {path}:")
            assert stderr.count("\n") == 1
