"""StructlogExporter against real structlog configurations: capture_logs, JSON and
console renderers, and the stdlib-logging integration."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

structlog = pytest.importorskip("structlog")

import tracedfuture  # noqa: E402
from tracedfuture import Event, TracedFuture  # noqa: E402
from tracedfuture.exporters.structlog import StructlogExporter  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


async def workload() -> None:
    """A resolved, a cancelled and a failed future, each with a label to find it by."""
    loop = asyncio.get_running_loop()
    reply = TracedFuture(label="reply")
    loop.call_later(0.01, reply.set_result, 1)
    await reply
    TracedFuture(label="obsolete").cancel("no longer needed")
    broken = TracedFuture(label="broken")
    broken.set_exception(ValueError("boom"))
    with contextlib.suppress(ValueError):
        await broken


def labelled(logs: list[dict[str, Any]], label: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry.get("label") == label]


def test_one_record_per_event_named_after_kind() -> None:
    with structlog.testing.capture_logs() as logs:
        tracedfuture.run(workload(), exporters=[StructlogExporter()])
    assert [e["event"] for e in labelled(logs, "reply")] == [
        "future.created",
        "future.awaited",
        "future.resolved",
        "future.callback_scheduled",
    ]
    main = [e for e in logs if e.get("coro") == "workload"]
    assert main[0]["event"] == "task.created"
    assert main[0]["site"].endswith(f"{__file__.rsplit('/', 1)[-1]}:{main[0]['site'].split(':')[1]}")


def test_records_carry_site_duration_and_event_time() -> None:
    with structlog.testing.capture_logs() as logs:
        tracedfuture.run(workload(), exporters=[StructlogExporter()])
    created, _, resolved, _ = labelled(logs, "reply")
    assert " in workload" in created["site"]
    assert isinstance(created["future_id"], int)
    assert isinstance(created["task_id"], int)  # created by the main task
    assert "task_id" not in resolved  # resolved by a call_later callback: no task ran
    assert resolved["result_type"] == "int"
    assert 5 <= resolved["duration_ms"] < 2000
    assert created["event_time"] < resolved["event_time"]
    assert "duration_ms" not in created


def test_cancel_records_msg_and_canceller() -> None:
    with structlog.testing.capture_logs() as logs:
        tracedfuture.run(workload(), exporters=[StructlogExporter()])
    (cancelled,) = [e for e in labelled(logs, "obsolete") if e["event"] == "future.cancelled"]
    assert cancelled["cancel_msg"] == "no longer needed"
    assert cancelled["canceller"].startswith("workload (")
    assert cancelled["log_level"] == "debug"
    assert "duration_ms" in cancelled


def test_failed_is_a_warning_and_the_rest_debug() -> None:
    with structlog.testing.capture_logs() as logs:
        tracedfuture.run(workload(), exporters=[StructlogExporter()])
    levels = {e["event"]: e["log_level"] for e in labelled(logs, "broken")}
    assert levels == {"future.created": "debug", "future.failed": "warning"}
    (failed,) = [e for e in labelled(logs, "broken") if e["event"] == "future.failed"]
    assert failed["exc_type"] == "ValueError"
    assert "exc_msg" not in failed  # values stay in the process without capture_values


def test_unretrieved_exception_is_an_error() -> None:
    async def forget() -> None:
        lost = TracedFuture(label="lost")
        lost.set_exception(KeyError("never looked at"))
        del lost
        gc.collect()

    with structlog.testing.capture_logs() as logs:
        tracedfuture.run(forget(), exporters=[StructlogExporter()])
    (unretrieved,) = [e for e in logs if e["event"] == "future.unretrieved"]
    assert unretrieved["log_level"] == "error"
    assert unretrieved["exc_type"] == "KeyError"
    assert "age_ms" in unretrieved


def test_levels_override_the_defaults() -> None:
    exporter = StructlogExporter(levels={"resolved": "INFO", "failed": logging.ERROR})
    with structlog.testing.capture_logs() as logs:
        tracedfuture.run(workload(), exporters=[exporter])
    levels = {e["event"]: e["log_level"] for e in logs if e.get("label") in ("reply", "broken")}
    assert levels["future.resolved"] == "info"
    assert levels["future.failed"] == "error"


@pytest.mark.parametrize(
    ("levels", "message"),
    [
        ({"resolvd": "info"}, "unknown event kind 'resolvd'"),
        ({"failed": "loud"}, "unknown level 'loud'"),
        ({"failed": 35}, "unknown level 35"),
    ],
)
def test_bad_levels_name_the_value_and_the_choices(levels: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        StructlogExporter(levels=levels)
    assert "use one of" in str(info.value)


def test_summary_gives_one_record_per_finished_future() -> None:
    with structlog.testing.capture_logs() as logs:
        tracedfuture.run(workload(), exporters=[StructlogExporter(summary=True)])
    (reply,) = labelled(logs, "reply")
    assert reply["event"] == "future.resolved"
    assert " in workload" in reply["site"]
    assert reply["callbacks"] == 1
    assert len(reply["awaiter_ids"]) == 1
    assert reply["duration_ms"] >= 5
    (obsolete,) = labelled(logs, "obsolete")
    assert obsolete["event"] == "future.cancelled"
    assert obsolete["cancel_msg"] == "no longer needed"
    (broken,) = labelled(logs, "broken")
    assert (broken["event"], broken["log_level"]) == ("future.failed", "warning")
    tasks = [e for e in logs if e["event"].startswith("task.")]
    assert {e["event"] for e in tasks} == {"task.resolved"}


def test_json_renderer_writes_one_json_object_per_event() -> None:
    out = io.StringIO()
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(file=out),
    )
    tracedfuture.run(workload(), exporters=[StructlogExporter()])
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    (cancelled,) = [r for r in records if r["event"] == "future.cancelled"]
    assert cancelled["cancel_msg"] == "no longer needed"
    assert cancelled["level"] == "debug"
    assert any(r["event"] == "future.failed" and r["level"] == "warning" for r in records)


def test_console_renderer_shows_names_and_keys() -> None:
    out = io.StringIO()
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.dev.ConsoleRenderer(colors=False)],
        logger_factory=structlog.PrintLoggerFactory(file=out),
    )
    tracedfuture.run(workload(), exporters=[StructlogExporter()])
    (line,) = [line for line in out.getvalue().splitlines() if "future.cancelled" in line]
    assert "cancel_msg='no longer needed'" in line or "cancel_msg=no longer needed" in line
    assert "[debug" in line


def test_stdlib_integration_uses_the_logger_name_and_levels(caplog: pytest.LogCaptureFixture) -> None:
    structlog.configure(
        processors=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    rendered = io.StringIO()
    handler = logging.StreamHandler(rendered)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ]
        )
    )
    stdlib_logger = logging.getLogger("myapp.futures")
    stdlib_logger.addHandler(handler)
    caplog.set_level(logging.DEBUG, logger="myapp.futures")
    try:
        tracedfuture.run(workload(), exporters=[StructlogExporter("myapp.futures")])
    finally:
        stdlib_logger.removeHandler(handler)
    records = [r for r in caplog.records if r.name == "myapp.futures"]
    failed = [r for r in records if isinstance(r.msg, dict) and r.msg.get("event") == "future.failed"]
    assert [r.levelno for r in failed] == [logging.WARNING]
    assert all(r.levelno == logging.DEBUG for r in records if r not in failed)
    lines = [json.loads(line) for line in rendered.getvalue().splitlines()]
    (cancelled,) = [line for line in lines if line["event"] == "future.cancelled"]
    assert cancelled["logger"] == "myapp.futures"
    assert cancelled["cancel_msg"] == "no longer needed"


def test_stdlib_level_filtering_drops_debug_records(caplog: pytest.LogCaptureFixture) -> None:
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_log_level,
            structlog.stdlib.render_to_log_kwargs,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    caplog.set_level(logging.WARNING, logger="tracedfuture")
    tracedfuture.run(workload(), exporters=[StructlogExporter()])
    records = [r for r in caplog.records if r.name == "tracedfuture"]
    assert [r.getMessage() for r in records] == ["future.failed"]
    # render_to_log_kwargs turns keys into LogRecord attributes: none may clash with one.
    assert records[0].exc_type == "ValueError"  # type: ignore[attr-defined]


def test_levels_the_configuration_filters_out_are_skipped() -> None:
    out = io.StringIO()
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=out),
    )
    exporter = StructlogExporter()
    tracedfuture.run(workload(), exporters=[exporter])
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["event"], r["label"]) for r in records] == [("future.failed", "broken")]
    assert exporter.records == 1


def test_every_key_can_become_a_log_record_attribute(caplog: pytest.LogCaptureFixture) -> None:
    structlog.configure(
        processors=[structlog.stdlib.add_log_level, structlog.stdlib.render_to_log_kwargs],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    caplog.set_level(logging.DEBUG, logger="tracedfuture")
    exporter = StructlogExporter()
    tracedfuture.run(workload(), exporters=[exporter])
    records = [r for r in caplog.records if r.name == "tracedfuture"]
    assert len(records) == exporter.records
    (cancelled,) = [r for r in records if r.getMessage() == "future.cancelled"]
    assert cancelled.cancel_msg == "no longer needed"  # type: ignore[attr-defined]


def test_forgets_the_oldest_future_past_max_tracked() -> None:
    exporter = StructlogExporter(max_tracked=2)
    created = [Event("created", fid, 1000 * fid) for fid in (1, 2, 3)]
    with structlog.testing.capture_logs() as logs:
        exporter.export([*created, Event("resolved", 1, 5000), Event("resolved", 3, 5000)])
    assert exporter.forgotten == 1
    resolved = {e["future_id"]: e for e in logs if e["event"] == "future.resolved"}
    assert "duration_ms" not in resolved[1]
    assert resolved[3]["duration_ms"] == 0.002


def test_loop_findings_are_named_loop() -> None:
    with structlog.testing.capture_logs() as logs:
        StructlogExporter().export([Event("blocked_loop", 0, 10, task_id=4, age_ns=250_000_000, detail="stack")])
    assert logs == [
        {
            "event": "loop.blocked",
            "log_level": "warning",
            "future_id": 0,
            "task_id": 4,
            "detail": "stack",
            "age_ms": 250.0,
            "event_time": logs[0]["event_time"],
        }
    ]


def test_without_structlog_the_import_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['structlog'] = None\n"
        "try:\n"
        "    import tracedfuture.exporters.structlog\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert "pip install 'tracedfuture[structlog]'" in out.stdout


def test_the_documented_table_is_what_the_exporter_writes() -> None:
    import re

    import tracedfuture.exporters.structlog as module
    from tracedfuture import KINDS

    rows = re.findall(r"^``(\w+)``\s+``([\w.]+)``(?: \.\.\.)?\s+(\w+)\s", module.__doc__ or "", re.M)
    table = {kind: (name, level) for kind, name, level in rows}
    assert set(table) == set(KINDS)
    exporter = StructlogExporter()
    for kind, (name, level) in table.items():
        subject = name.split(".")[0]
        event = Event(kind, 0 if subject == "loop" else 5, 10, is_task=subject == "task")
        assert module.record_name(event) == name
        assert exporter._levels.get(kind, "debug") == level, kind
        assert name == name.lower()
        assert len(name) <= 30


@pytest.mark.parametrize(("kind", "level"), [("unretrieved", "error"), ("failed", "warning"), ("abandoned", "warning")])
def test_problems_are_logged_above_debug(kind: str, level: str) -> None:
    with structlog.testing.capture_logs() as logs:
        StructlogExporter().export([Event("created", 3, 1), Event(kind, 3, 10, exc_type="ValueError")])
    assert [(e["event"], e["log_level"]) for e in logs] == [("future.created", "debug"), (f"future.{kind}", level)]


def _raise_boom() -> None:
    raise ValueError("boom")


def test_an_exception_a_framework_caught_is_an_error_with_its_raise_line_as_text() -> None:
    from tracedfuture._core import caught

    async def handler() -> None:
        try:
            _raise_boom()
        except ValueError as exc:
            caught(asyncio.current_task(), exc)

    async def main() -> None:
        await asyncio.create_task(handler(), name="GET /boom")

    with structlog.testing.capture_logs() as logs:
        tracedfuture.run(main(), exporters=[StructlogExporter()])
    (record,) = [e for e in logs if e["event"] == "task.caught"]
    assert record["log_level"] == "error" and record["task"] == "GET /boom" and record["exc_type"] == "ValueError"
    line = _raise_boom.__code__.co_firstlineno + 1
    assert record["raise_site"].endswith(f"test_exporter_structlog.py:{line} in _raise_boom")
