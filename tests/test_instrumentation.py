"""TracedFutureInstrumentor: the real `opentelemetry-instrument` command, and by hand."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from .conftest import require

pytest.importorskip("opentelemetry.sdk.trace")
pytest.importorskip("opentelemetry.instrumentation.instrumentor")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tracedfuture
from tracedfuture.instrumentation import TracedFutureInstrumentor, options_from_env

INSTRUMENT = Path(sys.executable).parent / "opentelemetry-instrument"

APP = """
import asyncio
from opentelemetry import trace

async def fetch():
    reply = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(reply.set_result, 42)
    return await reply

async def main():
    with trace.get_tracer("app").start_as_current_span("request"):
        print("result", await asyncio.create_task(fetch(), name="fetcher"))

asyncio.run(main())
"""


def instrumented_run(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """Run APP under `opentelemetry-instrument --traces_exporter console`; its spans, decoded."""
    require(INSTRUMENT.exists(), "opentelemetry-instrument is not installed (opentelemetry-instrumentation)")
    require(
        any(ep.name == "tracedfuture" for ep in entry_points(group="opentelemetry_instrumentor")),
        "the entry point is not registered: pip install -e .",
    )
    require(
        bool(list(entry_points(group="opentelemetry_configurator"))),
        "no SDK configurator for opentelemetry-instrument: pip install opentelemetry-distro",
    )
    (tmp_path / "app.py").write_text(APP)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    # Only this instrumentor: opentelemetry-instrumentation-asyncio, when installed
    # (benchmarks' extra), wraps every task's coroutine in its own, which the
    # task span would then be named after.
    environ |= {
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "asyncio",
        **env,
    }
    done = subprocess.run(
        [str(INSTRUMENT), "--traces_exporter", "console", sys.executable, "app.py"],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("result 42\n"), done.stdout
    spans = []
    decoder = json.JSONDecoder()
    text = done.stdout[len("result 42\n") :].strip()
    while text:
        span, end = decoder.raw_decode(text)
        spans.append(span)
        text = text[end:].strip()
    return done, spans


def test_opentelemetry_instrument_traces_futures_and_tasks(tmp_path: Path) -> None:
    _, spans = instrumented_run(tmp_path, OTEL_PYTHON_TRACEDFUTURE_CAPTURE_VALUES="true")
    by_name = {span["name"]: span for span in spans}
    reply, fetcher, request = by_name["future fetch"], by_name["task fetch"], by_name["request"]
    assert fetcher["parent_id"] == request["context"]["span_id"]  # the span current at create_task
    assert reply["parent_id"] == fetcher["context"]["span_id"]
    assert reply["attributes"]["asyncio.value"] == "42"
    assert fetcher["attributes"]["asyncio.task.name"] == "fetcher"
    assert [link["context"]["span_id"] for link in reply["links"]] == [fetcher["context"]["span_id"]]
    assert fetcher["attributes"]["code.file.path"].endswith("app.py")
    assert "code.filepath" not in fetcher["attributes"]
    assert not [name for name in by_name if "shutdown" in name]  # asyncio.run's own, left out


def test_disabled_instrumentations_turns_it_off(tmp_path: Path) -> None:
    _, spans = instrumented_run(tmp_path, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="tracedfuture")
    assert [span["name"] for span in spans] == ["request"]


def test_bad_variable_is_reported_and_the_program_runs_untraced(tmp_path: Path) -> None:
    done, spans = instrumented_run(tmp_path, OTEL_PYTHON_TRACEDFUTURE_SAMPLE_RATE="2")
    assert [span["name"] for span in spans] == ["request"]
    assert "Instrumenting of tracedfuture failed" in done.stderr
    assert "OTEL_PYTHON_TRACEDFUTURE_SAMPLE_RATE: sample_rate must be between 0.0 and 1.0" in done.stderr
    assert "such as 0.1, not 2\n" in done.stderr


@pytest.fixture
def instrumentor() -> Iterator[TracedFutureInstrumentor]:
    instrumentor = TracedFutureInstrumentor()
    yield instrumentor
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()


def test_instrument_by_hand_then_uninstrument(instrumentor: TracedFutureInstrumentor) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))

    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)

    instrumentor.instrument(tracer_provider=provider, capture_values=True)
    asyncio.run(main())
    instrumentor.uninstrument()
    names = [span.name for span in spans.get_finished_spans()]
    assert "future test_instrument_by_hand_then_uninstrument.<locals>.main" in names
    spans.clear()
    asyncio.run(main())
    assert spans.get_finished_spans() == ()
    loop = asyncio.new_event_loop()
    try:
        assert not isinstance(loop.create_future(), tracedfuture.TracedFuture)
    finally:
        loop.close()


def test_keyword_arguments_override_the_environment(
    instrumentor: TracedFutureInstrumentor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_TRACEDFUTURE_SLOW", "5")
    instrumentor.instrument(tracer_provider=TracerProvider(), slow=0.25, tail=True)
    installation = instrumentor._installation
    assert installation is not None
    assert (installation.options.slow, installation.options.tail) == (0.25, True)


def test_options_from_env_parses_each_kind_of_value() -> None:
    env = {
        "OTEL_PYTHON_TRACEDFUTURE_SAMPLE_RATE": "0.25",
        "OTEL_PYTHON_TRACEDFUTURE_TAIL": "Yes",
        "OTEL_PYTHON_TRACEDFUTURE_CAPTURE_VALUES": "0",
        "OTEL_PYTHON_TRACEDFUTURE_MAX_FAILURES": "5",
        "OTEL_PYTHON_TRACEDFUTURE_EXPORT_TIMEOUT": "2.5",
        "OTEL_PYTHON_TRACEDFUTURE_INCLUDE_MODULES": "myapp, lib.db ,",
        "OTEL_PYTHON_TRACEDFUTURE_SLOW": "",
        "OTEL_SERVICE_NAME": "ignored",
    }
    assert options_from_env(env) == {
        "sample_rate": 0.25,
        "tail": True,
        "capture_values": False,
        "max_failures": 5,
        "export_timeout": 2.5,
        "include_modules": ("myapp", "lib.db"),
    }


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        (
            "TAIL",
            "maybe",
            "OTEL_PYTHON_TRACEDFUTURE_TAIL: tail must be true or false (in text also 1/0, yes/no, on/off), not 'maybe'",
        ),
        (
            "SLOW",
            "1s",
            "OTEL_PYTHON_TRACEDFUTURE_SLOW: slow must be a number of seconds >= 0, such as 1.0, not '1s'",
        ),
        (
            "MAX_FAILURES",
            "3.5",
            "OTEL_PYTHON_TRACEDFUTURE_MAX_FAILURES: max_failures must be a whole number of failures >= 1, "
            "such as 10, not '3.5'",
        ),
        (
            "SAMPLERATE",
            "1",
            "unknown variable OTEL_PYTHON_TRACEDFUTURE_SAMPLERATE: did you mean OTEL_PYTHON_TRACEDFUTURE_SAMPLE_RATE?",
        ),
    ],
)
def test_bad_variables_name_the_variable_and_the_fix(var: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        options_from_env({"OTEL_PYTHON_TRACEDFUTURE_" + var: value})


def test_out_of_range_value_names_the_variable(
    instrumentor: TracedFutureInstrumentor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_TRACEDFUTURE_SLOW", "-1")
    with pytest.raises(ValueError, match=r"^OTEL_PYTHON_TRACEDFUTURE_SLOW: slow must be .*, not -1$"):
        instrumentor.instrument(tracer_provider=TracerProvider())


def test_a_bad_keyword_argument_is_blamed_on_the_argument_even_when_a_variable_is_set(
    instrumentor: TracedFutureInstrumentor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_TRACEDFUTURE_SLOW", "0.5")
    with pytest.raises(ValueError, match=r"^slow must be a number of seconds >= 0, such as 1\.0, not -2$"):
        instrumentor.instrument(tracer_provider=TracerProvider(), slow=-2)


def test_the_module_docs_list_every_variable_the_options_table_has() -> None:
    import tracedfuture.instrumentation
    from tracedfuture.options import INSTALL_OPTIONS as OPTIONS

    doc = tracedfuture.instrumentation.__doc__ or ""
    listed = set(re.findall(r"``OTEL_PYTHON_TRACEDFUTURE_([A-Z_]+)``", doc))
    assert listed == {option.env for option in OPTIONS if option.env is not None}
