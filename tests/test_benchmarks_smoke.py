"""The benchmark suite still runs: `python benchmarks/run.py --quick` end to end.

The figures of a quick run mean nothing; what is checked is that every mode ran
and traced what it was given, that every part produced its section, and that the
peers either ran or say how to install them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODES = ("plain", "sampled-out", "flight", "tail", "memory", "jsonl", "noop", "stuck")
PEERS = ("debug", "otel-asyncio", "aiomonitor")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "RESULTS.md"
    env = {k: v for k, v in os.environ.items() if k != "TRACEDFUTURE_PURE_PYTHON"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--loops", "asyncio", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.with_suffix(".json").read_text()), out.read_text()


@pytest.mark.slow
def test_quick_run_writes_every_section(quick_run: tuple[dict, str]) -> None:
    data, text = quick_run
    assert "A `--quick` smoke run" in text
    for heading in ("## Against the targets", "### Ratios to plain", "### Cost per task", "### Memory", "### HTTP"):
        assert heading in text
    assert "python" in [name for name, impl in data["implementations"].items() if impl["available"]]


@pytest.mark.slow
def test_quick_run_times_every_mode_and_each_traced_something(quick_run: tuple[dict, str]) -> None:
    data, _ = quick_run
    for impl in (i for i in data["implementations"].values() if i["available"]):
        cells = impl["micro"]["cells"]
        assert "error" not in impl["micro"]
        assert {c["workload"] for c in cells} == {"lifecycle", "task", "gather", "many", "burst"}
        for cell in (c for c in cells if c["group"] == "modes"):
            assert cell["failed"] == {}, cell["failed"]
            assert sorted(cell["times"]) == sorted(MODES)
            assert all(len(t) == 2 for t in cell["times"].values())
            for mode in ("flight", "memory", "jsonl", "noop", "stuck"):
                assert cell["recorded"][mode] > 0
            assert cell["recorded"]["sampled-out"] == 0


@pytest.mark.slow
def test_quick_run_peers_ran_or_name_their_install(quick_run: tuple[dict, str]) -> None:
    data, _ = quick_run
    impl = data["implementations"][data["primary"]]
    for cell in (c for c in impl["micro"]["cells"] if c["group"] == "peers"):
        for peer in PEERS:
            if peer in cell["failed"]:
                assert "pip install -e '.[bench]'" in cell["failed"][peer]
            else:
                assert len(cell["times"][peer]) == 2


@pytest.mark.slow
def test_quick_run_measures_memory_and_http(quick_run: tuple[dict, str]) -> None:
    data, _ = quick_run
    impl = data["implementations"][data["primary"]]
    rows = impl["memory"]["rows"]
    assert [r for r in rows if "error" in r] == []
    assert {r["label"] for r in rows} >= {"plain", "flight", "flight x10"}
    assert all(r["peak_rss_kib"] > 0 for r in rows)
    assert any(r["tracemalloc"] and r["traced_peak"] > 0 for r in rows)
    runs = impl["http"]["asyncio"]
    if shutil.which("wrk") is None:
        assert all("apt-get install wrk" in r["error"] for rs in runs.values() for r in rs)
        return
    for variant in ("plain", "flight", "export"):
        (result,) = runs[variant]
        assert result["requests_per_s"] > 0, result
        assert result["cpu_us_per_request"] > 0
    assert runs["export"][0]["events"] > 0
