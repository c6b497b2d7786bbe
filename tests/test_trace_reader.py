"""Reading a trace file: the compiled core's ``EventReader`` (``_core/_reader.c``)
reads the events the writer writes, and hands everything else to the reference,
``trace._checked_event``, which decides every error and its message.

Differential: for the same object, the compiled reader gives the reference's
very Event (same values, same types) or nothing; for the same file, reading with
it and without it gives the same items, or the same error on the same line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracedfuture import trace
from tracedfuture._core._events import Event

from ._cli import SAMPLE, make_trace
from .test_bad_input import CORPUS, FILES, HEADER

SITE = {"file": "/app/a.py", "line": 3, "function": "f"}
# One event of each shape the writer writes, and the lints' and the recorder's.
WRITTEN: list[dict[str, Any]] = [
    {
        "kind": "created",
        "future_id": 2,
        "ts_ns": 10,
        "task_id": 1,
        "is_task": True,
        "name": "Task-2",
        "site": SITE,
        "thread_id": 140047510461312,
        "coro": "worker",
        "parent_id": 1,
        "program_site": {"file": "/app/b.py", "line": 9, "function": "main.<locals>.<listcomp>"},
    },
    {"kind": "created", "future_id": 3, "ts_ns": 11, "task_id": 2, "is_task": False, "site": SITE, "thread_id": 7},
    {"kind": "renamed", "future_id": 2, "ts_ns": 12, "task_id": 1, "is_task": True, "name": "worker-0"},
    {"kind": "callback_added", "future_id": 1, "ts_ns": 13, "is_task": True, "name": "Task-1", "callback": "cb"},
    {"kind": "awaited", "future_id": 3, "ts_ns": 14, "task_id": 2, "callback": "Task.task_wakeup", "awaiter_id": 2},
    {"kind": "resolved", "future_id": 3, "ts_ns": 15, "is_task": False, "result_type": "int", "value": "7"},
    {"kind": "callback_scheduled", "future_id": 3, "ts_ns": 15, "callback": "Task.task_wakeup", "awaiter_id": 2},
    {
        "kind": "failed",
        "future_id": 4,
        "ts_ns": 16,
        "exc_type": "ValueError",
        "exc_msg": "bad",
        "raise_site": SITE,
        "raise_program_site": SITE,
    },
    {"kind": "cancel_requested", "future_id": 2, "ts_ns": 17, "msg": "stop", "canceller_id": 1, "canceller": "c"},
    {"kind": "cancelled", "future_id": 2, "ts_ns": 18, "is_task": True, "msg": "stop", "waiting_site": SITE},
    {"kind": "caught", "future_id": 2, "ts_ns": 19, "is_task": True, "exc_type": "KeyError", "raise_site": SITE},
    {"kind": "abandoned", "future_id": 5, "ts_ns": 20, "site": SITE, "age_ns": 5, "awaiter_id": 2},
    {"kind": "unretrieved", "future_id": 6, "ts_ns": 21, "site": SITE, "age_ns": 5, "exc_type": "OSError"},
    {"kind": "stalled", "future_id": 7, "ts_ns": 22, "chain": [1, 2, 7], "age_ns": 9, "detail": "waits"},
    {"kind": "blocked_loop", "future_id": 0, "ts_ns": 23, "task_id": 2, "age_ns": 9, "detail": "stack"},
    {"kind": "orphan", "future_id": 8, "ts_ns": 24, "site": SITE, "age_ns": 1},
    {"kind": "incomplete", "future_id": 9, "ts_ns": 25, "detail": "records dropped"},
    {"kind": "resolved", "future_id": 2**64 - 1, "ts_ns": 0, "task_id": 2**64 - 1},
]
ODD = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2**63,
    2**64 - 1,
    2**64,
    10**400,
    1.0,
    3.5,
    "",
    "x",
    "created",
    "blocked_loop",
    "nonsense",
    [],
    [1],
    ["a"],
    {},
    SITE,
    {**SITE, "line": True},
    {**SITE, "line": 3.0},
    {**SITE, "line": -1},
    {**SITE, "line": 2**64},
    {**SITE, "line": 2**64 - 1},
    {**SITE, "file": 1},
    {**SITE, "function": None},
    {**SITE, "x": 1},
    {"line": 3, "function": "f", "file": "/app/a.py"},
    {"file": "/app/a.py", "line": 3},
]
DELETE = object()
KEYS = [*Event._fields, "x", "stats", "file"]


def compiled_reader() -> Any:
    """The compiled core's ``event``; skips where no compiled core was built."""
    event = trace._compiled_event()
    if event is trace._none:
        pytest.skip("no compiled core here: the reference reads every event")
    return event


def reference(obj: Any) -> Any:
    """``(type, repr)`` of the reference's event (repr tells ``True`` from ``1``
    and ``1.0``), or the error it raises."""
    try:
        event = trace._checked_event(obj)
    except (ValueError, TypeError) as exc:
        return (type(exc), str(exc))
    return exact(event)


def exact(event: Any) -> Any:
    return (type(event), repr(event), [type(value) for value in event])


def test_every_event_the_writer_writes_is_read_in_c_as_the_reference_reads_it() -> None:
    event = compiled_reader()
    for obj in WRITTEN:
        parsed = json.loads(json.dumps(obj))
        made = event(parsed)
        assert made is not None or "chain" in obj, obj  # a chain is the reference's to check
        if made is not None:
            assert exact(made) == reference(parsed)


def test_a_real_trace_is_read_in_c_line_by_line(tmp_path: Path) -> None:
    event = compiled_reader()
    path = make_trace(tmp_path, "sample", SAMPLE, "--capture-values")
    with path.open("rb") as lines:
        objects = [json.loads(line) for line in lines][1:]
    events = [obj for obj in objects if "stats" not in obj]
    assert len(events) > 50
    for obj in events:
        made = event(obj)
        assert made is not None, obj
        assert exact(made) == reference(obj)


@settings(derandomize=True, max_examples=400, deadline=None)
@given(
    st.sampled_from(WRITTEN),
    st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from([*ODD, DELETE])), max_size=3),
)
def test_an_event_made_wrong_is_left_to_the_reference(written: dict[str, Any], changes: list[Any]) -> None:
    event = compiled_reader()
    obj = json.loads(json.dumps(written))
    for key, value in changes:
        if value is DELETE:
            obj.pop(key, None)
        else:
            obj[key] = json.loads(json.dumps(value)) if value is not None else None
    made = event(obj)
    expected = reference(obj)
    if made is None:
        return  # the reference reads it: below, the same answer either way
    assert exact(made) == expected, obj


@pytest.mark.parametrize("obj", [None, 5, "created", [1], {"stats": {}}, {}, {"kind": "created"}])
def test_what_is_not_an_event_object_is_left_to_the_reference(obj: Any) -> None:
    assert compiled_reader()(obj) is None


def read_all(path: Path) -> Any:
    """Every item of the file, exactly, or the error and its line."""
    try:
        return [(head, exact(item) if isinstance(item, Event) else item) for head, item in trace.iter_events(path)]
    except trace.TraceFormatError as exc:
        return (exc.line, str(exc))


def read_both(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    with_c = read_all(path)
    with monkeypatch.context() as patch:
        patch.setattr(trace, "_compiled_event", lambda: trace._none)
        alone = read_all(path)
    return with_c, alone


def test_each_bad_file_fails_on_the_same_line_with_the_same_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled_reader()
    for name, text, line in CORPUS:
        path = tmp_path / f"{name}.jsonl"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        with_c, alone = read_both(path, monkeypatch)
        assert with_c == alone, name
        assert isinstance(with_c, tuple) and with_c[0] == line, name


def test_a_file_of_every_shape_reads_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compiled_reader()
    path = tmp_path / "shapes.jsonl"
    body = [HEADER, *WRITTEN, {"stats": {"end_ns": 30}}]
    path.write_text("".join(json.dumps(obj) + "\n" for obj in body), encoding="utf-8")
    with_c, alone = read_both(path, monkeypatch)
    assert with_c == alone
    assert len(with_c) == len(WRITTEN) + 1


@settings(
    derandomize=True, max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(FILES)
def test_any_file_reads_alike_with_and_without_the_compiled_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: tuple[str, list[str], bool]
) -> None:
    compiled_reader()
    head, body, final_newline = file
    path = tmp_path / "fuzz.jsonl"
    path.write_text(
        "\n".join([head, *body]) + ("\n" if final_newline else ""), encoding="utf-8", errors="surrogatepass"
    )
    with_c, alone = read_both(path, monkeypatch)
    assert with_c == alone


@pytest.mark.parametrize("enabled", [True, False])
def test_loading_a_model_leaves_the_collector_as_it_found_it(tmp_path: Path, enabled: bool) -> None:
    import gc

    from tracedfuture._views._model import load

    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text("".join(json.dumps(obj) + "\n" for obj in [HEADER, *WRITTEN]), encoding="utf-8")
    bad.write_text(json.dumps(HEADER) + "\n{\n{}\n", encoding="utf-8")
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        assert load(good).records
        assert gc.isenabled() is enabled
        with pytest.raises(trace.TraceFormatError):
            load(bad)
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


@pytest.mark.parametrize("read", [trace.iter_events, trace.iter_runs])
def test_the_events_before_a_bad_line_are_handed_over_before_its_error(tmp_path: Path, read: Any) -> None:
    path = tmp_path / "bad-late.jsonl"
    good = [{"kind": "created", "future_id": i, "ts_ns": i} for i in range(1, 5001)]
    path.write_text("".join(json.dumps(obj) + "\n" for obj in [HEADER, *good, {"kind": "exploded"}]), encoding="utf-8")
    seen: list[Any] = []
    with pytest.raises(trace.TraceFormatError) as caught:
        for _, item in read(path):
            seen.extend(item if isinstance(item, list) else [item])
    assert caught.value.line == 5002
    assert [event.future_id for event in seen] == list(range(1, 5001))
